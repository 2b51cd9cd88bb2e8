// Package cli is passerelle's command line, on cobra: the daemon (serve, sandbox), the operator
// commands that talk to a running daemon's admin API, and the command groups the modules bring.
// cmd/passerelle only calls Run.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/modules"
)

// Exit codes: 2 is a usage or configuration error, 1 anything else that failed.
const (
	ExitOK     = 0
	ExitFailed = 1
	ExitUsage  = 2
)

// Run runs the command line args and returns the exit code.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, version string) int {
	root := NewRoot(stdout, stderr, version)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	if isUsage(err) {
		msg := err.Error()
		if !strings.Contains(msg, "--help") {
			msg += "\nSee 'passerelle --help'."
		}
		fmt.Fprintln(stderr, "passerelle:", msg)
		return ExitUsage
	}
	fmt.Fprintln(stderr, "passerelle:", err)
	return ExitFailed
}

// isUsage tells a mistake in the command line (exit 2) from a failure. Cobra reports unknown
// commands, argument counts and missing required flags as plain errors: their messages are
// recognised here, in one place.
func isUsage(err error) bool {
	var ue modules.UsageError
	if errors.As(err, &ue) {
		return true
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "accepts ", "requires ", "invalid argument", "required flag(s)", "flag needs an argument", "bad flag syntax"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// NewRoot builds the whole command tree.
func NewRoot(stdout, stderr io.Writer, version string) *cobra.Command {
	var adminAddr, output string
	root := &cobra.Command{
		Use:   "passerelle",
		Short: "Syncs files and webhooks between a company's partner systems",
		Long: `passerelle syncs files and webhooks between a company's partner systems: Ici Formation leads,
Shop Application interfaces, Simplébo sites and client states, Ecolix ERP exports, Bi-way messages,
the monthly billing file over SFTP, and the CRM webhooks they all feed.

Configuration is read from PASSERELLE_* environment variables (see check-config). Commands that
talk to a running daemon reach its admin API at --admin.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
		PersistentPreRunE: func(c *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return modules.UsageErrorf("--output %q: want table or json", output)
			}
			return nil
		},
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return modules.UsageErrorf("%v\nSee '%s --help'.", err, c.CommandPath())
	})
	defaultAdmin := os.Getenv("PASSERELLE_ADMIN_ADDR")
	if defaultAdmin == "" {
		defaultAdmin = "127.0.0.1:9090"
	}
	root.PersistentFlags().StringVar(&adminAddr, "admin", defaultAdmin, "the running daemon's admin address (PASSERELLE_ADMIN_ADDR)")
	root.PersistentFlags().StringVarP(&output, "output", "o", "table", "listing format: table or json")

	cli := &modules.CLI{
		Out: stdout, Err: stderr,
		Config: func(ctx context.Context) (config.Config, error) { return loadConfig(ctx) },
		Admin: func(ctx context.Context, method, path string, body, out any) error {
			return adminCall(ctx, adminAddr, method, path, body, out)
		},
		JSON: func() bool { return output == "json" },
	}
	root.AddCommand(
		serveCmd(cli), sandboxCmd(cli), checkConfigCmd(cli), configTableCmd(cli),
		dlqCmd(cli), stagesCmd(cli), endpointsCmd(cli),
		&cobra.Command{
			Use: "version", Short: "Print the version", Args: cobra.NoArgs,
			Run: func(*cobra.Command, []string) { fmt.Fprintln(stdout, "passerelle", version) },
		},
	)
	for _, m := range app.Modules() {
		if c, ok := m.(modules.Commander); ok {
			root.AddCommand(c.Commands(cli)...)
		}
	}
	root.SuggestionsMinimumDistance = 2
	return root
}

// loadConfig reads the configuration of the core and every module; a bad value is a usage error.
func loadConfig(ctx context.Context) (config.Config, error) {
	cfg, err := app.LoadConfig(ctx, os.Environ())
	if err != nil {
		return cfg, modules.UsageError{Msg: err.Error()}
	}
	return cfg, nil
}

// adminCall talks to the running daemon's admin API; the token, when set, comes from
// PASSERELLE_ADMIN_TOKEN (or its _FILE).
func adminCall(ctx context.Context, addr, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return modules.UsageErrorf("--admin %q: %v", addr, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if tok, err := adminToken(); err != nil {
		return err
	} else if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("is the daemon running? admin API at %s (--admin or PASSERELLE_ADMIN_ADDR): %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e httpapi.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("admin API %s: HTTP %d: %s", path, resp.StatusCode, e.Message)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// adminToken reads PASSERELLE_ADMIN_TOKEN or PASSERELLE_ADMIN_TOKEN_FILE without loading the rest
// of the configuration: an operator command needs nothing else.
func adminToken() (string, error) {
	if tok := os.Getenv("PASSERELLE_ADMIN_TOKEN"); tok != "" {
		return tok, nil
	}
	if path := os.Getenv("PASSERELLE_ADMIN_TOKEN_FILE"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("PASSERELLE_ADMIN_TOKEN_FILE: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	return "", nil
}
