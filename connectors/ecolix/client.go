package ecolix

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/httpclient"
)

// connector is the name every *httpclient.Error and metric carries.
const connector = "ecolix"

// MaxPerPage is the largest par_page the API accepts, and the default: the fewest calls.
const MaxPerPage = 500

const (
	exportRoute = "GET /api/v1/export/"
	importRoute = "POST /api/v1/import/clients"
	// maxBody bounds an answer: 500 records of a few kB each.
	maxBody = 64 << 20
	// maxSnippet bounds the body quoted in an error when it carries no message.
	maxSnippet = 200
)

// Config says how to reach the API. Zero values take the defaults given.
type Config struct {
	BaseURL string // e.g. https://erp.example.fr; a path prefix is kept
	APIKey  string // sent as Authorization: Bearer
	Timeout time.Duration
	// Transport replaces the pooled default transport, for tests.
	Transport http.RoundTripper
	// PerPage is par_page; default and maximum MaxPerPage.
	PerPage int
	// Retries within one call after the first attempt; default 2, negative: none. The delivery
	// engine above owns the long retries.
	Retries int
	// RetryWaitMin and RetryWaitMax bound the backoff between in-call attempts; default 200ms
	// and 5s. A Retry-After longer than RetryWaitMax ends the call at once with a retryable
	// error carrying it, the budget staying paused for everyone.
	RetryWaitMin, RetryWaitMax time.Duration
	// PullConcurrency is how many pages of one Pull may be asked for at once, each under the
	// budget; default 2 (one answer being read while the next call waits for its token).
	PullConcurrency int
	// Metrics, nil for none.
	Metrics *Metrics
}

// Client calls the Ecolix API under a shared Budget. It is safe for concurrent use.
type Client struct {
	base     *url.URL
	key      string
	perPage  int
	waitMax  time.Duration
	pullConc int
	budget   *Budget
	hc       *retryablehttp.Client
	m        *Metrics
}

// New checks cfg and builds a client whose every HTTP attempt takes a token from budget; hm
// (nil for none) counts the attempts.
func New(cfg Config, budget *Budget, hm *httpclient.Metrics) (*Client, error) {
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, errors.New("ecolix: base URL is not an absolute http(s) URL")
	}
	if base.RawQuery != "" || base.User != nil {
		return nil, errors.New("ecolix: base URL must carry neither a query nor credentials")
	}
	if cfg.APIKey == "" {
		return nil, errors.New("ecolix: API key is required")
	}
	if budget == nil {
		return nil, errors.New("ecolix: a call budget is required")
	}
	switch {
	case cfg.PerPage == 0:
		cfg.PerPage = MaxPerPage
	case cfg.PerPage < 0 || cfg.PerPage > MaxPerPage:
		return nil, fmt.Errorf("ecolix: PerPage %d outside 1..%d", cfg.PerPage, MaxPerPage)
	}
	if cfg.Retries == 0 {
		cfg.Retries = 2
	}
	if cfg.RetryWaitMin <= 0 {
		cfg.RetryWaitMin = 200 * time.Millisecond
	}
	if cfg.RetryWaitMax <= 0 {
		cfg.RetryWaitMax = 5 * time.Second
	}
	if cfg.PullConcurrency <= 0 {
		cfg.PullConcurrency = 2
	}
	if cfg.RetryWaitMin > cfg.RetryWaitMax {
		return nil, fmt.Errorf("ecolix: RetryWaitMin %s above RetryWaitMax %s", cfg.RetryWaitMin, cfg.RetryWaitMax)
	}
	c := &Client{
		base:     base,
		key:      cfg.APIKey,
		perPage:  cfg.PerPage,
		waitMax:  cfg.RetryWaitMax,
		pullConc: cfg.PullConcurrency,
		budget:   budget,
		m:        cfg.Metrics,
	}
	c.hc = httpclient.New(httpclient.Config{
		Connector:     connector,
		Timeout:       cfg.Timeout,
		RetryMax:      cfg.Retries,
		RetryWaitMin:  cfg.RetryWaitMin,
		RetryWaitMax:  cfg.RetryWaitMax,
		RetryAfterMax: cfg.RetryWaitMax,
		CheckRetry:    c.checkRetry,
		Transport:     cfg.Transport,
		Metrics:       hm,
	})
	// The budget is taken here, before every retry, rather than in the transport, whose time
	// counts against the per-attempt timeout.
	c.hc.PrepareRetry = func(req *http.Request) error { return c.take(req.Context()) }
	c.hc.RequestLogHook = countAttempt
	return c, nil
}

// Budget is the budget the client calls under.
func (c *Client) Budget() *Budget { return c.budget }

// Export fetches one page of resource's records modified at or after since (the zero time: all).
func (c *Client) Export(ctx context.Context, resource string, since time.Time, page int) (Page, error) {
	endpoint := exportRoute + resource
	if !KnownResource(resource) {
		return Page{}, &httpclient.Error{Connector: connector, Endpoint: "GET /api/v1/export/{ressource}", Outcome: httpclient.Permanent,
			Err: fmt.Errorf("unknown resource %q", resource)}
	}
	if page < 1 {
		return Page{}, &httpclient.Error{Connector: connector, Endpoint: endpoint, Outcome: httpclient.Permanent,
			Err: fmt.Errorf("page %d: pages count from 1", page)}
	}
	u := c.base.JoinPath("api/v1/export", resource)
	q := url.Values{"page": {strconv.Itoa(page)}, "par_page": {strconv.Itoa(c.perPage)}}
	if !since.IsZero() {
		q.Set("modifie_depuis", frtime.Format(since))
	}
	u.RawQuery = q.Encode()
	body, err := c.do(ctx, http.MethodGet, u.String(), endpoint, nil)
	if err == nil {
		var p Page
		if p, err = decodePage(body); err == nil {
			c.m.call(resource, nil)
			return p, nil
		}
		err = &httpclient.Error{Connector: connector, Endpoint: endpoint, Status: http.StatusOK, Outcome: httpclient.Permanent, Err: err}
	}
	c.m.call(resource, err)
	return Page{}, err
}

// ImportClient creates or updates (on Reference) a client in Ecolix.
func (c *Client) ImportClient(ctx context.Context, in ClientImport) (ImportAnswer, error) {
	if strings.TrimSpace(in.Reference) == "" {
		return ImportAnswer{}, &httpclient.Error{Connector: connector, Endpoint: importRoute, Outcome: httpclient.Permanent,
			Err: errors.New("reference is required")}
	}
	payload, err := json.Marshal(in)
	if err != nil {
		return ImportAnswer{}, fmt.Errorf("ecolix: encoding the import: %w", err)
	}
	body, err := c.do(ctx, http.MethodPost, c.base.JoinPath("api/v1/import/clients").String(), importRoute, payload)
	if err == nil {
		var w wireImportAnswer
		var id string
		if err = json.Unmarshal(body, &w); err == nil {
			id, err = idText(w.ID)
		}
		if err == nil {
			c.m.call(importLabel, nil)
			return ImportAnswer{ID: id, Cree: w.Cree}, nil
		}
		err = &httpclient.Error{Connector: connector, Endpoint: importRoute, Status: http.StatusOK, Outcome: httpclient.Permanent,
			Err: fmt.Errorf("decoding the import answer: %w", err)}
	}
	c.m.call(importLabel, err)
	var he *httpclient.Error
	if errors.As(err, &he) {
		// A partner's refusal may quote what it refused: keep the person's data out of logs.
		he.Message = scrub(he.Message, in.Email, in.Telephone, in.Nom, in.Prenom, in.Adresse)
	}
	return ImportAnswer{}, err
}

// scrub replaces every occurrence of the values in msg.
func scrub(msg string, values ...string) string {
	for _, v := range values {
		if v = strings.TrimSpace(v); len(v) >= 2 {
			msg = strings.ReplaceAll(msg, v, "[redacted]")
		}
	}
	return msg
}

// call is the per-request state the retryablehttp hooks need.
type call struct{ attempts int }

type callKey struct{}

func countAttempt(_ retryablehttp.Logger, req *http.Request, _ int) {
	if cl, ok := req.Context().Value(callKey{}).(*call); ok {
		cl.attempts++
	}
}

// take waits for the budget and measures the wait.
func (c *Client) take(ctx context.Context) error {
	start := time.Now()
	err := c.budget.Wait(ctx)
	c.m.waited(time.Since(start))
	return err
}

// do runs one call and returns the 2xx body, or an *httpclient.Error classified by the outcome
// table. Neither the URL (its query) nor the key ever reach the error.
func (c *Client) do(ctx context.Context, method, rawURL, endpoint string, payload []byte) ([]byte, error) {
	cl := &call{}
	fail := func(status int, err error) *httpclient.Error {
		o := httpclient.Retry
		if status != 0 {
			o = httpclient.Classify(status)
		}
		return &httpclient.Error{Connector: connector, Endpoint: endpoint, Status: status, Attempts: cl.attempts, Outcome: o, Err: err}
	}
	if err := c.take(ctx); err != nil {
		return nil, fail(0, err)
	}
	var body any
	if payload != nil {
		body = payload
	}
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, callKey{}, cl), method, rawURL, body)
	if err != nil {
		return nil, &httpclient.Error{Connector: connector, Endpoint: endpoint, Outcome: httpclient.Permanent, Err: errors.New("building the request")}
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "passerelle")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fail(0, withoutURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
		if err != nil {
			return nil, fail(0, fmt.Errorf("reading the answer: %w", withoutURL(err)))
		}
		if len(b) > maxBody {
			return nil, &httpclient.Error{Connector: connector, Endpoint: endpoint, Status: resp.StatusCode, Attempts: cl.attempts,
				Outcome: httpclient.Permanent, Err: fmt.Errorf("answer over %d bytes", maxBody)}
		}
		return b, nil
	}
	e := fail(resp.StatusCode, nil)
	e.Message = message(resp.Body)
	e.RetryAfter, _ = httpclient.ResponseRetryAfter(resp)
	return nil, e
}

// checkRetry pauses the budget on a 429 with Retry-After, so that every caller waits it out, and
// stops retrying when the wait asked for is longer than this call may take.
func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	d, hasRA := httpclient.ResponseRetryAfter(resp)
	if resp.StatusCode == http.StatusTooManyRequests && hasRA {
		c.budget.Pause(d)
	}
	if !httpclient.Retryable(resp.StatusCode) {
		return false, nil
	}
	return !hasRA || d <= c.waitMax, nil
}

// message is the partner's {"message": …} or the start of the body.
func message(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 4<<10))
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		b = []byte(e.Message)
	}
	if len(b) > maxSnippet {
		b = b[:maxSnippet]
	}
	// Truncation may split a rune; ToValidUTF8 drops the remains.
	return strings.TrimSpace(strings.ToValidUTF8(string(b), ""))
}

// withoutURL drops the *url.Error layer, whose message quotes the full URL with its query.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}
