package shopapp_test

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/shopapp"
)

// rawCall sends a request to the simulator without the client and decodes the answer.
func rawCall(t *testing.T, method, u, auth, body string) (int, map[string]any, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, u, strings.NewReader(body))
	require.NoError(t, err)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var obj map[string]any
	_ = json.Unmarshal(data, &obj) // arrays stay nil
	return resp.StatusCode, obj, data
}

func TestSimulatorAuthentication(t *testing.T) {
	t.Parallel()
	clock := newClock(t, "2024-06-01 09:00:00")
	sim, err := shopappsim.Start(shopappsim.Config{ClientID: "cid", ClientSecret: "csecret", Now: clock.Now, TokenTTL: 10 * time.Minute})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	base := sim.URL()

	status, obj, _ := rawCall(t, "GET", base+"/token?client_id=cid&client_secret=nope", "", "")
	require.Equal(t, 401, status)
	require.Equal(t, true, obj["error"])
	require.NotEmpty(t, obj["message"])

	status, obj, _ = rawCall(t, "GET", base+"/token?client_id=cid&client_secret=csecret", "", "")
	require.Equal(t, 200, status)
	require.Equal(t, "bearer", obj["token_type"])
	require.InDelta(t, 600, obj["expires_in"], 0)
	tok := obj["access_token"].(string)

	status, obj, _ = rawCall(t, "GET", base+"/token", "", `{"client_id":"cid","client_secret":"csecret"}`)
	require.Equal(t, 200, status, "credentials in a JSON body")
	require.NotEqual(t, tok, obj["access_token"])

	order := `{"guid":"g1","prestations":["IN-BTQST-S","IN-BTQZ-AMM"],"client":{"nom":"Durand"}`
	tests := []struct {
		name, method, path, auth, body string
		want                           int
	}{
		{name: "header", method: "GET", path: "/prestations", auth: "Bearer " + tok, want: 200},
		{name: "header scheme in lower case", method: "GET", path: "/prestations", auth: "bearer " + tok, want: 200},
		{name: "query", method: "GET", path: "/prestations?token=" + url.QueryEscape(tok), want: 200},
		{name: "body", method: "POST", path: "/interfaces", body: order + `,"token":"` + tok + `"}`, want: 200},
		{name: "body with a GET", method: "GET", path: "/interfaces", body: `{"token":"` + tok + `"}`, want: 200},
		{name: "missing", method: "GET", path: "/prestations", want: 401},
		{name: "wrong", method: "GET", path: "/prestations", auth: "Bearer sim.0000", want: 401},
		{name: "another scheme", method: "GET", path: "/prestations", auth: "Basic " + tok, want: 401},
		{name: "unknown route with a token", method: "GET", path: "/clients", auth: "Bearer " + tok, want: 400},
		{name: "unknown route without a token", method: "GET", path: "/clients", want: 400},
		{name: "wrong method", method: "PUT", path: "/interfaces", auth: "Bearer " + tok, want: 400},
		{name: "too deep", method: "GET", path: "/interfaces/a/prestations/b/c", auth: "Bearer " + tok, want: 400},
		{name: "empty segment", method: "GET", path: "/interfaces//prestations", auth: "Bearer " + tok, want: 400},
		{name: "malformed JSON", method: "POST", path: "/interfaces", auth: "Bearer " + tok, body: `{"guid":`, want: 400},
	}
	for _, tt := range tests {
		status, obj, raw := rawCall(t, tt.method, base+tt.path, tt.auth, tt.body)
		require.Equal(t, tt.want, status, "%s: %s", tt.name, raw)
		if tt.want != 200 {
			require.Equal(t, true, obj["error"], tt.name)
			require.NotEmpty(t, obj["message"], tt.name)
		}
	}

	clock.Advance(10 * time.Minute)
	status, _, _ = rawCall(t, "GET", base+"/prestations", "Bearer "+tok, "")
	require.Equal(t, 401, status, "expired token")
}

func TestSimulatorAddAcceptsBareArray(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
	key, err := c.CreateInterface(ctx, boutique("crm-1"))
	require.NoError(t, err)
	tok, err := c.Token(ctx)
	require.NoError(t, err)
	status, _, raw := rawCall(t, "POST", sim.URL()+"/interfaces/"+key+"/prestations", "Bearer "+tok.AccessToken, `["MO-SEO-M"]`)
	require.Equal(t, 200, status, "%s", raw)
	var added []shopapp.AddedPrestation
	require.NoError(t, json.Unmarshal(raw, &added))
	require.Len(t, added, 1)
}

func TestSimulatorDatesInParis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	utc := time.Date(2024, 7, 1, 22, 30, 0, 0, time.UTC)
	sim, c := start(t, shopappsim.Config{Now: func() time.Time { return utc }}, shopapp.Config{}, nil)
	key, err := c.CreateInterface(ctx, boutique("crm-1"))
	require.NoError(t, err)
	tok, err := c.Token(ctx)
	require.NoError(t, err)
	_, obj, _ := rawCall(t, "GET", sim.URL()+"/interfaces/"+key, "Bearer "+tok.AccessToken, "")
	require.Equal(t, "2024-07-02 00:30:00", obj["date_creation"])
	require.InDelta(t, 3, obj["statut"], 0)
}

func TestSimulatorFaults(t *testing.T) {
	t.Parallel()
	sim := shopappsim.New(shopappsim.Config{})
	sim.SetFault(shopappsim.Fault{Status: 503, RetryAfter: "7", Remaining: 2, Route: shopapp.RoutePrestations})
	get := func(path string) *http.Response {
		w := httptest.NewRecorder()
		sim.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Result()
	}
	for range 2 {
		resp := get("/prestations")
		require.Equal(t, 503, resp.StatusCode)
		require.Equal(t, "7", resp.Header.Get("Retry-After"))
	}
	require.Equal(t, 401, get("/prestations").StatusCode, "fault spent")
	sim.SetFault(shopappsim.Fault{Status: 500})
	require.Equal(t, 500, get("/interfaces").StatusCode)
	require.Equal(t, 500, get("/token").StatusCode)
	sim.ClearFault()
	require.Equal(t, 401, get("/interfaces").StatusCode)
	require.Equal(t, map[string]int{shopapp.RoutePrestations: 3, shopapp.RouteInterfaces: 2, shopapp.RouteToken: 1}, sim.Calls())
}

func TestSeed(t *testing.T) {
	t.Parallel()
	clock := newClock(t, "2024-06-01 09:00:00")
	a := shopappsim.New(shopappsim.Config{Now: clock.Now})
	a.Seed(1000, rand.New(rand.NewPCG(1, 2)))
	b := shopappsim.New(shopappsim.Config{Now: clock.Now})
	b.Seed(1000, rand.New(rand.NewPCG(1, 2)))
	require.Equal(t, a.Interfaces(), b.Interfaces(), "the same seed gives the same interfaces")
	require.Len(t, a.Interfaces(), 1000)

	counts := map[shopapp.Status]int{}
	refs := map[string]bool{}
	cancelled := 0
	for _, key := range a.Interfaces() {
		i, ok := a.Interface(key)
		require.True(t, ok)
		counts[i.Status]++
		checkInvariants(t, a, i, clock.Now())
		for _, p := range i.Prestations {
			require.False(t, refs[p.Reference], "reference %s reused", p.Reference)
			refs[p.Reference] = true
			if p.Cancelled {
				cancelled++
			}
		}
	}
	for _, st := range []shopapp.Status{shopapp.StatusDeleted, shopapp.StatusActive, shopapp.StatusDeactivated, shopapp.StatusInstalling} {
		require.Greater(t, counts[st], 30, "status %s: %v", st, counts)
	}
	require.Greater(t, counts[shopapp.StatusActive], counts[shopapp.StatusDeactivated])
	require.Positive(t, cancelled)
}

// checkInvariants asserts what the partner's rules guarantee of any interface.
func checkInvariants(t *testing.T, sim *shopappsim.Sim, i shopappsim.Interface, now time.Time) {
	t.Helper()
	setups := 0
	for _, p := range i.Prestations {
		if shopapp.IsSetup(p.Code) {
			setups++
		}
		require.False(t, p.Created.Before(i.Created), "%s ordered before the interface", p.Code)
		require.False(t, p.Created.After(now))
		require.Equal(t, p.Cancelled, !p.CancelledAt.IsZero())
		require.Len(t, p.Reference, 13)
	}
	require.Equal(t, 1, setups, "interface %s", i.Key)
	switch i.Status {
	case shopapp.StatusDeactivated:
		require.True(t, i.DeletionDate.After(now))
		require.False(t, i.AccessCut.IsZero())
	case shopapp.StatusDeleted:
		require.False(t, i.DeletionDate.After(now))
	case shopapp.StatusActive, shopapp.StatusInstalling:
		require.True(t, i.DeletionDate.IsZero())
	default:
		t.Fatalf("interface %s has status %d", i.Key, i.Status)
	}
	_, ok := sim.Interface(i.Key)
	require.True(t, ok)
}

func TestMutate(t *testing.T) {
	t.Parallel()
	clock := newClock(t, "2024-06-01 09:00:00")
	sim := shopappsim.New(shopappsim.Config{Now: clock.Now})
	r := rand.New(rand.NewPCG(3, 4))
	sim.Mutate(r) // from empty: creates
	require.Len(t, sim.Interfaces(), 1)
	sim.Seed(50, r)
	for range 2000 {
		clock.Advance(time.Minute)
		sim.Mutate(r)
	}
	keys := sim.Interfaces()
	require.Greater(t, len(keys), 100)
	counts := map[shopapp.Status]int{}
	for _, key := range keys {
		i, _ := sim.Interface(key)
		counts[i.Status]++
		checkInvariants(t, sim, i, clock.Now())
	}
	require.Len(t, counts, 4, "every status reached: %v", counts)
}

func TestSetStatus(t *testing.T) {
	t.Parallel()
	sim := shopappsim.New(shopappsim.Config{})
	sim.Seed(1, rand.New(rand.NewPCG(5, 6)))
	key := sim.Interfaces()[0]
	for _, st := range []shopapp.Status{shopapp.StatusInstalling, shopapp.StatusActive, shopapp.StatusDeactivated, shopapp.StatusActive, shopapp.StatusDeleted} {
		require.NoError(t, sim.SetStatus(key, st))
		i, _ := sim.Interface(key)
		require.Equal(t, st, i.Status)
	}
	require.Error(t, sim.SetStatus(key, shopapp.Status(9)))
	require.Error(t, sim.SetStatus("nope", shopapp.StatusActive))
	require.Error(t, sim.AdvanceInstall(key), "not installing")
}

// TestSimulatorConcurrent polls while the sandbox mutates, for the race detector.
func TestSimulatorConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, c := start(t, shopappsim.Config{InstallDelay: time.Millisecond}, shopapp.Config{}, nil)
	sim.Seed(200, rand.New(rand.NewPCG(7, 8)))
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		r := rand.New(rand.NewPCG(9, 10))
		for {
			select {
			case <-done:
				return
			default:
				sim.Mutate(r)
				time.Sleep(100 * time.Microsecond) // let the pollers in
			}
		}
	})
	keys, err := c.Interfaces(ctx)
	require.NoError(t, err)
	readErrs := make([]error, 4) // checked once the readers are done: no require off the test's goroutine
	for w := range 4 {
		wg.Go(func() {
			for k := w; k < len(keys); k += 4 {
				if _, err := c.Interface(ctx, keys[k]); err != nil {
					readErrs[w] = err
					return
				}
				if _, err := c.InterfacePrestations(ctx, keys[k]); err != nil {
					readErrs[w] = err
					return
				}
			}
		})
	}
	var createErr error
	for k := range 20 {
		if _, createErr = c.CreateInterface(ctx, boutique("crm-c-"+string(rune('a'+k)))); createErr != nil {
			break
		}
	}
	close(done)
	wg.Wait()
	require.NoError(t, createErr)
	for _, err := range readErrs {
		require.NoError(t, err)
	}
}

// BenchmarkPoll reads every interface of a 5 000-interface simulator, as the poller does.
func BenchmarkPoll(b *testing.B) {
	sim, err := shopappsim.Start(shopappsim.Config{})
	require.NoError(b, err)
	b.Cleanup(sim.Close)
	sim.Seed(5000, rand.New(rand.NewPCG(1, 1)))
	c, err := shopapp.New(shopapp.Config{BaseURL: sim.URL(), ClientID: sim.ClientID(), ClientSecret: sim.ClientSecret(), Rate: -1}, nil, nil)
	require.NoError(b, err)
	ctx := context.Background()
	b.ResetTimer()
	for b.Loop() {
		keys, err := c.Interfaces(ctx)
		require.NoError(b, err)
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for k := w; k < len(keys); k += 16 {
					if _, err := c.Interface(ctx, keys[k]); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
}
