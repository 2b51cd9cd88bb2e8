package iciformationsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// API plays Ici Formation's polling API (CONTRACTS.md "Ici Formation"): GET /leads?dateStart=
// YYYY-MM-DD&dateEnd=YYYY-MM-DD with Authorization: Bearer <key> answers the leads recorded
// those days (Paris calendar days), each object with date_creation. It answers 401 for a
// missing or wrong key, 403 when Forbid is set, 429 with Retry-After for the next Throttle
// calls, and 500 for a bad date, as the real one does.
type API struct {
	key string
	loc *time.Location

	mu       sync.Mutex
	leads    []apiLead
	calls    int
	throttle int
	retry    time.Duration
	forbid   bool

	srv    *http.Server
	url    string
	served chan struct{}
}

type apiLead struct {
	body    []byte
	created time.Time
}

// StartAPI starts the polling API on a loopback port; key is the token it accepts.
func StartAPI(key string) (*API, error) {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		loc = time.UTC
	}
	a := &API{key: key, loc: loc}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("iciformationsim: listen: %w", err)
	}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	a.url = "http://" + ln.Addr().String() + "/api/webservice/leads"
	a.served = make(chan struct{})
	go func() {
		defer close(a.served)
		_ = a.srv.Serve(ln) // ErrServerClosed once Close is called
	}()
	return a, nil
}

// URL is the leads route's full address, what PASSERELLE_ICIFORMATION_API_URL takes.
func (a *API) URL() string { return a.url }

// Close stops the server.
func (a *API) Close() {
	_ = a.srv.Close()
	<-a.served
}

// Add records a lead (a webhook body, a JSON object) as created at created.
func (a *API) Add(body []byte, created time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.leads = append(a.leads, apiLead{body: bytes.Clone(body), created: created})
}

// Throttle makes the next n calls answer 429 with Retry-After (whole seconds, at least 1).
func (a *API) Throttle(n int, retryAfter time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.throttle, a.retry = n, retryAfter
}

// Forbid makes every call answer 403 (a revoked key) until called with false.
func (a *API) Forbid(on bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.forbid = on
}

// Calls counts the requests served, whatever their answer.
func (a *API) Calls() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	fail := func(status int, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
	}
	switch {
	case r.Method != http.MethodGet:
		fail(http.StatusMethodNotAllowed, "method not allowed")
		return
	case r.Header.Get("Authorization") != "Bearer "+a.key:
		fail(http.StatusUnauthorized, "Unauthorized")
		return
	case a.forbid:
		fail(http.StatusForbidden, "Forbidden")
		return
	case a.throttle > 0:
		a.throttle--
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(a.retry/time.Second))))
		fail(http.StatusTooManyRequests, "Too Many Requests")
		return
	}
	start, err1 := time.ParseInLocation(time.DateOnly, r.URL.Query().Get("dateStart"), a.loc)
	end, err2 := time.ParseInLocation(time.DateOnly, r.URL.Query().Get("dateEnd"), a.loc)
	if err1 != nil || err2 != nil || end.Before(start) {
		fail(http.StatusInternalServerError, "Invalid date")
		return
	}
	end = end.AddDate(0, 0, 1)
	out := []json.RawMessage{}
	for _, l := range a.leads {
		if l.created.Before(start) || !l.created.Before(end) {
			continue
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(l.body, &obj) != nil {
			continue
		}
		obj["date_creation"], _ = json.Marshal(l.created.In(a.loc).Format(time.RFC3339))
		b, _ := json.Marshal(obj) // decoded just above: always encodes
		out = append(out, b)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
