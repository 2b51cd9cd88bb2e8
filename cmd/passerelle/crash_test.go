package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/transforms"
)

// The daemon binary is built once per test run, into binDir, by the first test that needs it.
var (
	binDir  string
	binOnce sync.Once
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "passerelle-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir for the daemon binary:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// daemonBinary builds ./cmd/passerelle (without the race detector: it is the subject, not the test).
func daemonBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		// go test puts its own go command first on PATH.
		goBin, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("no go command on PATH: %w", err)
			return
		}
		binPath = filepath.Join(binDir, "passerelle")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goBin, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	require.NoError(t, binErr)
	return binPath
}

// freeAddr picks a loopback port that was free a moment ago: a subprocess cannot report the port
// it got for port 0.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// daemon is one `passerelle serve` subprocess.
type daemon struct {
	t         *testing.T
	cmd       *exec.Cmd
	httpAddr  string
	adminAddr string
	logPath   string
	exited    chan struct{}
	waitErr   error
}

// crashEnv is what the crash tests' daemons share: a data dir, a token, and a CRM receiver.
type crashEnv struct {
	dataDir  string
	token    string
	secret   string
	receiver *crmsim.Receiver
	extra    []string
}

func newCrashEnv(t *testing.T, extra ...string) *crashEnv {
	t.Helper()
	secret, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	rcv, err := crmsim.Start(secret)
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	return &crashEnv{dataDir: t.TempDir(), token: "crash-token", secret: secret, receiver: rcv, extra: extra}
}

// start runs the daemon on the environment's data dir, on fresh ports, and waits for /readyz.
func (e *crashEnv) start(t *testing.T) *daemon {
	t.Helper()
	d := &daemon{t: t, httpAddr: freeAddr(t), adminAddr: freeAddr(t), exited: make(chan struct{})}
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PASSERELLE_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"PASSERELLE_HTTP_ADDR="+d.httpAddr,
		"PASSERELLE_ADMIN_ADDR="+d.adminAddr,
		"PASSERELLE_DATA_DIR="+e.dataDir,
		"PASSERELLE_ICIFORMATION_TOKEN="+e.token,
		"PASSERELLE_CRM_URL="+e.receiver.URL()+"/crm",
		"PASSERELLE_CRM_SECRET="+e.secret,
		"PASSERELLE_REDELIVERY_MIN=50ms",
		"PASSERELLE_REDELIVERY_MAX=500ms",
		// Messages in flight at a kill come back after the ack wait: keep it short.
		"PASSERELLE_ACK_WAIT=5s",
		"PASSERELLE_SHUTDOWN_TIMEOUT=10s",
		"PASSERELLE_LOG_FORMAT=json",
		"PASSERELLE_LOG_LEVEL=warn",
	)
	env = append(env, e.extra...)
	f, err := os.CreateTemp(t.TempDir(), "daemon-*.log")
	require.NoError(t, err)
	d.logPath = f.Name()
	d.cmd = exec.Command(daemonBinary(t), "serve")
	d.cmd.Env = env
	d.cmd.Stdout, d.cmd.Stderr = f, f
	require.NoError(t, d.cmd.Start())
	_ = f.Close() // the child has its own descriptor
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(d.logPath)
			t.Logf("daemon log:\n%s", tail(b, 4000))
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-d.exited:
			b, _ := os.ReadFile(d.logPath)
			t.Fatalf("daemon exited before it was ready (%v):\n%s", d.waitErr, tail(b, 4000))
		default:
		}
		resp, err := http.Get("http://" + d.adminAddr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not ready after 30s")
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stop sends sig and waits at most within for the process to end; it returns the exit code and how
// long it took.
func (d *daemon) stop(sig os.Signal, within time.Duration) (int, time.Duration) {
	d.t.Helper()
	start := time.Now()
	require.NoError(d.t, d.cmd.Process.Signal(sig))
	select {
	case <-d.exited:
	case <-time.After(within):
		d.t.Fatalf("daemon still running %s after %v", within, sig)
	}
	took := time.Since(start)
	var ee *exec.ExitError
	if errors.As(d.waitErr, &ee) {
		return ee.ExitCode(), took
	}
	require.NoError(d.t, d.waitErr)
	return 0, took
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

func crashLead(n int) []byte {
	b, _ := json.Marshal(map[string]any{
		"nom": "Crash", "prenom": fmt.Sprintf("Lead%d", n), "civilite": "M.",
		"tel": fmt.Sprintf("07%08d", n), "email": fmt.Sprintf("crash.lead%d@example.com", n),
		"ville": "nantes", "code_postal": "44000", "formation": "BTS MCO", "statut": "prospect",
		"client": "XYZ Formations", "id_client": "1234",
	})
	return b
}

// post sends one lead the way Ici Formation does and returns the status (0 on a transport error).
func post(client *http.Client, url, token string, body []byte) int {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	return resp.StatusCode
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
	e := newCrashEnv(t)
	rcv := e.receiver
	d := e.start(t)
	url := "http://" + d.httpAddr + "/webhooks/iciformation"

	client := &http.Client{Timeout: 15 * time.Second}
	want := make(map[string]bool, leads)
	for i := range leads {
		want[transforms.EventID("iciformation", crashLead(i))] = true
	}
	require.Len(t, want, leads)
	var (
		mu       sync.Mutex
		ok       int
		statuses = map[int]int{}
		wg       sync.WaitGroup
		next     = make(chan int)
	)
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				status := post(client, url, e.token, crashLead(i))
				mu.Lock()
				statuses[status]++
				if status == http.StatusOK {
					ok++
				}
				mu.Unlock()
			}
		})
	}
	for i := range leads {
		next <- i
	}
	close(next)
	wg.Wait()
	_, _ = d.stop(syscall.SIGKILL, 10*time.Second)
	require.Equal(t, leads, ok, "every lead answered 200 (answers: %v)", statuses)

	before := rcv.UniqueIDs()
	for id, n := range before {
		require.Equal(t, 1, n, "event %s delivered twice before the kill", id)
	}

	e.start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, rcv.WaitForUnique(ctx, leads), "after the restart")
	time.Sleep(500 * time.Millisecond) // room for late repeats to show
	got := rcv.UniqueIDs()
	require.Len(t, got, leads, "no event id other than those posted")
	repeats := 0
	for id, n := range got {
		require.True(t, want[id], "unknown event id %s", id)
		repeats += n - 1
	}
	for _, dl := range rcv.Deliveries() {
		var env struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal(dl.Body, &env))
		require.Equal(t, dl.ID, env.ID, "webhook-id is the event id, on every delivery")
	}
	require.Zero(t, rcv.Rejected(), "every delivery validly signed")
	t.Logf("%d leads, %d delivered before the kill, %d repeated after the restart", leads, len(before), repeats)
	// Only a lead the CRM had before the kill can come again, and only one still unacknowledged.
	require.LessOrEqual(t, repeats, len(before))
	require.LessOrEqual(t, repeats, maxAckPending)
}

// SIGTERM: the daemon stops gracefully and exits 0 within the shutdown timeout.
func TestSIGTERMExitsZero(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 5 * time.Second
	e := newCrashEnv(t, "PASSERELLE_SHUTDOWN_TIMEOUT="+shutdownTimeout.String())
	d := e.start(t)
	url := "http://" + d.httpAddr + "/webhooks/iciformation"
	client := &http.Client{Timeout: 15 * time.Second}
	for i := range 5 {
		require.Equal(t, http.StatusOK, post(client, url, e.token, crashLead(i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, e.receiver.WaitForUnique(ctx, 5))

	code, took := d.stop(syscall.SIGTERM, shutdownTimeout+5*time.Second)
	t.Logf("SIGTERM: exit %d after %s", code, took)
	require.Equal(t, 0, code, "exit code after SIGTERM")
	require.LessOrEqual(t, took, shutdownTimeout)
	b, err := os.ReadFile(d.logPath)
	require.NoError(t, err)
	require.NotContains(t, string(b), `"level":"ERROR"`, "a clean stop logs no error")
}
