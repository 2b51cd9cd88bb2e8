// Package simplebosim is a fake Simplébo for tests and the sandbox: the API of
// CONTRACTS.md "Simplébo partner" (POST /v1/leads and /v1/customers) on a loopback server, with
// fault injection, and the partner's side of the client-state webhooks (SendEvent, EventsFor).
package simplebosim

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/internal/httpapi"
)

// SimConfig configures Start. Zero values take the defaults.
type SimConfig struct {
	// Addr to listen on; default "127.0.0.1:0".
	Addr string
	// Token expected in Authorization: Token token="…"; default "sim-token".
	Token string
	// PartnerCode expected in partner_code; default "SIMPARTNER".
	PartnerCode string
	// RedirectBase prefixes the client id in redirect_to; default "https://sites.simplebo.example/".
	RedirectBase string
}

// Sim is a running fake Simplébo. Its methods are safe for concurrent use.
type Sim struct {
	cfg SimConfig
	ln  net.Listener
	srv *http.Server
	// sender posts the simulated webhooks (SendEvent).
	sender *http.Client

	mu        sync.Mutex
	leads     []string // client ids in the order first received
	customers []string
	clients   map[string]*Record
	requests  map[string]int // by path, every request counted
	fails     []fault
	rejects   []string
	slow      time.Duration
}

// Record is what the simulator holds for one client_id: the data first received (a repeat
// changes nothing) and which calls it went through.
type Record struct {
	Customer    simplebo.Customer
	Partner     string
	Lead        bool
	Activated   bool
	ContentType string // of the first request, to check the encoding
}

type fault struct {
	status     int
	retryAfter time.Duration
}

// Start listens on cfg.Addr and serves until Close.
func Start(cfg SimConfig) (*Sim, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Token == "" {
		cfg.Token = "sim-token"
	}
	if cfg.PartnerCode == "" {
		cfg.PartnerCode = "SIMPARTNER"
	}
	if cfg.RedirectBase == "" {
		cfg.RedirectBase = "https://sites.simplebo.example/"
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("simplebosim: listen: %w", err)
	}
	s := &Sim{cfg: cfg, ln: ln, sender: &http.Client{Timeout: 10 * time.Second}, clients: map[string]*Record{}, requests: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/leads", s.serveAPI)
	mux.HandleFunc("/v1/customers", s.serveAPI)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.count(r.URL.Path)
		writeAnswer(w, http.StatusNotFound, 1, "Not found", "")
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }() // returns ErrServerClosed on Close
	return s, nil
}

// URL is the API's base URL, ending in "/v1/".
func (s *Sim) URL() string { return "http://" + s.ln.Addr().String() + "/v1/" }

// Token is the token the simulator expects.
func (s *Sim) Token() string { return s.cfg.Token }

// PartnerCode is the partner_code the simulator expects.
func (s *Sim) PartnerCode() string { return s.cfg.PartnerCode }

// Close stops the server, cutting open connections.
func (s *Sim) Close() { _ = s.srv.Close() }

// FailNext makes the next n API requests answer status (with Retry-After in whole seconds when
// retryAfter > 0), before any other check.
func (s *Sim) FailNext(n int, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.fails = append(s.fails, fault{status: status, retryAfter: retryAfter})
	}
}

// RejectNext makes the next n authenticated API requests answer {"response": 1, "text": text}
// with HTTP 200, as Simplébo does for a request it refuses.
func (s *Sim) RejectNext(n int, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.rejects = append(s.rejects, text)
	}
}

// SetSlow delays every answer by d (0 turns it off); a client that gives up first is not waited for.
func (s *Sim) SetSlow(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slow = d
}

// Requests counts the requests received on path (e.g. "/v1/leads"), faults and refusals included.
func (s *Sim) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

// Leads returns the customers sent as leads, once each, in the order first received.
func (s *Sim) Leads() []simplebo.Customer { return s.list(func(s *Sim) []string { return s.leads }) }

// Customers returns the customers activated, once each, in the order first received.
func (s *Sim) Customers() []simplebo.Customer {
	return s.list(func(s *Sim) []string { return s.customers })
}

func (s *Sim) list(ids func(*Sim) []string) []simplebo.Customer {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []simplebo.Customer
	for _, id := range ids(s) {
		out = append(out, s.clients[id].Customer)
	}
	return out
}

// Client returns what the simulator holds for a client id.
func (s *Sim) Client(id string) (Record, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[id]
	if !ok {
		return Record{}, false
	}
	return *c, true
}

func (s *Sim) count(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[path]++
}

// next takes the next injected fault and the slow delay, counting the request.
func (s *Sim) next(path string) (f fault, failing bool, slow time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[path]++
	if len(s.fails) > 0 {
		f, s.fails, failing = s.fails[0], s.fails[1:], true
	}
	return f, failing, s.slow
}

func (s *Sim) takeReject() (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rejects) == 0 {
		return "", false
	}
	t := s.rejects[0]
	s.rejects = s.rejects[1:]
	return t, true
}

const maxRequest = 1 << 20

func (s *Sim) serveAPI(w http.ResponseWriter, r *http.Request) {
	f, failing, slow := s.next(r.URL.Path)
	if slow > 0 {
		t := time.NewTimer(slow)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if failing {
		if f.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(int((f.retryAfter+time.Second-1)/time.Second)))
		}
		writeAnswer(w, f.status, 1, http.StatusText(f.status), "")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeAnswer(w, http.StatusMethodNotAllowed, 1, "Method not allowed", "")
		return
	}
	auth := httpapi.TokenAuth{Scheme: httpapi.AuthToken, Token: s.cfg.Token}
	if !auth.Check(r) {
		writeAnswer(w, http.StatusUnauthorized, 1, "Unauthorized", "")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRequest))
	if err != nil {
		writeAnswer(w, http.StatusBadRequest, 1, "Unreadable body", "")
		return
	}
	if text, ok := s.takeReject(); ok {
		writeAnswer(w, http.StatusOK, 1, text, "")
		return
	}
	fields, err := simplebo.ParseFields(r.Header.Get("Content-Type"), body)
	if err != nil {
		writeAnswer(w, http.StatusOK, 1, err.Error(), "")
		return
	}
	if fields["partner_code"] != s.cfg.PartnerCode {
		writeAnswer(w, http.StatusOK, 1, "Unknown partner_code", "")
		return
	}
	if fields["partner"] == "" {
		writeAnswer(w, http.StatusOK, 1, "Missing partner", "")
		return
	}
	cu, err := simplebo.CustomerFromFields(fields)
	if err == nil {
		err = cu.Validate()
	}
	if err != nil {
		writeAnswer(w, http.StatusOK, 1, err.Error(), "")
		return
	}
	s.record(r.URL.Path, r.Header.Get("Content-Type"), fields["partner"], cu)
	writeAnswer(w, http.StatusOK, 0, "OK", s.cfg.RedirectBase+url.PathEscape(cu.ClientID))
}

// record keeps the first data received for a client id: client_id is the idempotency key.
func (s *Sim) record(path, contentType, partner string, cu simplebo.Customer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.clients[cu.ClientID]
	if !ok {
		c = &Record{Customer: cu, Partner: partner, ContentType: contentType}
		s.clients[cu.ClientID] = c
	}
	switch path {
	case "/v1/leads":
		if !c.Lead {
			c.Lead = true
			s.leads = append(s.leads, cu.ClientID)
		}
	case "/v1/customers":
		if !c.Activated {
			c.Activated = true
			s.customers = append(s.customers, cu.ClientID)
		}
	}
}

type answer struct {
	Response   int    `json:"response"`
	Text       string `json:"text"`
	RedirectTo string `json:"redirect_to,omitempty"`
}

func writeAnswer(w http.ResponseWriter, status, response int, text, redirect string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(answer{Response: response, Text: text, RedirectTo: redirect})
}
