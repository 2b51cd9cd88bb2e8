package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/app/apptest"
	"github.com/passerelle/passerelle/internal/cli"
)

const (
	exitOK     = cli.ExitOK
	exitFailed = cli.ExitFailed
	exitUsage  = cli.ExitUsage
)

// clearPasserelleEnv unsets every PASSERELLE_* variable for the test, so the developer's or CI's
// environment cannot change what the CLI reads.
func clearPasserelleEnv(t *testing.T) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PASSERELLE_") {
			t.Setenv(k, "") // restores the value at cleanup
			require.NoError(t, os.Unsetenv(k))
		}
	}
}

// freeAddr picks a loopback port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCLI(t *testing.T) {
	const (
		token  = "tok-do-not-print-123"
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	)
	for _, tc := range []struct {
		name       string
		args       []string
		env        map[string]string
		code       int
		stdout     []string // substrings
		stderr     []string
		notInAny   []string
		emptyOut   bool
		emptyError bool
	}{
		{name: "no command", args: nil, code: exitOK, stdout: []string{"Usage:", "passerelle [command]", "check-config"}, emptyError: true},
		{name: "unknown command", args: []string{"frobnicate"}, code: exitUsage, stderr: []string{`unknown command "frobnicate"`, "passerelle --help"}, emptyOut: true},
		{name: "unknown command suggests", args: []string{"stage"}, code: exitUsage, stderr: []string{`unknown command "stage"`, "Did you mean this?", "stages"}, emptyOut: true},
		{name: "unknown flag", args: []string{"stages", "--everything"}, code: exitUsage, stderr: []string{"unknown flag: --everything"}, emptyOut: true},
		{name: "bad output", args: []string{"stages", "--output", "xml"}, code: exitUsage, stderr: []string{`--output "xml"`}, emptyOut: true},
		{name: "version", args: []string{"version"}, code: exitOK, stdout: []string{"passerelle " + version}, emptyError: true},
		{name: "help", args: []string{"help"}, code: exitOK, stdout: []string{"Usage:", "Available Commands:", "shopapp", "billing"}, emptyError: true},
		{name: "completion", args: []string{"completion", "bash"}, code: exitOK, stdout: []string{"bash completion"}, emptyError: true},
		{
			name: "check-config bad value", args: []string{"check-config"}, env: map[string]string{"PASSERELLE_CRM_FORMAT": "xml"},
			code: exitUsage, stderr: []string{"PASSERELLE_CRM_FORMAT", "xml"}, emptyOut: true,
		},
		{
			name: "check-config unparsable value", args: []string{"check-config"}, env: map[string]string{"PASSERELLE_SHUTDOWN_TIMEOUT": "soon"},
			code: exitUsage, stderr: []string{"PASSERELLE_SHUTDOWN_TIMEOUT"}, emptyOut: true,
		},
		{
			name: "check-config masks secrets", args: []string{"check-config"},
			env: map[string]string{
				"PASSERELLE_ICIFORMATION_TOKEN": token, "PASSERELLE_CRM_SECRET": secret,
				"PASSERELLE_CRM_URL": "http://crm.example/hook?key=hidden-key",
			},
			code:     exitOK,
			stdout:   []string{"PASSERELLE_ICIFORMATION_TOKEN", "PASSERELLE_CRM_SECRET", "****", "iciformation", "PASSERELLE_HTTP_ADDR"},
			notInAny: []string{token, secret, strings.TrimPrefix(secret, "whsec_"), "hidden-key"},
		},
		{
			name: "check-config unknown variable", args: []string{"check-config"}, env: map[string]string{"PASSERELLE_HTTP_PORT": "8081"},
			code: exitUsage, stderr: []string{"PASSERELLE_HTTP_PORT: unknown variable, did you mean PASSERELLE_HTTP_ADDR?"}, emptyOut: true,
		},
		{
			name: "check-config no source", args: []string{"check-config"},
			code: exitUsage, stderr: []string{"no source is enabled", "PASSERELLE_ICIFORMATION_TOKEN", "PASSERELLE_SHOPAPP_URL"}, emptyOut: true,
		},
		{
			name: "serve no source", args: []string{"serve"},
			code: exitUsage, stderr: []string{"no source is enabled"}, emptyOut: true,
		},
		{
			name: "check-config leads without a sink", args: []string{"check-config"}, env: map[string]string{"PASSERELLE_ICIFORMATION_TOKEN": "t"},
			code: exitUsage, stderr: []string{"PASSERELLE_ICIFORMATION_TOKEN is set but nothing consumes the leads", "PASSERELLE_CRM_URL"}, emptyOut: true,
		},
		{
			name: "check-config mysql store", args: []string{"check-config"}, env: map[string]string{"PASSERELLE_STORE_DSN": "mysql://root@127.0.0.1/x", "PASSERELLE_SHOPAPP_URL": "http://127.0.0.1:1", "PASSERELLE_SHOPAPP_CLIENT_ID": "i", "PASSERELLE_SHOPAPP_CLIENT_SECRET": "s"},
			code: exitUsage, stderr: []string{"PASSERELLE_STORE_DSN: scheme mysql is not supported"}, emptyOut: true,
		},
		{
			name: "check-config explain", args: []string{"check-config", "--explain"},
			env:  map[string]string{"PASSERELLE_SHOPAPP_URL": "http://127.0.0.1:1", "PASSERELLE_SHOPAPP_CLIENT_ID": "i", "PASSERELLE_SHOPAPP_CLIENT_SECRET": "s"},
			code: exitOK, stdout: []string{"variable", "from", "environment", "default"}, emptyError: true,
		},
		{name: "dlq retry not an id", args: []string{"dlq", "retry", "abc"}, code: exitUsage, stderr: []string{`"abc"`}, emptyOut: true},
		{name: "dlq retry no id", args: []string{"dlq", "retry"}, code: exitUsage, stderr: []string{"usage"}, emptyOut: true},
		{name: "dlq unknown", args: []string{"dlq", "purge"}, code: exitUsage, stderr: []string{"purge"}, emptyOut: true},
		{name: "dlq list bad flag", args: []string{"dlq", "list", "--everything"}, code: exitUsage},
		{name: "endpoints bad", args: []string{"endpoints", "drop"}, code: exitUsage, stderr: []string{`unknown command "drop"`}, emptyOut: true},
		{name: "stages takes no argument", args: []string{"stages", "leads"}, code: exitUsage, stderr: []string{`"leads"`}, emptyOut: true},
		{name: "shopapp create needs its flags", args: []string{"shopapp", "create"}, code: exitUsage, stderr: []string{"required flag", "guid", "prestations"}, emptyOut: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearPasserelleEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, stdout, stderr := runCLI(tc.args...)
			require.Equal(t, tc.code, code, "exit code; stdout:\n%s\nstderr:\n%s", stdout, stderr)
			for _, s := range tc.stdout {
				require.Contains(t, stdout, s)
			}
			for _, s := range tc.stderr {
				require.Contains(t, stderr, s)
			}
			for _, s := range tc.notInAny {
				require.NotContains(t, stdout, s)
				require.NotContains(t, stderr, s)
			}
			if tc.emptyOut {
				require.Empty(t, stdout)
			}
			if tc.emptyError {
				require.Empty(t, stderr)
			}
		})
	}
}

// Every command and subcommand answers --help and -h with its usage, every flag, exit 0 and no
// side effect: nothing is created in the data directory, no daemon is called.
func TestHelpEverywhere(t *testing.T) {
	clearPasserelleEnv(t)
	dir := t.TempDir()
	t.Setenv("PASSERELLE_DATA_DIR", dir)
	t.Setenv("PASSERELLE_HTTP_ADDR", "127.0.0.1:1")
	t.Setenv("PASSERELLE_ADMIN_ADDR", "127.0.0.1:1")
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, help := range []string{"--help", "-h"} {
			args := append(strings.Fields(strings.TrimPrefix(c.CommandPath(), "passerelle")), help)
			code, stdout, stderr := runCLI(args...)
			if code != exitOK || stderr != "" || !strings.Contains(stdout, "Usage:") {
				t.Errorf("passerelle %s: exit %d, stderr %q, stdout:\n%s", strings.Join(args, " "), code, stderr, stdout)
			}
			c.LocalFlags().VisitAll(func(f *pflag.Flag) {
				if !strings.Contains(stdout, "--"+f.Name) {
					t.Errorf("passerelle %s does not list --%s", strings.Join(args, " "), f.Name)
				}
			})
			n++
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(cli.NewRoot(io.Discard, io.Discard, version))
	if n < 30 {
		t.Errorf("walked %d help pages, want every command", n)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "--help created files in the data directory")
}

// check-config shows the masked secret on the variable's own line.
func TestCheckConfigMaskLine(t *testing.T) {
	clearPasserelleEnv(t)
	t.Setenv("PASSERELLE_ICIFORMATION_TOKEN", "tok-abc")
	t.Setenv("PASSERELLE_CRM_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	t.Setenv("PASSERELLE_CRM_URL", "http://127.0.0.1:1/crm")
	code, stdout, _ := runCLI("check-config")
	require.Equal(t, exitOK, code)
	lines := map[string]string{}
	for line := range strings.Lines(stdout) {
		if f := strings.Fields(line); len(f) == 2 {
			lines[f[0]] = f[1]
		}
	}
	require.Equal(t, "****", lines["PASSERELLE_ICIFORMATION_TOKEN"])
	require.Equal(t, "****", lines["PASSERELLE_CRM_SECRET"])
	require.Equal(t, "generic", lines["PASSERELLE_CRM_FORMAT"])
}

// dlq list talks to a running daemon's admin API.
// startDaemon runs the app in-process on loopback ports with env (PASSERELLE_* lines) and points
// the CLI's PASSERELLE_ADMIN_ADDR at it; the daemon stops at cleanup.
func startDaemon(t *testing.T, env ...string) *app.App {
	t.Helper()
	a := apptest.Start(t, append([]string{
		"PASSERELLE_HTTP_ADDR=127.0.0.1:0", "PASSERELLE_ADMIN_ADDR=127.0.0.1:0",
		"PASSERELLE_DATA_DIR=" + t.TempDir(), "PASSERELLE_SHUTDOWN_TIMEOUT=10s",
	}, env...))
	t.Setenv("PASSERELLE_ADMIN_ADDR", a.AdminAddr())
	return a
}

func TestDLQListAgainstRunningDaemon(t *testing.T) {
	clearPasserelleEnv(t)
	a := startDaemon(t)

	// --admin reaches the daemon when PASSERELLE_ADMIN_ADDR points elsewhere, and every listing
	// has a JSON form for scripts.
	t.Setenv("PASSERELLE_ADMIN_ADDR", freeAddr(t))
	for _, args := range [][]string{{"dlq", "list"}, {"stages"}, {"endpoints", "list"}, {"billing", "status"}} {
		code, stdout, stderr := runCLI(append(args, "--admin", a.AdminAddr(), "--output", "json")...)
		require.Equal(t, exitOK, code, "%v: %s", args, stderr)
		require.True(t, json.Valid([]byte(stdout)), "%v --output json: %s", args, stdout)
	}
	t.Setenv("PASSERELLE_ADMIN_ADDR", a.AdminAddr())

	code, stdout, stderr := runCLI("dlq", "list")
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	require.Empty(t, stderr)
	header := strings.Fields(strings.SplitN(stdout, "\n", 2)[0])
	require.Equal(t, []string{"id", "pipeline", "topic", "event_id", "created_at", "retried", "error"}, header)

	code, stdout, stderr = runCLI("dlq", "list", "--all", "--pipeline", "leads")
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	require.True(t, strings.HasPrefix(stdout, "id "), stdout)

	code, stdout, stderr = runCLI("endpoints", "list")
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	require.True(t, strings.HasPrefix(stdout, "endpoint "), stdout)

	code, stdout, stderr = runCLI("stages")
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Equal(t, []string{"pipeline", "stage", "backlog", "oldest", "waited", "error"}, strings.Fields(lines[0]))
	rows := make([]string, 0, len(lines))
	for _, l := range lines[1:] {
		rows = append(rows, strings.Join(strings.Fields(l), " "))
	}
	require.Contains(t, rows, "leads normalize 0 -", "an idle stage: nothing waits")

	// A dead letter that does not exist: the daemon answers 404, the CLI exits 1.
	code, _, stderr = runCLI("dlq", "retry", "424242")
	require.Equal(t, exitFailed, code)
	require.Contains(t, stderr, "404")
}

// With no daemon at PASSERELLE_ADMIN_ADDR, dlq list fails with exit 1 and says why.
func TestDLQListWithoutDaemon(t *testing.T) {
	clearPasserelleEnv(t)
	t.Setenv("PASSERELLE_ADMIN_ADDR", freeAddr(t))
	code, stdout, stderr := runCLI("dlq", "list")
	require.Equal(t, exitFailed, code)
	require.Empty(t, stdout)
	require.Contains(t, stderr, "daemon running")
}
