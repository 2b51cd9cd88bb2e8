package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/testwait"
)

func TestConcurrencyReachedNeverExceeded(t *testing.T) {
	t.Parallel()
	const conc, n = 8, 48
	tests := []struct {
		name string
		run  func(e *Engine, js []Job) []error
	}{
		{"Run", func(e *Engine, js []Job) []error { return e.Run(context.Background(), "ep", js) }},
		{"Do from many goroutines", func(e *Engine, js []Job) []error {
			// More callers than slots: they queue on the endpoint.
			errs := make([]error, len(js))
			var wg sync.WaitGroup
			for i, j := range js {
				wg.Go(func() { errs[i] = e.Do(context.Background(), "ep", j.Send) })
			}
			wg.Wait()
			return errs
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rcv := newReceiver(t, 50*time.Millisecond, nil)
			e := New(Config{Concurrency: conc}, nil)
			errs := tt.run(e, jobs(newClient(t), rcv.srv.URL, n))
			for i, err := range errs {
				require.NoError(t, err, "job %d", i)
			}
			require.EqualValues(t, n, rcv.total.Load())
			require.EqualValues(t, conc, rcv.most.Load(), "most requests at once at the receiver")
			require.Equal(t, EndpointState{Concurrency: conc}, e.State("ep"))
		})
	}
}

func TestRateNeverExceeded(t *testing.T) {
	t.Parallel()
	const perSecond, n = 20.0, 30
	rcv := newReceiver(t, 0, nil)
	e := New(Config{Concurrency: 8, Rate: perSecond}, nil)
	c := newClient(t)
	errs := make([]error, n)
	// The rate governs when the engine starts a send; arrival times at the receiver also carry
	// each request's own trip (a new connection's dial), so they are not what is measured.
	var mu sync.Mutex
	var at []time.Time
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = e.Do(context.Background(), "ep", func(ctx context.Context) error {
				mu.Lock()
				at = append(at, time.Now())
				mu.Unlock()
				return send(c, rcv.srv.URL, "", i)(ctx)
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "job %d", i)
	}
	require.Len(t, rcv.arrivalsCopy(), n)
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	// In any one-second window starting at a send: at most the rate plus the burst of 1. The
	// window is shortened by 100 ms of slack for scheduling jitter between the limiter's grant
	// and the send (2 busy cores under -race); a rate twice too high would still put 36 in it.
	for i := range at {
		in := 0
		for _, b := range at[i:] {
			if b.Sub(at[i]) < 900*time.Millisecond {
				in++
			}
		}
		require.LessOrEqual(t, in, int(perSecond)+1, "sends in the second from send %d", i)
	}
	// And the rate is reached, not merely respected: n sends span about (n-1)/rate.
	require.Greater(t, at[n-1].Sub(at[0]), time.Duration(float64(n-2)/perSecond*float64(time.Second)))
}

func TestEndpointDownDoesNotSlowOthers(t *testing.T) {
	t.Parallel()
	const conc = 8
	tests := []struct {
		name   string
		answer func(*http.Request, <-chan struct{}) (int, string)
		// tried: the down endpoint is in the state the case is about.
		tried func(e *Engine, down *receiver) bool
	}{
		{"hanging", func(r *http.Request, done <-chan struct{}) (int, string) {
			select {
			case <-r.Context().Done():
			case <-done:
			}
			return http.StatusServiceUnavailable, ""
		}, func(e *Engine, _ *receiver) bool { return e.State("down").InFlight == conc }},
		{"503", func(*http.Request, <-chan struct{}) (int, string) { return http.StatusServiceUnavailable, "" },
			func(_ *Engine, down *receiver) bool { return down.total.Load() >= conc }},
		{"503 with Retry-After", func(*http.Request, <-chan struct{}) (int, string) { return http.StatusServiceUnavailable, "1" },
			func(e *Engine, _ *receiver) bool { return e.State("down").PausedUntil.After(time.Now()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			down := newReceiver(t, 0, tt.answer)
			fast := newReceiver(t, 20*time.Millisecond, nil)
			c := newClient(t)
			e := New(Config{Concurrency: conc}, nil)

			downCtx, stopDown := context.WithCancel(context.Background())
			defer stopDown()
			downErrs := make(chan []error, 1)
			go func() { downErrs <- e.Run(downCtx, "down", jobs(c, down.srv.URL, 400)) }()
			testwait.For(t, 3*time.Second, "the down endpoint to be tried", func() bool { return tt.tried(e, down) })

			errs := e.Run(context.Background(), "fast", jobs(c, fast.srv.URL, 10*conc))
			for i, err := range errs {
				require.NoError(t, err, "fast job %d", i)
			}
			require.EqualValues(t, conc, fast.most.Load(), "the fast endpoint at full concurrency")

			stopDown()
			for i, err := range recv(t, downErrs) {
				require.Error(t, err, "down job %d", i)
				require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(err), "down job %d: %v", i, err)
			}
			require.LessOrEqual(t, down.most.Load(), int64(conc))
		})
	}
}

func TestRunKeepsKeyOrder(t *testing.T) {
	t.Parallel()
	const keys, perKey, loose = 16, 8, 40
	const failKey, failSeq = "k3", 2
	rcv := newReceiver(t, 0, func(r *http.Request, _ <-chan struct{}) (int, string) {
		// A little random latency lets the keys overtake each other.
		time.Sleep(time.Duration(rand.N(4000)) * time.Microsecond)
		if r.Header.Get("X-Key") == failKey && r.Header.Get("X-Seq") == fmt.Sprint(failSeq) {
			return http.StatusUnprocessableEntity, ""
		}
		return http.StatusOK, ""
	})
	c := newClient(t)
	e := New(Config{Concurrency: 8}, nil)

	// Keys interleaved, with jobs without a key among them.
	var js []Job
	type ks struct {
		key string
		seq int
	}
	var of []ks
	for seq := range perKey {
		for k := range keys {
			key := fmt.Sprintf("k%d", k)
			js = append(js, Job{Key: key, Send: send(c, rcv.srv.URL, key, seq)})
			of = append(of, ks{key, seq})
		}
		for range loose / perKey {
			js = append(js, Job{Send: send(c, rcv.srv.URL, "", 0)})
			of = append(of, ks{})
		}
	}
	errs := e.Run(context.Background(), "ep", js)

	for i, err := range errs {
		switch {
		case of[i].key == failKey && of[i].seq == failSeq:
			require.Equal(t, httpclient.Permanent, httpclient.OutcomeOf(err), "the failing job: %v", err)
		case of[i].key == failKey && of[i].seq > failSeq:
			require.ErrorIs(t, err, ErrSkipped, "job %d after the failure", i)
			require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(err))
		default:
			require.NoError(t, err, "job %d", i)
		}
	}
	got := make(map[string][]int)
	for _, a := range rcv.arrivalsCopy() {
		if a.key != "" {
			got[a.key] = append(got[a.key], a.seq)
		}
	}
	for k := range keys {
		key := fmt.Sprintf("k%d", k)
		want := []int{0, 1, 2, 3, 4, 5, 6, 7}
		if key == failKey {
			want = want[:failSeq+1]
		}
		require.Equal(t, want, got[key], "arrival order of key %s", key)
	}
	require.Greater(t, rcv.most.Load(), int64(1), "jobs ran concurrently")
}

func TestAIMD(t *testing.T) {
	t.Parallel()

	t.Run("a burst of 429s halves once", func(t *testing.T) {
		t.Parallel()
		const conc = 16
		all := make(chan struct{})
		var once sync.Once
		var rcv *receiver
		rcv = newReceiver(t, 0, func(r *http.Request, done <-chan struct{}) (int, string) {
			// Answer only when the whole burst is in flight.
			if rcv.total.Load() == conc {
				once.Do(func() { close(all) })
			}
			select {
			case <-all:
			case <-done:
			}
			return http.StatusTooManyRequests, ""
		})
		e := New(Config{Concurrency: conc}, nil)
		for _, err := range e.Run(context.Background(), "ep", jobs(newClient(t), rcv.srv.URL, conc)) {
			require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(err))
		}
		require.Equal(t, conc/2, e.State("ep").Concurrency)
	})

	t.Run("a storm lowers the concurrency, successes climb it back", func(t *testing.T) {
		t.Parallel()
		const conc = 16
		var storm sync.Mutex // held: 429
		storming := true
		rcv := newReceiver(t, 10*time.Millisecond, func(*http.Request, <-chan struct{}) (int, string) {
			storm.Lock()
			defer storm.Unlock()
			if storming {
				return http.StatusTooManyRequests, ""
			}
			return http.StatusOK, ""
		})
		c := newClient(t)
		reg := prometheus.NewRegistry()
		m := NewMetrics(reg)
		e := New(Config{Concurrency: conc, MinConcurrency: 1}, m)

		for _, err := range e.Run(context.Background(), "ep", jobs(c, rcv.srv.URL, 64)) {
			require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(err))
		}
		require.Equal(t, 1, e.State("ep").Concurrency, "halved down to the floor")
		require.InDelta(t, 1, testutil.ToFloat64(m.concurrency.WithLabelValues("ep")), 0)

		rcv.resetMost()
		for _, err := range e.Run(context.Background(), "ep", jobs(c, rcv.srv.URL, 8)) {
			require.Error(t, err)
		}
		require.EqualValues(t, 1, rcv.most.Load(), "the receiver sees one request at a time")

		storm.Lock()
		storming = false
		storm.Unlock()
		rcv.resetMost()
		// From 1 to 16 takes 1+2+…+15 = 120 successes.
		for i, err := range e.Run(context.Background(), "ep", jobs(c, rcv.srv.URL, 200)) {
			require.NoError(t, err, "job %d", i)
		}
		require.Equal(t, conc, e.State("ep").Concurrency, "climbed back")
		require.InDelta(t, conc, testutil.ToFloat64(m.concurrency.WithLabelValues("ep")), 0)
		require.Greater(t, rcv.most.Load(), int64(conc/2))
		require.LessOrEqual(t, rcv.most.Load(), int64(conc))
	})
}

func TestRetryAfterPausesOnlyItsEndpoint(t *testing.T) {
	t.Parallel()
	const conc = 4
	for _, status := range []int{http.StatusTooManyRequests, http.StatusServiceUnavailable} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			a := newReceiver(t, 0, func(r *http.Request, done <-chan struct{}) (int, string) {
				switch r.URL.Path {
				case "/slow":
					select {
					case <-release:
					case <-done:
					}
				case "/limit":
					return status, "1"
				}
				return http.StatusOK, ""
			})
			b := newReceiver(t, 5*time.Millisecond, nil)
			c := newClient(t)
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			e := New(Config{Concurrency: conc}, m)
			ctx := context.Background()

			slow := make(chan error, 1)
			go func() { slow <- e.Do(ctx, "a", send(c, a.srv.URL+"/slow", "", 0)) }()
			testwait.For(t, 3*time.Second, "the slow request in flight", func() bool { return a.cur.Load() == 1 })

			before := time.Now()
			err := e.Do(ctx, "a", send(c, a.srv.URL+"/limit", "", 0))
			require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(err))
			st := e.State("a")
			require.True(t, st.PausedUntil.After(before.Add(900*time.Millisecond)) && !st.PausedUntil.After(time.Now().Add(time.Second)),
				"paused until %v, a second after %v", st.PausedUntil, before)
			require.InDelta(t, 1, testutil.ToFloat64(m.paused.WithLabelValues("a")), 0.1, "seconds paused")
			wantConc := conc
			if status == http.StatusTooManyRequests {
				wantConc = conc / 2
			}
			require.Equal(t, wantConc, st.Concurrency)

			// The pause does not cancel what is in flight.
			close(release)
			require.NoError(t, recv(t, slow))

			// Another endpoint goes on.
			for i, err := range e.Run(ctx, "b", jobs(c, b.srv.URL, 20)) {
				require.NoError(t, err, "job %d to b", i)
			}
			require.True(t, time.Now().Before(st.PausedUntil), "b was served while a was paused")
			require.Zero(t, testutil.ToFloat64(m.paused.WithLabelValues("b")))

			// A caller whose deadline falls within the pause is answered at once, with the wait left.
			short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			defer cancel()
			begin := time.Now()
			err = e.Do(short, "a", send(c, a.srv.URL, "", 0))
			require.Less(t, time.Since(begin), 50*time.Millisecond)
			require.ErrorIs(t, err, ErrNotStarted)
			require.ErrorIs(t, err, context.DeadlineExceeded)
			require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(err))
			left, ok := httpclient.RetryAfterOf(err)
			require.True(t, ok && left > 0 && left <= time.Second, "retry after %v", left)

			// A caller that can wait is sent when the pause ends.
			total := a.total.Load()
			require.NoError(t, e.Do(ctx, "a", send(c, a.srv.URL, "", 0)))
			require.False(t, time.Now().Before(st.PausedUntil), "sent before the pause ended")
			require.Equal(t, total+1, a.total.Load())
		})
	}
}

func TestCanceledWhileWaiting(t *testing.T) {
	t.Parallel()

	t.Run("for a slot", func(t *testing.T) {
		t.Parallel()
		release := make(chan struct{})
		rcv := newReceiver(t, 0, func(r *http.Request, done <-chan struct{}) (int, string) {
			if r.URL.Path == "/hang" {
				select {
				case <-release:
				case <-done:
				}
			}
			return http.StatusOK, ""
		})
		c := newClient(t)
		e := New(Config{Concurrency: 1}, nil)
		hung := make(chan error, 1)
		go func() { hung <- e.Do(context.Background(), "ep", send(c, rcv.srv.URL+"/hang", "", 0)) }()
		testwait.For(t, 3*time.Second, "the slot taken", func() bool { return e.State("ep").InFlight == 1 })

		ctx, cancel := context.WithCancel(context.Background())
		waiting := make(chan error, 1)
		go func() { waiting <- e.Do(ctx, "ep", send(c, rcv.srv.URL, "", 0)) }()
		testwait.For(t, 3*time.Second, "a caller waiting", func() bool { return e.State("ep").Waiting == 1 })
		cancel()
		err := recv(t, waiting)
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, ErrNotStarted)
		require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(err))
		require.Equal(t, EndpointState{InFlight: 1, Concurrency: 1}, e.State("ep"))

		close(release)
		require.NoError(t, recv(t, hung))
		require.NoError(t, e.Do(context.Background(), "ep", send(c, rcv.srv.URL, "", 0)), "the slot was given back")
		require.EqualValues(t, 2, rcv.total.Load(), "the canceled call never reached the receiver")
	})

	t.Run("for the rate", func(t *testing.T) {
		t.Parallel()
		rcv := newReceiver(t, 0, nil)
		c := newClient(t)
		e := New(Config{Concurrency: 4, Rate: 0.2}, nil) // one every 5 s
		require.NoError(t, e.Do(context.Background(), "ep", send(c, rcv.srv.URL, "", 0)))
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		begin := time.Now()
		err := e.Do(ctx, "ep", send(c, rcv.srv.URL, "", 0))
		require.Less(t, time.Since(begin), time.Second)
		require.ErrorIs(t, err, ErrNotStarted)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, EndpointState{Concurrency: 4}, e.State("ep"))
	})

	t.Run("Run", func(t *testing.T) {
		t.Parallel()
		rcv := newReceiver(t, 0, nil)
		e := New(Config{}, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		js := jobs(newClient(t), rcv.srv.URL, 10)
		js = append(js, Job{Key: "k", Send: js[0].Send}, Job{Key: "k", Send: js[0].Send})
		errs := e.Run(ctx, "ep", js)
		for i, err := range errs[:len(errs)-1] {
			require.ErrorIs(t, err, ErrNotStarted, "job %d", i)
		}
		require.ErrorIs(t, errs[len(errs)-1], ErrSkipped)
		require.Zero(t, rcv.total.Load())
	})
}

func TestSendPanicFreesTheSlot(t *testing.T) {
	t.Parallel()
	e := New(Config{Concurrency: 1}, nil)
	require.Panics(t, func() {
		_ = e.Do(context.Background(), "ep", func(context.Context) error { panic("boom") })
	})
	require.Equal(t, EndpointState{Concurrency: 1}, e.State("ep"))
	require.NoError(t, e.Do(context.Background(), "ep", func(context.Context) error { return nil }))
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	m.Init("idle")
	require.Equal(t, 11, testutil.CollectAndCount(reg), "series of an endpoint before any delivery")

	statuses := []int{200, 200, 500, 410, 422}
	rcv := newReceiver(t, 0, func(r *http.Request, _ <-chan struct{}) (int, string) {
		var seq int
		_, _ = fmt.Sscan(r.Header.Get("X-Seq"), &seq)
		return statuses[seq], ""
	})
	c := newClient(t)
	e := New(Config{}, m)
	var js []Job
	for i := range statuses {
		js = append(js, Job{Send: send(c, rcv.srv.URL, "", i)})
	}
	e.Run(context.Background(), "host#1a2b3c4d", js)

	for outcome, want := range map[string]float64{"delivered": 2, "retry": 1, "gone": 1, "permanent": 1} {
		require.InDelta(t, want, testutil.ToFloat64(m.requests.WithLabelValues("host#1a2b3c4d", outcome)), 0, outcome)
	}
	require.Equal(t, 2, testutil.CollectAndCount(m.inFlight))
	require.Zero(t, testutil.ToFloat64(m.inFlight.WithLabelValues("host#1a2b3c4d")))
	require.InDelta(t, 32, testutil.ToFloat64(m.concurrency.WithLabelValues("host#1a2b3c4d")), 0)
	require.Equal(t, 8, testutil.CollectAndCount(m.duration), "histograms of two endpoints × four outcomes")
}

func TestErrors(t *testing.T) {
	t.Parallel()
	require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(ErrSkipped))
	require.False(t, errors.Is(ErrSkipped, ErrNotStarted))
}

func TestLearnsFromOneAnswer(t *testing.T) {
	t.Parallel()
	const conc = 8
	tests := []struct {
		status     int
		retryAfter string
		wantPause  time.Duration // upper bound; 0: not paused
		wantConc   int
	}{
		{http.StatusOK, "", 0, conc},
		{http.StatusTooManyRequests, "", 0, conc / 2},
		{http.StatusTooManyRequests, "60", 200 * time.Millisecond, conc / 2}, // capped at MaxPause
		{http.StatusServiceUnavailable, "", 0, conc},
		{http.StatusServiceUnavailable, "60", 200 * time.Millisecond, conc},
		{http.StatusInternalServerError, "1", 0, conc}, // only 429 and 503 pause
		{http.StatusGone, "", 0, conc},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d %q", tt.status, tt.retryAfter), func(t *testing.T) {
			t.Parallel()
			rcv := newReceiver(t, 0, func(*http.Request, <-chan struct{}) (int, string) { return tt.status, tt.retryAfter })
			e := New(Config{Concurrency: conc, MaxPause: 200 * time.Millisecond}, nil)
			_ = e.Do(context.Background(), "ep", send(newClient(t), rcv.srv.URL, "", 0))
			st := e.State("ep")
			require.Equal(t, tt.wantConc, st.Concurrency)
			if tt.wantPause == 0 {
				require.False(t, st.PausedUntil.After(time.Now()), "paused until %v", st.PausedUntil)
			} else {
				require.True(t, st.PausedUntil.After(time.Now()), "not paused")
				require.LessOrEqual(t, time.Until(st.PausedUntil), tt.wantPause)
			}
		})
	}
}
