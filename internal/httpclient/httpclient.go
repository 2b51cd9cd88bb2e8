// Package httpclient builds the outbound HTTP client every connector uses: go-retryablehttp with
// exponential backoff and jitter, Retry-After honoured, a per-request timeout, redirects refused, and
// Prometheus metrics per connector, endpoint host and status.
package httpclient

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"
)

// Config says how one connector talks HTTP. Zero values take the defaults below.
type Config struct {
	Connector     string        // metrics label, e.g. "crm"
	Timeout       time.Duration // per attempt; default 10s
	RetryMax      int           // retries after the first attempt; default 4; negative means none
	RetryWaitMin  time.Duration // first backoff; default 200ms
	RetryWaitMax  time.Duration // backoff cap; default 30s
	RetryAfterMax time.Duration // longest Retry-After honoured; default 5m
	// CheckRetry overrides the retry policy; default DefaultRetryPolicy.
	CheckRetry retryablehttp.CheckRetry
	Transport  http.RoundTripper // default a pooled http.Transport
	Metrics    *Metrics          // nil: not measured
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.RetryMax == 0 {
		c.RetryMax = 4
	}
	if c.RetryMax < 0 {
		c.RetryMax = 0
	}
	if c.RetryWaitMin <= 0 {
		c.RetryWaitMin = 200 * time.Millisecond
	}
	if c.RetryWaitMax <= 0 {
		c.RetryWaitMax = 30 * time.Second
	}
	if c.RetryAfterMax <= 0 {
		c.RetryAfterMax = 5 * time.Minute
	}
	if c.CheckRetry == nil {
		c.CheckRetry = DefaultRetryPolicy
	}
	if c.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		c.Transport = t
	}
	return c
}

// New returns a retrying client. Callers that hand it to a library use StandardClient().
func New(cfg Config) *retryablehttp.Client {
	cfg = cfg.withDefaults()
	var rt http.RoundTripper = cfg.Transport
	if cfg.Metrics != nil {
		rt = &instrumented{next: rt, m: cfg.Metrics, connector: cfg.Connector}
	}
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{
		Transport: rt,
		Timeout:   cfg.Timeout,
		// A redirect from a webhook endpoint is a misconfiguration, not a success: report the 3xx.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.Logger = nil // retryablehttp logs URLs, which may carry tokens
	c.RetryMax = cfg.RetryMax
	c.RetryWaitMin = cfg.RetryWaitMin
	c.RetryWaitMax = cfg.RetryWaitMax
	c.CheckRetry = cfg.CheckRetry
	c.Backoff = Backoff(cfg.RetryAfterMax)
	// Return the last response instead of a generic "giving up" error, so callers see the status.
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	return c
}

// DefaultRetryPolicy retries transport errors and the statuses the outcome table retries, and
// stops when the context is done.
func DefaultRetryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	return Retryable(resp.StatusCode), nil
}

// Backoff is exponential with full jitter between min and the doubled step, and honours a
// Retry-After header (seconds or HTTP date) on 429 and 503, capped at retryAfterMax.
func Backoff(retryAfterMax time.Duration) retryablehttp.Backoff {
	return func(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			if d, ok := RetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
				return min(d, retryAfterMax)
			}
		}
		return ExpJitter(lo, hi, attempt)
	}
}

// ExpJitter is the wait before retry number attempt (from 0): a random duration in
// [lo, min(hi, lo·2^attempt)].
func ExpJitter(lo, hi time.Duration, attempt int) time.Duration {
	step := lo
	for i := 0; i < attempt && step < hi; i++ {
		step *= 2
	}
	step = min(step, hi)
	if step <= lo {
		return lo
	}
	return lo + rand.N(step-lo+1)
}

// RetryAfter parses a Retry-After value: delay seconds or an HTTP date.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		return time.Duration(s) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// Metrics counts outbound requests. Build it once per registry and share it between connectors.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewMetrics registers the outbound HTTP metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "http_client", Name: "requests_total",
			Help: "Outbound HTTP attempts by connector, endpoint host and status code (\"error\" when no response).",
		}, []string{"connector", "host", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "passerelle", Subsystem: "http_client", Name: "request_duration_seconds",
			Help:    "Outbound HTTP attempt duration by connector and endpoint host.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"connector", "host"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

type instrumented struct {
	next      http.RoundTripper
	m         *Metrics
	connector string
}

func (t *instrumented) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	host := req.URL.Host
	t.m.duration.WithLabelValues(t.connector, host).Observe(time.Since(start).Seconds())
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	} else if errors.Is(err, context.Canceled) {
		code = "canceled"
	}
	t.m.requests.WithLabelValues(t.connector, host, code).Inc()
	return resp, err
}
