package shopappsim

import (
	"bytes"
	crand "crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/passerelle/passerelle/connectors/shopapp"

	"github.com/passerelle/passerelle/internal/httpapi"
)

// Config configures a Sim. Zero values take the defaults given.
type Config struct {
	ClientID     string        // default "passerelle"
	ClientSecret string        // default "sandbox-secret"
	TokenTTL     time.Duration // default 1h
	Now          func() time.Time
	// Catalogue replaces DefaultCatalogue. PriceCents is derived from Price when zero.
	Catalogue []shopapp.CatalogueEntry
	// InstallDelay, when positive, turns an installing interface active that long after its
	// creation; zero keeps it installing until AdvanceInstall or SetStatus.
	InstallDelay time.Duration
}

// Fault makes the simulator fail requests, for tests of retries and timeouts.
type Fault struct {
	Status     int           // answer this status (500, 503, 429…) instead of serving; 0: serve
	RetryAfter string        // Retry-After header sent with Status, if any
	Delay      time.Duration // wait this long before answering (or serving)
	Remaining  int           // requests affected; 0: until ClearFault
	Route      string        // only this route template; "": every request
}

// Sim is an in-memory Shop Application API implementing the whole partner document and its
// rules. It is an http.Handler, safe for concurrent use.
type Sim struct {
	cfg Config

	mu        sync.Mutex
	rng       *rand.Rand // references and keys of interfaces created over HTTP or by Mutate
	catalogue map[string]shopapp.CatalogueEntry
	codes     []string // catalogue order
	tokens    map[string]time.Time
	ifaces    map[string]*simIface
	keys      []string // creation order
	byGUID    map[string]string
	refs      map[string]bool
	calls     map[string]int
	fault     Fault
	faultOn   bool

	srv *http.Server
	url string
}

// New builds a simulator with no interface.
func New(cfg Config) *Sim {
	if cfg.ClientID == "" {
		cfg.ClientID = "passerelle"
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = "sandbox-secret"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Catalogue) == 0 {
		cfg.Catalogue = DefaultCatalogue()
	}
	var seed [16]byte
	_, _ = crand.Read(seed[:]) // never fails (Go 1.24+)
	s := &Sim{
		cfg:       cfg,
		rng:       rand.New(rand.NewPCG(leUint64(seed[:8]), leUint64(seed[8:]))),
		catalogue: make(map[string]shopapp.CatalogueEntry, len(cfg.Catalogue)),
		tokens:    make(map[string]time.Time),
		ifaces:    make(map[string]*simIface),
		byGUID:    make(map[string]string),
		refs:      make(map[string]bool),
		calls:     make(map[string]int),
	}
	for _, e := range cfg.Catalogue {
		if e.PriceCents == 0 && e.Price != 0 {
			e.PriceCents, _ = shopapp.Cents(e.Price)
		}
		if e.Price == 0 && e.PriceCents != 0 {
			e.Price = float64(e.PriceCents) / 100
		}
		if _, dup := s.catalogue[e.Code]; !dup {
			s.codes = append(s.codes, e.Code)
		}
		s.catalogue[e.Code] = e
	}
	return s
}

func leUint64(b []byte) uint64 {
	var v uint64
	for i := range 8 {
		v |= uint64(b[i]) << (8 * i)
	}
	return v
}

// Start serves a new simulator on 127.0.0.1, on a free port.
func Start(cfg Config) (*Sim, error) {
	s := New(cfg)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("shopapp simulator: listening: %w", err)
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.url = "http://" + ln.Addr().String()
	go func() { _ = s.srv.Serve(ln) }() // returns ErrServerClosed on Close
	return s, nil
}

// URL is the base URL of a started simulator, "" if built with New.
func (s *Sim) URL() string { return s.url }

// Close stops a started simulator, cutting the connections in flight.
func (s *Sim) Close() {
	if s.srv != nil {
		_ = s.srv.Close() // only reports the listener's close error: nothing to do about it
	}
}

// ClientID and ClientSecret are the credentials the simulator accepts.
func (s *Sim) ClientID() string     { return s.cfg.ClientID }
func (s *Sim) ClientSecret() string { return s.cfg.ClientSecret }

func (s *Sim) now() time.Time { return s.cfg.Now().Truncate(time.Second) }

// SetFault makes the next requests fail as f says; a zero Fault clears it.
func (s *Sim) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault, s.faultOn = f, f.Status != 0 || f.Delay > 0
}

// ClearFault stops failing requests.
func (s *Sim) ClearFault() { s.SetFault(Fault{}) }

// ExpireTokens invalidates every token issued: the next call with one of them gets a 401.
func (s *Sim) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// Calls counts the requests received by route template (RouteUnknown for the others), faulty
// answers included.
func (s *Sim) Calls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.calls))
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// ResetCalls sets every counter of Calls back to zero.
func (s *Sim) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.calls)
}

// simError is an answer other than 200, with the partner's message.
type simError struct {
	status int
	msg    string
}

func badRequest(format string, a ...any) *simError {
	return &simError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, a...)}
}

// ServeHTTP serves the partner API.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, params := matchRoute(r.Method, r.URL.EscapedPath())

	s.mu.Lock()
	s.calls[route]++
	f, faulty := s.takeFault(route)
	s.mu.Unlock()
	if faulty {
		if f.Delay > 0 {
			t := time.NewTimer(f.Delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if f.Status != 0 {
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			httpapi.WriteError(w, f.Status, "erreur simulée")
			return
		}
	}

	body, err := httpapi.ReadBody(w, r, 1<<20)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "requête illisible")
		return
	}
	if route == shopapp.RouteUnknown {
		httpapi.WriteError(w, http.StatusBadRequest, "la route demandée n'est pas référencée")
		return
	}
	fields, err := bodyFields(body)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "JSON malformé")
		return
	}

	s.mu.Lock()
	v, serr := s.serve(route, params, r, body, fields)
	s.mu.Unlock()
	if serr != nil {
		httpapi.WriteError(w, serr.status, serr.msg)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, v)
}

// takeFault returns the fault to apply to this request, counting it down. s.mu is held.
func (s *Sim) takeFault(route string) (Fault, bool) {
	if !s.faultOn || (s.fault.Route != "" && s.fault.Route != route) {
		return Fault{}, false
	}
	f := s.fault
	if s.fault.Remaining > 0 {
		s.fault.Remaining--
		if s.fault.Remaining == 0 {
			s.fault, s.faultOn = Fault{}, false
		}
	}
	return f, true
}

// matchRoute maps a request to its route template and path parameters.
func matchRoute(method, escapedPath string) (string, []string) {
	segs := strings.Split(strings.Trim(escapedPath, "/"), "/")
	for i, seg := range segs {
		u, err := url.PathUnescape(seg)
		if err != nil || u == "" {
			return shopapp.RouteUnknown, nil
		}
		segs[i] = u
	}
	// Put the parameter names back where the values are, then look the template up.
	tmpl := append([]string{}, segs...)
	var params []string
	switch n := len(segs); {
	case segs[0] == "interfaces" && n >= 2:
		params, tmpl[1] = append(params, segs[1]), "{cle}"
		if n == 4 {
			params, tmpl[3] = append(params, segs[3]), "{code}"
		}
	case segs[0] == "prestation" && n == 2:
		params, tmpl[1] = append(params, segs[1]), "{code}"
	}
	route := method + " /" + strings.Join(tmpl, "/")
	if !slices.Contains(shopapp.Routes(), route) {
		return shopapp.RouteUnknown, nil
	}
	return route, params
}

// bodyFields reads a JSON object body into its fields; nil for an empty body or a non-object
// (POST /interfaces/{cle}/prestations may be a bare array).
func bodyFields(body []byte) (map[string]json.RawMessage, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != '{' {
		if !json.Valid(b) {
			return nil, errors.New("invalid JSON")
		}
		return nil, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return nil, err
	}
	return fields, nil
}

// param reads a parameter from the query, or else from the JSON body.
func param(r *http.Request, fields map[string]json.RawMessage, name string) string {
	if v := r.URL.Query().Get(name); v != "" {
		return v
	}
	var v string
	if raw, ok := fields[name]; ok {
		_ = json.Unmarshal(raw, &v) // not a string: absent
	}
	return v
}

// requestToken finds the token where the document allows it: the Authorization header, the
// token parameter of the URL, or a token field of the JSON body.
func requestToken(r *http.Request, fields map[string]json.RawMessage) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok)
		}
	}
	return param(r, fields, "token")
}

// serve answers an authenticated route. s.mu is held.
func (s *Sim) serve(route string, p []string, r *http.Request, body []byte, fields map[string]json.RawMessage) (any, *simError) {
	now := s.now()
	if route == shopapp.RouteToken {
		return s.issueToken(now, param(r, fields, "client_id"), param(r, fields, "client_secret"))
	}
	tok := requestToken(r, fields)
	if exp, ok := s.tokens[tok]; tok == "" || !ok || !now.Before(exp) {
		return nil, &simError{status: http.StatusUnauthorized, msg: "jeton manquant, invalide ou expiré"}
	}
	switch route {
	case shopapp.RouteInterfaces:
		return append([]string{}, s.keys...), nil
	case shopapp.RouteInterface:
		i, err := s.lookup(p[0], now)
		if err != nil {
			return nil, err
		}
		return i.detail(now), nil
	case shopapp.RouteCreateInterface:
		var req shopapp.CreateRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, badRequest("paramètres invalides : %v", err)
		}
		key, err := s.create(now, req)
		if err != nil {
			return nil, err
		}
		return map[string]string{"sa_key": key}, nil
	case shopapp.RouteDeleteInterface:
		return s.deleteInterface(now, p[0])
	case shopapp.RouteReactivateInterface:
		return s.reactivate(now, p[0])
	case shopapp.RouteInterfacePrestations:
		i, err := s.lookup(p[0], now)
		if err != nil {
			return nil, err
		}
		return i.codes(), nil
	case shopapp.RouteAddPrestations:
		codes, err := orderCodes(body, fields)
		if err != nil {
			return nil, err
		}
		return s.add(now, p[0], codes)
	case shopapp.RouteInterfacePrestation:
		i, err := s.lookup(p[0], now)
		if err != nil {
			return nil, err
		}
		occ := i.find(p[1])
		if len(occ) == 0 {
			return nil, badRequest("prestation %s absente de l'interface", p[1])
		}
		out := make([]shopapp.PrestationOccurrence, len(occ))
		for k, o := range occ {
			out[k] = o.wire()
		}
		return out, nil
	case shopapp.RouteCancelPrestation:
		return s.cancel(now, p[0], p[1])
	case shopapp.RoutePrestations:
		return append([]string{}, s.codes...), nil
	case shopapp.RoutePrestation:
		e, ok := s.catalogue[p[0]]
		if !ok {
			return nil, badRequest("prestation inconnue : %s", p[0])
		}
		return e, nil
	}
	return nil, badRequest("la route demandée n'est pas référencée")
}

// orderCodes reads the codes of POST /interfaces/{cle}/prestations: {"prestations": [...]} or a
// bare array, the document naming no field.
func orderCodes(body []byte, fields map[string]json.RawMessage) ([]string, *simError) {
	raw := json.RawMessage(body)
	if fields != nil {
		raw = fields["prestations"]
	}
	var codes []string
	if len(raw) == 0 || json.Unmarshal(raw, &codes) != nil {
		return nil, badRequest("le tableau des prestations est requis")
	}
	return codes, nil
}

func (s *Sim) issueToken(now time.Time, id, secret string) (any, *simError) {
	okID := subtle.ConstantTimeCompare([]byte(id), []byte(s.cfg.ClientID)) == 1
	okSecret := subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) == 1
	if !okID || !okSecret {
		return nil, &simError{status: http.StatusUnauthorized, msg: "identifiants invalides"}
	}
	for t, exp := range s.tokens {
		if !now.Before(exp) {
			delete(s.tokens, t)
		}
	}
	var b [24]byte
	_, _ = crand.Read(b[:])
	tok := "sim." + hex.EncodeToString(b[:])
	s.tokens[tok] = now.Add(s.cfg.TokenTTL)
	return shopapp.Token{
		AccessToken: tok,
		TokenType:   "bearer",
		ExpiresIn:   int(math.Ceil(s.cfg.TokenTTL.Seconds())),
	}, nil
}
