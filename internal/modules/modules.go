// Package modules holds passerelle's modules: each partner or cross-cutting flow (crm, leads,
// shopapp, billing, …) as one value that says whether the configuration enables it and why, owns
// its section of the configuration, and builds its stages, HTTP routes, schedules, metrics,
// operator commands and sandbox partner from a shared Env. The list of modules is written once,
// in the composition root (internal/app); nothing else names a module.
//
// Adding a connector: its package under connectors/ (with a simulator sub-package), one file here
// implementing Module (and, as it needs, Commander and SandboxPartner), and one line in
// app.Modules.
package modules

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/diskguard"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/redact"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

// Module is one partner or one cross-cutting flow.
type Module interface {
	// Name is the module's name: its pipeline label, its dead-letter topic's prefix, its command.
	Name() string
	// Config returns a new, zero section of the configuration the module owns (a pointer to a
	// struct with env tags), or nil when it has none.
	Config() config.Section
	// Enabled says whether the configuration turns the module on, and why (check-config prints it).
	Enabled(cfg config.Config) (bool, string)
	// Build adds the module's stages, routes, schedules and collectors to env. It is called for
	// every module in list order, enabled or not: a disabled module still consumes its
	// dead-letter topic, so what it stored earlier stays visible.
	Build(ctx context.Context, env *Env) error
}

// Checker is a module whose configuration depends on another module's: a source that nothing
// would consume is an error, not leads piling up unseen.
type Checker interface {
	Check(cfg config.Config) error
}

// Source is a module that brings records in (a webhook, a poller): serve refuses to start when no
// source is enabled, since the daemon would have nothing to do.
type Source interface {
	Source() string // how to turn it on, for the error message: "PASSERELLE_ICIFORMATION_TOKEN (leads)"
}

// Commander is a module that brings operator commands.
type Commander interface {
	Commands(c *CLI) []*cobra.Command
}

// SandboxPartner is a module whose partner `passerelle sandbox` simulates.
type SandboxPartner interface {
	// Sandbox starts the partner's simulator and returns the variables that wire the daemon to it.
	// What it starts stops with sb.Defer. Run is called once the daemon runs (it may be nil).
	Sandbox(ctx context.Context, sb *Sandbox) (env []string, err error)
}

// Env is what modules build from: the daemon's shared parts.
type Env struct {
	Cfg      config.Config
	Log      *slog.Logger
	Registry *prometheus.Registry
	Store    *store.Store
	Broker   *broker.Broker
	Pub      *broker.Publisher
	// Wiring adds stages to the router.
	Wiring pipelines.Wiring
	// Webhooks is the partner-facing mux (PASSERELLE_HTTP_ADDR); WebhookMetrics instruments it.
	Webhooks       *http.ServeMux
	WebhookMetrics *httpapi.WebhookMetrics
	// Admin is the admin API mux (PASSERELLE_ADMIN_ADDR): modules add routes under /admin/<name>/.
	Admin *http.ServeMux
	// HTTPMetrics counts every outbound HTTP attempt.
	HTTPMetrics *httpclient.Metrics
	// DeliveryMetrics measure the delivery engines: each outbound sink builds its engine
	// (delivery.New) with its own limits and these metrics.
	DeliveryMetrics *delivery.Metrics
	// Yield holds stages while webhook ingest is busy.
	Yield *pipelines.Yield
	// Stages counts and times every stage.
	Stages *pipelines.Metrics
	// DisabledEndpoints counts endpoints disabled after a 410, by sink.
	DisabledEndpoints *prometheus.CounterVec
	Now               func() time.Time

	// Guard says when the disk or the store cannot take work; sinks report the store's writes to it.
	Guard *diskguard.Guard

	// CRM is the CRM sink, set by the crm module (nil when no endpoint is configured): modules
	// copy it with their own event mapping.
	CRM *pipelines.CRMSink
	// Hasher digests personal data (emails, phones) with the daemon's hash key, set by the leads
	// module: for logs and for records that must not hold them in clear.
	Hasher redact.Hasher
	// LeadSources decode what lead sources received, by source name.
	LeadSources pipelines.LeadSources
	// ReplaySources replay other sources' records (Simplébo, Ecolix) through their ingest, by
	// source name, set by their modules for `passerelle replay`.
	ReplaySources map[string]pipelines.ReplayFunc
	// Catalogue is Shop Application's price list, set by the shopapp module for billing.
	Catalogue pipelines.CatalogueReader
	// BillingSources add other partners' clients to the billing file (Simplébo's).
	BillingSources []pipelines.BillingSource

	background []func(context.Context)
	closers    []func() error
}

// Go runs f while the daemon runs; ctx is done at shutdown.
func (e *Env) Go(f func(ctx context.Context)) { e.background = append(e.background, f) }

// OnClose runs f at shutdown, after the router stopped, in reverse order of registration.
func (e *Env) OnClose(f func() error) { e.closers = append(e.closers, f) }

// Background is what Go registered.
func (e *Env) Background() []func(context.Context) { return e.background }

// Closers is what OnClose registered.
func (e *Env) Closers() []func() error { return e.closers }

// CLI is what a module's commands need.
type CLI struct {
	Out, Err io.Writer
	// Config loads the configuration with every module's section.
	Config func(ctx context.Context) (config.Config, error)
	// Admin calls the running daemon's admin API at the --admin address.
	Admin func(ctx context.Context, method, path string, body, out any) error
	// JSON is true when --output json asked for JSON instead of a table.
	JSON func() bool
}

// PrintJSON prints v indented, for scripts (--output json) and API answers.
func (c *CLI) PrintJSON(v any) error {
	enc := json.NewEncoder(c.Out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Sandbox is what a sandbox partner needs.
type Sandbox struct {
	DataDir string
	Log     *slog.Logger
	// LeadEvery is how often simulated partners send their traffic.
	LeadEvery time.Duration
	// Defer registers what stops the partner when the sandbox ends.
	Defer func(func())
	// OnRun registers what runs once the daemon is up: the partner's own traffic (posted leads,
	// changing interfaces), given the daemon's webhook base URL ("http://127.0.0.1:8080") and
	// admin address.
	OnRun func(func(ctx context.Context, webhookBase, adminAddr string))
	// Note registers a paragraph the sandbox prints for the user once the daemon's addresses are
	// known: the partner's credentials and what to try.
	Note func(func(webhookBase, adminAddr string) string)
}

// UsageError is a mistake in the command line or the configuration: the CLI prints it and exits 2.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// UsageErrorf builds a UsageError.
func UsageErrorf(format string, args ...any) error { return UsageError{fmt.Sprintf(format, args...)} }

// Group makes c a command group: run without a known subcommand it fails with a usage error
// that names the subcommands, instead of printing its help and succeeding.
func Group(c *cobra.Command) *cobra.Command {
	c.Args = cobra.ArbitraryArgs
	c.RunE = func(c *cobra.Command, args []string) error {
		var subs []string
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() {
				subs = append(subs, s.Name())
			}
		}
		if len(args) > 0 {
			return UsageErrorf("unknown command %q for %q (want one of: %s)\nSee '%s --help'.", args[0], c.CommandPath(), strings.Join(subs, ", "), c.CommandPath())
		}
		return UsageErrorf("usage: %s <%s>\nSee '%s --help'.", c.CommandPath(), strings.Join(subs, "|"), c.CommandPath())
	}
	return c
}
