package deploy_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/passerelle/passerelle/internal/cli"
)

// notExercised are the panels whose metrics a sandbox of one minute cannot produce, each with why.
// Every other dashboard expression must return data from a real Prometheus scraping the sandbox.
var notExercised = map[string]string{
	"Last upload per period": "a series per uploaded period: the sandbox uploads nothing unless asked",
}

// provoked are the alerts the sandbox sets off on purpose, each with why; any other that fires
// fails the test.
var provoked = map[string]string{
	"IciFormationLeadsMissed": "the sandbox's Ici Formation API lists a lead every 20 s that its webhook sender never posted, to show the reconciliation at work",
}

// The dashboard and the rules against the real thing: the sandbox runs for a minute, scraped every
// second by the machine's Prometheus loaded with the alert rules. Every dashboard expression the
// sandbox exercises must return data, no rule may fail to evaluate, and none may fire.
func TestDashboardAndRulesAgainstTheSandbox(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute against a live Prometheus; not in -short")
	}
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		const msg = "prometheus not found: apt-get install prometheus"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	admin, web, hooks := freePort(t), freePort(t), freePort(t)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PASSERELLE_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("PASSERELLE_DATA_DIR", filepath.Join(dir, "data"))
	t.Setenv("PASSERELLE_ADMIN_ADDR", admin)
	t.Setenv("PASSERELLE_HTTP_ADDR", hooks)
	t.Setenv("PASSERELLE_LOG_LEVEL", "error")
	t.Setenv("PASSERELLE_MIN_FREE_DISK", "1MB") // a machine short of disk must not make the sandbox refuse leads

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sandbox := make(chan int, 1)
	go func() {
		sandbox <- cli.Run(ctx, []string{"sandbox", "--lead-every", "300ms"}, io.Discard, io.Discard, "test")
	}()
	defer func() {
		cancel()
		select {
		case code := <-sandbox:
			if code != cli.ExitOK {
				t.Errorf("sandbox exited %d", code)
			}
		case <-time.After(30 * time.Second):
			t.Error("sandbox did not stop")
		}
	}()
	waitHTTP(t, "http://"+admin+"/readyz", 60*time.Second)

	rules, err := filepath.Abs(rulesPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: passerelle
    static_configs: [{targets: [%q]}]
`, rules, admin), 0o600); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	defer pcancel()
	cmd := exec.CommandContext(pctx, prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+web, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pcancel(); _ = cmd.Wait() }()
	waitHTTP(t, "http://"+web+"/-/ready", 30*time.Second)

	// A minute of traffic at least (leads every 300 ms, Shop Application polled every 10 s), and
	// until every exercised panel has data; alerts are watched all along.
	_, panels := readDashboard(t)
	vars := strings.NewReplacer("$pipeline", ".*", "$__rate_interval", "30s", "$__range", "2m", "$__interval", "5s")
	start := time.Now()
	var empty []string
	for {
		empty = empty[:0]
		for _, p := range panels {
			if _, skip := notExercised[p.Title]; skip {
				continue
			}
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					continue
				}
				n, err := promQuery(web, vars.Replace(tg.Expr))
				if err != nil {
					t.Fatalf("panel %q: %s: %v", p.Title, tg.Expr, err)
				}
				if n == 0 {
					empty = append(empty, fmt.Sprintf("%q: %s", p.Title, tg.Expr))
				}
			}
		}
		if firing := firingAlerts(t, web); len(firing) > 0 {
			t.Fatalf("alerts fire against a healthy sandbox: %v", firing)
		}
		elapsed := time.Since(start)
		if elapsed >= time.Minute && len(empty) == 0 {
			break
		}
		if elapsed >= 2*time.Minute {
			t.Fatalf("after %s these panels still return nothing from the sandbox:\n%s", elapsed.Round(time.Second), strings.Join(empty, "\n"))
		}
		time.Sleep(2 * time.Second) // the scrape and evaluation interval is 1 s
	}

	var rulesResp struct {
		Data struct {
			Groups []struct {
				Rules []struct {
					Name      string `json:"name"`
					Health    string `json:"health"`
					LastError string `json:"lastError"`
					State     string `json:"state"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	getJSON(t, "http://"+web+"/api/v1/rules", &rulesResp)
	n := 0
	for _, g := range rulesResp.Data.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %s: %s", r.Name, r.Health, r.LastError)
			}
			if _, ok := provoked[r.Name]; !ok && r.State == "firing" {
				t.Errorf("alert %s fires against a healthy sandbox", r.Name)
			}
		}
	}
	if n == 0 {
		t.Error("Prometheus loaded no rule")
	}
}

func firingAlerts(t *testing.T, web string) []string {
	t.Helper()
	var out struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	getJSON(t, "http://"+web+"/api/v1/alerts", &out)
	var firing []string
	for _, a := range out.Data.Alerts {
		if _, ok := provoked[a.Labels["alertname"]]; ok {
			continue
		}
		if a.State == "firing" {
			firing = append(firing, a.Labels["alertname"])
		}
	}
	return firing
}

func promQuery(web, expr string) (int, error) {
	resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return 0, err
	}
	if out.Status != "success" {
		return 0, fmt.Errorf("%s", out.Error)
	}
	var rs []json.RawMessage
	if err := json.Unmarshal(out.Data.Result, &rs); err != nil {
		return 1, nil // a scalar
	}
	return len(rs), nil
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func waitHTTP(t *testing.T, u string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s not ready within %s", u, within)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
