// Package crmsim simulates a CRM webhook endpoint: a Receiver that verifies Standard Webhooks
// signatures, records what it accepts, and misbehaves on demand (statuses, Retry-After, slowness,
// resets). The tests and `passerelle sandbox` deliver to it; the daemon never imports it.
package crmsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

// FaultMode is how the Receiver misbehaves.
type FaultMode int

// Fault modes.
const (
	// FaultNone: verify and accept.
	FaultNone FaultMode = iota
	// FaultStatus: answer Fault.Status (500 if unset), with Fault.RetryAfter as Retry-After if set.
	FaultStatus
	// FaultSlow: wait Fault.Delay, then behave normally; a client that leaves first gets nothing.
	FaultSlow
	// FaultReset: drop the connection without answering.
	FaultReset
)

func (m FaultMode) String() string {
	switch m {
	case FaultNone:
		return "none"
	case FaultStatus:
		return "status"
	case FaultSlow:
		return "slow"
	case FaultReset:
		return "reset"
	}
	return "FaultMode(" + strconv.Itoa(int(m)) + ")"
}

// Fault is injected into the Receiver's next requests.
type Fault struct {
	Mode       FaultMode
	Status     int
	RetryAfter string
	Delay      time.Duration
	// Remaining is how many requests the fault applies to before the Receiver heals; 0 means
	// until the next SetFault.
	Remaining int
}

// Delivery is a request the Receiver accepted.
type Delivery struct {
	ID        string // webhook-id
	Timestamp int64  // webhook-timestamp
	Body      []byte
	Header    http.Header
	At        time.Time
}

// Attempt is any request the Receiver got, accepted or not.
type Attempt struct {
	At     time.Time
	Header http.Header
	Body   []byte
	// Status is what was answered; 0 when the connection was dropped or the client left.
	Status int
	// SignatureErr is stdwebhook.Verify's verdict at arrival, nil for a valid signature.
	SignatureErr error
}

// maxBody bounds what the Receiver reads of one request.
const maxBody = 1 << 20

// Receiver plays a CRM webhook endpoint: it verifies Standard Webhooks signatures, records what
// it accepts, and misbehaves on demand. It is safe for concurrent use.
type Receiver struct {
	secret string

	mu         sync.Mutex
	fault      Fault
	attempts   []Attempt
	deliveries []Delivery
	unique     map[string]int
	rejected   int
	changed    chan struct{} // closed and replaced on each accepted delivery

	srv    *http.Server
	url    string
	served chan struct{}
}

// NewReceiver returns a Receiver to mount on a server of one's own; Start also listens.
func New(secret string) (*Receiver, error) {
	if err := stdwebhook.CheckSecret(secret); err != nil {
		return nil, fmt.Errorf("crmsim: %w", err)
	}
	return &Receiver{secret: secret, unique: map[string]int{}, changed: make(chan struct{})}, nil
}

// StartReceiver starts a Receiver on a loopback port; any path of URL() reaches it.
func Start(secret string) (*Receiver, error) {
	r, err := New(secret)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("crmsim: listen: %w", err)
	}
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	r.url = "http://" + ln.Addr().String()
	r.served = make(chan struct{})
	go func() {
		defer close(r.served)
		_ = r.srv.Serve(ln) // always ErrServerClosed once Close is called
	}()
	return r, nil
}

// URL is the Receiver's base URL, empty unless started by Start.
func (r *Receiver) URL() string { return r.url }

// Close stops a started Receiver and drops its connections.
func (r *Receiver) Close() {
	if r.srv == nil {
		return
	}
	_ = r.srv.Close() // only returns the listener's close error, of no use to a test
	<-r.served
}

// SetFault replaces the current fault; Fault{} heals the Receiver.
func (r *Receiver) SetFault(f Fault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = f
}

// takeFault returns the fault for one request and counts it down.
func (r *Receiver) takeFault() Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.fault
	if f.Mode != FaultNone && f.Remaining > 0 {
		r.fault.Remaining--
		if r.fault.Remaining == 0 {
			r.fault = Fault{}
		}
	}
	return f
}

func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	a := Attempt{At: time.Now(), Header: req.Header.Clone()}
	status, msg := 0, ""
	if req.Method != http.MethodPost {
		status, msg = http.StatusMethodNotAllowed, "POST only"
	} else if body, err := httpapi.ReadBody(w, req, maxBody); err != nil {
		status, msg = http.StatusBadRequest, "cannot read body"
		if errors.Is(err, httpapi.ErrTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
	} else {
		a.Body = body
		a.SignatureErr = stdwebhook.Verify(r.secret, req.Header, body, a.At)
	}
	// Recorded on arrival and its status set before answering, so that a client holding the
	// answer finds the Receiver's counters up to date.
	i := r.arrive(a)
	if status != 0 {
		r.answered(i, status)
		httpapi.WriteError(w, status, msg)
		return
	}

	switch f := r.takeFault(); f.Mode {
	case FaultStatus:
		status = f.Status
		if status == 0 {
			status = http.StatusInternalServerError
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		r.answered(i, status)
		httpapi.WriteError(w, status, "injected fault")
		return
	case FaultReset:
		reset(w)
		return
	case FaultSlow:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-req.Context().Done():
			return
		case <-t.C:
		}
	}

	if a.SignatureErr != nil {
		r.mu.Lock()
		r.rejected++
		r.attempts[i].Status = http.StatusUnauthorized
		r.mu.Unlock()
		httpapi.WriteError(w, http.StatusUnauthorized, "invalid signature")
		return
	}
	r.accept(i, Delivery{ID: req.Header.Get(stdwebhook.HeaderID), Body: a.Body, Header: a.Header, At: a.At})
	w.WriteHeader(http.StatusOK)
}

// reset closes the connection under the request, with an RST where the platform allows, so the
// client sees no answer at all.
func reset(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler) // the server drops the connection without logging
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}

func (r *Receiver) accept(i int, d Delivery) {
	// Verify has parsed it already.
	d.Timestamp, _ = strconv.ParseInt(d.Header.Get(stdwebhook.HeaderTimestamp), 10, 64)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[i].Status = http.StatusOK
	r.deliveries = append(r.deliveries, d)
	r.unique[d.ID]++
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Receiver) arrive(a Attempt) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, a)
	return len(r.attempts) - 1
}

func (r *Receiver) answered(i, status int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[i].Status = status
}

// Deliveries returns the accepted deliveries, in arrival order.
func (r *Receiver) Deliveries() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Delivery(nil), r.deliveries...)
}

// UniqueIDs counts accepted deliveries per webhook-id: a count above 1 is a duplicate.
func (r *Receiver) UniqueIDs() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int, len(r.unique))
	for k, v := range r.unique {
		m[k] = v
	}
	return m
}

// Rejected counts requests answered 401 for a bad or missing signature.
func (r *Receiver) Rejected() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rejected
}

// Attempts counts every request received, whatever the answer.
func (r *Receiver) Attempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.attempts)
}

// AttemptLog returns every request received, in arrival order.
func (r *Receiver) AttemptLog() []Attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Attempt(nil), r.attempts...)
}

// WaitForUnique waits until deliveries with at least n distinct webhook-ids were accepted.
func (r *Receiver) WaitForUnique(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		got, changed := len(r.unique), r.changed
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("crmsim: %d unique deliveries of %d: %w", got, n, ctx.Err())
		case <-changed:
		}
	}
}
