// Package biwaysim is a fake Bi-way/Api on loopback, for tests and the sandbox. It serves every
// call of the partner's guide with the bodies of CONTRACTS.md, checks the bearer key, answers
// errors in the partner's shape, keeps submissions idempotent on their reference, counts the
// messages each number got, and posts signed callbacks (Standard Webhooks) to the registered
// URL: for every message the report chain accepted → sent → delivered → read (no read for SMS;
// some numbers fail with a reason), and a state for every company, account and agent created.
//
// Callbacks queue up until Flush sends them, which makes tests deterministic; the sandbox sets
// an Interval instead. They can be duplicated and shuffled, as the real partner may. Faults
// (error statuses with Retry-After, slow answers) are injected with FailNext and SetSlow.
package biwaysim

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/transforms"
)

// Error codes the simulator answers, in the {"error": true, "message", "code"} body.
const (
	CodeUnauthorized     = "UNAUTHORIZED"
	CodeBadRequest       = "BAD_REQUEST"
	CodeInvalidNumber    = "INVALID_NUMBER"
	CodeInvalidChannel   = "INVALID_CHANNEL"
	CodeMissingField     = "MISSING_FIELD"
	CodeInvalidSiret     = "INVALID_SIRET"
	CodeInvalidSecret    = "INVALID_SECRET"
	CodeUnknownCompany   = "UNKNOWN_COMPANY"
	CodeUnknownAgent     = "UNKNOWN_AGENT"
	CodeTooManyRecipient = "TOO_MANY_RECIPIENTS"
	CodeInjected         = "INJECTED_FAULT"
)

// Limits of the simulated service.
const (
	MaxBroadcast    = 10000
	MaxConversation = 10
)

// Reasons the simulator gives for a refused recipient or a failed message.
const (
	ReasonNotMobile = "numero invalide"
	ReasonNoRef     = "reference manquante"
	ReasonUnreached = "numero injoignable"
	ReasonNoRCS     = "terminal non compatible RCS"
)

const (
	maxRequestBody   = 8 << 20
	callbackTimeout  = 5 * time.Second
	defaultAPIKey    = "biwaysim-api-key"
	statutAccepted   = "accepte"
	entityPending    = "pending"
	entityActive     = "active"
	typeReport       = "MESSENGER_REPORT"
	typeCompanyState = "COMPANY_STATE"
	typeAccountState = "ACCOUNT_STATE"
	typeAgentState   = "AGENT_STATE"
)

// SimConfig configures [Start]. Zero values take the defaults.
type SimConfig struct {
	// APIKey is the bearer key the simulator accepts; default "biwaysim-api-key".
	APIKey string
	// RCSCapable says which numbers take RCS (canal "auto" picks RCS for them, SMS otherwise);
	// default: numbers whose last digit is even.
	RCSCapable func(number string) bool
	// Fails says which numbers fail after "sent", and why; default: numbers ending in "99"
	// fail with "numero injoignable".
	Fails func(number string) (reason string, fail bool)
	// Duplicates is how many times each callback is posted; default 1.
	Duplicates int
	// Shuffle posts each batch of pending callbacks in a random order, drawn from Seed.
	Shuffle bool
	Seed    uint64
	// Interval, when positive, posts due callbacks in the background every Interval (the
	// sandbox); otherwise they wait for Flush (tests).
	Interval time.Duration
	// Delay is how long a callback waits before the background loop posts it.
	Delay time.Duration
	// Now is the clock of callback dates and signatures; default time.Now.
	Now func() time.Time
	// Logger receives a line per callback that could not be posted; discarded when nil.
	Logger *slog.Logger
}

// Message is a message the simulator accepted.
type Message struct {
	ID        string
	Route     string // the call that sent it: /messenger/submit, /messenger/broadcast, …
	To        string
	Canal     string // as resolved: "sms" or "rcs"
	Modele    string
	Texte     string
	Variables map[string]string
	Reference string
}

// Sim is a running fake Bi-way. Its methods are safe for concurrent use.
type Sim struct {
	cfg    SimConfig
	srv    *http.Server
	url    string
	client *http.Client
	stop   chan struct{}
	done   chan struct{}
	close  sync.Once

	flushMu sync.Mutex // one Flush at a time, so callbacks are not posted twice

	mu        sync.Mutex
	rng       *rand.Rand
	seq       int
	requests  int
	fault     fault
	slow      time.Duration
	cbURL     string
	cbSecret  string
	refs      map[string]string // submit or conversation reference → answered id
	messages  []Message
	perNumber map[string]int
	companies map[string]bool
	agents    map[string]bool
	tokens    map[string]string // jeton → reference
	pending   []outgoing
	posted    int
}

type fault struct {
	remaining  int
	status     int
	retryAfter string
}

type outgoing struct {
	id   string // webhook-id, shared by duplicates
	body []byte
	due  time.Time
}

// Start serves a simulator on a loopback port.
func Start(cfg SimConfig) (*Sim, error) {
	if cfg.APIKey == "" {
		cfg.APIKey = defaultAPIKey
	}
	if cfg.RCSCapable == nil {
		cfg.RCSCapable = func(n string) bool { return n != "" && (n[len(n)-1]-'0')%2 == 0 }
	}
	if cfg.Fails == nil {
		cfg.Fails = func(n string) (string, bool) { return ReasonUnreached, strings.HasSuffix(n, "99") }
	}
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("biwaysim: listen: %w", err)
	}
	s := &Sim{
		cfg:       cfg,
		url:       "http://" + ln.Addr().String(),
		client:    &http.Client{Timeout: callbackTimeout},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		rng:       rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		refs:      map[string]string{},
		perNumber: map[string]int{},
		companies: map[string]bool{},
		agents:    map[string]bool{},
		tokens:    map[string]string{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /system/callback", s.api(s.registerCallback))
	mux.HandleFunc("POST /client/company", s.api(s.createCompany))
	mux.HandleFunc("POST /system/account", s.api(s.createAccount))
	mux.HandleFunc("POST /chatbot/agent", s.api(s.createAgent))
	mux.HandleFunc("POST /messenger/rcs-tester", s.api(s.createTester))
	mux.HandleFunc("POST /messenger/template", s.api(s.createTemplate))
	mux.HandleFunc("POST /chatbot/token", s.api(s.chatToken))
	mux.HandleFunc("POST /messenger/submit", s.api(s.submit))
	mux.HandleFunc("POST /messenger/broadcast", s.api(s.broadcast))
	mux.HandleFunc("POST /messenger/conversation", s.api(s.conversation))
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	go s.loop()
	return s, nil
}

// URL is the API's base URL.
func (s *Sim) URL() string { return s.url }

// APIKey is the bearer key the simulator accepts.
func (s *Sim) APIKey() string { return s.cfg.APIKey }

// Close stops the server and the background loop; pending callbacks are dropped.
func (s *Sim) Close() {
	s.close.Do(func() {
		close(s.stop)
		<-s.done
		_ = s.srv.Close()
		s.client.CloseIdleConnections()
	})
}

// FailNext makes the next n API requests answer status (with Retry-After when retryAfter is
// not empty) and the error body, whatever they are.
func (s *Sim) FailNext(n, status int, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = fault{remaining: n, status: status, retryAfter: retryAfter}
}

// SetSlow makes every API answer wait d first (0 to heal); a client that leaves gets nothing.
func (s *Sim) SetSlow(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slow = d
}

// Requests counts the API requests received, failed ones included.
func (s *Sim) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// MessagesTo counts the distinct messages accepted for number (E.164): a submission repeated
// with the same reference is not a new message.
func (s *Sim) MessagesTo(number string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perNumber[number]
}

// Submissions returns the messages accepted so far, in order.
func (s *Sim) Submissions() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	copy(out, s.messages)
	return out
}

// Callback returns the registered callback URL and secret, empty when none is.
func (s *Sim) Callback() (url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cbURL, s.cbSecret
}

// Pending counts the callbacks waiting to be posted, duplicates included.
func (s *Sim) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Posted counts the callbacks the callback URL answered 2xx to.
func (s *Sim) Posted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.posted
}

// SetEntityState queues an entity state callback, as when the partner's staff verify or
// suspend an account: typ is ACCOUNT_STATE, COMPANY_STATE or AGENT_STATE.
func (s *Sim) SetEntityState(typ, id, etat string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueEntity(typ, id, etat)
}

// UseToken plays a person opening a chat link: the partner reports the token "read".
func (s *Sim) UseToken(jeton string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ref, ok := s.tokens[jeton]
	if !ok {
		return errors.New("biwaysim: unknown chat token")
	}
	s.queue(map[string]any{"type": typeReport, "message_id": jeton, "reference": ref, "etat": "read",
		"raison": "", "date": frtime.Format(s.cfg.Now())})
	return nil
}

// ErrNoCallback is returned by Flush when callbacks are pending and no URL is registered.
var ErrNoCallback = errors.New("biwaysim: no callback URL registered")

// Flush posts every pending callback, in order or shuffled, and returns when all were tried.
// Those the callback URL did not answer 2xx to stay pending, and the error says how many.
func (s *Sim) Flush(ctx context.Context) error {
	return s.send(ctx, time.Time{})
}

// send posts the callbacks due at now (all of them for the zero time).
func (s *Sim) send(ctx context.Context, now time.Time) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	url, secret := s.cbURL, s.cbSecret
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	if url == "" {
		s.mu.Unlock()
		return ErrNoCallback
	}
	var batch, later []outgoing
	for _, o := range s.pending {
		if now.IsZero() || !o.due.After(now) {
			batch = append(batch, o)
		} else {
			later = append(later, o)
		}
	}
	s.pending = later
	if s.cfg.Shuffle {
		s.rng.Shuffle(len(batch), func(i, j int) { batch[i], batch[j] = batch[j], batch[i] })
	}
	s.mu.Unlock()

	var failed []outgoing
	var errs []error
	for _, o := range batch {
		if err := s.post(ctx, url, secret, o); err != nil {
			failed = append(failed, o)
			if len(errs) < 3 {
				errs = append(errs, err)
			}
			continue
		}
		s.mu.Lock()
		s.posted++
		s.mu.Unlock()
	}
	if len(failed) == 0 {
		return nil
	}
	s.mu.Lock()
	s.pending = append(failed, s.pending...)
	s.mu.Unlock()
	return fmt.Errorf("biwaysim: %d of %d callbacks not delivered: %w", len(failed), len(batch), errors.Join(errs...))
}

func (s *Sim) post(ctx context.Context, url, secret string, o outgoing) error {
	h, err := stdwebhook.Headers(secret, o.id, s.cfg.Now(), o.body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(o.body))
	if err != nil {
		return fmt.Errorf("callback request: %w", err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("callback %s: %w", o.id, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("callback %s: HTTP %d", o.id, resp.StatusCode)
	}
	return nil
}

// loop posts due callbacks every Interval, when one is set.
func (s *Sim) loop() {
	defer close(s.done)
	if s.cfg.Interval <= 0 {
		<-s.stop
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if err := s.send(ctx, s.cfg.Now()); err != nil && !errors.Is(err, ErrNoCallback) && ctx.Err() == nil {
				s.cfg.Logger.Warn("biwaysim: callbacks not delivered", slog.Any("err", err))
			}
		}
	}
}

// queue adds a callback, Duplicates times, under s.mu.
func (s *Sim) queue(v map[string]any) {
	body, _ := json.Marshal(v) // maps of strings always encode
	s.seq++
	o := outgoing{id: "msg_biwaysim_" + strconv.Itoa(s.seq), body: body, due: s.cfg.Now().Add(s.cfg.Delay)}
	for range s.cfg.Duplicates {
		s.pending = append(s.pending, o)
	}
}

func (s *Sim) queueEntity(typ, id, etat string) {
	s.queue(map[string]any{"type": typ, "id": id, "etat": etat, "date": frtime.Format(s.cfg.Now())})
}

// queueReports queues a message's report chain, under s.mu. Dates step a second apart so that
// a consumer ordering by date sees the chain's order.
func (s *Sim) queueReports(m Message) {
	states := []string{"accepted", "sent", "delivered"}
	reason, fail := s.cfg.Fails(m.To)
	if !fail && m.Canal == "rcs" && !s.cfg.RCSCapable(m.To) {
		reason, fail = ReasonNoRCS, true
	}
	switch {
	case fail:
		states = []string{"accepted", "sent", "failed"}
	case m.Canal == "rcs":
		states = append(states, "read")
	}
	now := s.cfg.Now()
	for i, st := range states {
		r := ""
		if st == "failed" {
			r = reason
		}
		s.queue(map[string]any{"type": typeReport, "message_id": m.ID, "reference": m.Reference, "etat": st,
			"raison": r, "date": frtime.Format(now.Add(time.Duration(i) * time.Second))})
	}
}

// newID returns a fresh id with prefix, under s.mu.
func (s *Sim) newID(prefix string) string {
	s.seq++
	return prefix + strconv.Itoa(s.seq)
}

// addMessage records a message and queues its reports, under s.mu.
func (s *Sim) addMessage(m Message) {
	if m.Canal == "auto" || m.Canal == "" {
		m.Canal = "sms"
		if s.cfg.RCSCapable(m.To) {
			m.Canal = "rcs"
		}
	}
	s.messages = append(s.messages, m)
	s.perNumber[m.To]++
	s.queueReports(m)
}

// apiError is an answer in the partner's error shape.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func bad(code, msg string) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, message: msg}
}

// api wraps a route: slow answers, injected faults, the bearer key, and the JSON body. The
// route returns the status and value to answer, or an *apiError.
func (s *Sim) api(route func(body []byte) (int, any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests++
		slow := s.slow
		f := s.fault
		if s.fault.remaining > 0 {
			s.fault.remaining--
		}
		s.mu.Unlock()
		if slow > 0 {
			t := time.NewTimer(slow)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if f.remaining > 0 {
			if f.retryAfter != "" {
				w.Header().Set("Retry-After", f.retryAfter)
			}
			writeError(w, &apiError{status: f.status, code: CodeInjected, message: "panne simulee"})
			return
		}
		auth := r.Header.Get("Authorization")
		want := "Bearer " + s.cfg.APIKey
		if subtle.ConstantTimeCompare([]byte(auth), []byte(want)) != 1 {
			writeError(w, &apiError{status: http.StatusUnauthorized, code: CodeUnauthorized, message: "cle API invalide"})
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
		if err != nil {
			writeError(w, bad(CodeBadRequest, "corps illisible"))
			return
		}
		status, v, err := route(body)
		var ae *apiError
		if errors.As(err, &ae) {
			writeError(w, ae)
			return
		}
		if err != nil {
			writeError(w, &apiError{status: http.StatusInternalServerError, code: "INTERNAL", message: "erreur interne"})
			return
		}
		writeJSON(w, status, v)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.status, map[string]any{"error": true, "message": e.message, "code": e.code})
}

// decode reads a JSON object strictly: the simulator is where a misspelt field shows up.
func decode(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bad(CodeBadRequest, "JSON invalide: "+err.Error())
	}
	return nil
}

func validChannel(c string) bool { return c == "sms" || c == "rcs" || c == "auto" }

func (s *Sim) registerCallback(body []byte) (int, any, error) {
	var in struct {
		URL    string `json:"url"`
		Secret string `json:"secret"`
	}
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	u, err := url.Parse(in.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, nil, bad(CodeBadRequest, "url invalide")
	}
	if stdwebhook.CheckSecret(in.Secret) != nil {
		return 0, nil, bad(CodeInvalidSecret, "secret invalide")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cbURL, s.cbSecret = in.URL, in.Secret
	return http.StatusOK, map[string]string{"id": s.newID("cb_")}, nil
}

func (s *Sim) createCompany(body []byte) (int, any, error) {
	var in struct {
		Nom        string `json:"nom"`
		Siret      string `json:"siret"`
		Adresse    string `json:"adresse"`
		CodePostal string `json:"code_postal"`
		Ville      string `json:"ville"`
		Email      string `json:"email"`
		Telephone  string `json:"telephone"`
	}
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Nom == "" {
		return 0, nil, bad(CodeMissingField, "nom manquant")
	}
	if len(in.Siret) != 14 || strings.Trim(in.Siret, "0123456789") != "" {
		return 0, nil, bad(CodeInvalidSiret, "siret invalide: 14 chiffres attendus")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.newID("co_")
	s.companies[id] = true
	s.queueEntity(typeCompanyState, id, entityActive)
	return http.StatusCreated, map[string]string{"id": id, "etat": entityPending}, nil
}

func (s *Sim) createAccount(body []byte) (int, any, error) {
	var in struct {
		Etablissement string `json:"etablissement"`
		Nom           string `json:"nom"`
		Prenom        string `json:"prenom"`
		Email         string `json:"email"`
		Telephone     string `json:"telephone"`
	}
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Nom == "" || in.Email == "" {
		return 0, nil, bad(CodeMissingField, "nom et email requis")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.companies[in.Etablissement] {
		return 0, nil, bad(CodeUnknownCompany, "etablissement inconnu")
	}
	id := s.newID("acc_")
	s.queueEntity(typeAccountState, id, entityActive)
	return http.StatusCreated, map[string]string{"id": id, "etat": entityPending}, nil
}

func (s *Sim) createAgent(body []byte) (int, any, error) {
	var in struct {
		Nom         string `json:"nom"`
		Description string `json:"description"`
		Logo        string `json:"logo"`
		Site        string `json:"site"`
	}
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Nom == "" {
		return 0, nil, bad(CodeMissingField, "nom manquant")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.newID("ag_")
	s.agents[id] = true
	s.queueEntity(typeAgentState, id, entityActive)
	return http.StatusCreated, map[string]string{"id": id, "etat": entityPending}, nil
}

func (s *Sim) createTester(body []byte) (int, any, error) {
	var in struct {
		Agent     string `json:"agent"`
		Telephone string `json:"telephone"`
	}
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	if !transforms.IsMobile(in.Telephone) {
		return 0, nil, bad(CodeInvalidNumber, ReasonNotMobile)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.agents[in.Agent] {
		return 0, nil, bad(CodeUnknownAgent, "agent inconnu")
	}
	return http.StatusCreated, map[string]string{"id": s.newID("tst_"), "etat": entityPending}, nil
}

func (s *Sim) createTemplate(body []byte) (int, any, error) {
	var in struct {
		Nom       string   `json:"nom"`
		Canal     string   `json:"canal"`
		Texte     string   `json:"texte"`
		Variables []string `json:"variables"`
	}
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	if in.Nom == "" || in.Texte == "" {
		return 0, nil, bad(CodeMissingField, "nom et texte requis")
	}
	if !validChannel(in.Canal) {
		return 0, nil, bad(CodeInvalidChannel, "canal invalide")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return http.StatusCreated, map[string]string{"id": s.newID("tpl_"), "etat": entityActive}, nil
}

func (s *Sim) chatToken(body []byte) (int, any, error) {
	var in struct {
		Agent     string            `json:"agent"`
		Reference string            `json:"reference"`
		Variables map[string]string `json:"variables"`
	}
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.agents[in.Agent] {
		return 0, nil, bad(CodeUnknownAgent, "agent inconnu")
	}
	jeton := s.newID("tok_")
	s.tokens[jeton] = in.Reference
	return http.StatusCreated, map[string]string{"jeton": jeton, "url": s.url + "/chat/" + jeton,
		"expiration": frtime.Format(s.cfg.Now().Add(24 * time.Hour))}, nil
}

type submission struct {
	To        string            `json:"to"`
	Canal     string            `json:"canal"`
	Modele    *string           `json:"modele"`
	Texte     string            `json:"texte"`
	Variables map[string]string `json:"variables"`
	Reference string            `json:"reference"`
}

func (s *Sim) submit(body []byte) (int, any, error) {
	var in submission
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	modele := ""
	if in.Modele != nil {
		modele = *in.Modele
	}
	switch {
	case !transforms.IsMobile(in.To):
		return 0, nil, bad(CodeInvalidNumber, ReasonNotMobile)
	case !validChannel(in.Canal):
		return 0, nil, bad(CodeInvalidChannel, "canal invalide")
	case in.Reference == "":
		return 0, nil, bad(CodeMissingField, ReasonNoRef)
	case modele == "" && in.Texte == "":
		return 0, nil, bad(CodeMissingField, "modele ou texte requis")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := "submit:" + in.Reference
	if id, ok := s.refs[key]; ok {
		return http.StatusAccepted, map[string]string{"message_id": id, "statut": statutAccepted}, nil
	}
	id := s.newID("m_")
	s.refs[key] = id
	s.addMessage(Message{ID: id, Route: "/messenger/submit", To: in.To, Canal: in.Canal, Modele: modele, Texte: in.Texte,
		Variables: in.Variables, Reference: in.Reference})
	return http.StatusAccepted, map[string]string{"message_id": id, "statut": statutAccepted}, nil
}

func (s *Sim) broadcast(body []byte) (int, any, error) {
	var in struct {
		Destinataires []struct {
			To        string            `json:"to"`
			Variables map[string]string `json:"variables"`
			Reference string            `json:"reference"`
		} `json:"destinataires"`
		Modele string `json:"modele"`
		Canal  string `json:"canal"`
	}
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	switch {
	case in.Modele == "":
		return 0, nil, bad(CodeMissingField, "modele requis")
	case !validChannel(in.Canal):
		return 0, nil, bad(CodeInvalidChannel, "canal invalide")
	case len(in.Destinataires) == 0:
		return 0, nil, bad(CodeMissingField, "destinataires requis")
	case len(in.Destinataires) > MaxBroadcast:
		return 0, nil, bad(CodeTooManyRecipient, "10000 destinataires au plus")
	}
	type refusal struct {
		To     string `json:"to"`
		Raison string `json:"raison"`
	}
	refuses := []refusal{}
	accepted := 0
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range in.Destinataires {
		switch {
		case !transforms.IsMobile(d.To):
			refuses = append(refuses, refusal{d.To, ReasonNotMobile})
			continue
		case d.Reference == "":
			refuses = append(refuses, refusal{d.To, ReasonNoRef})
			continue
		}
		accepted++
		key := "submit:" + d.Reference
		if _, ok := s.refs[key]; ok {
			continue // already sent: accepted again, not messaged again
		}
		id := s.newID("m_")
		s.refs[key] = id
		s.addMessage(Message{ID: id, Route: "/messenger/broadcast", To: d.To, Canal: in.Canal, Modele: in.Modele,
			Variables: d.Variables, Reference: d.Reference})
	}
	return http.StatusAccepted, map[string]any{"broadcast_id": s.newID("bc_"), "acceptes": accepted, "refuses": refuses}, nil
}

func (s *Sim) conversation(body []byte) (int, any, error) {
	var in struct {
		Destinataires []string          `json:"destinataires"`
		Canal         string            `json:"canal"`
		Modele        *string           `json:"modele"`
		Texte         string            `json:"texte"`
		Variables     map[string]string `json:"variables"`
		Reference     string            `json:"reference"`
	}
	if err := decode(body, &in); err != nil {
		return 0, nil, err
	}
	modele := ""
	if in.Modele != nil {
		modele = *in.Modele
	}
	switch {
	case len(in.Destinataires) == 0 || len(in.Destinataires) > MaxConversation:
		return 0, nil, bad(CodeTooManyRecipient, "1 a 10 destinataires")
	case !validChannel(in.Canal):
		return 0, nil, bad(CodeInvalidChannel, "canal invalide")
	case in.Reference == "":
		return 0, nil, bad(CodeMissingField, ReasonNoRef)
	case modele == "" && in.Texte == "":
		return 0, nil, bad(CodeMissingField, "modele ou texte requis")
	}
	for _, d := range in.Destinataires {
		if !transforms.IsMobile(d) {
			return 0, nil, bad(CodeInvalidNumber, ReasonNotMobile)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := "conversation:" + in.Reference
	if id, ok := s.refs[key]; ok {
		return http.StatusAccepted, map[string]string{"conversation_id": id, "statut": statutAccepted}, nil
	}
	id := s.newID("cv_")
	s.refs[key] = id
	for _, d := range in.Destinataires {
		s.addMessage(Message{ID: s.newID("m_"), Route: "/messenger/conversation", To: d, Canal: in.Canal, Modele: modele,
			Texte: in.Texte, Variables: in.Variables, Reference: in.Reference})
	}
	return http.StatusAccepted, map[string]string{"conversation_id": id, "statut": statutAccepted}, nil
}
