package crm_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

const testBody = `{"type":"lead.created","id":"evt_1","occurred_at":"2025-01-02T03:04:05Z","source":"iciformation","data":{}}`

func startReceiver(t *testing.T) (*crmsim.Receiver, string) {
	t.Helper()
	secret, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	r, err := crmsim.Start(secret)
	require.NoError(t, err)
	t.Cleanup(r.Close)
	return r, secret
}

// fastConfig keeps in-call waits short; tests that need longer waits set their own.
func fastConfig(secret string) crm.Config {
	return crm.Config{Secret: secret, Timeout: 2 * time.Second, RetryWaitMin: 5 * time.Millisecond, RetryWaitMax: 20 * time.Millisecond}
}

func newClient(t *testing.T, cfg crm.Config) *crm.Client {
	t.Helper()
	c, err := crm.New(cfg, nil)
	require.NoError(t, err)
	return c
}

func asDeliveryError(t *testing.T, err error) *crm.DeliveryError {
	t.Helper()
	var de *crm.DeliveryError
	require.ErrorAs(t, err, &de)
	return de
}

func TestSendDeliversSigned(t *testing.T) {
	t.Parallel()
	rcv, secret := startReceiver(t)
	reg := prometheus.NewRegistry()
	c, err := crm.New(fastConfig(secret), httpclient.NewMetrics(reg))
	require.NoError(t, err)

	res, err := c.Send(t.Context(), rcv.URL()+"/hooks", "evt_1", []byte(testBody))
	require.NoError(t, err)
	require.Equal(t, crm.Result{Status: http.StatusOK, Attempts: 1}, res)

	ds := rcv.Deliveries()
	require.Len(t, ds, 1)
	d := ds[0]
	require.Equal(t, "evt_1", d.ID)
	require.Equal(t, testBody, string(d.Body))
	require.Equal(t, "application/json", d.Header.Get("Content-Type"))
	require.Equal(t, "passerelle", d.Header.Get("User-Agent"))
	require.InDelta(t, d.At.Unix(), d.Timestamp, 2)
	require.NoError(t, stdwebhook.Verify(secret, d.Header, d.Body, d.At))
	require.Equal(t, map[string]int{"evt_1": 1}, rcv.UniqueIDs())
	require.Zero(t, rcv.Rejected())

	host := strings.TrimPrefix(rcv.URL(), "http://")
	require.InDelta(t, 1, requestCount(t, reg, host, "200"), 0)
}

// requestCount reads the outbound request counter of the crm connector for host and code.
func requestCount(t *testing.T, reg *prometheus.Registry, host, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "passerelle_http_client_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["connector"] == "crm" && labels["host"] == host && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestSendOutcomes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault crmsim.Fault
		cfg   func(*crm.Config)
		// want
		status       int
		attempts     int
		ok           bool
		permanent    bool
		gone         bool
		delivered    int
		timeout      bool
		retryAfterGT time.Duration
	}{
		{name: "503 then success", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 503, Remaining: 1}, status: 200, attempts: 2, ok: true, delivered: 1},
		{name: "500 twice then success", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 500, Remaining: 2}, status: 200, attempts: 3, ok: true, delivered: 1},
		{name: "408 retried, as the outcome table says", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 408}, status: 408, attempts: 3},
		{name: "501 permanent, as the outcome table says", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 501}, status: 501, attempts: 1, permanent: true},
		{name: "reset then success", fault: crmsim.Fault{Mode: crmsim.FaultReset, Remaining: 1}, status: 200, attempts: 2, ok: true, delivered: 1},
		{name: "slow within timeout", fault: crmsim.Fault{Mode: crmsim.FaultSlow, Delay: 50 * time.Millisecond}, status: 200, attempts: 1, ok: true, delivered: 1},
		{name: "410 gone", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 410}, status: 410, attempts: 1, permanent: true, gone: true},
		{name: "400 permanent", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 400}, status: 400, attempts: 1, permanent: true},
		{name: "401 permanent", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 401}, status: 401, attempts: 1, permanent: true},
		{name: "422 permanent", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 422}, status: 422, attempts: 1, permanent: true},
		{name: "503 until retries are spent", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 503}, status: 503, attempts: 3},
		{name: "502 with one retry", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 502}, cfg: func(c *crm.Config) { c.Retries = 1 }, status: 502, attempts: 2},
		{name: "500 without retries", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 500}, cfg: func(c *crm.Config) { c.Retries = -1 }, status: 500, attempts: 1},
		{name: "reset until retries are spent", fault: crmsim.Fault{Mode: crmsim.FaultReset}, attempts: 3},
		{
			name:  "slow beyond timeout",
			fault: crmsim.Fault{Mode: crmsim.FaultSlow, Delay: 5 * time.Second},
			cfg:   func(c *crm.Config) { c.Timeout = 100 * time.Millisecond; c.Retries = -1 },
			// The Receiver drops a delivery whose client left.
			attempts: 1, timeout: true,
		},
		{
			name:         "Retry-After beyond RetryWaitMax is handed back",
			fault:        crmsim.Fault{Mode: crmsim.FaultStatus, Status: 429, RetryAfter: "120"},
			status:       429,
			attempts:     1,
			retryAfterGT: time.Minute,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rcv, secret := startReceiver(t)
			cfg := fastConfig(secret)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := newClient(t, cfg)
			rcv.SetFault(tt.fault)

			res, err := c.Send(t.Context(), rcv.URL(), "evt_1", []byte(testBody))
			require.Equal(t, crm.Result{Status: tt.status, Attempts: tt.attempts}, res)
			require.Equal(t, tt.attempts, rcv.Attempts(), "attempts seen by the receiver")
			require.Len(t, rcv.Deliveries(), tt.delivered)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			de := asDeliveryError(t, err)
			require.Equal(t, tt.status, de.Status)
			require.Equal(t, tt.attempts, de.Attempts)
			require.Equal(t, tt.permanent, de.Permanent)
			require.Equal(t, tt.permanent, crm.IsPermanent(err))
			require.Equal(t, tt.gone, de.Gone)
			require.Equal(t, tt.gone, crm.IsGone(err))
			if tt.status == 0 {
				require.Error(t, de.Err, "a failure without a response carries the transport error")
			} else {
				require.Contains(t, de.Body, "injected fault")
				require.Contains(t, err.Error(), fmt.Sprintf("HTTP %d", tt.status))
			}
			if tt.timeout {
				var ne net.Error
				require.ErrorAs(t, err, &ne)
				require.True(t, ne.Timeout(), "want a timeout, got %v", err)
			}
			if tt.retryAfterGT > 0 {
				require.Greater(t, de.RetryAfter, tt.retryAfterGT)
			} else {
				require.Zero(t, de.RetryAfter)
			}
		})
	}
}

// A 429's Retry-After is waited for, and the retry is signed anew with its own timestamp.
func TestSendRetryAfter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter func() string
		minGap     time.Duration
	}{
		{name: "seconds", retryAfter: func() string { return "1" }, minGap: time.Second},
		// An HTTP date has one-second precision: two seconds ahead is at least one second of wait.
		{name: "HTTP date", retryAfter: func() string { return time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat) }, minGap: 900 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rcv, secret := startReceiver(t)
			cfg := fastConfig(secret)
			cfg.RetryWaitMax = 3 * time.Second
			c := newClient(t, cfg)
			rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: tt.retryAfter(), Remaining: 1})

			res, err := c.Send(t.Context(), rcv.URL(), "evt_1", []byte(testBody))
			require.NoError(t, err)
			require.Equal(t, crm.Result{Status: http.StatusOK, Attempts: 2}, res)

			log := rcv.AttemptLog()
			require.Len(t, log, 2)
			require.Equal(t, http.StatusTooManyRequests, log[0].Status)
			require.Equal(t, http.StatusOK, log[1].Status)
			gap := log[1].At.Sub(log[0].At)
			require.GreaterOrEqual(t, gap, tt.minGap, "retry came too early")
			require.Less(t, gap, 2500*time.Millisecond)

			// Re-signed: same id, a later timestamp, another signature, each valid.
			for _, a := range log {
				require.NoError(t, a.SignatureErr)
				require.Equal(t, "evt_1", a.Header.Get("webhook-id"))
			}
			require.NotEqual(t, log[0].Header.Get("webhook-timestamp"), log[1].Header.Get("webhook-timestamp"))
			require.NotEqual(t, log[0].Header.Get("webhook-signature"), log[1].Header.Get("webhook-signature"))
		})
	}
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	rcv, secret := startReceiver(t)
	redirect := httptest.NewServer(http.RedirectHandler(rcv.URL()+"/followed", http.StatusFound))
	t.Cleanup(redirect.Close)

	res, err := newClient(t, fastConfig(secret)).Send(t.Context(), redirect.URL, "evt_1", []byte(testBody))
	require.Equal(t, crm.Result{Status: http.StatusFound, Attempts: 1}, res)
	require.True(t, crm.IsPermanent(err), "got %v", err)
	require.False(t, crm.IsGone(err))
	require.Zero(t, rcv.Attempts(), "the redirect was followed")
}

func TestSendRejectedSignature(t *testing.T) {
	t.Parallel()
	rcv, _ := startReceiver(t)
	other, err := stdwebhook.NewSecret()
	require.NoError(t, err)

	res, err := newClient(t, fastConfig(other)).Send(t.Context(), rcv.URL(), "evt_1", []byte(testBody))
	require.Equal(t, crm.Result{Status: http.StatusUnauthorized, Attempts: 1}, res)
	require.True(t, crm.IsPermanent(err), "got %v", err)
	require.Equal(t, 1, rcv.Rejected())
	require.Empty(t, rcv.Deliveries())
}

// Webhook URLs often carry a secret in their path or query: no error may quote them.
func TestDeliveryErrorHidesEndpointSecrets(t *testing.T) {
	t.Parallel()
	const secretPart = "s3cr3t"
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedAddr := closed.Addr().String()
	require.NoError(t, closed.Close())

	tests := []struct {
		name     string
		fault    crmsim.Fault
		endpoint func(rcv string) string
	}{
		{name: "400", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 400}},
		{name: "503", fault: crmsim.Fault{Mode: crmsim.FaultStatus, Status: 503}},
		{name: "reset", fault: crmsim.Fault{Mode: crmsim.FaultReset}},
		{name: "timeout", fault: crmsim.Fault{Mode: crmsim.FaultSlow, Delay: 5 * time.Second}},
		{name: "connection refused", endpoint: func(string) string { return "http://" + closedAddr + "/hooks/" + secretPart + "?token=" + secretPart }},
		{name: "unparsable URL", endpoint: func(rcv string) string { return rcv + "/hooks/" + secretPart + "%zz" }},
		{name: "not http", endpoint: func(string) string { return "ftp://user:" + secretPart + "@example.com/" + secretPart }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rcv, secret := startReceiver(t)
			rcv.SetFault(tt.fault)
			endpoint := rcv.URL() + "/hooks/" + secretPart + "?token=" + secretPart
			if tt.endpoint != nil {
				endpoint = tt.endpoint(rcv.URL())
			}
			cfg := fastConfig(secret)
			cfg.Timeout = 100 * time.Millisecond
			cfg.Retries = 1

			_, err := newClient(t, cfg).Send(t.Context(), endpoint, "evt_1", []byte(testBody))
			de := asDeliveryError(t, err)
			require.NotContains(t, err.Error(), secretPart)
			require.NotContains(t, fmt.Sprintf("%+v", de), secretPart)
			if u, perr := url.Parse(endpoint); perr == nil {
				require.Equal(t, u.Host, de.Endpoint)
			}
		})
	}
}

func TestSendBodySnippet(t *testing.T) {
	t.Parallel()
	// 199 ASCII bytes then a two-byte rune straddling the 200-byte cut.
	long := strings.Repeat("x", 199) + "é" + strings.Repeat("y", 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(long))
	}))
	t.Cleanup(srv.Close)
	secret, err := stdwebhook.NewSecret()
	require.NoError(t, err)

	_, err = newClient(t, fastConfig(secret)).Send(t.Context(), srv.URL, "evt_1", []byte(testBody))
	de := asDeliveryError(t, err)
	require.Equal(t, strings.Repeat("x", 199), de.Body)
	require.Contains(t, err.Error(), de.Body)
	require.NotContains(t, err.Error(), "yyy")
}

func TestSendInvalidArguments(t *testing.T) {
	t.Parallel()
	rcv, secret := startReceiver(t)
	c := newClient(t, fastConfig(secret))
	tests := []struct {
		name, endpoint, id string
		want               error
	}{
		{"empty endpoint", "", "evt_1", crm.ErrInvalidEndpoint},
		{"relative endpoint", "/hooks", "evt_1", crm.ErrInvalidEndpoint},
		{"no host", "http:///hooks", "evt_1", crm.ErrInvalidEndpoint},
		{"other scheme", "ftp://example.com/", "evt_1", crm.ErrInvalidEndpoint},
		{"empty id", rcv.URL(), "", crm.ErrMissingID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := c.Send(t.Context(), tt.endpoint, tt.id, []byte(testBody))
			require.ErrorIs(t, err, tt.want)
			require.True(t, crm.IsPermanent(err))
			require.Zero(t, res.Attempts)
		})
	}
	require.Zero(t, rcv.Attempts())
}

func TestSendContextCanceled(t *testing.T) {
	t.Parallel()
	rcv, secret := startReceiver(t)
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultSlow, Delay: 5 * time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()

	_, err := newClient(t, fastConfig(secret)).Send(ctx, rcv.URL(), "evt_1", []byte(testBody))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, crm.IsPermanent(err), "a canceled call may be retried")
}

// Attempts are counted per call even when calls share the Client.
func TestSendConcurrentAttempts(t *testing.T) {
	t.Parallel()
	rcv, secret := startReceiver(t)
	c := newClient(t, fastConfig(secret))
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: 503, Remaining: 10})

	const n = 20
	type outcome struct {
		res crm.Result
		err error
	}
	out := make([]outcome, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res, err := c.Send(t.Context(), rcv.URL(), fmt.Sprintf("evt_%d", i), []byte(testBody))
			out[i] = outcome{res, err}
		})
	}
	wg.Wait()

	total, ok := 0, 0
	for _, o := range out {
		total += o.res.Attempts
		if o.err == nil {
			ok++
			continue
		}
		require.Equal(t, 3, o.res.Attempts, "a failed call spent all its retries: %v", o.err)
	}
	require.Equal(t, rcv.Attempts(), total)
	require.Equal(t, ok+10, total, "one success per delivered call and the 10 injected failures")
	require.Len(t, rcv.UniqueIDs(), ok)
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  crm.Config
	}{
		{"no secret", crm.Config{}},
		{"bad secret", crm.Config{Secret: "whsec_!!!"}},
		{"waits inverted", crm.Config{Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", RetryWaitMin: time.Second, RetryWaitMax: time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := crm.New(tt.cfg, nil)
			require.Error(t, err)
		})
	}
}

func TestIsPermanentIsGone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		err             error
		permanent, gone bool
	}{
		{"nil", nil, false, false},
		{"other error", errors.New("boom"), false, false},
		{"retryable", &crm.DeliveryError{Status: 503}, false, false},
		{"permanent", &crm.DeliveryError{Status: 400, Permanent: true}, true, false},
		{"gone", &crm.DeliveryError{Status: 410, Permanent: true, Gone: true}, true, true},
		{"wrapped gone", fmt.Errorf("deliver evt_1: %w", &crm.DeliveryError{Status: 410, Permanent: true, Gone: true}), true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.permanent, crm.IsPermanent(tt.err))
			require.Equal(t, tt.gone, crm.IsGone(tt.err))
		})
	}
}
