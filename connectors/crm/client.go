package crm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

// Config says how to deliver to CRM endpoints. Zero values take the defaults.
type Config struct {
	// Secret is the whsec_ secret every endpoint verifies signatures with.
	Secret string
	// Timeout bounds one HTTP attempt; default 10s.
	Timeout time.Duration
	// Retries is the number of retries within one Send, after the first attempt; default 2,
	// negative for none. Failures left after them are the caller's to retry later.
	Retries int
	// RetryWaitMin and RetryWaitMax bound the backoff between in-call attempts; default 200ms
	// and 5s. A Retry-After longer than RetryWaitMax is not waited for: Send returns at once with
	// a retryable DeliveryError carrying it, so one call stays within the caller's budget.
	RetryWaitMin, RetryWaitMax time.Duration
	// Transport replaces the pooled default transport, for tests.
	Transport http.RoundTripper
}

func (c Config) withDefaults() Config {
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Retries == 0 {
		c.Retries = 2
	}
	if c.RetryWaitMin <= 0 {
		c.RetryWaitMin = 200 * time.Millisecond
	}
	if c.RetryWaitMax <= 0 {
		c.RetryWaitMax = 5 * time.Second
	}
	return c
}

// Errors carried by a permanent DeliveryError when Send is called with bad arguments.
var (
	ErrInvalidEndpoint = errors.New("crm: endpoint is not an absolute http(s) URL")
	ErrMissingID       = errors.New("crm: missing message id")
)

const (
	userAgent = "passerelle"
	// maxSnippet bounds the response body quoted in errors: enough to read a reason, too short to
	// flood a log line.
	maxSnippet = 200
	// maxDrain is how much of a response is read to let the connection be reused.
	maxDrain = 64 << 10
)

// Client delivers signed webhooks. It is safe for concurrent use.
type Client struct {
	secret       string
	retryWaitMax time.Duration
	http         *retryablehttp.Client
}

// New validates cfg and builds a Client; hm (nil for none) counts its HTTP attempts.
func New(cfg Config, hm *httpclient.Metrics) (*Client, error) {
	if err := stdwebhook.CheckSecret(cfg.Secret); err != nil {
		return nil, fmt.Errorf("crm: %w", err)
	}
	cfg = cfg.withDefaults()
	if cfg.RetryWaitMin > cfg.RetryWaitMax {
		return nil, fmt.Errorf("crm: RetryWaitMin %s above RetryWaitMax %s", cfg.RetryWaitMin, cfg.RetryWaitMax)
	}
	c := &Client{secret: cfg.Secret, retryWaitMax: cfg.RetryWaitMax}
	hc := httpclient.New(httpclient.Config{
		Connector:     "crm",
		Timeout:       cfg.Timeout,
		RetryMax:      cfg.Retries,
		RetryWaitMin:  cfg.RetryWaitMin,
		RetryWaitMax:  cfg.RetryWaitMax,
		RetryAfterMax: cfg.RetryWaitMax,
		CheckRetry:    c.checkRetry,
		Transport:     cfg.Transport,
		Metrics:       hm,
	})
	// Both hooks are set once here and find the state of their own call in the request's context,
	// so concurrent calls share nothing mutable.
	hc.RequestLogHook = countAttempt
	hc.PrepareRetry = c.resign
	c.http = hc
	return c, nil
}

// Result is what the endpoint answered last and how many HTTP attempts the call made.
type Result struct {
	Status   int
	Attempts int
}

// call is the per-Send state the retryablehttp hooks need.
type call struct {
	msgID    string
	body     []byte
	attempts int // hooks run on the calling goroutine, one attempt after the other
}

type callKey struct{}

func callOf(ctx context.Context) (*call, bool) {
	c, ok := ctx.Value(callKey{}).(*call)
	return c, ok
}

// Send POSTs body as JSON to endpoint, signed for msgID (the event id, stable across retries).
// A 2xx answer returns a nil error; anything else a *DeliveryError saying whether to retry.
func (c *Client) Send(ctx context.Context, endpoint, msgID string, body []byte) (Result, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// url.Parse's error quotes the whole URL, secrets included: keep it out.
		host := ""
		if err == nil {
			host = u.Host
		}
		return Result{}, &DeliveryError{Endpoint: host, Permanent: true, Err: ErrInvalidEndpoint}
	}
	if msgID == "" {
		return Result{}, &DeliveryError{Endpoint: u.Host, Permanent: true, Err: ErrMissingID}
	}

	cl := &call{msgID: msgID, body: body}
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, callKey{}, cl), http.MethodPost, endpoint, body)
	if err != nil {
		return Result{}, &DeliveryError{Endpoint: u.Host, Permanent: true, Err: ErrInvalidEndpoint}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	if err := c.sign(req.Header, cl); err != nil {
		return Result{}, &DeliveryError{Endpoint: u.Host, Permanent: true, Err: err}
	}

	resp, err := c.http.Do(req)
	res := Result{Attempts: cl.attempts}
	de := &DeliveryError{Endpoint: u.Host, Attempts: cl.attempts}
	if resp != nil {
		defer resp.Body.Close()
		res.Status = resp.StatusCode
		de.Status = resp.StatusCode
	}
	if err != nil {
		de.Err = withoutURL(err)
		return res, de
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
		return res, nil
	}
	de.Body = snippet(resp.Body)
	de.RetryAfter, _ = httpclient.ResponseRetryAfter(resp)
	switch httpclient.Classify(resp.StatusCode) {
	case httpclient.Gone:
		de.Gone, de.Permanent = true, true
	case httpclient.Permanent:
		de.Permanent = true
	}
	return res, de
}

// sign sets the Standard Webhooks headers for now: receivers reject a timestamp five minutes
// old, so every attempt carries a fresh one.
func (c *Client) sign(h http.Header, cl *call) error {
	sh, err := stdwebhook.Headers(c.secret, cl.msgID, time.Now(), cl.body)
	if err != nil {
		return fmt.Errorf("crm: sign: %w", err)
	}
	for k, v := range sh {
		h[k] = v
	}
	return nil
}

// resign is the PrepareRetry hook.
func (c *Client) resign(req *http.Request) error {
	cl, ok := callOf(req.Context())
	if !ok {
		return errors.New("crm: request not made by Send")
	}
	// The previous attempt's request shares this header map and may still be read by the
	// transport: write to a copy.
	req.Header = req.Header.Clone()
	return c.sign(req.Header, cl)
}

// countAttempt is the RequestLogHook, called before every attempt.
func countAttempt(_ retryablehttp.Logger, req *http.Request, _ int) {
	if cl, ok := callOf(req.Context()); ok {
		cl.attempts++
	}
}

func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	if httpclient.Classify(resp.StatusCode) != httpclient.Retry {
		return false, nil
	}
	if d, ok := httpclient.ResponseRetryAfter(resp); ok && d > c.retryWaitMax {
		return false, nil
	}
	return true, nil
}

// withoutURL drops the *url.Error layer, whose message quotes the full URL with its path and
// query, where webhook secrets often live.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

func snippet(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, maxSnippet))
	_, _ = io.Copy(io.Discard, io.LimitReader(r, maxDrain))
	// Truncation may split a rune; ToValidUTF8 drops the remains.
	return strings.TrimSpace(strings.ToValidUTF8(string(b), ""))
}
