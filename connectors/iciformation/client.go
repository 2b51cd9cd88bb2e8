package iciformation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// RouteLeads names the polling API's one call in metrics and errors (never its URL, which is
// configured and might carry a secret).
const RouteLeads = "GET /leads"

// ClientConfig configures [NewClient]. Zero values take the defaults.
type ClientConfig struct {
	// URL is the polling API's full address, https://www.iciformation.fr/api/webservice/leads.
	URL string
	// Key is the token Ici Formation issues, sent as Authorization: Bearer.
	Key string
	// Timeout bounds one attempt; default 30s (a day of leads is one answer).
	Timeout time.Duration
	// Retries after the first attempt within one call; default 2. The caller polls again later.
	Retries int
	// RetryAfterMax is the longest Retry-After waited within a call; default 30s. A longer one
	// ends the call with a retryable *httpclient.Error carrying it.
	RetryAfterMax time.Duration
	// Transport replaces the pooled default, for tests.
	Transport http.RoundTripper
}

// Client reads the polling API: GET {url}?dateStart=YYYY-MM-DD&dateEnd=YYYY-MM-DD. It is safe
// for concurrent use.
type Client struct {
	url *url.URL
	key string
	hc  *retryablehttp.Client
}

// PolledLead is one object of the polling API: the lead as the webhook sends it, and when Ici
// Formation recorded it.
type PolledLead struct {
	// Body is the object without date_creation, which the webhook's objects do not carry: its
	// canonical form, and so its event id, is the webhook's for the same lead.
	Body json.RawMessage
	// Created is date_creation; zero when it is missing or unreadable.
	Created time.Time
}

// maxAnswer bounds an answer: a day of leads is far below it.
const maxAnswer = 64 << 20

// NewClient checks cfg and builds a Client; hm (nil for none) counts its attempts.
func NewClient(cfg ClientConfig, hm *httpclient.Metrics) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("iciformation: API URL is not an absolute http(s) URL")
	}
	if cfg.Key == "" {
		return nil, errors.New("iciformation: API key is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Retries == 0 {
		cfg.Retries = 2
	}
	if cfg.RetryAfterMax <= 0 {
		cfg.RetryAfterMax = 30 * time.Second
	}
	c := &Client{url: u, key: cfg.Key, hc: httpclient.New(httpclient.Config{
		Connector: "iciformation", Timeout: cfg.Timeout, RetryMax: cfg.Retries, RetryWaitMin: 500 * time.Millisecond,
		RetryWaitMax: 10 * time.Second, RetryAfterMax: cfg.RetryAfterMax, Transport: cfg.Transport, Metrics: hm,
		CheckRetry: func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			// A Retry-After longer than the call may wait is the poller's to honour, not ours.
			if err == nil && resp != nil {
				if d, ok := httpclient.ResponseRetryAfter(resp); ok && d > cfg.RetryAfterMax {
					return false, nil
				}
			}
			return httpclient.DefaultRetryPolicy(ctx, resp, err)
		},
	})}
	c.hc.RequestLogHook = countAttempt
	return c, nil
}

// Leads returns the leads Ici Formation recorded from the day of start to the day of end, both
// included (dates in loc: the API speaks in calendar days). Failures are *httpclient.Error:
// 401 and 403 are permanent (the key is wrong or revoked), 429 and 5xx (a 500 is also how the
// API refuses a bad date) retryable, with the Retry-After asked for.
func (c *Client) Leads(ctx context.Context, start, end time.Time, loc *time.Location) ([]PolledLead, error) {
	u := *c.url
	q := u.Query()
	q.Set("dateStart", start.In(loc).Format(time.DateOnly))
	q.Set("dateEnd", end.In(loc).Format(time.DateOnly))
	u.RawQuery = q.Encode()
	attempts := 0
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, attemptsKey{}, &attempts), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, c.fail(0, 0, "", fmt.Errorf("build request: %w", err), httpclient.Permanent)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "passerelle")
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, c.fail(0, attempts, "", ctx.Err(), httpclient.Permanent)
		}
		return nil, c.fail(0, attempts, "", err, httpclient.Retry)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, c.fail(resp.StatusCode, attempts, "", fmt.Errorf("read answer: %w", err), httpclient.Retry)
	}
	if o := httpclient.Classify(resp.StatusCode); o != httpclient.Delivered {
		e := c.fail(resp.StatusCode, attempts, snippet(body), nil, o)
		if o == httpclient.Gone {
			e.Outcome = httpclient.Permanent // a polling API is not an endpoint to disable
		}
		if d, ok := httpclient.ResponseRetryAfter(resp); ok {
			e.RetryAfter = d
		}
		return nil, e
	}
	if len(body) > maxAnswer {
		return nil, c.fail(resp.StatusCode, attempts, "", fmt.Errorf("answer over %d bytes", maxAnswer), httpclient.Permanent)
	}
	leads, err := DecodePolled(body)
	if err != nil {
		return nil, c.fail(resp.StatusCode, attempts, "", err, httpclient.Permanent)
	}
	return leads, nil
}

// attemptsKey carries a call's attempt counter to the request hook.
type attemptsKey struct{}

func countAttempt(_ retryablehttp.Logger, req *http.Request, n int) {
	if p, ok := req.Context().Value(attemptsKey{}).(*int); ok {
		*p = n + 1
	}
}

func (c *Client) fail(status, attempts int, msg string, err error, o httpclient.Outcome) *httpclient.Error {
	return &httpclient.Error{Connector: "iciformation", Endpoint: RouteLeads, Status: status, Attempts: attempts,
		Outcome: o, Message: msg, Err: err}
}

// snippet is the start of an error answer: the partner's reason, short. Lead data never comes
// with an error status.
func snippet(b []byte) string {
	var e struct {
		Message string `json:"message"`
		Error   string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil {
		if e.Message != "" {
			b = []byte(e.Message)
		} else if e.Error != "" {
			b = []byte(e.Error)
		}
	}
	b = bytes.TrimSpace(b)
	if len(b) > 200 {
		b = b[:200]
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}

// DecodePolled reads the polling API's answer: a JSON array of lead objects, each with
// date_creation. Elements that are not objects are skipped (the webhook would have refused them
// too); the array itself must be there.
func DecodePolled(body []byte) ([]PolledLead, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, fmt.Errorf("decode leads answer: %w: %v", ErrMalformed, err)
	}
	out := make([]PolledLead, 0, len(items))
	for _, it := range items {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(it, &obj); err != nil || obj == nil {
			continue
		}
		var created time.Time
		if raw, ok := obj["date_creation"]; ok {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				created = parseCreated(s)
			}
			delete(obj, "date_creation")
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false) // the canonical form's escaping: the event id hashes that
		if err := enc.Encode(obj); err != nil {
			continue
		}
		out = append(out, PolledLead{Body: bytes.TrimRight(b.Bytes(), "\n"), Created: created})
	}
	return out, nil
}

// parseCreated reads date_creation: ISO 8601 with a UTC offset, with or without the T.
func parseCreated(s string) time.Time {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02T15:04:05Z0700", "2006-01-02 15:04:05Z0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t
		}
	}
	return time.Time{}
}
