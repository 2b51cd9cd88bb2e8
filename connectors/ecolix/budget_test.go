package ecolix

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBudgetInterval(t *testing.T) {
	for _, tc := range []struct {
		n      int
		window time.Duration
		want   time.Duration
	}{
		{60, time.Minute, 1020 * time.Millisecond}, // 2% slack
		{600, time.Minute, 102 * time.Millisecond},
		{0, time.Minute, 61200 * time.Millisecond},    // no limit given: the most cautious
		{20, 2 * time.Second, 105 * time.Millisecond}, // the slack's floor
	} {
		if got := NewBudgetWindow(tc.n, tc.window).Interval(); got != tc.want {
			t.Errorf("NewBudgetWindow(%d, %s).Interval() = %s, want %s", tc.n, tc.window, got, tc.want)
		}
	}
	if got, want := NewBudget(60).Interval(), NewBudgetWindow(60, time.Minute).Interval(); got != want {
		t.Errorf("NewBudget(60) = %s, want %s", got, want)
	}
}

// Concurrent callers get tokens one interval apart, never two at once.
func TestBudgetSpacesConcurrentCallers(t *testing.T) {
	t.Parallel()
	b := NewBudgetWindow(10, 400*time.Millisecond) // 50 ms apart
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []time.Time
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			if err := b.Wait(ctx); err != nil {
				errs <- err
				return
			}
			mu.Lock()
			got = append(got, time.Now())
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	first, last := got[0], got[0]
	for _, g := range got {
		if g.Before(first) {
			first = g
		}
		if g.After(last) {
			last = g
		}
	}
	// 8 tokens: the first at once, 7 intervals after it (timers never fire early).
	require.GreaterOrEqual(t, last.Sub(first), 7*b.Interval()-time.Millisecond)
}

func TestBudgetPauseHoldsEveryCaller(t *testing.T) {
	t.Parallel()
	b := NewBudgetWindow(1000, time.Second)
	b.Pause(150 * time.Millisecond)
	b.Pause(time.Millisecond) // a shorter pause does not cut the longer one
	start := time.Now()
	require.NoError(t, b.Wait(context.Background()))
	require.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond-time.Millisecond)
	require.Zero(t, b.Paused())

	b.Pause(time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, b.Wait(ctx), context.DeadlineExceeded)
}
