package delivery

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// receiver is a loopback endpoint for the tests: it holds each request for its latency, counts
// the requests in flight (and the most seen at once), then answers by the test's rule.
type receiver struct {
	srv     *httptest.Server
	latency time.Duration
	// answer picks the status and Retry-After of a request; nil answers 200. It may block: it
	// gets a channel closed when the test ends.
	answer func(r *http.Request, done <-chan struct{}) (status int, retryAfter string)

	cur, most, total atomic.Int64
	handled          atomic.Int64 // nanoseconds spent holding requests, for the benchmark's ceiling

	mu       sync.Mutex
	arrivals []arrival
}

type arrival struct {
	at  time.Time
	key string
	seq int
}

func newReceiver(tb testing.TB, latency time.Duration, answer func(*http.Request, <-chan struct{}) (int, string)) *receiver {
	tb.Helper()
	r := &receiver{latency: latency, answer: answer}
	done := make(chan struct{})
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		begin := time.Now()
		n := r.cur.Add(1)
		for m := r.most.Load(); n > m && !r.most.CompareAndSwap(m, n); m = r.most.Load() {
		}
		r.total.Add(1)
		seq, _ := strconv.Atoi(req.Header.Get("X-Seq"))
		r.mu.Lock()
		r.arrivals = append(r.arrivals, arrival{at: begin, key: req.Header.Get("X-Key"), seq: seq})
		r.mu.Unlock()

		if r.latency > 0 {
			t := time.NewTimer(r.latency)
			select {
			case <-t.C:
			case <-req.Context().Done():
				t.Stop()
			}
		}
		status, retryAfter := http.StatusOK, ""
		if r.answer != nil {
			status, retryAfter = r.answer(req, done)
		}
		// Leave the count before answering, so the client's next request never overlaps this one.
		r.cur.Add(-1)
		r.handled.Add(int64(time.Since(begin)))
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
	}))
	// Cleanups run last-in first-out: release the blocked handlers, then close the server.
	tb.Cleanup(r.srv.Close)
	tb.Cleanup(func() { close(done) })
	return r
}

// resetMost starts counting the most requests at once afresh.
func (r *receiver) resetMost() { r.most.Store(r.cur.Load()) }

func (r *receiver) arrivalsCopy() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]arrival(nil), r.arrivals...)
}

// client is an HTTP client whose pool holds the tests' concurrency.
func newClient(tb testing.TB) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 128
	c := &http.Client{Transport: t, Timeout: 10 * time.Second}
	tb.Cleanup(c.CloseIdleConnections)
	return c
}

// send is a job: one POST to url, its answer mapped to the outcome table as a connector's client
// does (an *httpclient.Error with the status, outcome and Retry-After).
func send(c *http.Client, url, key string, seq int) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
		if err != nil {
			return &httpclient.Error{Connector: "test", Endpoint: "receiver", Outcome: httpclient.Permanent, Err: err}
		}
		if key != "" {
			req.Header.Set("X-Key", key)
		}
		req.Header.Set("X-Seq", strconv.Itoa(seq))
		resp, err := c.Do(req)
		if err != nil {
			return &httpclient.Error{Connector: "test", Endpoint: "receiver", Outcome: httpclient.Retry, Err: err}
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		out := httpclient.Classify(resp.StatusCode)
		if out == httpclient.Delivered {
			return nil
		}
		ra, _ := httpclient.ResponseRetryAfter(resp)
		return &httpclient.Error{Connector: "test", Endpoint: "receiver", Status: resp.StatusCode, Attempts: 1, Outcome: out, RetryAfter: ra}
	}
}

// jobs are n jobs to url without a key.
func jobs(c *http.Client, url string, n int) []Job {
	js := make([]Job, n)
	for i := range js {
		js[i] = Job{Send: send(c, url, "", i)}
	}
	return js
}

// recv waits for a value from ch, failing the test after 5 s.
func recv[T any](tb testing.TB, ch <-chan T) T {
	tb.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		tb.Fatal("timed out waiting for a result")
		panic("unreachable")
	}
}
