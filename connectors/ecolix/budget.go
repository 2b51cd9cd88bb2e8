package ecolix

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The budget's safety margin: n calls are spread over the window plus a slack, so that network
// and scheduling jitter (a call delayed more on its way than the one n calls later) cannot put
// n+1 arrivals inside one window at the server. The slack is 2% of the window (1.2 s of a
// minute), and never under minSlack, since jitter does not shrink with the window.
const (
	slackDiv = 50
	minSlack = 100 * time.Millisecond
)

// Budget is the one allowance of calls to Ecolix, shared by every resource and the import: a
// token bucket of capacity 1 refilled at n per window, so no burst ever passes the contractual
// limit, whatever the number of callers. Pause holds every caller, for a 429's Retry-After.
// It is safe for concurrent use.
type Budget struct {
	lim      *rate.Limiter
	interval time.Duration

	mu    sync.Mutex
	until time.Time // no call before this instant
}

// NewBudget allows perMin calls per sliding minute; below 1 it is taken as 1, the cautious
// reading of a missing limit.
func NewBudget(perMin int) *Budget { return NewBudgetWindow(perMin, time.Minute) }

// NewBudgetWindow allows n calls per sliding window; tests shorten the window to prove the
// budget in seconds.
func NewBudgetWindow(n int, window time.Duration) *Budget {
	n = max(n, 1)
	if window <= 0 {
		window = time.Minute
	}
	interval := (window + max(window/slackDiv, minSlack)) / time.Duration(n)
	return &Budget{lim: rate.NewLimiter(rate.Every(interval), 1), interval: interval}
}

// Interval is the spacing between two calls, the floor of a long pull's duration per page.
func (b *Budget) Interval() time.Duration { return b.interval }

// Wait blocks until a call may be made, or ctx is done.
func (b *Budget) Wait(ctx context.Context) error {
	for {
		if d := b.Paused(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("ecolix: waiting out a pause of the call budget: %w", ctx.Err())
			case <-t.C:
			}
		}
		if err := b.lim.Wait(ctx); err != nil {
			return fmt.Errorf("ecolix: waiting for the call budget: %w", err)
		}
		// A pause that began while this caller waited voids its token: take a fresh one after
		// the pause, so waiters leave it one by one rather than all at once.
		if b.Paused() <= 0 {
			return nil
		}
	}
}

// Pause holds every caller for d from now (a longer pause already set is kept).
func (b *Budget) Pause(d time.Duration) {
	if d <= 0 {
		return
	}
	until := time.Now().Add(d)
	b.mu.Lock()
	if until.After(b.until) {
		b.until = until
	}
	b.mu.Unlock()
}

// Paused is what is left of the current pause, 0 when none.
func (b *Budget) Paused() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return max(time.Until(b.until), 0)
}
