package faults_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, to create the test database
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/testwait"
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

// daemonBinary builds cmd/passerelle (without the race detector: it is the subject, not the test),
// as users get it.
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
		out, err := exec.CommandContext(ctx, goBin, "build", "-o", binPath, "github.com/passerelle/passerelle/cmd/passerelle").CombinedOutput()
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
	name      string
	env       []string // PASSERELLE_* lines it was started with, for a restart
	cmd       *exec.Cmd
	httpAddr  string
	adminAddr string
	logPath   string
	exited    chan struct{}
	waitErr   error
}

// baseEnv is what every daemon of these tests runs with: short redelivery waits and ack wait, so
// a fault's consequences show within the test's bounds, and JSON warnings in its log.
func baseEnv(dataDir, token string, rcv *crmsim.Receiver, secret string) []string {
	return []string{
		"PASSERELLE_DATA_DIR=" + dataDir,
		"PASSERELLE_ICIFORMATION_TOKEN=" + token,
		"PASSERELLE_CRM_URL=" + rcv.URL() + "/crm",
		"PASSERELLE_CRM_SECRET=" + secret,
		"PASSERELLE_REDELIVERY_MIN=50ms",
		"PASSERELLE_REDELIVERY_MAX=500ms",
		// Messages in flight at a kill come back after the ack wait: keep it short.
		"PASSERELLE_ACK_WAIT=5s",
		"PASSERELLE_SHUTDOWN_TIMEOUT=10s",
		"PASSERELLE_MIN_FREE_DISK=1MB", // the suite's data is small: a machine short of disk must not refuse it
		"PASSERELLE_LOG_FORMAT=json",
		"PASSERELLE_LOG_LEVEL=warn",
	}
}

// startDaemon runs `passerelle serve` with env on fresh ports and waits for /readyz.
func startDaemon(t *testing.T, name string, env []string) *daemon {
	t.Helper()
	d := launch(t, name, env)
	d.waitReady(30 * time.Second)
	return d
}

// launch starts the process without waiting for it to be ready.
func launch(t *testing.T, name string, env []string) *daemon {
	t.Helper()
	d := &daemon{t: t, name: name, env: env, httpAddr: freeAddr(t), adminAddr: freeAddr(t), exited: make(chan struct{})}
	full := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PASSERELLE_") {
			full = append(full, kv)
		}
	}
	full = append(full, "PASSERELLE_HTTP_ADDR="+d.httpAddr, "PASSERELLE_ADMIN_ADDR="+d.adminAddr)
	full = append(full, env...)
	f, err := os.CreateTemp(t.TempDir(), name+"-*.log")
	require.NoError(t, err)
	d.logPath = f.Name()
	d.cmd = exec.Command(daemonBinary(t), "serve")
	d.cmd.Env = full
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
			t.Logf("%s log:\n%s", d.name, tail(b, 4000))
		}
	})
	return d
}

func (d *daemon) waitReady(within time.Duration) {
	d.t.Helper()
	if err := d.ready(within); err != nil {
		d.t.Fatal(err)
	}
}

// ready waits for /readyz to answer 200.
func (d *daemon) ready(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		select {
		case <-d.exited:
			b, _ := os.ReadFile(d.logPath)
			return fmt.Errorf("%s exited before it was ready (%v):\n%s", d.name, d.waitErr, tail(b, 4000))
		default:
		}
		resp, err := http.Get("http://" + d.adminAddr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(d.logPath)
			return fmt.Errorf("%s not ready after %s:\n%s", d.name, within, tail(b, 4000))
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
		d.t.Fatalf("%s still running %s after %v", d.name, within, sig)
	}
	took := time.Since(start)
	var ee *exec.ExitError
	if errors.As(d.waitErr, &ee) {
		return ee.ExitCode(), took
	}
	require.NoError(d.t, d.waitErr)
	return 0, took
}

// kill ends the process with SIGKILL and waits for it. It does not fail the test itself, so that a
// test may call it from a goroutine of its own.
func (d *daemon) kill() error {
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill %s: %w", d.name, err)
	}
	select {
	case <-d.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s still running 10s after SIGKILL", d.name)
	}
}

func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}

func (d *daemon) hookURL() string { return "http://" + d.httpAddr + "/webhooks/iciformation" }

// counter sums the samples of name whose labels include want, from the daemon's /metrics; ok is
// false when the scrape failed.
func (d *daemon) counter(name string, want map[string]string) (float64, bool) {
	resp, err := scrapeClient.Get("http://" + d.adminAddr + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, false
	}
	var sum float64
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		series, value := line[:i], line[i+1:]
		n, labels := series, ""
		if j := strings.IndexByte(series, '{'); j >= 0 {
			n, labels = series[:j], series[j:]
		}
		if n != name {
			continue
		}
		match := true
		for k, v := range want {
			if !strings.Contains(labels, k+`="`+v+`"`) {
				match = false
			}
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil && match {
			sum += v
		}
	}
	return sum, true
}

var scrapeClient = &http.Client{Timeout: 5 * time.Second}

// waitIdle waits until no stage of the daemon has a message pending, unacknowledged or awaiting a
// redelivery (the sum of passerelle_stage_backlog_messages is 0): what it will deliver, it has.
func (d *daemon) waitIdle(t *testing.T) {
	t.Helper()
	testwait.For(t, 60*time.Second, d.name+"'s stages to be idle", func() bool {
		n, ok := d.counter("passerelle_stage_backlog_messages", nil)
		return ok && n == 0
	})
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// lead is a distinct valid Ici Formation lead; tag and n make it unique.
func lead(tag string, n int) []byte {
	b, _ := json.Marshal(map[string]any{
		"nom": "Fault", "prenom": fmt.Sprintf("Lead%d", n), "civilite": "M.",
		"tel": fmt.Sprintf("07%08d", n), "email": fmt.Sprintf("%s.lead%d@example.com", tag, n),
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
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// tally is what one fault did to the leads posted through it.
type tally struct {
	mu       sync.Mutex
	posted   map[string]bool // event ids of the leads posted
	ok       map[string]bool // event ids answered 200 at least once
	statuses map[int]int     // every answer, retries included (0: transport error)
}

func newTally() *tally {
	return &tally{posted: map[string]bool{}, ok: map[string]bool{}, statuses: map[int]int{}}
}

func (tl *tally) record(body []byte, status int) {
	id := transforms.EventID("iciformation", body)
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.posted[id] = true
	tl.statuses[status]++
	if status == http.StatusOK {
		tl.ok[id] = true
	}
}

// result compares the tally with what the CRM received. Delivered counts the posted leads the CRM
// got, those answered 503 included (a lead may be stored though its answer came too late).
type result struct {
	Posted, Answered200, Delivered, Repeats, Lost, Unknown int
	Statuses                                               map[int]int
}

func (tl *tally) result(rcv *crmsim.Receiver) result {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	got := rcv.UniqueIDs()
	r := result{Posted: len(tl.posted), Answered200: len(tl.ok), Statuses: map[int]int{}}
	for s, n := range tl.statuses {
		r.Statuses[s] = n
	}
	for id := range tl.ok {
		if got[id] == 0 {
			r.Lost++
		}
	}
	for id, n := range got {
		if !tl.posted[id] {
			continue // another part's lead
		}
		r.Delivered++
		r.Repeats += n - 1
	}
	return r
}

// waitDelivered waits until every lead answered 200 reached the CRM, or within passes.
func (tl *tally) waitDelivered(rcv *crmsim.Receiver, within time.Duration) result {
	deadline := time.Now().Add(within)
	for {
		r := tl.result(rcv)
		if r.Lost == 0 || time.Now().After(deadline) {
			return r
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// unknownIDs counts the ids the CRM received that no test posted: a lead delivered under a second id.
func unknownIDs(rcv *crmsim.Receiver, tallies ...*tally) int {
	n := 0
	for id := range rcv.UniqueIDs() {
		known := false
		for _, tl := range tallies {
			tl.mu.Lock()
			known = known || tl.posted[id]
			tl.mu.Unlock()
		}
		if !known {
			n++
		}
	}
	return n
}

// report prints one line per fault, the figures the README quotes, and fails on a lost lead.
func report(t *testing.T, fault string, r result) {
	t.Helper()
	codes := make([]int, 0, len(r.Statuses))
	for s := range r.Statuses {
		codes = append(codes, s)
	}
	sort.Ints(codes)
	var answers []string
	for _, s := range codes {
		if s == 0 {
			answers = append(answers, fmt.Sprintf("%d×none", r.Statuses[s]))
			continue
		}
		answers = append(answers, fmt.Sprintf("%d×%d", r.Statuses[s], s))
	}
	line := fmt.Sprintf("FAULT %-40s posted %4d  answered 200 %4d  delivered %4d  repeats with the same id %3d  lost %d  (answers: %s)",
		fault, r.Posted, r.Answered200, r.Delivered, r.Repeats, r.Lost, strings.Join(answers, " "))
	t.Log(line)
	require.Zero(t, r.Lost, "%s: leads answered 200 and never delivered", fault)
}

// postgresDSN creates a fresh database on the test server, drops it when the test ends, and returns
// its DSN. The server is PASSERELLE_TEST_POSTGRES_DSN or postgres://postgres@127.0.0.1:5432 with
// trust auth; if it is unreachable the test is skipped, or fails when CI=true.
func postgresDSN(t *testing.T) string {
	t.Helper()
	base := os.Getenv("PASSERELLE_TEST_POSTGRES_DSN")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	u, err := url.Parse(base)
	require.NoError(t, err, "PASSERELLE_TEST_POSTGRES_DSN must be a postgres:// URL")
	admin, err := sql.Open("pgx", base)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		msg := fmt.Sprintf("missing: PostgreSQL at %s (start one, or point PASSERELLE_TEST_POSTGRES_DSN at one): %v", u.Redacted(), err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	name := fmt.Sprintf("passerelle_faults_%012x", rand.Uint64()>>16)
	_, err = admin.ExecContext(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err, "create test database")
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database: %v", err)
		}
		_ = admin.Close()
	})
	u.Path = "/" + name
	return u.String()
}
