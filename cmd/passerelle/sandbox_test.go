package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/cli"
)

// make run's promise: the sandbox starts on the embedded default, leads flow to the simulated CRM,
// Shop Application is polled, and it stops cleanly.
func TestSandboxShowsRecordsFlowing(t *testing.T) {
	clearPasserelleEnv(t)
	t.Setenv("PASSERELLE_HTTP_ADDR", "127.0.0.1:0")
	t.Setenv("PASSERELLE_ADMIN_ADDR", "127.0.0.1:0")
	t.Setenv("PASSERELLE_DATA_DIR", t.TempDir())
	t.Setenv("PASSERELLE_LOG_LEVEL", "warn")
	t.Setenv("PASSERELLE_MIN_FREE_DISK", "1MB") // a machine short of disk must not make the sandbox refuse leads

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		if code := cli.Run(ctx, []string{"sandbox", "--lead-every", "100ms"}, w, io.Discard, version); code != cli.ExitOK {
			done <- fmt.Errorf("sandbox exited %d", code)
		} else {
			done <- nil
		}
		w.Close()
	}()

	// The banner says where the metrics are, prints every credential the sandbox uses, and points
	// the operator commands of another shell at its store and admin API.
	var metricsURL string
	var banner strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		banner.WriteString(sc.Text() + "\n")
		if m := regexp.MustCompile(`metrics\s+(http://\S+/metrics)`).FindStringSubmatch(sc.Text()); m != nil {
			metricsURL = m[1]
		}
		if strings.Contains(sc.Text(), "Ctrl-C stops it.") {
			break
		}
	}
	require.NotEmpty(t, metricsURL, "the sandbox prints where the metrics are")
	for _, want := range []string{"client_secret", "password", "signing secret", "token", "set -a; . "} {
		require.Contains(t, banner.String(), want)
	}
	envFile, err := os.ReadFile(filepath.Join(os.Getenv("PASSERELLE_DATA_DIR"), "sandbox.env"))
	require.NoError(t, err, "the sandbox writes the variables the operator commands need")
	for _, want := range []string{"PASSERELLE_ADMIN_ADDR=127.0.0.1:", "PASSERELLE_DATA_DIR=", "PASSERELLE_SHOPAPP_CLIENT_SECRET="} {
		require.Contains(t, string(envFile), want)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()

	counter := func(name, labels string) float64 {
		resp, err := http.Get(metricsURL)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, name+"{"+labels+"}") {
				v, _ := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
				return v
			}
		}
		return 0
	}
	require.Eventually(t, func() bool {
		return counter("passerelle_stage_messages_total", `outcome="out",pipeline="leads",stage="crm"`) >= 3
	}, 30*time.Second, 100*time.Millisecond, "leads never reached the simulated CRM")
	require.Eventually(t, func() bool {
		return counter("passerelle_shopapp_polls_total", `outcome="ok"`) >= 1
	}, 30*time.Second, 100*time.Millisecond, "Shop Application was never polled")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("the sandbox did not stop")
	}
}
