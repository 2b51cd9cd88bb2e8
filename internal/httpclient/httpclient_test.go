package httpclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"-1", 0, false},
		{"soon", 0, false},
		{"Tue, 24 Nov 2026 10:00:30 GMT", 30 * time.Second, true},
		{"Tuesday, 24-Nov-26 10:01:00 GMT", time.Minute, true}, // RFC 850, still legal
		{"Tue, 24 Nov 2026 09:00:00 GMT", 0, true},             // in the past: retry now
	}
	for _, tc := range tests {
		got, ok := RetryAfter(tc.in, now)
		require.Equal(t, tc.wantOK, ok, "RetryAfter(%q) ok", tc.in)
		require.Equal(t, tc.want, got, "RetryAfter(%q)", tc.in)
	}
}

func TestExpJitterStaysInBounds(t *testing.T) {
	lo, hi := 100*time.Millisecond, time.Second
	for attempt := range 10 {
		ceiling := min(lo<<attempt, hi)
		for range 200 {
			d := ExpJitter(lo, hi, attempt)
			require.GreaterOrEqual(t, d, lo, "attempt %d", attempt)
			require.LessOrEqual(t, d, ceiling, "attempt %d", attempt)
		}
	}
}

// The one outcome table every outbound sink uses (CONTRACTS.md "CRM webhooks"), pinned.
func TestOutcomeTable(t *testing.T) {
	for _, tc := range []struct {
		statuses []int
		want     Outcome
	}{
		{[]int{200, 201, 202, 204, 299}, Delivered},
		{[]int{408, 425, 429, 500, 502, 503, 504}, Retry},
		{[]int{410}, Gone},
		{[]int{100, 300, 301, 302, 304, 307, 308, 400, 401, 403, 404, 405, 409, 413, 415, 422, 451, 501}, Permanent},
	} {
		for _, status := range tc.statuses {
			if got := Classify(status); got != tc.want {
				t.Errorf("Classify(%d) = %s, want %s", status, got, tc.want)
			}
			if got, want := Retryable(status), tc.want == Retry; got != want {
				t.Errorf("Retryable(%d) = %v, want %v", status, got, want)
			}
		}
	}
}

func TestOutcomeOfErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want Outcome
	}{
		{"nil", nil, Delivered},
		{"network", errors.New("connection refused"), Retry},
		{"classified", &Error{Connector: "crm", Status: 400, Outcome: Permanent}, Permanent},
		{"wrapped gone", fmt.Errorf("deliver: %w", &Error{Connector: "crm", Status: 410, Outcome: Gone}), Gone},
	} {
		if got := OutcomeOf(tc.err); got != tc.want {
			t.Errorf("%s: OutcomeOf = %s, want %s", tc.name, got, tc.want)
		}
	}
	err := fmt.Errorf("x: %w", &Error{Connector: "crm", Status: 429, Outcome: Retry, RetryAfter: 3 * time.Second})
	if d, ok := RetryAfterOf(err); !ok || d != 3*time.Second {
		t.Errorf("RetryAfterOf = %s %v, want 3s", d, ok)
	}
	if !IsPermanent(&Error{Outcome: Gone}) || IsPermanent(&Error{Outcome: Retry}) || !IsGone(&Error{Outcome: Gone}) {
		t.Error("IsPermanent/IsGone disagree with the table")
	}
}

func TestBackoffHonoursRetryAfterOnlyOn429And503(t *testing.T) {
	b := Backoff(time.Minute)
	resp := func(status int, ra string) *http.Response {
		return &http.Response{StatusCode: status, Header: http.Header{"Retry-After": []string{ra}}}
	}
	require.Equal(t, 5*time.Second, b(time.Millisecond, 2*time.Millisecond, 0, resp(429, "5")))
	require.Equal(t, 5*time.Second, b(time.Millisecond, 2*time.Millisecond, 0, resp(503, "5")))
	require.Equal(t, time.Minute, b(time.Millisecond, 2*time.Millisecond, 0, resp(429, "3600")), "capped")
	require.LessOrEqual(t, b(time.Millisecond, 2*time.Millisecond, 0, resp(500, "5")), 2*time.Millisecond, "ignored on 500")
}

// The client retries 503 then succeeds, never follows a redirect, and counts every attempt by host and code.
func TestClientAgainstServer(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case calls.Add(1) == 1:
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	c := New(Config{Connector: "test", Metrics: NewMetrics(reg), RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond})

	req, err := retryablehttp.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/x", nil)
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)

	req, err = retryablehttp.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL+"/redirect", nil)
	require.NoError(t, err)
	resp, err = c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusFound, resp.StatusCode, "a redirect is reported, not followed")

	host := strings.TrimPrefix(srv.URL, "http://")
	require.Equal(t, 1.0, testutil.ToFloat64(c.HTTPClient.Transport.(*instrumented).m.requests.WithLabelValues("test", host, "503")))
	require.Equal(t, 1.0, testutil.ToFloat64(c.HTTPClient.Transport.(*instrumented).m.requests.WithLabelValues("test", host, "204")))
	require.Equal(t, 1.0, testutil.ToFloat64(c.HTTPClient.Transport.(*instrumented).m.requests.WithLabelValues("test", host, "302")))
}
