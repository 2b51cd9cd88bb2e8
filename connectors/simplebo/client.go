package simplebo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// DefaultBaseURL is the API's address in the partner's document.
const DefaultBaseURL = "https://api.www.simplebo.fr/v1/"

// connector names the partner in errors and metrics.
const connector = "simplebo"

// Route templates, the Endpoint of errors: the base URL's host is in httpclient's metrics.
const (
	routeLeads     = "POST /v1/leads"
	routeCustomers = "POST /v1/customers"
)

const (
	// retryMax keeps in-call retries few: the delivery engine above owns the long ones.
	retryMax = 2
	// retryWaitMax bounds a wait between in-call attempts; a longer Retry-After ends the call
	// with a retryable error carrying it, so one call stays within the caller's budget.
	retryWaitMax = 5 * time.Second
	// maxAnswer bounds what is read of an answer; the API's are a few hundred bytes.
	maxAnswer = 1 << 20
	// maxMessage bounds a non-JSON answer quoted in an error.
	maxMessage = 200
)

// Config says how to reach the API. Token, PartnerCode and Partner are required.
type Config struct {
	BaseURL     string            // default DefaultBaseURL
	Token       string            // sent as Authorization: Token token="<Token>"
	PartnerCode string            // partner_code of every call
	Partner     string            // partner of every call
	Timeout     time.Duration     // per attempt; httpclient's default 10s
	Transport   http.RoundTripper // default a pooled transport
	Metrics     *Metrics          // nil: calls not counted beyond httpclient's metrics
}

// Client calls Simplébo's API. It is safe for concurrent use.
type Client struct {
	base                 *url.URL
	token, auth          string
	partnerCode, partner string
	hc                   *retryablehttp.Client
	m                    *Metrics
}

// New checks cfg and builds a Client; hm (nil for none) counts its HTTP attempts.
func New(cfg Config, hm *httpclient.Metrics) (*Client, error) {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	base, err := url.Parse(cfg.BaseURL)
	if err != nil || (base.Scheme != "https" && base.Scheme != "http") || base.Host == "" {
		return nil, errors.New("simplebo: base URL is not an absolute http(s) URL")
	}
	if base.User != nil || base.RawQuery != "" {
		return nil, errors.New("simplebo: base URL must carry neither credentials nor a query")
	}
	if !strings.HasSuffix(base.Path, "/") {
		base.Path += "/"
	}
	switch {
	case cfg.Token == "":
		return nil, errors.New("simplebo: token is required")
	case strings.ContainsAny(cfg.Token, "\"\r\n"):
		return nil, errors.New("simplebo: token must not contain quotes or line breaks")
	case cfg.PartnerCode == "" || cfg.Partner == "":
		return nil, errors.New("simplebo: partner code and partner are required")
	}
	c := &Client{
		base:        base,
		token:       cfg.Token,
		auth:        `Token token="` + cfg.Token + `"`,
		partnerCode: cfg.PartnerCode,
		partner:     cfg.Partner,
		m:           cfg.Metrics,
	}
	c.hc = httpclient.New(httpclient.Config{
		Connector:     connector,
		Timeout:       cfg.Timeout,
		RetryMax:      retryMax,
		RetryWaitMax:  retryWaitMax,
		RetryAfterMax: retryWaitMax,
		CheckRetry:    checkRetry,
		Transport:     cfg.Transport,
		Metrics:       hm,
	})
	c.hc.RequestLogHook = countAttempt
	return c, nil
}

// Answer is Simplébo's answer to an accepted call.
type Answer struct {
	// RedirectTo is the link Simplébo gives for the client (the mock-up or the site's space).
	RedirectTo string
	// Text is the partner's text ("OK").
	Text string
	// InvalidSIRET is set when the customer's SIRET failed its checksum: it was sent anyway, as
	// the partner's own examples fail it, and the caller logs a warning. Set with an error too.
	InvalidSIRET bool
}

// RequestMockup asks Simplébo for a free mock-up site (POST {base}leads). client_id makes a
// repeat harmless. Errors are *httpclient.Error: a {"response": 1} answer is Permanent with
// the partner's text in Message, even with HTTP 200.
func (c *Client) RequestMockup(ctx context.Context, cu Customer) (Answer, error) {
	return c.post(ctx, opMockup, "leads", routeLeads, cu)
}

// Activate activates the paid service for a client, sent as a lead before or not
// (POST {base}customers). Its errors are those of RequestMockup.
func (c *Client) Activate(ctx context.Context, cu Customer) (Answer, error) {
	return c.post(ctx, opActivate, "customers", routeCustomers, cu)
}

// wireAnswer is the API's answer: {"response": 0, "text": "OK", "redirect_to": "…"} or
// {"response": 1, "text": "<reason>"}.
type wireAnswer struct {
	Response   *int   `json:"response"`
	Text       string `json:"text"`
	RedirectTo string `json:"redirect_to"`
}

type attemptsKey struct{}

// countAttempt is the RequestLogHook: it records the attempt number in the call's counter.
func countAttempt(_ retryablehttp.Logger, req *http.Request, n int) {
	if p, ok := req.Context().Value(attemptsKey{}).(*int); ok {
		*p = n + 1 // hooks run on the calling goroutine, one attempt after the other
	}
}

// checkRetry retries transport errors and the statuses the outcome table retries, unless the
// partner asks for a wait longer than a call may take: the caller then retries later.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		return true, nil
	}
	if !httpclient.Retryable(resp.StatusCode) {
		return false, nil
	}
	if d, ok := httpclient.ResponseRetryAfter(resp); ok && d > retryWaitMax {
		return false, nil
	}
	return true, nil
}

func (c *Client) post(ctx context.Context, op, path, route string, cu Customer) (ans Answer, err error) {
	ans.InvalidSIRET = cu.SIRET != "" && !ValidSIRET(cu.SIRET)
	if ans.InvalidSIRET {
		c.m.siret(op)
	}
	defer func() { c.m.call(op, httpclient.OutcomeOf(err)) }()
	fail := &httpclient.Error{Connector: connector, Endpoint: route}
	if err := cu.Validate(); err != nil {
		fail.Outcome, fail.Err = httpclient.Permanent, err
		return ans, fail
	}

	body := cu.Values(c.partnerCode, c.partner).Encode()
	var attempts int
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, attemptsKey{}, &attempts),
		http.MethodPost, c.base.JoinPath(path).String(), []byte(body))
	if err != nil {
		fail.Outcome, fail.Err = httpclient.Permanent, errors.New("cannot build the request")
		return ans, fail
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", c.auth)

	resp, err := c.hc.Do(req)
	fail.Attempts = attempts
	if err != nil {
		if resp != nil {
			resp.Body.Close()
		}
		fail.Outcome, fail.Err = httpclient.Retry, withoutURL(err)
		return ans, fail
	}
	defer resp.Body.Close()
	fail.Status = resp.StatusCode
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		// Cut short: whether the partner took it is unknown, and a repeat is harmless.
		fail.Outcome, fail.Err = httpclient.Retry, fmt.Errorf("reading the answer: %w", withoutURL(err))
		return ans, fail
	}
	var wa wireAnswer
	decodeErr := json.Unmarshal(data, &wa)

	if outcome := httpclient.Classify(resp.StatusCode); outcome != httpclient.Delivered {
		fail.Outcome = outcome
		fail.RetryAfter, _ = httpclient.ResponseRetryAfter(resp)
		if decodeErr == nil && wa.Text != "" {
			fail.Message = wa.Text
		} else {
			fail.Message = c.snippet(data)
		}
		return ans, fail
	}
	switch {
	case decodeErr != nil || wa.Response == nil:
		// A 2xx that is not the API's answer (a proxy's page, a cut body): the call may not have
		// reached Simplébo, and client_id makes trying again safe.
		fail.Outcome, fail.Message = httpclient.Retry, c.snippet(data)
		fail.Err = errors.New("answer is not the API's JSON")
		return ans, fail
	case *wa.Response != 0:
		// The partner refused it (a validation message, most often): the same request gets the
		// same answer.
		fail.Outcome, fail.Message = httpclient.Permanent, wa.Text
		if fail.Message == "" {
			fail.Message = fmt.Sprintf("response %d without text", *wa.Response)
		}
		return ans, fail
	}
	ans.RedirectTo, ans.Text = wa.RedirectTo, wa.Text
	return ans, nil
}

// snippet is the start of a non-JSON answer, on one line, without the token should the server
// echo it.
func (c *Client) snippet(data []byte) string {
	s := strings.Join(strings.Fields(string(bytes.ToValidUTF8(data, nil))), " ")
	if r := []rune(s); len(r) > maxMessage {
		s = string(r[:maxMessage]) + "…"
	}
	return strings.ReplaceAll(s, c.token, "[redacted]")
}

// withoutURL drops the *url.Error wrapper, whose text repeats the URL.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
