package shopapp_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle/passerelle/connectors/shopapp"

	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/httpclient"
)

func TestNewChecksConfig(t *testing.T) {
	t.Parallel()
	ok := shopapp.Config{BaseURL: "https://api.example.test", ClientID: "id", ClientSecret: "s"}
	tests := []struct {
		name    string
		mutate  func(*shopapp.Config)
		wantErr bool
	}{
		{name: "ok", mutate: func(*shopapp.Config) {}},
		{name: "base path", mutate: func(c *shopapp.Config) { c.BaseURL = "https://api.example.test/v1/" }},
		{name: "relative", mutate: func(c *shopapp.Config) { c.BaseURL = "/api" }, wantErr: true},
		{name: "ftp", mutate: func(c *shopapp.Config) { c.BaseURL = "ftp://api.example.test" }, wantErr: true},
		{name: "query", mutate: func(c *shopapp.Config) { c.BaseURL = "https://api.example.test?token=x" }, wantErr: true},
		{name: "no id", mutate: func(c *shopapp.Config) { c.ClientID = "" }, wantErr: true},
		{name: "no secret", mutate: func(c *shopapp.Config) { c.ClientSecret = "" }, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tt.mutate(&cfg)
			_, err := shopapp.New(cfg, nil, nil)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
		})
	}
}

func TestRefreshAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		life, want time.Duration
	}{
		{life: time.Hour, want: 54 * time.Minute},                        // 90 % comes first
		{life: 10 * time.Minute, want: 9 * time.Minute},                  // both agree
		{life: 5 * time.Minute, want: 4 * time.Minute},                   // 60 s before comes first
		{life: 90 * time.Second, want: 45 * time.Second},                 // never before half its life
		{life: 2 * time.Second, want: time.Second},                       // tiny
		{life: 24 * time.Hour, want: 24 * time.Hour * 9 / 10},            // long
		{life: 2 * time.Minute, want: time.Minute},                       // 60 s before = half
		{life: 10*time.Minute + 10*time.Second, want: 549 * time.Second}, // 90 %, 1 s before 60 s before
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, shopapp.RefreshAfter(tt.life), "life %s", tt.life)
	}
}

func TestTokenRenewedBeforeExpiry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock(t, "2024-06-01 09:00:00")
	m := shopapp.NewMetrics(prometheus.NewRegistry())
	sim, c := start(t, shopappsim.Config{Now: clock.Now, TokenTTL: time.Hour}, shopapp.Config{}, m)

	_, err := c.Interfaces(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, sim.Calls()[shopapp.RouteToken])
	require.InDelta(t, 1, testutil.ToFloat64(m.Renewals().WithLabelValues(shopapp.RenewInitial)), 0)

	clock.Advance(54*time.Minute - time.Second)
	_, err = c.Interfaces(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, sim.Calls()[shopapp.RouteToken], "renewed too early")

	clock.Advance(time.Second) // 90 % of the hour
	_, err = c.Interfaces(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, sim.Calls()[shopapp.RouteToken], "not renewed at 90 % of its life")
	require.InDelta(t, 1, testutil.ToFloat64(m.Renewals().WithLabelValues(shopapp.RenewExpiry)), 0)
	require.InDelta(t, 0, testutil.ToFloat64(m.Renewals().WithLabelValues(shopapp.RenewUnauthorized)), 0)

	tok, err := c.Token(ctx)
	require.NoError(t, err)
	require.Equal(t, 3600, tok.ExpiresIn)
	require.Equal(t, 2, sim.Calls()[shopapp.RouteToken], "Token returns the cached token")
}

func TestTokenRenewedOnceOnUnauthorized(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := shopapp.NewMetrics(prometheus.NewRegistry())
	sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, m)
	_, err := c.Interfaces(ctx)
	require.NoError(t, err)

	sim.ExpireTokens()
	sim.ResetCalls()
	keys, err := c.Interfaces(ctx)
	require.NoError(t, err)
	require.Empty(t, keys)
	require.Equal(t, map[string]int{shopapp.RouteToken: 1, shopapp.RouteInterfaces: 2}, sim.Calls())
	require.InDelta(t, 1, testutil.ToFloat64(m.Renewals().WithLabelValues(shopapp.RenewUnauthorized)), 0)
	require.InDelta(t, 2, testutil.ToFloat64(m.Calls().WithLabelValues(shopapp.RouteInterfaces, "200")), 0)
}

func TestSecondUnauthorizedIsReturned(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := shopapp.NewMetrics(prometheus.NewRegistry())
	sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, m)
	_, err := c.Token(ctx)
	require.NoError(t, err)
	sim.ResetCalls()

	// The API refuses the token twice in a row, a fresh one included.
	sim.SetFault(shopappsim.Fault{Status: http.StatusUnauthorized, Route: shopapp.RouteInterfaces, Remaining: 2})
	_, err = c.Interfaces(ctx)
	requireAPIError(t, err, http.StatusUnauthorized, shopapp.RouteInterfaces)
	require.ErrorIs(t, err, shopapp.ErrUnauthorized)
	require.False(t, shopapp.IsRetryable(err))
	require.Equal(t, map[string]int{shopapp.RouteToken: 1, shopapp.RouteInterfaces: 2}, sim.Calls(), "exactly one renewal, one retry")
	require.InDelta(t, 1, testutil.ToFloat64(m.Renewals().WithLabelValues(shopapp.RenewUnauthorized)), 0)
	require.InDelta(t, 1, testutil.ToFloat64(m.Calls().WithLabelValues(shopapp.RouteInterfaces, "401")), 0)
}

func TestBadCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, err := shopappsim.Start(shopappsim.Config{ClientSecret: "the-right-one"})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	c, err := shopapp.New(shopapp.Config{BaseURL: sim.URL(), ClientID: sim.ClientID(), ClientSecret: "not-the-right-one", Rate: -1}, nil, nil)
	require.NoError(t, err)
	_, err = c.Interfaces(ctx)
	requireAPIError(t, err, http.StatusUnauthorized, shopapp.RouteToken)
	require.NotContains(t, err.Error(), "not-the-right-one")
	require.Equal(t, map[string]int{shopapp.RouteToken: 1}, sim.Calls(), "a refused login is not retried")
}

func TestConcurrentCallersShareOneRenewal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
	const n = 32
	run := func() {
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				_, err := c.Prestations(ctx)
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	run()
	require.Equal(t, 1, sim.Calls()[shopapp.RouteToken], "first token fetched once")
	sim.ExpireTokens()
	run()
	require.Equal(t, 2, sim.Calls()[shopapp.RouteToken], "renewed once for every caller refused")
}

func TestWaitingForTokenHonoursContext(t *testing.T) {
	t.Parallel()
	sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
	sim.SetFault(shopappsim.Fault{Delay: time.Second, Route: shopapp.RouteToken})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { _, errs[i] = c.Interfaces(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		require.ErrorIs(t, err, context.DeadlineExceeded)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fault     shopappsim.Fault
		call      func(context.Context, *shopapp.Client, string) error
		route     string
		wantCalls int
		wantErr   int // status of the *shopapp.APIError, 0 for success
		minWait   time.Duration
	}{
		{name: "500 then success", fault: shopappsim.Fault{Status: 500, Remaining: 2}, route: shopapp.RouteInterface, wantCalls: 3},
		{name: "503 with Retry-After", fault: shopappsim.Fault{Status: 503, RetryAfter: "0", Remaining: 2}, route: shopapp.RouteInterface, wantCalls: 3},
		{name: "429 honours Retry-After", fault: shopappsim.Fault{Status: 429, RetryAfter: "1", Remaining: 1}, route: shopapp.RouteInterface, wantCalls: 2, minWait: 900 * time.Millisecond},
		{name: "500 until out of retries", fault: shopappsim.Fault{Status: 500}, route: shopapp.RouteInterface, wantCalls: 4, wantErr: 500},
		{name: "400 not retried", fault: shopappsim.Fault{Status: 400}, route: shopapp.RouteInterface, wantCalls: 1, wantErr: 400},
		{name: "add not retried on 500", fault: shopappsim.Fault{Status: 500, Remaining: 1}, route: shopapp.RouteAddPrestations, wantCalls: 1, wantErr: 500},
		{name: "add retried on 503", fault: shopappsim.Fault{Status: 503, Remaining: 1}, route: shopapp.RouteAddPrestations, wantCalls: 2},
		{name: "add retried on 429", fault: shopappsim.Fault{Status: 429, RetryAfter: "0", Remaining: 2}, route: shopapp.RouteAddPrestations, wantCalls: 3},
		{name: "create retried on 500", fault: shopappsim.Fault{Status: 500, Remaining: 1}, route: shopapp.RouteCreateInterface, wantCalls: 2},
	}
	calls := map[string]func(context.Context, *shopapp.Client, string) error{
		shopapp.RouteInterface: func(ctx context.Context, c *shopapp.Client, key string) error {
			_, err := c.Interface(ctx, key)
			return err
		},
		shopapp.RouteAddPrestations: func(ctx context.Context, c *shopapp.Client, key string) error {
			_, err := c.AddPrestations(ctx, key, []string{"MO-SEO-M"})
			return err
		},
		shopapp.RouteCreateInterface: func(ctx context.Context, c *shopapp.Client, _ string) error {
			_, err := c.CreateInterface(ctx, boutique("crm-retry"))
			return err
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			sim, c := start(t, shopappsim.Config{}, shopapp.Config{Retries: 3}, nil)
			key, err := c.CreateInterface(ctx, boutique("crm-1"))
			require.NoError(t, err)
			require.NoError(t, sim.AdvanceInstall(key))
			sim.ResetCalls()
			f := tt.fault
			f.Route = tt.route
			sim.SetFault(f)

			began := time.Now()
			err = calls[tt.route](ctx, c, key)
			elapsed := time.Since(began)
			require.Equal(t, tt.wantCalls, sim.Calls()[tt.route])
			require.GreaterOrEqual(t, elapsed, tt.minWait)
			if tt.wantErr == 0 {
				require.NoError(t, err)
				return
			}
			requireAPIError(t, err, tt.wantErr, tt.route)
			require.Equal(t, tt.wantErr >= 500, shopapp.IsRetryable(err))
		})
	}
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("timeout retried then returned", func(t *testing.T) {
		t.Parallel()
		sim, c := start(t, shopappsim.Config{}, shopapp.Config{Timeout: 50 * time.Millisecond, Retries: 2}, nil)
		_, err := c.Token(ctx)
		require.NoError(t, err)
		sim.SetFault(shopappsim.Fault{Delay: time.Second, Route: shopapp.RoutePrestations})
		_, err = c.Prestations(ctx)
		require.Error(t, err)
		require.True(t, shopapp.IsRetryable(err))
		require.Equal(t, 3, sim.Calls()[shopapp.RoutePrestations])
	})

	t.Run("connection refused", func(t *testing.T) {
		t.Parallel()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		c, err := shopapp.New(shopapp.Config{BaseURL: "http://" + addr, ClientID: "id", ClientSecret: "s3cr3t-value", Rate: -1,
			Retries: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond}, nil, nil)
		require.NoError(t, err)
		_, err = c.Interfaces(ctx)
		require.Error(t, err)
		require.True(t, shopapp.IsRetryable(err))
		require.Contains(t, err.Error(), "GET /token")
		require.NotContains(t, err.Error(), "s3cr3t-value")
		require.NotContains(t, err.Error(), "client_secret")
	})

	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
		sim.SetFault(shopappsim.Fault{Delay: time.Second})
		ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancel()
		_, err := c.Interfaces(ctx)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 1, sim.Calls()[shopapp.RouteToken], "no retry once the context is done")
	})
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	const (
		rps    = 10
		window = 600 * time.Millisecond
	)
	sim, c := start(t, shopappsim.Config{}, shopapp.Config{Rate: rps}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if _, err := c.Prestations(ctx); err == nil {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for _, n := range sim.Calls() {
		total += n
	}
	// A burst of one then one every 100 ms: 7 in 600 ms; without a limit it would be thousands.
	// Bounds are loose so that a slow machine passes.
	require.LessOrEqual(t, total, 1+int(rps*window.Seconds())+2, "requests in %s at %d/s", window, rps)
	require.GreaterOrEqual(t, ok.Load(), int64(2))
}

func TestRateLimitCoversRetries(t *testing.T) {
	t.Parallel()
	sim, c := start(t, shopappsim.Config{}, shopapp.Config{Rate: 20, Retries: 3}, nil)
	_, err := c.Token(context.Background())
	require.NoError(t, err)
	sim.SetFault(shopappsim.Fault{Status: 500, Remaining: 3, Route: shopapp.RoutePrestations})
	began := time.Now()
	_, err = c.Prestations(context.Background())
	require.NoError(t, err)
	require.Equal(t, 4, sim.Calls()[shopapp.RoutePrestations])
	// Four attempts after the token at 20/s: at least three intervals of 50 ms, whatever the backoff.
	require.GreaterOrEqual(t, time.Since(began), 140*time.Millisecond)
}

// TestNoSecretInErrors drives every kind of failure and checks that neither the client secret nor
// a token appears in any error text.
func TestNoSecretInErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const secret = "Sup3r-S3cret-Value"
	sim, err := shopappsim.Start(shopappsim.Config{ClientSecret: secret})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	newClient := func(base, sec string, timeout time.Duration) *shopapp.Client {
		c, err := shopapp.New(shopapp.Config{BaseURL: base, ClientID: sim.ClientID(), ClientSecret: sec, Rate: -1, Timeout: timeout,
			Retries: 1, RetryWaitMin: time.Millisecond, RetryWaitMax: time.Millisecond}, nil, nil)
		require.NoError(t, err)
		return c
	}
	c := newClient(sim.URL(), secret, 100*time.Millisecond)
	tok, err := c.Token(ctx)
	require.NoError(t, err)

	// A server that echoes what it was sent in its error message.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token" {
			httpapi.WriteJSON(w, 200, shopapp.Token{AccessToken: tok.AccessToken, TokenType: "bearer", ExpiresIn: 3600})
			return
		}
		httpapi.WriteError(w, 400, "refusé : "+r.URL.String()+" "+r.Header.Get("Authorization")+" "+secret)
	}))
	t.Cleanup(echo.Close)
	echoText := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(500)
		_, _ = fmt.Fprintf(w, "<html>%s</html>", r.URL.RawQuery)
	}))
	t.Cleanup(echoText.Close)

	var errs []error
	collect := func(err error) {
		require.Error(t, err)
		errs = append(errs, err)
	}
	_, err = newClient(sim.URL(), secret+"x", 0).Interfaces(ctx) // bad credentials
	collect(err)
	_, err = newClient("http://127.0.0.1:1", secret, 0).Interfaces(ctx) // connection refused on GET /token
	collect(err)
	_, err = newClient(echo.URL, secret, 0).Interfaces(ctx) // echoed in a JSON error
	collect(err)
	_, err = newClient(echoText.URL, secret, 0).Interfaces(ctx) // echoed in an HTML error
	collect(err)
	sim.SetFault(shopappsim.Fault{Delay: time.Second, Route: shopapp.RouteToken, Remaining: 2})
	_, err = newClient(sim.URL(), secret, 20*time.Millisecond).Interfaces(ctx) // timeout on GET /token
	collect(err)
	sim.SetFault(shopappsim.Fault{Status: 401, Route: shopapp.RouteInterfaces, Remaining: 2})
	_, err = c.Interfaces(ctx) // second 401
	collect(err)
	sim.SetFault(shopappsim.Fault{Status: 503, Route: shopapp.RouteInterfaces})
	_, err = c.Interfaces(ctx)
	collect(err)
	sim.ClearFault()
	_, err = c.Interface(ctx, "..")
	collect(err)

	for _, err := range errs {
		for _, s := range []string{secret, tok.AccessToken} {
			require.NotContains(t, err.Error(), s)
			require.NotContains(t, fmt.Sprintf("%+v", err), s)
			for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
				require.NotContains(t, u.Error(), s, "in a wrapped error")
			}
		}
	}

	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		require.NotContains(t, fmt.Sprintf(f, tok), tok.AccessToken)
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m := shopapp.NewMetrics(reg)
	hm := httpclient.NewMetrics(reg)
	sim, err := shopappsim.Start(shopappsim.Config{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	c, err := shopapp.New(shopapp.Config{BaseURL: sim.URL(), ClientID: sim.ClientID(), ClientSecret: sim.ClientSecret(), Rate: -1}, hm, m)
	require.NoError(t, err)
	_, err = c.Interfaces(ctx)
	require.NoError(t, err)
	_, err = c.Interface(ctx, "nope")
	require.Error(t, err)

	require.InDelta(t, 1, testutil.ToFloat64(m.Calls().WithLabelValues(shopapp.RouteToken, "200")), 0)
	require.InDelta(t, 1, testutil.ToFloat64(m.Calls().WithLabelValues(shopapp.RouteInterfaces, "200")), 0)
	require.InDelta(t, 1, testutil.ToFloat64(m.Calls().WithLabelValues(shopapp.RouteInterface, "400")), 0)
	require.InDelta(t, 1, testutil.ToFloat64(m.Renewals().WithLabelValues(shopapp.RenewInitial)), 0)

	out, err := testutil.CollectAndLint(m.Calls())
	require.NoError(t, err)
	require.Empty(t, out)
	n, err := testutil.GatherAndCount(reg, "passerelle_http_client_requests_total")
	require.NoError(t, err)
	require.Positive(t, n)

	var nilMetrics *shopapp.Metrics // nil-safe
	nilMetrics.Call(shopapp.RouteToken, "200")
	nilMetrics.Renewal(shopapp.RenewInitial)
	require.NotPanics(t, func() { shopapp.NewMetrics(nil) })
}

func TestAPIErrorHelpers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status    int
		is        error
		retryable bool
	}{
		{400, shopapp.ErrBadRequest, false},
		{401, shopapp.ErrUnauthorized, false},
		{429, shopapp.ErrRateLimited, true},
		{500, shopapp.ErrServer, true},
		{503, shopapp.ErrServer, true},
		{404, nil, false},
	}
	for _, tt := range tests {
		err := fmt.Errorf("polling: %w", &shopapp.APIError{Status: tt.status, Endpoint: shopapp.RouteInterfaces})
		if tt.is != nil {
			require.ErrorIs(t, err, tt.is)
		}
		for _, other := range []error{shopapp.ErrBadRequest, shopapp.ErrUnauthorized, shopapp.ErrRateLimited, shopapp.ErrServer} {
			if other != tt.is {
				require.NotErrorIs(t, err, other)
			}
		}
		require.Equal(t, tt.retryable, shopapp.IsRetryable(err), "status %d", tt.status)
		require.True(t, strings.HasPrefix(err.Error(), "polling: shopapp: GET /interfaces: "+fmt.Sprint(tt.status)))
	}
	require.False(t, shopapp.IsRetryable(nil))
	require.False(t, shopapp.IsRetryable(context.Canceled))
	require.True(t, shopapp.IsRetryable(errors.New("connection reset")))
}
