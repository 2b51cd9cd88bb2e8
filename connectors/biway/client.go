package biway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/redact"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

// Connector is the partner's name in errors and metrics.
const Connector = "biway"

// Routes of the partner's guide, also the Endpoint of errors.
const (
	RouteCallback     = "/system/callback"
	RouteCompany      = "/client/company"
	RouteAccount      = "/system/account"
	RouteAgent        = "/chatbot/agent"
	RouteRCSTester    = "/messenger/rcs-tester"
	RouteTemplate     = "/messenger/template"
	RouteChatToken    = "/chatbot/token"
	RouteSubmit       = "/messenger/submit"
	RouteBroadcast    = "/messenger/broadcast"
	RouteConversation = "/messenger/conversation"
)

// Config says how to reach Bi-way/Api. Zero values take the defaults.
type Config struct {
	// BaseURL is the API's root, e.g. "https://api.example.com/v1"; routes are appended to it.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer <APIKey>".
	APIKey string
	// Timeout bounds one HTTP attempt; default 10s.
	Timeout time.Duration
	// Transport replaces the pooled default transport, for tests.
	Transport http.RoundTripper
	// RetryWaitMax caps the wait between the (at most 2) in-call retries; default 2s. A
	// Retry-After longer than that is not waited for: the call returns at once with the
	// retryable error carrying it, for the delivery engine to schedule.
	RetryWaitMax time.Duration
	// Mobile normalises a recipient's number to E.164 and says whether it is a mobile: a number
	// it refuses never leaves (required; passerelle passes transforms.MobileE164).
	Mobile func(raw string) (e164 string, ok bool)
}

const (
	retryMax     = 2
	retryWaitMin = 100 * time.Millisecond
	// maxAnswer bounds what is read of a partner answer.
	maxAnswer = 1 << 20
)

// ErrNotMobile is carried by the permanent error of a call refused locally because a number is
// not a French mobile in E.164 form once normalised. The error never quotes the number.
var ErrNotMobile = errors.New("not a French mobile number")

// ErrInvalidRequest is carried by the permanent error of a call refused locally for a missing
// field (a submission without reference, a broadcast without template, …).
var ErrInvalidRequest = errors.New("invalid request")

// APIError is the partner's error body, carried as the Err of an *httpclient.Error whose
// Message is the partner's message (personal data masked).
type APIError struct {
	Code    string
	Message string
}

// Error names the code only: the enclosing *httpclient.Error already quotes the message.
func (e *APIError) Error() string {
	if e.Code == "" {
		return "partner error without code"
	}
	return "partner code " + e.Code
}

// CodeOf returns the partner's error code carried by err, if any.
func CodeOf(err error) (string, bool) {
	var ae *APIError
	if errors.As(err, &ae) && ae.Code != "" {
		return ae.Code, true
	}
	return "", false
}

// Client calls Bi-way/Api. It is safe for concurrent use.
type Client struct {
	normalize    func(string) (string, bool)
	base         *url.URL
	host         string
	apiKey       string
	retryWaitMax time.Duration
	http         *retryablehttp.Client
}

// New validates cfg and builds a Client; hm (nil for none) counts its HTTP attempts.
func New(cfg Config, hm *httpclient.Metrics) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, errors.New("biway: BaseURL is not an absolute http(s) URL")
	}
	if cfg.APIKey == "" {
		return nil, errors.New("biway: APIKey is empty")
	}
	if cfg.Mobile == nil {
		return nil, errors.New("biway: Mobile is nil: numbers must be checked before they leave")
	}
	if cfg.RetryWaitMax <= 0 {
		cfg.RetryWaitMax = 2 * time.Second
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawQuery, u.Fragment = "", ""
	c := &Client{base: u, host: u.Host, apiKey: cfg.APIKey, retryWaitMax: cfg.RetryWaitMax, normalize: cfg.Mobile}
	hc := httpclient.New(httpclient.Config{
		Connector:     Connector,
		Timeout:       cfg.Timeout,
		RetryMax:      retryMax,
		RetryWaitMin:  min(retryWaitMin, cfg.RetryWaitMax),
		RetryWaitMax:  cfg.RetryWaitMax,
		RetryAfterMax: cfg.RetryWaitMax,
		CheckRetry:    c.checkRetry,
		Transport:     cfg.Transport,
		Metrics:       hm,
	})
	hc.RequestLogHook = countAttempt
	c.http = hc
	return c, nil
}

// RegisterCallback registers callbackURL as the return URL of the account the key belongs to,
// with the whsec_ secret the partner signs callbacks with, and returns the registration's id.
// A secret that cannot sign is refused locally: every callback would fail verification.
func (c *Client) RegisterCallback(ctx context.Context, callbackURL, secret string) (string, error) {
	if callbackURL == "" {
		return "", c.refuse(RouteCallback, fmt.Errorf("%w: callback url is required", ErrInvalidRequest))
	}
	if err := stdwebhook.CheckSecret(secret); err != nil {
		return "", c.refuse(RouteCallback, fmt.Errorf("%w: %w", ErrInvalidRequest, err))
	}
	var out struct {
		ID string `json:"id"`
	}
	err := c.do(ctx, RouteCallback, struct {
		URL    string `json:"url"`
		Secret string `json:"secret"`
	}{callbackURL, secret}, &out)
	return out.ID, err
}

// CreateCompany registers an establishment; it starts pending, COMPANY_STATE callbacks follow.
func (c *Client) CreateCompany(ctx context.Context, co Company) (Entity, error) {
	return c.create(ctx, RouteCompany, co)
}

// CreateAccount creates a user account; it starts pending, ACCOUNT_STATE callbacks follow.
func (c *Client) CreateAccount(ctx context.Context, a Account) (Entity, error) {
	return c.create(ctx, RouteAccount, a)
}

// CreateAgent creates a chat environment; it starts pending, AGENT_STATE callbacks follow.
func (c *Client) CreateAgent(ctx context.Context, a Agent) (Entity, error) {
	return c.create(ctx, RouteAgent, a)
}

// CreateRCSTester registers a test device for an active agent; its number must be a mobile.
func (c *Client) CreateRCSTester(ctx context.Context, t RCSTester) (Entity, error) {
	n, err := c.mobile(RouteRCSTester, t.Telephone)
	if err != nil {
		return Entity{}, err
	}
	t.Telephone = n
	return c.create(ctx, RouteRCSTester, t)
}

// CreateTemplate creates a reusable message.
func (c *Client) CreateTemplate(ctx context.Context, t Template) (Entity, error) {
	return c.create(ctx, RouteTemplate, t)
}

// ChatbotToken asks for a personal chat link; its use yields a MESSENGER_REPORT "read".
func (c *Client) ChatbotToken(ctx context.Context, t ChatToken) (ChatTokenAnswer, error) {
	var out ChatTokenAnswer
	err := c.do(ctx, RouteChatToken, t, &out)
	return out, err
}

// Submit sends one message. The number is normalised to E.164 and must be a mobile, and a
// reference is required: both are checked before anything is sent. The same reference
// submitted again is answered with the first message_id.
func (c *Client) Submit(ctx context.Context, s Submission) (SubmitAnswer, error) {
	if err := c.checkMessage(RouteSubmit, s.Canal, s.Reference, s.Modele, s.Texte); err != nil {
		return SubmitAnswer{}, err
	}
	n, err := c.mobile(RouteSubmit, s.To)
	if err != nil {
		return SubmitAnswer{}, err
	}
	s.To, s.Canal = n, canal(s.Canal)
	var out SubmitAnswer
	err = c.do(ctx, RouteSubmit, s, &out)
	return out, err
}

// MaxBroadcast is the most recipients one broadcast takes; splitting is the caller's.
const MaxBroadcast = 10000

// Broadcast sends a template to many recipients in one call (at most MaxBroadcast). Recipients whose number is not a mobile are not sent: they come
// back in the answer's Refuses with the reason, after the partner's own refusals, and with no
// recipient left no request is made. Every recipient needs a reference.
func (c *Client) Broadcast(ctx context.Context, b Broadcast) (BroadcastAnswer, error) {
	if b.Modele == "" {
		return BroadcastAnswer{}, c.refuse(RouteBroadcast, fmt.Errorf("%w: modele is required", ErrInvalidRequest))
	}
	if !validChannel(b.Canal) {
		return BroadcastAnswer{}, c.refuse(RouteBroadcast, fmt.Errorf("%w: canal must be sms, rcs or auto", ErrInvalidRequest))
	}
	if len(b.Destinataires) > MaxBroadcast {
		return BroadcastAnswer{}, c.refuse(RouteBroadcast, fmt.Errorf("%w: %d recipients, at most %d", ErrInvalidRequest, len(b.Destinataires), MaxBroadcast))
	}
	var local []Refusal
	keep := make([]Recipient, 0, len(b.Destinataires))
	for i, r := range b.Destinataires {
		if r.Reference == "" {
			return BroadcastAnswer{}, c.refuse(RouteBroadcast, fmt.Errorf("%w: recipient %d has no reference", ErrInvalidRequest, i))
		}
		n, ok := c.normalize(r.To)
		if !ok {
			local = append(local, Refusal{To: r.To, Raison: ErrNotMobile.Error()})
			continue
		}
		r.To = n
		keep = append(keep, r)
	}
	if len(keep) == 0 {
		return BroadcastAnswer{Refuses: local}, nil
	}
	b.Destinataires, b.Canal = keep, canal(b.Canal)
	var out BroadcastAnswer
	if err := c.do(ctx, RouteBroadcast, b, &out); err != nil {
		return BroadcastAnswer{}, err
	}
	out.Refuses = append(out.Refuses, local...)
	return out, nil
}

// Conversation sends one message to a few recipients. Every number must be a mobile, or the
// call is refused locally.
func (c *Client) Conversation(ctx context.Context, cv Conversation) (ConversationAnswer, error) {
	if err := c.checkMessage(RouteConversation, cv.Canal, cv.Reference, cv.Modele, cv.Texte); err != nil {
		return ConversationAnswer{}, err
	}
	if len(cv.Destinataires) == 0 {
		return ConversationAnswer{}, c.refuse(RouteConversation, fmt.Errorf("%w: no recipient", ErrInvalidRequest))
	}
	to := make([]string, len(cv.Destinataires))
	for i, d := range cv.Destinataires {
		n, err := c.mobile(RouteConversation, d)
		if err != nil {
			return ConversationAnswer{}, err
		}
		to[i] = n
	}
	cv.Destinataires, cv.Canal = to, canal(cv.Canal)
	var out ConversationAnswer
	err := c.do(ctx, RouteConversation, cv, &out)
	return out, err
}

func (c *Client) create(ctx context.Context, route string, in any) (Entity, error) {
	var out Entity
	err := c.do(ctx, route, in, &out)
	return out, err
}

func (c *Client) checkMessage(route, channel, reference, modele, texte string) error {
	if !validChannel(channel) {
		return c.refuse(route, fmt.Errorf("%w: canal must be sms, rcs or auto", ErrInvalidRequest))
	}
	if reference == "" {
		return c.refuse(route, fmt.Errorf("%w: reference is required", ErrInvalidRequest))
	}
	if modele == "" && texte == "" {
		return c.refuse(route, fmt.Errorf("%w: modele or texte is required", ErrInvalidRequest))
	}
	return nil
}

// mobile normalises a number, or refuses the call.
func (c *Client) mobile(route, raw string) (string, error) {
	n, ok := c.normalize(raw)
	if !ok {
		return "", c.refuse(route, ErrNotMobile)
	}
	return n, nil
}

// validChannel accepts the three channels, and "" for auto.
func validChannel(s string) bool {
	switch s {
	case "", ChannelSMS, ChannelRCS, ChannelAuto:
		return true
	}
	return false
}

// canal defaults an empty channel to auto.
func canal(s string) string {
	if s == "" {
		return ChannelAuto
	}
	return s
}

// refuse is the permanent error of a call that was not sent.
func (c *Client) refuse(route string, err error) error {
	return &httpclient.Error{Connector: Connector, Endpoint: route, Outcome: httpclient.Permanent, Err: err}
}

type attemptsKey struct{}

// countAttempt is the RequestLogHook, run before every attempt on the calling goroutine.
func countAttempt(_ retryablehttp.Logger, req *http.Request, _ int) {
	if n, ok := req.Context().Value(attemptsKey{}).(*int); ok {
		*n++
	}
}

func (c *Client) checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	retry, cerr := httpclient.DefaultRetryPolicy(ctx, resp, err)
	if !retry || resp == nil {
		return retry, cerr
	}
	// A long Retry-After is the delivery engine's to wait, not this call's.
	if d, ok := httpclient.ResponseRetryAfter(resp); ok && d > c.retryWaitMax {
		return false, nil
	}
	return true, nil
}

// do POSTs in as JSON to route and decodes a 2xx answer into out. Any failure is an
// *httpclient.Error.
func (c *Client) do(ctx context.Context, route string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return c.refuse(route, fmt.Errorf("encode request: %w", err))
	}
	attempts := 0
	u := *c.base
	u.Path += route
	req, err := retryablehttp.NewRequestWithContext(context.WithValue(ctx, attemptsKey{}, &attempts), http.MethodPost, u.String(), body)
	if err != nil {
		return c.refuse(route, fmt.Errorf("build request: %w", err))
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "passerelle")

	resp, err := c.http.Do(req)
	e := &httpclient.Error{Connector: Connector, Endpoint: route, Attempts: attempts}
	if err != nil {
		e.Outcome, e.Err = httpclient.Retry, withoutURL(err)
		if ctx.Err() != nil {
			e.Err = ctx.Err()
		}
		return e
	}
	defer resp.Body.Close()
	e.Status = resp.StatusCode
	e.Outcome = httpclient.Classify(resp.StatusCode)
	raw, rerr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if e.Outcome != httpclient.Delivered {
		e.RetryAfter, _ = httpclient.ResponseRetryAfter(resp)
		var eb errorBody
		if json.Unmarshal(raw, &eb) == nil && (eb.Error || eb.Message != "" || eb.Code != "") {
			e.Message = scrub(eb.Message)
			e.Err = &APIError{Code: eb.Code, Message: e.Message}
		} else {
			e.Message = scrub(snippet(raw))
		}
		return e
	}
	if rerr != nil {
		e.Outcome, e.Err = httpclient.Retry, fmt.Errorf("read answer: %w", rerr)
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		// A 2xx we cannot read: the partner may have acted, so only an idempotent call is safe
		// to retry; the outcome says permanent and the caller decides.
		e.Outcome, e.Err = httpclient.Permanent, fmt.Errorf("decode answer: %w", err)
		return e
	}
	return nil
}

// withoutURL drops the *url.Error layer, whose message quotes the full URL.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", strings.ToLower(ue.Op), ue.Err)
	}
	return err
}

func snippet(b []byte) string {
	const n = 200
	if len(b) > n {
		b = b[:n]
	}
	return strings.TrimSpace(strings.ToValidUTF8(string(bytes.TrimSpace(b)), ""))
}

var (
	phoneLike = regexp.MustCompile(`\+?\d[\d .\-]{6,}\d`)
	emailLike = regexp.MustCompile(`[^\s"'<>(),;:]+@[^\s"'<>(),;:]+`)
)

// scrub masks what looks like a phone number or an email in a partner message, which may
// quote the recipient, before it reaches an error and so a log line.
func scrub(s string) string {
	s = emailLike.ReplaceAllStringFunc(s, redact.Email)
	return phoneLike.ReplaceAllStringFunc(s, redact.Phone)
}
