package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/modules"
)

func serveCmd(cli *modules.CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon (configuration from PASSERELLE_* variables)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := cli.Config(c.Context())
			if err != nil {
				return err
			}
			if err := app.Check(cfg, true); err != nil {
				return modules.UsageError{Msg: err.Error()}
			}
			log := app.NewLogger(cli.Err, cfg.LogFormat, cfg.LogLevel)
			for _, m := range app.ModuleStates(cfg, app.Modules()) {
				log.Info("module", "name", m.Name, "on", m.On, "why", m.Why)
			}
			app.ApplyMemoryLimit(cfg.MemoryLimit, log)
			a, err := app.New(c.Context(), cfg, log)
			if err != nil {
				return err
			}
			return a.Run(c.Context())
		},
	}
}

func checkConfigCmd(cli *modules.CLI) *cobra.Command {
	var explain bool
	c := &cobra.Command{
		Use:   "check-config",
		Short: "Print which modules are on and why, and the effective configuration (secrets masked)",
		Long: `Print which modules are on and why, and the effective configuration with secrets masked.
A value that does not parse, an unknown PASSERELLE_* variable, a source nothing consumes, or no
source at all exits 2 naming the variable.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := cli.Config(c.Context())
			if err != nil {
				return err
			}
			if err := app.Check(cfg, true); err != nil {
				return modules.UsageError{Msg: err.Error()}
			}
			tw := tabwriter.NewWriter(cli.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "module\ton\twhy")
			for _, m := range app.ModuleStates(cfg, app.Modules()) {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", m.Name, map[bool]string{true: "on", false: "off"}[m.On], m.Why)
			}
			fmt.Fprintf(tw, "nats\ton\t%s\n", transport(cfg))
			fmt.Fprintln(tw)
			if explain {
				fmt.Fprintln(tw, "variable\tvalue\tfrom")
				for _, l := range cfg.Explain() {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", l[0], l[1], l[2])
				}
				return tw.Flush()
			}
			for _, kv := range cfg.Effective() {
				fmt.Fprintf(tw, "%s\t%s\n", kv[0], kv[1])
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&explain, "explain", false, "say where each value comes from: default, environment or file")
	return c
}

func transport(cfg config.Config) string {
	if cfg.NATS.URL == "" {
		return "embedded server under " + cfg.DataDir
	}
	return "external server"
}

func configTableCmd(cli *modules.CLI) *cobra.Command {
	return &cobra.Command{
		Use:    "config-table",
		Short:  "Print the README's configuration table",
		Args:   cobra.NoArgs,
		Hidden: false,
		RunE: func(*cobra.Command, []string) error {
			_, err := io.WriteString(cli.Out, config.MarkdownTable(app.Parts(app.Modules())...))
			return err
		},
	}
}

func sandboxCmd(cli *modules.CLI) *cobra.Command {
	var every time.Duration
	c := &cobra.Command{
		Use:   "sandbox",
		Short: "Run the daemon wired to built-in simulators of every partner (make run)",
		Long: `Run the daemon on the embedded broker and SQLite under data/sandbox, wired to simulated
partners: each module starts its partner's simulator and sends it traffic. It listens on loopback
only (127.0.0.1:8080 and 127.0.0.1:9090 unless PASSERELLE_HTTP_ADDR / PASSERELLE_ADMIN_ADDR say
otherwise) and prints every credential it uses.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return sandbox(c.Context(), cli, every) },
	}
	c.Flags().DurationVar(&every, "lead-every", 3*time.Second, "how often the simulated partners send their traffic")
	return c
}

// sandbox runs the daemon wired to every module's simulated partner.
func sandbox(ctx context.Context, cli *modules.CLI, every time.Duration) error {
	dataDir := os.Getenv("PASSERELLE_DATA_DIR")
	if dataDir == "" {
		dataDir = filepath.Join("data", "sandbox")
	}
	if err := os.MkdirAll(dataDir, 0o750); err != nil {
		return err
	}
	var (
		vars  []string // what the sandbox sets, written for the operator commands
		stops []func()
		runs  []func(ctx context.Context, webhookBase, adminAddr string)
		notes []func(webhookBase, adminAddr string) string
	)
	defer func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}()
	// Loopback unless the user says otherwise: the sandbox's tokens are printed for all to read.
	env := []string{"PASSERELLE_HTTP_ADDR=127.0.0.1:8080", "PASSERELLE_ADMIN_ADDR=127.0.0.1:9090"}
	env = append(env, os.Environ()...)
	env = append(env, "PASSERELLE_DATA_DIR="+dataDir)
	preCfg, err := app.LoadConfig(ctx, env)
	if err != nil {
		return modules.UsageError{Msg: err.Error()}
	}
	log := app.NewLogger(cli.Err, preCfg.LogFormat, preCfg.LogLevel)
	sb := &modules.Sandbox{
		DataDir: dataDir, Log: log, LeadEvery: every,
		Defer: func(f func()) { stops = append(stops, f) },
		OnRun: func(f func(context.Context, string, string)) { runs = append(runs, f) },
		Note:  func(f func(string, string) string) { notes = append(notes, f) },
	}
	for _, m := range app.Modules() {
		p, ok := m.(modules.SandboxPartner)
		if !ok {
			continue
		}
		v, err := p.Sandbox(ctx, sb)
		if err != nil {
			return fmt.Errorf("sandbox %s: %w", m.Name(), err)
		}
		vars = append(vars, v...)
	}
	env = append(env, vars...)
	cfg, err := app.LoadConfig(ctx, env)
	if err != nil {
		return modules.UsageError{Msg: err.Error()}
	}
	app.ApplyMemoryLimit(cfg.MemoryLimit, log)
	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	webhookBase := "http://" + loopback(a.HTTPAddr())
	admin := loopback(a.AdminAddr())
	// The operator commands of another shell read the same variables: the same store, the same
	// simulated partners, the same admin address.
	envFile := filepath.Join(dataDir, "sandbox.env")
	vars = append(vars, "PASSERELLE_DATA_DIR="+dataDir, "PASSERELLE_ADMIN_ADDR="+admin)
	if err := os.WriteFile(envFile, []byte(strings.Join(vars, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `passerelle sandbox — the daemon on the embedded broker and SQLite under %s, wired to
simulated partners. In another shell, point the operator commands at it:
  set -a; . %s; set +a
`, cfg.DataDir, envFile)
	fmt.Fprintf(&b, `
  metrics        http://%s/metrics   (grep passerelle_stage_messages_total)
  readiness      http://%s/readyz
  dead letters   passerelle dlq list --admin %s
  stage backlog  passerelle stages --admin %s
`, admin, admin, admin, admin)
	for _, n := range notes {
		fmt.Fprintf(&b, "\n%s\n", n(webhookBase, admin))
	}
	b.WriteString("\nCtrl-C stops it.\n")
	if _, err := io.WriteString(cli.Out, b.String()); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	for _, r := range runs {
		go r(runCtx, webhookBase, admin)
	}
	return a.Run(ctx)
}

// loopback makes ":8080" printable as a URL host.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "::" || host == "0.0.0.0" {
		return "127.0.0.1:" + port
	}
	return net.JoinHostPort(host, port)
}
