// Package delivery is the engine every outbound HTTP sink sends through (the CRM sink now; Bi-way,
// Simplébo, Ecolix import and Shop Application provisioning next). It knows nothing of HTTP: a job
// is a func(ctx) error whose error the outcome table of internal/httpclient classifies. Per
// endpoint, it bounds the requests in flight and their rate, honours Retry-After by pausing that
// endpoint alone, and finds the endpoint's own rate limit by AIMD on 429s. Run adds per-key order
// over a batch. Long retries stay with the caller (the broker's redelivery).
package delivery

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// Config bounds each endpoint. Zero values take the defaults.
type Config struct {
	// Concurrency is the most requests in flight per endpoint, and the ceiling AIMD climbs back
	// to; default 32.
	Concurrency int
	// MinConcurrency is the floor AIMD never halves below; default 1, at most Concurrency.
	MinConcurrency int
	// Rate is the most requests started per second per endpoint (burst 1); 0 is unlimited.
	Rate float64
	// MaxPause is the longest Retry-After honoured; default 5m.
	MaxPause time.Duration
}

func (c Config) withDefaults() Config {
	if c.Concurrency <= 0 {
		c.Concurrency = 32
	}
	if c.MinConcurrency <= 0 {
		c.MinConcurrency = 1
	}
	c.MinConcurrency = min(c.MinConcurrency, c.Concurrency)
	if c.Rate < 0 {
		c.Rate = 0
	}
	if c.MaxPause <= 0 {
		c.MaxPause = 5 * time.Minute
	}
	return c
}

// ErrNotStarted is wrapped (with the context's error) by the Retry-classified error Do returns
// when send could not start before ctx ended.
var ErrNotStarted = errors.New("delivery not started")

// connector names the engine in the *httpclient.Error it returns for a job it did not start.
const connector = "delivery"

// Engine runs jobs under per-endpoint limits. It is safe for concurrent use. It keeps the state of
// every endpoint it has seen, so endpoint ids must be a bounded set (one per configured URL).
type Engine struct {
	cfg Config
	m   *Metrics

	mu  sync.Mutex
	eps map[string]*endpoint
}

// New builds an Engine; m (nil for none) measures it.
func New(cfg Config, m *Metrics) *Engine {
	return &Engine{cfg: cfg.withDefaults(), m: m, eps: make(map[string]*endpoint)}
}

// EndpointState is a snapshot of one endpoint's limits.
type EndpointState struct {
	// InFlight counts the sends running.
	InFlight int
	// Waiting counts the calls waiting for a slot.
	Waiting int
	// Concurrency is the current most in flight, as AIMD set it.
	Concurrency int
	// PausedUntil is when a Retry-After pause ends; zero or past when not paused.
	PausedUntil time.Time
}

// State reports endpoint's current limits (the configured ones for an endpoint not yet used).
func (e *Engine) State(endpoint string) EndpointState {
	e.mu.Lock()
	ep := e.eps[endpoint]
	e.mu.Unlock()
	if ep == nil {
		return EndpointState{Concurrency: e.cfg.Concurrency}
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return EndpointState{InFlight: ep.inFlight, Waiting: len(ep.queue), Concurrency: ep.limit, PausedUntil: ep.pausedUntil}
}

// Do runs send for endpoint under that endpoint's limits: it waits for a slot (in flight below the
// endpoint's current concurrency), for any Retry-After pause, and for the rate; then runs send
// with ctx and learns from its outcome. It returns send's error, or, when send could not start
// before ctx ended, a Retry-classified *httpclient.Error wrapping ErrNotStarted and ctx's error
// (with the pause left as RetryAfter). When ctx's deadline falls before a pause ends, it returns
// at once.
func (e *Engine) Do(ctx context.Context, endpoint string, send func(ctx context.Context) error) error {
	ep := e.endpoint(endpoint)
	var epoch uint64
	for {
		if err := ep.acquire(ctx); err != nil {
			return err
		}
		if err := ep.waitRate(ctx); err != nil {
			ep.giveBack()
			return err
		}
		var ok bool
		if epoch, ok = ep.start(); ok {
			break
		}
		// A pause began while this call waited for the rate: wait for it like the others.
	}
	begin := time.Now()
	finished := false
	defer func() {
		if !finished { // send panicked: free the slot, learn nothing
			ep.finish(epoch, errPanicked, time.Since(begin))
		}
	}()
	err := send(ctx)
	finished = true
	ep.finish(epoch, err, time.Since(begin))
	return err
}

var errPanicked = errors.New("send panicked")

func (e *Engine) endpoint(id string) *endpoint {
	e.mu.Lock()
	defer e.mu.Unlock()
	ep := e.eps[id]
	if ep == nil {
		ep = &endpoint{id: id, cfg: e.cfg, limit: e.cfg.Concurrency, obs: e.m.observer(id)}
		if e.cfg.Rate > 0 {
			ep.limiter = rate.NewLimiter(rate.Limit(e.cfg.Rate), 1)
		}
		ep.obs.setConcurrency(ep.limit)
		e.eps[id] = ep
	}
	return ep
}

// endpoint is one endpoint's limits. Slots are handed out in arrival order, so a call is not
// starved by later ones.
type endpoint struct {
	id      string
	cfg     Config
	limiter *rate.Limiter // nil: unlimited
	obs     observer

	mu          sync.Mutex
	slots       int // taken: sending, or waiting for the rate
	inFlight    int // sending
	limit       int // current concurrency
	queue       []*waiter
	pausedUntil time.Time
	wake        *time.Timer // dispatches when a pause ends, while calls wait
	// epoch counts the decreases: a 429 from a send started before the last one is part of the
	// burst that caused it and does not halve again.
	epoch     uint64
	successes int // since the last change of limit
}

type waiter struct {
	ready   chan struct{} // closed when the slot is granted
	granted bool
}

// acquire takes a slot, in arrival order, when the endpoint is not paused.
func (ep *endpoint) acquire(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return ep.notStarted(err)
	}
	ep.mu.Lock()
	now := time.Now()
	if ep.pausedUntil.After(now) {
		if dl, ok := ctx.Deadline(); ok && dl.Before(ep.pausedUntil) {
			ep.mu.Unlock()
			return ep.notStarted(context.DeadlineExceeded)
		}
	} else if len(ep.queue) == 0 && ep.slots < ep.limit {
		ep.slots++
		ep.mu.Unlock()
		return nil
	}
	w := &waiter{ready: make(chan struct{})}
	ep.queue = append(ep.queue, w)
	ep.dispatch(now) // arms the wake-up timer if paused
	ep.mu.Unlock()

	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	ep.mu.Lock()
	if w.granted { // granted as ctx ended: hand it on
		ep.slots--
		ep.dispatch(time.Now())
	} else {
		ep.queue = slices.DeleteFunc(ep.queue, func(q *waiter) bool { return q == w })
	}
	ep.mu.Unlock()
	return ep.notStarted(ctx.Err())
}

// waitRate waits for the rate limiter's next token, holding the slot so that sends, not tokens,
// are spaced.
func (ep *endpoint) waitRate(ctx context.Context) error {
	if ep.limiter == nil {
		return nil
	}
	r := ep.limiter.Reserve()
	d := r.Delay()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		r.Cancel()
		return ep.notStarted(ctx.Err())
	}
}

// start turns a slot into a send, unless a pause began meanwhile (then the slot is given back).
func (ep *endpoint) start() (epoch uint64, ok bool) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.pausedUntil.After(time.Now()) {
		ep.slots--
		ep.dispatch(time.Now())
		return 0, false
	}
	ep.inFlight++
	ep.obs.setInFlight(ep.inFlight)
	return ep.epoch, true
}

func (ep *endpoint) giveBack() {
	ep.mu.Lock()
	ep.slots--
	ep.dispatch(time.Now())
	ep.mu.Unlock()
}

// finish frees the send's slot and learns from its outcome: a Retry-After on a 429 or 503 pauses
// the endpoint, a 429 halves its concurrency once per window, successes climb it back by one per
// current-concurrency successes.
func (ep *endpoint) finish(epoch uint64, err error, took time.Duration) {
	outcome := httpclient.OutcomeOf(err)
	ep.obs.observe(outcome, took)

	ep.mu.Lock()
	defer ep.mu.Unlock()
	ep.slots--
	ep.inFlight--
	ep.obs.setInFlight(ep.inFlight)
	now := time.Now()
	status := httpclient.StatusOf(err)
	switch {
	case err == nil:
		ep.successes++
		if ep.successes >= ep.limit {
			ep.successes = 0
			if ep.limit < ep.cfg.Concurrency {
				ep.limit++
				ep.obs.setConcurrency(ep.limit)
			}
		}
	case status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable:
		// Any connector's error that tells its status and Retry-After (httpclient.StatusOf,
		// RetryAfterOf), not only *httpclient.Error.
		if ra, ok := httpclient.RetryAfterOf(err); ok {
			until := now.Add(min(ra, ep.cfg.MaxPause))
			if until.After(ep.pausedUntil) {
				// Count only what this answer adds to a pause already running.
				ep.obs.addPaused(until.Sub(later(ep.pausedUntil, now)))
				ep.pausedUntil = until
			}
		}
		if status == http.StatusTooManyRequests && epoch == ep.epoch {
			ep.epoch++
			ep.successes = 0
			if l := max(ep.limit/2, ep.cfg.MinConcurrency); l != ep.limit {
				ep.limit = l
				ep.obs.setConcurrency(l)
			}
		}
	}
	ep.dispatch(now)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// dispatch grants free slots to the waiting calls in order, or, while paused, arms a timer to do
// so when the pause ends. ep.mu is held.
func (ep *endpoint) dispatch(now time.Time) {
	if len(ep.queue) == 0 {
		return
	}
	if ep.pausedUntil.After(now) {
		if ep.wake == nil {
			ep.wake = time.AfterFunc(ep.pausedUntil.Sub(now), func() {
				ep.mu.Lock()
				ep.wake = nil
				ep.dispatch(time.Now()) // re-arms if the pause was extended meanwhile
				ep.mu.Unlock()
			})
		}
		return
	}
	for len(ep.queue) > 0 && ep.slots < ep.limit {
		w := ep.queue[0]
		ep.queue[0] = nil
		ep.queue = ep.queue[1:]
		w.granted = true
		ep.slots++
		close(w.ready)
	}
}

// notStarted is the error of a call that ctx ended before it could send; it carries what is left
// of a pause, for the caller's next attempt.
func (ep *endpoint) notStarted(cause error) error {
	ep.mu.Lock()
	wait := time.Until(ep.pausedUntil)
	ep.mu.Unlock()
	return &httpclient.Error{
		Connector:  connector,
		Endpoint:   ep.id,
		Outcome:    httpclient.Retry,
		RetryAfter: max(wait, 0),
		Err:        fmt.Errorf("%w: %w", ErrNotStarted, cause),
	}
}
