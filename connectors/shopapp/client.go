package shopapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"golang.org/x/time/rate"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// Config says how to reach the API. Zero values take the defaults given.
type Config struct {
	BaseURL      string // e.g. https://api.cegid.shop-application.io
	ClientID     string
	ClientSecret string
	// Rate is the client-side limit in requests per second, every attempt of every call counted
	// (token fetches and retries included); default 5; negative: no limit.
	Rate         float64
	Timeout      time.Duration // per attempt; httpclient's default 10s
	Retries      int           // after the first attempt; httpclient's default 4; negative: none
	RetryWaitMin time.Duration // httpclient's default 200ms
	RetryWaitMax time.Duration // httpclient's default 30s
	Transport    http.RoundTripper
}

// DefaultRate is the client-side limit when Config.Rate is zero, in requests per second.
const DefaultRate = 5

// maxBody bounds an answer: the list of 5 000 interface keys is about 200 kB.
const maxBody = 32 << 20

// Client calls the Shop Application API. It is safe for concurrent use; its token is shared.
type Client struct {
	base       *url.URL
	id, secret string
	hc         *retryablehttp.Client
	lim        *rate.Limiter
	m          *Metrics
	now        func() time.Time // tests move it to age the token

	// renew lets one token fetch run at a time; a channel rather than a mutex so that a waiting
	// caller still honours its context.
	renew chan struct{}
	mu    sync.Mutex // guards tok
	tok   cachedToken
}

type cachedToken struct {
	Token
	obtained  time.Time
	refreshAt time.Time // zero: no lifetime given, use it until refused
}

// New checks cfg and builds a client. hm and m may be nil.
func New(cfg Config, hm *httpclient.Metrics, m *Metrics) (*Client, error) {
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, fmt.Errorf("shopapp: base URL %q is not an absolute http(s) URL", cfg.BaseURL)
	}
	if base.RawQuery != "" || base.User != nil {
		return nil, errors.New("shopapp: base URL must carry neither a query nor credentials")
	}
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("shopapp: client id and client secret are required")
	}
	limit := rate.Limit(cfg.Rate)
	switch {
	case cfg.Rate == 0:
		limit = DefaultRate
	case cfg.Rate < 0:
		limit = rate.Inf
	}
	c := &Client{
		base:   base,
		id:     cfg.ClientID,
		secret: cfg.ClientSecret,
		// A burst of one paces requests evenly: the partner sees at most Rate per second.
		lim:   rate.NewLimiter(limit, 1),
		m:     m,
		now:   time.Now,
		renew: make(chan struct{}, 1),
	}
	c.hc = httpclient.New(httpclient.Config{
		Connector:    "shopapp",
		Timeout:      cfg.Timeout,
		RetryMax:     cfg.Retries,
		RetryWaitMin: cfg.RetryWaitMin,
		RetryWaitMax: cfg.RetryWaitMax,
		CheckRetry:   retryPolicy,
		Transport:    cfg.Transport,
		Metrics:      hm,
	})
	// The limiter is waited before the first attempt (in exchange) and here before every retry,
	// rather than in the transport: http.Client.Timeout covers the transport, so queueing there
	// would eat the per-attempt timeout and time out requests that were never sent.
	c.hc.PrepareRetry = func(req *http.Request) error { return c.lim.Wait(req.Context()) }
	return c, nil
}

// retryPolicy retries transport errors, 429 and 5xx; never 400 (the same request gets the same
// answer) nor 401 (the client renews its token itself, once). Calls marked singleShot are not
// idempotent: they are retried only when the request surely was not processed.
func retryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	once, _ := ctx.Value(singleShotKey{}).(bool)
	if err != nil {
		if once {
			var op *net.OpError
			return errors.As(err, &op) && op.Op == "dial", nil
		}
		return true, nil
	}
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusUnauthorized:
		return false, nil
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return true, nil
	}
	if once {
		return false, nil
	}
	return httpclient.Retryable(resp.StatusCode), nil
}

type singleShotKey struct{}

// Token returns a valid token, the cached one or a new one from GET /token when none is cached
// or the cached one is near its end. ExpiresIn is what is left of its life.
func (c *Client) Token(ctx context.Context) (Token, error) {
	t, err := c.validToken(ctx)
	if err != nil {
		return Token{}, err
	}
	tok := t.Token
	if tok.ExpiresIn > 0 {
		end := t.obtained.Add(time.Duration(tok.ExpiresIn) * time.Second)
		tok.ExpiresIn = max(int(end.Sub(c.now())/time.Second), 0)
	}
	return tok, nil
}

func (c *Client) validToken(ctx context.Context) (cachedToken, error) {
	c.mu.Lock()
	t := c.tok
	c.mu.Unlock()
	if t.fresh(c.now()) {
		return t, nil
	}
	reason := renewExpiry
	if t.AccessToken == "" {
		reason = renewInitial
	}
	return c.renewToken(ctx, t.AccessToken, reason)
}

func (t cachedToken) fresh(now time.Time) bool {
	return t.AccessToken != "" && (t.refreshAt.IsZero() || now.Before(t.refreshAt))
}

// renewToken fetches a token to replace stale, unless another caller did while this one waited
// its turn: concurrent callers share one renewal.
func (c *Client) renewToken(ctx context.Context, stale, reason string) (cachedToken, error) {
	select {
	case c.renew <- struct{}{}:
	case <-ctx.Done():
		return cachedToken{}, fmt.Errorf("shopapp: waiting for a token: %w", ctx.Err())
	}
	defer func() { <-c.renew }()

	c.mu.Lock()
	cur := c.tok
	c.mu.Unlock()
	if cur.AccessToken != stale && cur.fresh(c.now()) {
		return cur, nil
	}

	obtained := c.now() // before the request: the token's life is counted from no later
	var tok Token
	q := url.Values{"client_id": {c.id}, "client_secret": {c.secret}}
	status, err := c.exchange(ctx, RouteToken, []string{"token"}, q, nil, "", &tok)
	c.m.call(RouteToken, codeLabel(status))
	if err != nil {
		return cachedToken{}, err
	}
	if tok.AccessToken == "" {
		return cachedToken{}, &APIError{Status: status, Message: "no access_token in the answer", Endpoint: RouteToken}
	}
	next := cachedToken{Token: tok, obtained: obtained}
	if life := time.Duration(tok.ExpiresIn) * time.Second; life > 0 {
		next.refreshAt = obtained.Add(refreshAfter(life))
	}
	c.mu.Lock()
	c.tok = next
	c.mu.Unlock()
	c.m.renewal(reason)
	return next, nil
}

// refreshAfter is how long a token of the given life is used: until 90 % of its life or 60 s
// before its end, whichever comes first, but at least half its life so that a very short-lived
// token is not fetched again on every call.
func refreshAfter(life time.Duration) time.Duration {
	return max(min(life*9/10, life-time.Minute), life/2)
}

// call runs one API call with the token, renewing it once and trying again on a 401.
func (c *Client) call(ctx context.Context, route string, path []string, body, out any) error {
	status, err := c.callOnce(ctx, route, path, body, out)
	c.m.call(route, codeLabel(status))
	return err
}

func (c *Client) callOnce(ctx context.Context, route string, path []string, body, out any) (int, error) {
	tok, err := c.validToken(ctx)
	if err != nil {
		return 0, err
	}
	status, err := c.exchange(ctx, route, path, nil, body, tok.AccessToken, out)
	if status != http.StatusUnauthorized {
		return status, err
	}
	if tok, err = c.renewToken(ctx, tok.AccessToken, renewUnauthorized); err != nil {
		return status, err
	}
	return c.exchange(ctx, route, path, nil, body, tok.AccessToken, out)
}

func codeLabel(status int) string {
	if status == 0 {
		return "error"
	}
	return strconv.Itoa(status)
}

// exchange sends one request (with the HTTP client's retries) and decodes a 2xx answer into out.
// It returns the final status, 0 when there was no answer.
func (c *Client) exchange(ctx context.Context, route string, path []string, q url.Values, body any, token string, out any) (int, error) {
	method, _, _ := strings.Cut(route, " ")
	escaped := make([]string, len(path))
	for i, p := range path {
		// path.Join in JoinPath would resolve these, sending the call elsewhere.
		if p == "" || p == "." || p == ".." {
			return 0, &ArgumentError{Endpoint: route, Reason: fmt.Sprintf("invalid path element %q", p)}
		}
		escaped[i] = url.PathEscape(p)
	}
	u := c.base.JoinPath(escaped...)
	u.RawQuery = q.Encode()

	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return 0, fmt.Errorf("shopapp: %s: encoding request: %w", route, err)
		}
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, u.String(), payload)
	if err != nil {
		return 0, fmt.Errorf("shopapp: %s: %w", route, scrub(err, c.secret))
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if err := c.lim.Wait(ctx); err != nil {
		return 0, fmt.Errorf("shopapp: %s: rate limit: %w", route, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return 0, fmt.Errorf("shopapp: %s: %w", route, scrub(err, c.secret, token))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, fmt.Errorf("shopapp: %s: reading answer: %w", route, scrub(err, c.secret, token))
	}
	if len(data) > maxBody {
		return resp.StatusCode, fmt.Errorf("shopapp: %s: answer larger than %d bytes", route, maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, c.apiError(route, resp.StatusCode, data, token)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("shopapp: %s: decoding answer: %w", route, err)
		}
	}
	return resp.StatusCode, nil
}

// apiError reads the partner's {"error": true, "message": ...}, or keeps the start of whatever
// else came, cleaned of the secrets in case the server echoed them.
func (c *Client) apiError(route string, status int, data []byte, token string) *APIError {
	var body struct {
		Message string `json:"message"`
	}
	msg := ""
	if json.Unmarshal(data, &body) == nil {
		msg = body.Message
	} else {
		msg = strings.Join(strings.Fields(string(bytes.ToValidUTF8(data, nil))), " ")
		if r := []rune(msg); len(r) > 200 {
			msg = string(r[:200]) + "…"
		}
	}
	for _, s := range []string{c.secret, token} {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[redacted]")
		}
	}
	return &APIError{Status: status, Message: msg, Endpoint: route}
}
