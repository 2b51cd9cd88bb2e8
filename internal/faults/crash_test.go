package faults_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

// crashEnv is a single daemon's surroundings on the embedded broker and SQLite: a data dir, a
// token and a CRM receiver, shared by a run and its restart.
func crashEnv(t *testing.T, extra ...string) ([]string, *crmsim.Receiver, string) {
	t.Helper()
	secret, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	rcv, err := crmsim.Start(secret)
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	const token = "crash-token"
	return append(baseEnv(t.TempDir(), token, rcv, secret), extra...), rcv, token
}

// kill -9 right after the last lead was answered 200, then restart on the same data dir: every lead
// answered 200 reaches the CRM, and the few sent twice carry their webhook-id both times.
func TestKillNineLosesNoAcceptedLead(t *testing.T) {
	t.Parallel()
	const (
		leads       = 500
		concurrency = 8
		// The CRM stage holds at most this many messages unacknowledged (broker.ConsumerConfig).
		maxAckPending = 64
	)
	env, rcv, token := crashEnv(t)
	d := startDaemon(t, "passerelle", env)
	client := &http.Client{Timeout: 15 * time.Second}
	tl := newTally()
	var wg sync.WaitGroup
	next := make(chan int)
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				body := lead("crash", i)
				tl.record(body, post(client, d.hookURL(), token, body))
			}
		})
	}
	for i := range leads {
		next <- i
	}
	close(next)
	wg.Wait()
	_, _ = d.stop(syscall.SIGKILL, 10*time.Second)
	require.Equal(t, leads, tl.result(rcv).Answered200, "every lead answered 200 (answers: %v)", tl.result(rcv).Statuses)

	before := rcv.UniqueIDs()
	for id, n := range before {
		require.Equal(t, 1, n, "event %s delivered twice before the kill", id)
	}

	restarted := startDaemon(t, "passerelle-restarted", env)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, rcv.WaitForUnique(ctx, leads), "after the restart")
	// Late repeats, if any, have shown once no stage has anything left to deliver.
	restarted.waitIdle(t)
	r := tl.result(rcv)
	report(t, "kill -9, one process", r)
	require.Zero(t, unknownIDs(rcv, tl), "no event id other than those posted")
	for _, dl := range rcv.Deliveries() {
		var env struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal(dl.Body, &env))
		require.Equal(t, dl.ID, env.ID, "webhook-id is the event id, on every delivery")
	}
	require.Zero(t, rcv.Rejected(), "every delivery validly signed")
	t.Logf("%d leads, %d delivered before the kill, %d repeated after the restart", leads, len(before), r.Repeats)
	// Only a lead the CRM had before the kill can come again, and only one still unacknowledged.
	require.LessOrEqual(t, r.Repeats, len(before))
	require.LessOrEqual(t, r.Repeats, maxAckPending)
}

// SIGTERM: the daemon stops gracefully and exits 0 within the shutdown timeout.
func TestSIGTERMExitsZero(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 5 * time.Second
	env, rcv, token := crashEnv(t, "PASSERELLE_SHUTDOWN_TIMEOUT="+shutdownTimeout.String())
	d := startDaemon(t, "passerelle", env)
	client := &http.Client{Timeout: 15 * time.Second}
	for i := range 5 {
		require.Equal(t, http.StatusOK, post(client, d.hookURL(), token, lead("sigterm", i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rcv.WaitForUnique(ctx, 5))

	code, took := d.stop(syscall.SIGTERM, shutdownTimeout+5*time.Second)
	t.Logf("SIGTERM: exit %d after %s", code, took)
	require.Equal(t, 0, code, "exit code after SIGTERM")
	require.LessOrEqual(t, took, shutdownTimeout)
	b, err := os.ReadFile(d.logPath)
	require.NoError(t, err)
	require.NotContains(t, string(b), `"level":"ERROR"`, "a clean stop logs no error")
}
