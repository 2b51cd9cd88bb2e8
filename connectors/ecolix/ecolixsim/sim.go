// Package ecolixsim is an in-memory Ecolix ERP API on loopback, for tests and the sandbox: the
// exports of CONTRACTS.md "Ecolix ERP" with modifie_depuis (inclusive), page and par_page, the
// client import (upsert on reference), and the contractual call limit counted over a sliding
// window, where every call past the limit is answered 429 and recorded as a breach.
package ecolixsim

import (
	"cmp"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/httpapi"
)

// Resources are the exports the simulator serves.
var Resources = []string{"clients", "devis", "commandes", "articles", "stocks"}

// MaxPerPage is the largest par_page the API accepts.
const MaxPerPage = 500

const (
	exportPrefix = "/api/v1/export/"
	importPath   = "/api/v1/import/clients"
	maxBody      = 1 << 20
)

// SimConfig configures a simulator. Zero values take the defaults given.
type SimConfig struct {
	// PerMinute is the contractual limit: calls allowed in any Window; 0 means no limit.
	PerMinute int
	// Window is the sliding window the limit is counted over; default one minute. Tests shorten it
	// to prove a budget in seconds.
	Window time.Duration
	// APIKey is the bearer token expected; default "ecolix-sandbox-key".
	APIKey string
	// DefaultPerPage applies when par_page is absent; default 100.
	DefaultPerPage int
	// Now is the clock of imported records' date_modification; default time.Now.
	Now func() time.Time
	// OnExport, if set, runs before an export page is served, outside the simulator's lock: a
	// test edits records there to move the set under a pull.
	OnExport func(resource string, page int)
}

// Call is one request the simulator received.
type Call struct {
	At       time.Time
	Method   string
	Resource string // the export's resource, or "import_clients"
	Page     int    // 0 for imports
	Status   int
}

type record struct {
	id     string
	seq    int // insertion order, the tie-break of the export's order
	mod    time.Time
	fields map[string]any
}

type fault struct {
	status     int
	retryAfter time.Duration
}

// Sim is a running simulator. It is safe for concurrent use.
type Sim struct {
	cfg SimConfig
	srv *http.Server
	url string

	mu     sync.Mutex
	seq    int
	nextID int
	data   map[string]map[string]*record
	// sorted caches each resource's records in export order, valid while seq is sortedAt[r]:
	// every write bumps seq, and a 100 000-record pull must not sort them again on every page.
	sorted    map[string][]*record
	sortedAt  map[string]int
	imports   map[string]string // reference → client id
	arrivals  []time.Time       // within the last window
	calls     []Call
	breaches  int
	maxWindow int
	failNext  []fault
	failPage  map[pageKey]int
	served    chan struct{}
}

type pageKey struct {
	resource string
	page     int
}

// Start runs a simulator on a loopback port.
func Start(cfg SimConfig) (*Sim, error) {
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	if cfg.APIKey == "" {
		cfg.APIKey = "ecolix-sandbox-key"
	}
	if cfg.DefaultPerPage <= 0 {
		cfg.DefaultPerPage = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PerMinute < 0 {
		return nil, fmt.Errorf("ecolixsim: PerMinute %d is negative", cfg.PerMinute)
	}
	s := &Sim{
		cfg:      cfg,
		nextID:   1,
		data:     make(map[string]map[string]*record),
		imports:  make(map[string]string),
		failPage: make(map[pageKey]int),
		served:   make(chan struct{}),
	}
	for _, r := range Resources {
		s.data[r] = make(map[string]*record)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("ecolixsim: listen: %w", err)
	}
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln) // returns ErrServerClosed on Close
	}()
	return s, nil
}

// URL is the base URL to configure the client with.
func (s *Sim) URL() string { return s.url }

// APIKey is the bearer token the simulator accepts.
func (s *Sim) APIKey() string { return s.cfg.APIKey }

// Close stops the server and waits for it.
func (s *Sim) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.served
}

// Put inserts or replaces records of resource; each needs an "id" (number or string) and a
// "date_modification" ("aaaa-mm-jj hh:mm:ss" Paris, or a time.Time).
func (s *Sim) Put(resource string, records ...map[string]any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tab, ok := s.data[resource]
	if !ok {
		return fmt.Errorf("ecolixsim: unknown resource %q", resource)
	}
	for i, in := range records {
		id := idString(in["id"])
		if id == "" {
			return fmt.Errorf("ecolixsim: %s record %d has no id", resource, i)
		}
		mod, err := modTime(in["date_modification"])
		if err != nil {
			return fmt.Errorf("ecolixsim: %s record %d: %w", resource, i, err)
		}
		f := make(map[string]any, len(in))
		for k, v := range in {
			f[k] = v
		}
		f["date_modification"] = frtime.Format(mod)
		s.seq++
		tab[id] = &record{id: id, seq: s.seq, mod: mod, fields: f}
		if n, err := strconv.Atoi(id); err == nil && n >= s.nextID {
			s.nextID = n + 1
		}
	}
	return nil
}

// Generate adds n records to resource with numeric ids, perInstant of them sharing each
// date_modification (one second apart from from on), to create ties across page boundaries.
// It returns the ids in export order.
func (s *Sim) Generate(resource string, n int, from time.Time, perInstant int) ([]string, error) {
	perInstant = max(perInstant, 1)
	s.mu.Lock()
	first := s.nextID
	s.nextID += n
	s.mu.Unlock()
	recs := make([]map[string]any, n)
	ids := make([]string, n)
	for i := range n {
		id := first + i
		ids[i] = strconv.Itoa(id)
		recs[i] = map[string]any{
			"id":                id,
			"date_modification": from.Add(time.Duration(i/perInstant) * time.Second),
			"libelle":           fmt.Sprintf("%s %d", resource, id),
			"reference":         fmt.Sprintf("REF-%06d", id),
		}
	}
	if err := s.Put(resource, recs...); err != nil {
		return nil, err
	}
	return ids, nil
}

// Touch sets date_modification of existing records, as an edit in the ERP would.
func (s *Sim) Touch(resource string, at time.Time, ids ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tab, ok := s.data[resource]
	if !ok {
		return fmt.Errorf("ecolixsim: unknown resource %q", resource)
	}
	at = at.Truncate(time.Second)
	for _, id := range ids {
		r, ok := tab[id]
		if !ok {
			return fmt.Errorf("ecolixsim: %s has no record %q", resource, id)
		}
		s.seq++
		r.seq, r.mod = s.seq, at
		r.fields["date_modification"] = frtime.Format(at)
	}
	return nil
}

// Imported returns the client id the import gave reference, if any.
func (s *Sim) Imported(reference string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.imports[reference]
	return id, ok
}

// FailNext answers the next n requests with status (after counting them against the limit),
// with a Retry-After header when retryAfter is positive.
func (s *Sim) FailNext(n, status int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failNext = append(s.failNext, fault{status: status, retryAfter: retryAfter})
	}
}

// FailPage answers status to every request for that page of resource's export until
// ClearFaults: a pull that fails part-way.
func (s *Sim) FailPage(resource string, page, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failPage[pageKey{resource, page}] = status
}

// ClearFaults removes every injected fault.
func (s *Sim) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = nil
	clear(s.failPage)
}

// Calls returns every request received, in arrival order.
func (s *Sim) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CallCount is len(Calls()).
func (s *Sim) CallCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// Breaches counts the calls that arrived past the limit: a test that sees one has proven its
// client exceeded the contract.
func (s *Sim) Breaches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.breaches
}

// MaxInAnyWindow is the most calls seen in any sliding window, the one that broke the limit
// included.
func (s *Sim) MaxInAnyWindow() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxWindow
}

// admit counts a call arriving at now over the sliding window (now-Window, now] and reports the
// wait before the window has room again when it is over the limit.
func (s *Sim) admit(now time.Time) (over bool, wait time.Duration) {
	cut := 0
	for cut < len(s.arrivals) && !s.arrivals[cut].After(now.Add(-s.cfg.Window)) {
		cut++
	}
	s.arrivals = append(s.arrivals[cut:], now)
	s.maxWindow = max(s.maxWindow, len(s.arrivals))
	if s.cfg.PerMinute == 0 || len(s.arrivals) <= s.cfg.PerMinute {
		return false, 0
	}
	s.breaches++
	// Room comes back when the call PerMinute places back leaves the window.
	oldest := s.arrivals[len(s.arrivals)-1-s.cfg.PerMinute]
	return true, oldest.Add(s.cfg.Window).Sub(now)
}

func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	call := Call{At: now, Method: r.Method}
	switch {
	case strings.HasPrefix(r.URL.Path, exportPrefix):
		call.Resource = strings.TrimPrefix(r.URL.Path, exportPrefix)
		call.Page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	case r.URL.Path == importPath:
		call.Resource = "import_clients"
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		s.mu.Lock()
		call.Status = sw.status
		s.calls = append(s.calls, call)
		s.mu.Unlock()
	}()

	s.mu.Lock()
	over, wait := s.admit(now)
	var f *fault
	if !over && len(s.failNext) > 0 {
		f = &s.failNext[0]
		s.failNext = s.failNext[1:]
	}
	pageStatus := s.failPage[pageKey{call.Resource, call.Page}]
	s.mu.Unlock()

	if over {
		setRetryAfter(sw, wait)
		httpapi.WriteError(sw, http.StatusTooManyRequests, "limite d'appels dépassée")
		return
	}
	if !s.authorized(r) {
		httpapi.WriteError(sw, http.StatusUnauthorized, "clé d'API invalide")
		return
	}
	if f != nil {
		setRetryAfter(sw, f.retryAfter)
		httpapi.WriteError(sw, f.status, "panne simulée")
		return
	}
	switch {
	case strings.HasPrefix(r.URL.Path, exportPrefix) && r.Method == http.MethodGet:
		if pageStatus != 0 {
			httpapi.WriteError(sw, pageStatus, "panne simulée")
			return
		}
		if s.cfg.OnExport != nil {
			s.cfg.OnExport(call.Resource, call.Page)
		}
		s.export(sw, r, call.Resource)
	case r.URL.Path == importPath && r.Method == http.MethodPost:
		s.importClient(sw, r)
	default:
		httpapi.WriteError(sw, http.StatusNotFound, "route inconnue")
	}
}

func (s *Sim) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.cfg.APIKey)) == 1
}

// setRetryAfter writes whole seconds, rounded up: the header has no finer unit.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d <= 0 {
		return
	}
	w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(d.Seconds()))))
}

type exportAnswer struct {
	Donnees []map[string]any `json:"donnees"`
	Page    int              `json:"page"`
	Pages   int              `json:"pages"`
	Total   int              `json:"total"`
}

func (s *Sim) export(w http.ResponseWriter, r *http.Request, resource string) {
	q := r.URL.Query()
	var since time.Time
	if v := q.Get("modifie_depuis"); v != "" {
		t, err := frtime.Parse(v)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "modifie_depuis invalide")
			return
		}
		since = t
	}
	page, perPage := 1, s.cfg.DefaultPerPage
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			httpapi.WriteError(w, http.StatusBadRequest, "page invalide")
			return
		}
		page = n
	}
	if v := q.Get("par_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPerPage {
			httpapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("par_page doit être entre 1 et %d", MaxPerPage))
			return
		}
		perPage = n
	}
	s.mu.Lock()
	tab, ok := s.data[resource]
	if !ok {
		s.mu.Unlock()
		httpapi.WriteError(w, http.StatusNotFound, "ressource inconnue")
		return
	}
	all, ok := s.sorted[resource]
	if !ok || s.sortedAt[resource] != s.seq {
		all = make([]*record, 0, len(tab))
		for _, rec := range tab {
			all = append(all, rec)
		}
		slices.SortFunc(all, func(a, b *record) int {
			return cmp.Or(a.mod.Compare(b.mod), cmp.Compare(a.seq, b.seq))
		})
		if s.sorted == nil {
			s.sorted, s.sortedAt = map[string][]*record{}, map[string]int{}
		}
		s.sorted[resource], s.sortedAt[resource] = all, s.seq
	}
	// Inclusive of since, as the contract says.
	from, _ := slices.BinarySearchFunc(all, since, func(r *record, t time.Time) int {
		if r.mod.Before(t) {
			return -1
		}
		return 1
	})
	sel := all[from:]
	ans := exportAnswer{Page: page, Total: len(sel), Pages: (len(sel) + perPage - 1) / perPage, Donnees: []map[string]any{}}
	for _, rec := range sel[min((page-1)*perPage, len(sel)):min(page*perPage, len(sel))] {
		f := make(map[string]any, len(rec.fields))
		for k, v := range rec.fields {
			f[k] = v
		}
		ans.Donnees = append(ans.Donnees, f)
	}
	s.mu.Unlock()
	httpapi.WriteJSON(w, http.StatusOK, ans)
}

// ClientImport is the body of POST /api/v1/import/clients.
type ClientImport struct {
	Reference  string `json:"reference"`
	Societe    string `json:"societe"`
	Nom        string `json:"nom"`
	Prenom     string `json:"prenom"`
	Email      string `json:"email"`
	Telephone  string `json:"telephone"`
	Adresse    string `json:"adresse"`
	CodePostal string `json:"code_postal"`
	Ville      string `json:"ville"`
}

func (s *Sim) importClient(w http.ResponseWriter, r *http.Request) {
	body, err := httpapi.ReadBody(w, r, maxBody)
	if errors.Is(err, httpapi.ErrTooLarge) {
		httpapi.WriteError(w, http.StatusRequestEntityTooLarge, "corps trop grand")
		return
	}
	if err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "corps illisible")
		return
	}
	var in ClientImport
	if err := json.Unmarshal(body, &in); err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "JSON invalide")
		return
	}
	if strings.TrimSpace(in.Reference) == "" {
		httpapi.WriteError(w, http.StatusBadRequest, "reference obligatoire")
		return
	}
	s.mu.Lock()
	id, found := s.imports[in.Reference]
	if !found {
		id = strconv.Itoa(s.nextID)
		s.nextID++
		s.imports[in.Reference] = id
	}
	s.seq++
	mod := s.cfg.Now().Truncate(time.Second)
	s.data["clients"][id] = &record{id: id, seq: s.seq, mod: mod, fields: map[string]any{
		"id": id, "date_modification": frtime.Format(mod), "reference": in.Reference,
		"societe": in.Societe, "nom": in.Nom, "prenom": in.Prenom, "email": in.Email,
		"telephone": in.Telephone, "adresse": in.Adresse, "code_postal": in.CodePostal, "ville": in.Ville,
	}}
	s.mu.Unlock()
	httpapi.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "cree": !found})
}

func idString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case json.Number:
		return v.String()
	}
	return ""
}

func modTime(v any) (time.Time, error) {
	switch v := v.(type) {
	case time.Time:
		return v.Truncate(time.Second), nil
	case string:
		return frtime.Parse(v)
	}
	return time.Time{}, errors.New("no date_modification")
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
