package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/transforms"
)

// fixture is one daemon's surroundings: a data dir, a token, a CRM receiver and its secret. Several
// runs of the daemon (a restart) can share one fixture.
type fixture struct {
	t        *testing.T
	DataDir  string
	Token    string
	Secret   string
	CRMURL   string
	Receiver *crmsim.Receiver
	Env      []string     // extra PASSERELLE_* lines, after the defaults (later lines win)
	Log      *slog.Logger // nil: warnings and errors to the test log
	run      *running
}

// running is one Run of the daemon.
type running struct {
	App     *app.App
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

func newFixture(t *testing.T, extraEnv ...string) *fixture {
	t.Helper()
	secret, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	rcv, err := crmsim.Start(secret)
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	return &fixture{
		t: t, DataDir: t.TempDir(), Token: "tok-" + strconv.FormatUint(rand.Uint64(), 36),
		Secret: secret, CRMURL: rcv.URL() + "/hooks/crm", Receiver: rcv, Env: extraEnv,
	}
}

// startApp builds and runs a daemon on loopback ports of its own, wired to a CRM receiver, and stops
// it at cleanup, requiring Run to return nil.
func startApp(t *testing.T, extraEnv ...string) (*app.App, *crmsim.Receiver, *fixture) {
	t.Helper()
	f := newFixture(t, extraEnv...)
	f.start()
	return f.run.App, f.Receiver, f
}

func (f *fixture) environ() []string {
	return append([]string{
		"PASSERELLE_HTTP_ADDR=127.0.0.1:0",
		"PASSERELLE_ADMIN_ADDR=127.0.0.1:0",
		"PASSERELLE_DATA_DIR=" + f.DataDir,
		"PASSERELLE_ICIFORMATION_TOKEN=" + f.Token,
		"PASSERELLE_CRM_URL=" + f.CRMURL,
		"PASSERELLE_CRM_SECRET=" + f.Secret,
		"PASSERELLE_REDELIVERY_MIN=50ms",
		"PASSERELLE_REDELIVERY_MAX=500ms",
		"PASSERELLE_SHUTDOWN_TIMEOUT=10s",
		// The tests' own data is small: a machine short of disk must not make them refuse work (the
		// disk test sets its own floor).
		"PASSERELLE_MIN_FREE_DISK=1MB",
	}, f.Env...)
}

// start runs the daemon (again) on the fixture's data dir.
func (f *fixture) start() *app.App {
	t := f.t
	t.Helper()
	cfg, err := app.LoadConfig(context.Background(), f.environ())
	require.NoError(t, err)
	log := f.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(newTestWriter(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		cancel()
		require.NoError(t, err)
	}
	r := &running{App: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	f.run = r
	t.Cleanup(func() { f.stopRun(r) })
	f.waitReady(a)
	return a
}

// stop cancels the current run and requires Run to return nil within the shutdown timeout; it
// returns how long that took.
func (f *fixture) stop() time.Duration {
	f.t.Helper()
	return f.stopRun(f.run)
}

func (f *fixture) stopRun(r *running) time.Duration {
	if r == nil || r.stopped {
		return 0
	}
	r.stopped = true
	start := time.Now()
	r.cancel()
	select {
	case err := <-r.done:
		require.NoError(f.t, err, "Run's error after a graceful stop")
	case <-time.After(r.App.Cfg.ShutdownTimeout + 10*time.Second):
		f.t.Fatalf("Run did not return within the shutdown timeout (%s) and 10s more", r.App.Cfg.ShutdownTimeout)
	}
	return time.Since(start)
}

func (f *fixture) waitReady(a *app.App) {
	f.t.Helper()
	require.Eventually(f.t, func() bool {
		resp, err := http.Get("http://" + a.AdminAddr() + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "daemon not ready")
}

func (f *fixture) hookURL() string {
	return "http://" + f.run.App.HTTPAddr() + "/webhooks/iciformation"
}
func (f *fixture) admin() string { return "http://" + f.run.App.AdminAddr() }

var httpClient = &http.Client{Timeout: 20 * time.Second}

// postRaw posts body to the webhook with the given headers and returns the status and body.
func postRaw(t testing.TB, url string, header http.Header, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header = header
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func jsonHeader(auth string) http.Header {
	h := http.Header{"Content-Type": {"application/json"}}
	if auth != "" {
		h.Set("Authorization", auth)
	}
	return h
}

// post sends a lead the way Ici Formation does.
func (f *fixture) post(t testing.TB, body []byte) (int, []byte) {
	t.Helper()
	return postRaw(t, f.hookURL(), jsonHeader("Bearer "+f.Token), body)
}

// tryPost is post without failing the test on a transport error (for posts racing a shutdown).
func (f *fixture) tryPost(url string, body []byte) (int, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header = jsonHeader("Bearer " + f.Token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// eventIDOf is the event id passerelle gives a lead body.
func eventIDOf(body []byte) string {
	return transforms.EventID("iciformation", bytes.TrimSpace(body))
}

// leadBody makes a distinct valid lead; n makes it unique.
func leadBody(n int, tag string) []byte {
	b, _ := json.Marshal(map[string]any{
		"nom": "Testeur", "prenom": "Lead" + strconv.Itoa(n), "civilite": "Mme",
		"tel":   fmt.Sprintf("06%08d", n),
		"email": fmt.Sprintf("lead%d.%s@example.com", n, tag), "ville": "lyon", "code_postal": "69003",
		"formation": "Comptabilité", "horaire_rappel": "matin", "statut": "prospect",
		"client": "XYZ Formations", "id_client": "1234",
	})
	return b
}

// adminJSON calls the admin API and decodes the answer into out (when not nil).
func (f *fixture) adminJSON(t testing.TB, method, path string, body any, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, f.admin()+path, rd)
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out), "admin %s %s answered %d %s", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode
}

// scrape reads the admin endpoint's /metrics in the text format.
func (f *fixture) scrape(t testing.TB) string {
	t.Helper()
	resp, err := httpClient.Get(f.admin() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

// metric returns the value of the sample of name with exactly labels in a scrape, and whether
// there is one.
func metric(scrape, name string, labels map[string]string) (float64, bool) {
	for line := range strings.Lines(scrape) {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		series, value, ok := cutLast(line)
		if !ok {
			continue
		}
		n, ls := series, ""
		if i := strings.IndexByte(series, '{'); i >= 0 && strings.HasSuffix(series, "}") {
			n, ls = series[:i], series[i+1:len(series)-1]
		}
		if n != name || !sameLabels(parseLabels(ls), labels) {
			continue
		}
		v, err := strconv.ParseFloat(value, 64)
		return v, err == nil
	}
	return 0, false
}

func cutLast(line string) (string, string, bool) {
	i := strings.LastIndexByte(line, ' ')
	if i < 0 {
		return "", "", false
	}
	return line[:i], line[i+1:], true
}

// parseLabels reads `a="x",b="y"` (values with \" and \\ escapes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return out
		}
		key := s[:eq]
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			val.WriteByte(s[i])
		}
		out[key] = val.String()
		s = strings.TrimPrefix(s[min(i+1, len(s)):], ",")
	}
	return out
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// stageCount is passerelle_stage_messages_total for a stage of the leads pipeline.
func (f *fixture) stageCount(t testing.TB, stage, outcome string) float64 {
	t.Helper()
	v, ok := metric(f.scrape(t), "passerelle_stage_messages_total", map[string]string{"pipeline": "leads", "stage": stage, "outcome": outcome})
	require.True(t, ok, "no passerelle_stage_messages_total for stage %s outcome %s", stage, outcome)
	return v
}

// waitStage waits until a stage counter reaches want.
func (f *fixture) waitStage(t testing.TB, stage, outcome string, want float64) {
	t.Helper()
	var got float64
	ok := testwait.Eventually(20*time.Second, func() bool {
		got = f.stageCount(t, stage, outcome)
		return got >= want
	})
	require.True(t, ok, "stage %s outcome %s: %v, want %v", stage, outcome, got, want)
}

// testWriter sends log lines to the test log until the test is over, then drops them.
type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func newTestWriter(t testing.TB) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
