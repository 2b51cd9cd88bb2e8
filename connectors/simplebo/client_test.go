package simplebo_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/connectors/simplebo/simplebosim"
	"github.com/passerelle/passerelle/internal/httpclient"
)

// recorder keeps the requests a client sent, as the wire carried them.
type recorder struct {
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	header http.Header
	body   string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var body string
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err == nil {
			b, _ := io.ReadAll(rc)
			body = string(b)
			rc.Close()
		}
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, recorded{header: req.Header.Clone(), body: body})
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) all() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.reqs...)
}

type fixture struct {
	sim *simplebosim.Sim
	c   *simplebo.Client
	rec *recorder
	reg *prometheus.Registry
	m   *simplebo.Metrics
}

func newFixture(t *testing.T, mutate ...func(*simplebo.Config)) fixture {
	t.Helper()
	sim, err := simplebosim.Start(simplebosim.SimConfig{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	f := fixture{sim: sim, rec: &recorder{}, reg: prometheus.NewRegistry()}
	f.m = simplebo.NewMetrics(f.reg)
	cfg := simplebo.Config{
		BaseURL: sim.URL(), Token: sim.Token(), PartnerCode: sim.PartnerCode(), Partner: "LBA",
		Timeout: 5 * time.Second, Transport: f.rec, Metrics: f.m,
	}
	for _, m := range mutate {
		m(&cfg)
	}
	f.c, err = simplebo.New(cfg, httpclient.NewMetrics(f.reg))
	require.NoError(t, err)
	return f
}

func customer(id string) simplebo.Customer {
	return simplebo.Customer{
		ClientID: id, Lastname: "Lhermitte", Firstname: "Thierry", ClientTitle: "M.",
		CompanyName: "DécOrato", SIRET: "73282932000074", Email: "thierry@example.com",
		PhoneNumber1: "0182103621", Zipcode: "28000", City: "Chartres", Country: "France",
		Typology: 12, CampaignCode: "camp-12", OtherInfo: "rappeler le matin",
	}
}

func calls(f fixture, op, outcome string) float64 {
	return counter(f.reg, "passerelle_simplebo_api_calls_total", op, outcome)
}

// counter reads one counter of reg by its label values, in label-name order; -1 when absent.
func counter(reg *prometheus.Registry, name string, values ...string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := len(m.GetLabel()) == len(values)
			for i, l := range m.GetLabel() {
				match = match && l.GetValue() == values[i]
			}
			if match {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

func asError(t *testing.T, err error) *httpclient.Error {
	t.Helper()
	var he *httpclient.Error
	require.ErrorAs(t, err, &he)
	require.Equal(t, "simplebo", he.Connector)
	return he
}

func TestRequestMockupSendsTheFormWithTheExactTokenHeader(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ans, err := f.c.RequestMockup(context.Background(), customer("g-1"))
	require.NoError(t, err)
	require.Equal(t, "OK", ans.Text)
	require.Equal(t, "https://sites.simplebo.example/g-1", ans.RedirectTo)
	require.False(t, ans.InvalidSIRET)

	reqs := f.rec.all()
	require.Len(t, reqs, 1)
	require.Equal(t, `Token token="sim-token"`, reqs[0].header.Get("Authorization"))
	require.Equal(t, "application/x-www-form-urlencoded", reqs[0].header.Get("Content-Type"))
	got, err := url.ParseQuery(reqs[0].body)
	require.NoError(t, err)
	want := url.Values{
		"partner_code": {"SIMPARTNER"}, "partner": {"LBA"}, "campaign_code": {"camp-12"},
		"client_id": {"g-1"}, "lastname": {"Lhermitte"}, "firstname": {"Thierry"}, "client_title": {"M."},
		"company_name": {"DécOrato"}, "siret": {"73282932000074"}, "email": {"thierry@example.com"},
		"phone_number1": {"0182103621"}, "zipcode": {"28000"}, "city": {"Chartres"}, "country": {"France"},
		"typology": {"12"}, "other_info": {"rappeler le matin"},
	}
	require.Equal(t, want, got)

	require.Equal(t, []simplebo.Customer{customer("g-1")}, f.sim.Leads())
	require.Empty(t, f.sim.Customers())
	require.Equal(t, 1.0, calls(f, "mockup", "delivered"))
}

func TestActivateAfterMockupAndIdempotentRepeats(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	first := customer("g-2")
	changed := first
	changed.City = "Paris"

	for range 2 {
		_, err := f.c.RequestMockup(ctx, first)
		require.NoError(t, err)
	}
	ans, err := f.c.RequestMockup(ctx, changed)
	require.NoError(t, err, "a repeat with other data is OK")
	require.Equal(t, "https://sites.simplebo.example/g-2", ans.RedirectTo)
	for range 2 {
		_, err = f.c.Activate(ctx, changed)
		require.NoError(t, err)
	}

	require.Equal(t, []simplebo.Customer{first}, f.sim.Leads(), "a repeat changes nothing")
	require.Equal(t, []simplebo.Customer{first}, f.sim.Customers(), "the first data received is kept")
	cl, ok := f.sim.Client("g-2")
	require.True(t, ok)
	require.True(t, cl.Lead)
	require.True(t, cl.Activated)
	require.Equal(t, 3, f.sim.Requests("/v1/leads"))
	require.Equal(t, 2, f.sim.Requests("/v1/customers"))
	require.Equal(t, 2.0, calls(f, "activate", "delivered"))
}

func TestResponseOneWithHTTP200IsPermanentWithTheText(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sim.RejectNext(1, "Le code postal est invalide")
	_, err := f.c.Activate(context.Background(), customer("g-3"))
	he := asError(t, err)
	require.Equal(t, httpclient.Permanent, he.Outcome)
	require.Equal(t, 200, he.Status)
	require.Equal(t, 1, he.Attempts, "a refusal is not retried in the call")
	require.Equal(t, "Le code postal est invalide", he.Message)
	require.Equal(t, "POST /v1/customers", he.Endpoint)
	require.True(t, httpclient.IsPermanent(err))
	require.Empty(t, f.sim.Customers())
	require.Equal(t, 1.0, calls(f, "activate", "permanent"))

	// The simulator's own validation answers the same way.
	f2 := newFixture(t, func(c *simplebo.Config) { c.PartnerCode = "OTHER" })
	_, err = f2.c.RequestMockup(context.Background(), customer("g-3"))
	he = asError(t, err)
	require.Equal(t, httpclient.Permanent, he.Outcome)
	require.Equal(t, "Unknown partner_code", he.Message)
}

func TestWrongTokenIsPermanent401(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *simplebo.Config) { c.Token = "wrong-token" })
	_, err := f.c.RequestMockup(context.Background(), customer("g-4"))
	he := asError(t, err)
	require.Equal(t, 401, he.Status)
	require.Equal(t, httpclient.Permanent, he.Outcome)
	require.Equal(t, "Unauthorized", he.Message)
	require.Equal(t, 1, he.Attempts)
	require.NotContains(t, err.Error(), "wrong-token")
	require.NotContains(t, err.Error(), "thierry@example.com")
}

func TestRetriesHonourRetryAfter(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.sim.FailNext(1, http.StatusServiceUnavailable, time.Second)
	start := time.Now()
	ans, err := f.c.RequestMockup(context.Background(), customer("g-5"))
	require.NoError(t, err)
	require.Equal(t, "OK", ans.Text)
	require.GreaterOrEqual(t, time.Since(start), time.Second, "Retry-After waited")
	require.Equal(t, 2, f.sim.Requests("/v1/leads"))
	require.Len(t, f.sim.Leads(), 1)
}

func TestRetryableFailuresKeepStatusAttemptsAndRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		status       int
		retryAfter   time.Duration
		wantAttempts int
		wantOutcome  httpclient.Outcome
	}{
		// A wait longer than a call may take ends it at once, the wait kept for the caller.
		{"429 with a long Retry-After", 429, time.Minute, 1, httpclient.Retry},
		{"500 three times", 500, 0, 3, httpclient.Retry},
		{"410 is gone", 410, 0, 1, httpclient.Gone},
		{"400 is permanent", 400, 0, 1, httpclient.Permanent},
		{"501 is permanent", 501, 0, 1, httpclient.Permanent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.sim.FailNext(3, tc.status, tc.retryAfter)
			_, err := f.c.RequestMockup(context.Background(), customer("g-6"))
			he := asError(t, err)
			require.Equal(t, tc.wantOutcome, he.Outcome)
			require.Equal(t, tc.status, he.Status)
			require.Equal(t, tc.wantAttempts, he.Attempts)
			require.Equal(t, tc.retryAfter, he.RetryAfter)
			require.Equal(t, tc.wantAttempts, f.sim.Requests("/v1/leads"))
			require.Equal(t, 1.0, calls(f, "mockup", tc.wantOutcome.String()))
		})
	}
}

func TestNetworkErrorsAndTimeoutsAreRetry(t *testing.T) {
	t.Parallel()
	t.Run("server gone", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t)
		f.sim.Close()
		_, err := f.c.RequestMockup(context.Background(), customer("g-7"))
		he := asError(t, err)
		require.Equal(t, httpclient.Retry, he.Outcome)
		require.Zero(t, he.Status)
		require.Equal(t, 3, he.Attempts)
		require.NotContains(t, err.Error(), "http://", "no URL in the error")
	})
	t.Run("slow server", func(t *testing.T) {
		t.Parallel()
		f := newFixture(t, func(c *simplebo.Config) { c.Timeout = 50 * time.Millisecond })
		f.sim.SetSlow(2 * time.Second)
		_, err := f.c.RequestMockup(context.Background(), customer("g-8"))
		he := asError(t, err)
		require.Equal(t, httpclient.Retry, he.Outcome)
		require.Equal(t, 3, f.sim.Requests("/v1/leads"))
	})
}

func TestInvalidCustomerIsNotSent(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cu := customer("g-9")
	cu.Email, cu.Zipcode = "", " "
	_, err := f.c.RequestMockup(context.Background(), cu)
	he := asError(t, err)
	require.Equal(t, httpclient.Permanent, he.Outcome)
	require.ErrorIs(t, err, simplebo.ErrInvalidCustomer)
	require.Contains(t, err.Error(), "email, zipcode")
	require.Zero(t, f.sim.Requests("/v1/leads"))
}

func TestInvalidSIRETIsSentAndFlagged(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cu := customer("g-10")
	cu.SIRET = "182918291" // the partner's own example
	ans, err := f.c.RequestMockup(context.Background(), cu)
	require.NoError(t, err)
	require.True(t, ans.InvalidSIRET)
	require.Equal(t, "182918291", f.sim.Leads()[0].SIRET)
	require.Equal(t, 1.0, counter(f.reg, "passerelle_simplebo_invalid_siret_total", "mockup"))

	// Flagged on a failed call too, so the caller can warn either way.
	f.sim.RejectNext(1, "nope")
	ans, err = f.c.Activate(context.Background(), cu)
	require.Error(t, err)
	require.True(t, ans.InvalidSIRET)
}

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	ok := simplebo.Config{Token: "t", PartnerCode: "p", Partner: "LBA"}
	tests := []struct {
		name   string
		mutate func(*simplebo.Config)
	}{
		{"no token", func(c *simplebo.Config) { c.Token = "" }},
		{"quote in token", func(c *simplebo.Config) { c.Token = `a"b` }},
		{"no partner code", func(c *simplebo.Config) { c.PartnerCode = "" }},
		{"no partner", func(c *simplebo.Config) { c.Partner = "" }},
		{"relative base", func(c *simplebo.Config) { c.BaseURL = "/v1/" }},
		{"ftp base", func(c *simplebo.Config) { c.BaseURL = "ftp://x/v1/" }},
		{"credentials in base", func(c *simplebo.Config) { c.BaseURL = "https://u:p@x/v1/" }},
	}
	for _, tc := range tests {
		cfg := ok
		tc.mutate(&cfg)
		_, err := simplebo.New(cfg, nil)
		require.Error(t, err, tc.name)
		require.NotContains(t, err.Error(), "u:p", tc.name)
	}
	_, err := simplebo.New(ok, nil)
	require.NoError(t, err, "the default base URL")
}

// A base URL without its trailing slash still reaches {base}leads.
func TestBaseURLWithoutTrailingSlash(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *simplebo.Config) { c.BaseURL = strings.TrimSuffix(c.BaseURL, "/") })
	_, err := f.c.RequestMockup(context.Background(), customer("g-11"))
	require.NoError(t, err)
	require.Equal(t, 1, f.sim.Requests("/v1/leads"))
}

func TestCanceledContextIsNotRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.c.RequestMockup(ctx, customer("g-12"))
	require.True(t, errors.Is(err, context.Canceled) || httpclient.Canceled(err), "got %v", err)
	require.Zero(t, f.sim.Requests("/v1/leads"))
}
