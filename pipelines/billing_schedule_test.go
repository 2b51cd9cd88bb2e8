package pipelines_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
)

// stubUploader stands in for the SFTP server where the test needs what no server does: a panic,
// or an upload that holds until released.
type stubUploader struct {
	calls   atomic.Int32
	panics  atomic.Bool   // panic while set
	release chan struct{} // nil: return at once
}

func (u *stubUploader) Upload(_ context.Context, name string, data []byte) (sftp.Result, error) {
	u.calls.Add(1)
	if u.panics.Load() {
		panic("stub uploader: boom")
	}
	if u.release != nil {
		<-u.release
	}
	return sftp.Result{RemotePath: "/in/" + name, Bytes: int64(len(data))}, nil
}

// logRecorder keeps the messages logged, for tests that wait for one.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}

func (r *logRecorder) count(substr string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

// startSchedule runs b's schedule (a tick every 20 ms) until the test ends.
func startSchedule(t *testing.T, b *pipelines.Billing, retryEvery time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.ScheduleEvery(ctx, 20*time.Millisecond, retryEvery) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("schedule: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("schedule did not stop")
		}
	})
}

func runsTotal(t testing.TB, reg prometheus.Gatherer, outcome string) float64 {
	t.Helper()
	return metricValue(t, reg, "passerelle_billing_runs_total", map[string]string{"outcome": outcome})
}

// TestBillingSchedulePanic: a run that panics is logged and counted, its period stays pending,
// and the schedule goes on: once the cause is gone, the next runs upload the period.
func TestBillingSchedulePanic(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := startSim(t, nil)
	st := newGoldenStore(t)
	reg := prometheus.NewRegistry()
	b := newBilling(t, st, newSimClient(t, sim, 1), reg)
	logs := &logRecorder{}
	b.Log = slog.New(logs)
	up := &stubUploader{}
	up.panics.Store(true)
	b.Uploader = up
	// The retry loop ticks too: its runs panic as well and must not kill the daemon either.
	startSchedule(t, b, 30*time.Millisecond)

	testwait.For(t, 10*time.Second, "panics counted and logged", func() bool {
		return runsTotal(t, reg, "panic") >= 2 && logs.count("panicked") >= 2
	})
	pending, err := st.BillingPending(ctx)
	require.NoError(t, err)
	require.Len(t, pending, 1)
	require.Equal(t, october.String(), pending[0].Period)
	require.Contains(t, pending[0].LastError, "panicked")
	_, uploaded, err := st.UploadFor(ctx, october.String())
	require.NoError(t, err)
	require.False(t, uploaded)

	up.panics.Store(false)
	testwait.For(t, 10*time.Second, "the schedule survived the panics and uploaded", func() bool {
		_, ok, err := st.UploadFor(ctx, october.String())
		return err == nil && ok
	})
	testwait.For(t, 10*time.Second, "the period is no longer pending", func() bool {
		p, err := st.BillingPending(ctx)
		return err == nil && len(p) == 0
	})
}

// TestBillingScheduleSkipsWhileRunning: ticks that come while a run still runs are skipped, not
// queued behind it.
func TestBillingScheduleSkipsWhileRunning(t *testing.T) {
	t.Parallel()
	sim := startSim(t, nil)
	st := newGoldenStore(t)
	reg := prometheus.NewRegistry()
	b := newBilling(t, st, newSimClient(t, sim, 1), reg)
	logs := &logRecorder{}
	b.Log = slog.New(logs)
	up := &stubUploader{release: make(chan struct{})}
	b.Uploader = up
	released := false
	t.Cleanup(func() {
		if !released {
			close(up.release)
		}
	})
	startSchedule(t, b, time.Hour)

	testwait.For(t, 10*time.Second, "first run uploading", func() bool { return up.calls.Load() == 1 })
	testwait.For(t, 10*time.Second, "ticks during the run are skipped", func() bool { return logs.count("tick skipped") >= 3 })
	require.Equal(t, int32(1), up.calls.Load(), "one upload while the run holds")
	require.Zero(t, runsTotal(t, reg, "uploaded")+runsTotal(t, reg, "already_uploaded"), "no other run finished meanwhile")

	close(up.release)
	released = true
	testwait.For(t, 10*time.Second, "the held run to finish", func() bool { return runsTotal(t, reg, "uploaded") == 1 })
	// Later ticks run again and find the period done.
	testwait.For(t, 10*time.Second, "a later tick to run", func() bool { return runsTotal(t, reg, "already_uploaded") >= 1 })
	require.Equal(t, int32(1), up.calls.Load())
}
