package simplebosim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/connectors/simplebo/simplebosim"
)

func start(t *testing.T) *simplebosim.Sim {
	t.Helper()
	s, err := simplebosim.Start(simplebosim.SimConfig{})
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func fields(partnerCode string) url.Values {
	return url.Values{
		"partner_code": {partnerCode}, "partner": {"LBA"}, "client_id": {"c-1"}, "lastname": {"Dupont"},
		"email": {"d@example.com"}, "phone_number1": {"0102030405"}, "zipcode": {"75001"}, "city": {"Paris"},
		"country": {"FR"}, "typology": {"12"},
	}
}

type answer struct {
	Response   int    `json:"response"`
	Text       string `json:"text"`
	RedirectTo string `json:"redirect_to"`
}

func call(t *testing.T, s *simplebosim.Sim, path, auth, ct string, body []byte) (int, answer, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, s.URL()+path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", ct)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var a answer
	require.NoError(t, json.Unmarshal(b, &a), string(b))
	return resp.StatusCode, a, resp.Header
}

func TestSimAPI(t *testing.T) {
	t.Parallel()
	s := start(t)
	require.Regexp(t, `^http://127\.0\.0\.1:\d+/v1/$`, s.URL())
	auth := `Token token="` + s.Token() + `"`
	form := []byte(fields(s.PartnerCode()).Encode())
	const ct = "application/x-www-form-urlencoded"

	status, a, _ := call(t, s, "leads", `Token token="nope"`, ct, form)
	require.Equal(t, http.StatusUnauthorized, status)
	require.Equal(t, answer{Response: 1, Text: "Unauthorized"}, a)

	bad := fields(s.PartnerCode())
	bad.Del("city")
	status, a, _ = call(t, s, "leads", auth, ct, []byte(bad.Encode()))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, 1, a.Response)
	require.Contains(t, a.Text, "missing city")

	status, a, _ = call(t, s, "leads", auth, ct, []byte(fields("OTHER").Encode()))
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, answer{Response: 1, Text: "Unknown partner_code"}, a)

	status, a, _ = call(t, s, "leads", auth, ct, form)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, answer{Response: 0, Text: "OK", RedirectTo: "https://sites.simplebo.example/c-1"}, a)

	// JSON with a numeric typology, as the partner's example shows it.
	js := []byte(`{"partner_code":"` + s.PartnerCode() + `","partner":"LBA","client_id":"c-2","lastname":"Durand",
		"email":"e@example.com","phone_number1":"01","zipcode":"28000","city":"Chartres","country":"France","typology":12}`)
	status, a, _ = call(t, s, "customers", auth, "application/json", js)
	require.Equal(t, http.StatusOK, status)
	require.Zero(t, a.Response, a.Text)

	// Multipart, as PHP's curl sends an array of fields.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	for k, v := range fields(s.PartnerCode()) {
		require.NoError(t, mw.WriteField(k, v[0]))
	}
	require.NoError(t, mw.Close())
	status, a, _ = call(t, s, "customers", auth, mw.FormDataContentType(), mp.Bytes())
	require.Equal(t, http.StatusOK, status)
	require.Zero(t, a.Response, a.Text)

	require.Equal(t, []string{"c-1"}, ids(s.Leads()))
	require.Equal(t, []string{"c-2", "c-1"}, ids(s.Customers()))
	c2, ok := s.Client("c-2")
	require.True(t, ok)
	require.Equal(t, 12, c2.Customer.Typology)
	require.Equal(t, "application/json", c2.ContentType)
	require.Equal(t, 4, s.Requests("/v1/leads"))
	_, ok = s.Client("c-3")
	require.False(t, ok)
}

func ids(cs []simplebo.Customer) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ClientID)
	}
	return out
}

func TestSimFaults(t *testing.T) {
	t.Parallel()
	s := start(t)
	auth := `Token token="` + s.Token() + `"`
	form := []byte(fields(s.PartnerCode()).Encode())
	const ct = "application/x-www-form-urlencoded"

	s.FailNext(1, http.StatusTooManyRequests, 1500*time.Millisecond)
	s.RejectNext(1, "Quota atteint")
	status, _, h := call(t, s, "leads", auth, ct, form)
	require.Equal(t, http.StatusTooManyRequests, status)
	require.Equal(t, "2", h.Get("Retry-After"), "rounded up to whole seconds")
	status, a, _ := call(t, s, "leads", auth, ct, form)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, answer{Response: 1, Text: "Quota atteint"}, a)
	require.Empty(t, s.Leads())
	status, a, _ = call(t, s, "leads", auth, ct, form)
	require.Equal(t, http.StatusOK, status)
	require.Zero(t, a.Response)

	s.SetSlow(200 * time.Millisecond)
	begin := time.Now()
	call(t, s, "leads", auth, ct, form)
	require.GreaterOrEqual(t, time.Since(begin), 200*time.Millisecond)
}

func TestEventsFor(t *testing.T) {
	t.Parallel()
	day := func(s string) time.Time { d, _ := time.Parse(time.DateOnly, s); return d }
	evs := simplebosim.EventsFor("g-1", time.Date(2026, 1, 5, 15, 4, 5, 0, time.Local))
	require.Len(t, evs, 4)
	var codes []simplebo.EventCode
	for _, ev := range evs {
		codes = append(codes, ev.Type)
		require.Equal(t, "g-1", ev.Client.ClientID)
		require.Equal(t, day("2026-01-05"), ev.LeadCreationDate)
	}
	require.Equal(t, simplebosim.DefaultChain(), codes)
	require.True(t, evs[0].ServiceStartingDate.IsZero())
	require.Equal(t, day("2026-01-19"), evs[1].ServiceStartingDate)
	require.True(t, evs[1].BillingStartingDate.IsZero())
	require.Equal(t, day("2026-02-19"), evs[2].BillingStartingDate)
	require.Equal(t, 12, evs[2].NbOfPaidMonths)
	require.Equal(t, day("2027-02-19"), evs[3].EndOfContractDate)

	free := simplebosim.EventsFor("g-1", day("2026-01-05"), 0, 1, 3, simplebo.SwitchedToFree)
	require.Equal(t, day("2026-08-19"), free[3].EndOfContractDate)
	require.Equal(t, "4", free[3].TypeRaw)

	// Every event goes through the partner's encodings and back unchanged.
	for _, ev := range append(evs, free...) {
		for _, enc := range []simplebosim.Encoding{simplebosim.Form, simplebosim.Multipart, simplebosim.JSON} {
			body, ct, err := simplebosim.Encode(ev, enc)
			require.NoError(t, err)
			got, err := simplebo.DecodeEvent(ct, body)
			require.NoError(t, err)
			require.Equal(t, ev, got)
		}
	}
}

func TestScrambleKeepsEveryEvent(t *testing.T) {
	t.Parallel()
	evs := simplebosim.EventsFor("g-1", time.Now())
	got := simplebosim.Scramble(evs, rand.New(rand.NewPCG(3, 4)), 5)
	require.Len(t, got, len(evs)+5)
	seen := map[simplebo.EventCode]bool{}
	for _, ev := range got {
		seen[ev.Type] = true
	}
	require.Len(t, seen, len(evs))
	require.Len(t, evs, 4, "the input is not changed")
}
