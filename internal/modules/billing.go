package modules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// BillingConfig configures the monthly file of clients to bill and the SFTP server it goes to.
type BillingConfig struct {
	Schedule     string `env:"BILLING_SCHEDULE, default=0 6 1 * *" desc:"cron schedule (Europe/Paris) of the run for the previous month; off: no scheduled run (nor retries), only billing run uploads"`
	RulesFile    string `env:"BILLING_RULES_FILE" desc:"YAML rule table saying how each prestation code is billed (see deploy/billing-rules.example.yaml); empty: the built-in defaults"`
	BOM          bool   `env:"BILLING_BOM, default=false" desc:"write a UTF-8 BOM for Excel"`
	DecimalComma bool   `env:"BILLING_DECIMAL_COMMA, default=false" desc:"write amounts with a decimal comma"`

	SFTPAddr       string `env:"SFTP_ADDR" desc:"host:port of the partner's SFTP server; uploads are off when empty"`
	SFTPUser       string `env:"SFTP_USER" desc:"SSH user"`
	SFTPPassword   string `env:"SFTP_PASSWORD" secret:"true" desc:"password (or use KEY_FILE)"`
	SFTPKeyFile    string `env:"SFTP_KEY_FILE" desc:"private key file for key auth"`
	SFTPKnownHosts string `env:"SFTP_KNOWN_HOSTS" desc:"known_hosts file holding the server's host key; unknown or changed keys are refused"`
	SFTPDir        string `env:"SFTP_DIR, default=/depot/" desc:"remote folder"`
	// Many writes in flight help on a link with latency and cost time on a fast one (see make bench).
	SFTPConcurrentWrites bool `env:"SFTP_CONCURRENT_WRITES, default=false" desc:"keep many SFTP write requests in flight: faster over links with latency, slower on a local network"`

	rules transforms.BillingRules // read from RulesFile by Validate; nil: the defaults
}

// scheduleOff is the value of PASSERELLE_BILLING_SCHEDULE that turns the schedule off.
const scheduleOff = "off"

func (c *BillingConfig) scheduled() bool {
	return !strings.EqualFold(strings.TrimSpace(c.Schedule), scheduleOff)
}

// rulesInForce says which rule table new periods are built with.
func (c *BillingConfig) rulesInForce() string {
	if c.RulesFile == "" {
		return "built-in rules (" + rulesLine(transforms.DefaultBillingRules()) + ")"
	}
	return fmt.Sprintf("rules from %s (%s)", c.RulesFile, rulesLine(c.rules))
}

// rulesLine writes a rule table on one line: "*-S once, *-AMM monthly".
func rulesLine(rs transforms.BillingRules) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.Pattern + " " + string(r.Kind)
	}
	return strings.Join(parts, ", ")
}

// Validate implements config.Section.
func (c *BillingConfig) Validate() error {
	var errs config.Errors
	if c.scheduled() {
		if _, err := cron.ParseStandard(strings.TrimSpace(c.Schedule)); err != nil {
			errs.Add("BILLING_SCHEDULE", "%q is not a cron schedule (minute hour day month weekday) nor off: %v", c.Schedule, err)
		}
	}
	c.rules = nil
	if c.RulesFile != "" {
		data, err := os.ReadFile(c.RulesFile)
		if err != nil {
			errs.Add("BILLING_RULES_FILE", "%v", err)
		} else if c.rules, err = transforms.ParseBillingRules(data); err != nil {
			errs.Add("BILLING_RULES_FILE", "%s: %v", c.RulesFile, err)
		}
	}
	if c.SFTPAddr != "" {
		if c.SFTPKnownHosts == "" {
			errs.Add("SFTP_KNOWN_HOSTS", "required when PASSERELLE_SFTP_ADDR is set: host keys are always checked")
		}
		if c.SFTPPassword == "" && c.SFTPKeyFile == "" {
			errs.Add("SFTP_PASSWORD", "set a password or PASSERELLE_SFTP_KEY_FILE")
		}
	}
	return errs.Err()
}

// uploader builds the SFTP uploader.
func (c *BillingConfig) uploader(m *sftp.Metrics) (*sftp.Uploader, error) {
	sc := sftp.Config{Addr: c.SFTPAddr, User: c.SFTPUser, Password: c.SFTPPassword, KnownHostsFile: c.SFTPKnownHosts, Dir: c.SFTPDir,
		ConcurrentWrites: c.SFTPConcurrentWrites}
	if c.SFTPKeyFile != "" {
		key, err := os.ReadFile(c.SFTPKeyFile)
		if err != nil {
			return nil, fmt.Errorf("PASSERELLE_SFTP_KEY_FILE: %w", err)
		}
		sc.PrivateKey = key
	}
	up, err := sftp.NewUploader(sc, m)
	if err != nil {
		return nil, fmt.Errorf("sftp: %w", err)
	}
	return up, nil
}

// Billing is the ledger of what is billable (fed by Shop Application's events), the monthly file
// of clients to bill uploaded over SFTP on a schedule, and the CRM stage of its events.
type Billing struct {
	// Run is the built billing run, for tests; nil until Build.
	Run *pipelines.Billing
}

const nameBilling = pipelines.PipelineBilling

// Name implements Module.
func (*Billing) Name() string { return nameBilling }

// Config implements Module.
func (*Billing) Config() config.Section { return &BillingConfig{} }

// Enabled implements Module.
func (*Billing) Enabled(cfg config.Config) (bool, string) {
	c := config.Get[*BillingConfig](cfg, nameBilling)
	if c.SFTPAddr == "" {
		return false, "PASSERELLE_SFTP_ADDR is empty: the ledger is kept and dry runs work, nothing is uploaded; " + c.rulesInForce()
	}
	if !c.scheduled() {
		return true, fmt.Sprintf("files to %s%s; schedule off (PASSERELLE_BILLING_SCHEDULE=off): only `passerelle billing run` uploads, failed uploads are not retried; %s",
			c.SFTPAddr, c.SFTPDir, c.rulesInForce())
	}
	return true, fmt.Sprintf("files to %s%s on %q (Europe/Paris); %s", c.SFTPAddr, c.SFTPDir, c.Schedule, c.rulesInForce())
}

// Build implements Module.
func (m *Billing) Build(ctx context.Context, env *Env) error {
	c := config.Get[*BillingConfig](env.Cfg, nameBilling)
	metrics := pipelines.NewBillingMetrics(env.Registry)
	ledger := &pipelines.BillingLedger{Store: env.Store, Metrics: metrics}
	if err := ledger.Restore(ctx); err != nil {
		return err
	}
	if err := pipelines.AddBilling(ctx, env.Wiring, ledger, env.CRM, env.Store); err != nil {
		return err
	}
	b := &pipelines.Billing{
		Store: env.Store, Pub: env.Pub, CSV: transforms.CSVOptions{BOM: c.BOM, DecimalComma: c.DecimalComma},
		Metrics: metrics, Log: env.Log.With("pipeline", nameBilling), Now: env.Now,
		UploadAttempts: 4, UploadBackoff: 2 * time.Second, Catalogue: env.Catalogue, Rules: c.rules, Sources: env.BillingSources,
	}
	m.Run = b
	if on, _ := m.Enabled(env.Cfg); on {
		up, err := c.uploader(sftp.NewMetrics(env.Registry))
		if err != nil {
			return err
		}
		b.Uploader = up
		if c.scheduled() {
			env.Go(func(ctx context.Context) {
				if err := b.Schedule(ctx, c.Schedule, 10*time.Minute); err != nil {
					env.Log.Error("billing schedule stopped", "error", err)
				}
			})
		}
	}
	env.Admin.HandleFunc("POST /admin/billing/run", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Period string `json:"period"`
			DryRun bool   `json:"dry_run"`
			Force  bool   `json:"force"`
			Strict bool   `json:"strict"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, `want {"period": "YYYY-MM", "dry_run": false, "force": false}`)
			return
		}
		p, err := transforms.ParsePeriod(req.Period)
		if err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, "period: "+err.Error())
			return
		}
		rep, err := b.Run(r.Context(), p, pipelines.RunOptions{DryRun: req.DryRun, Force: req.Force, Strict: req.Strict})
		if err != nil {
			status := http.StatusBadGateway
			switch {
			case errors.Is(err, pipelines.ErrPeriodNotOver):
				status = http.StatusBadRequest
			case errors.Is(err, pipelines.ErrUploadsOff), errors.Is(err, pipelines.ErrWithoutIdentity), errors.Is(err, pipelines.ErrBusy):
				status = http.StatusConflict
			}
			httpapi.WriteError(w, status, err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, rep)
	})
	env.Admin.HandleFunc("GET /admin/billing", func(w http.ResponseWriter, r *http.Request) {
		st, err := billingStatus(r.Context(), env.Store, c)
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, st)
	})
	return nil
}

// BillingStatus is what `passerelle billing status` shows.
type BillingStatus struct {
	Uploads []store.Upload     `json:"uploads"`
	Pending []store.PendingRun `json:"pending"`
	// Periods is what each period's last build billed and the rules frozen for it, by period.
	Periods []PeriodStatus `json:"periods"`
	// LedgerLastPoll is the poll time of the latest Shop Application change the ledger applied.
	LedgerLastPoll *time.Time `json:"ledger_last_poll,omitempty"`
	Rules          string     `json:"rules"`    // the table new periods are built with
	Schedule       string     `json:"schedule"` // cron spec, or off
}

// PeriodStatus is one period of BillingStatus.
type PeriodStatus struct {
	Period        string                `json:"period"`
	LastBuild     *pipelines.RunSummary `json:"last_build,omitempty"`
	FrozenRules   string                `json:"frozen_rules,omitempty"` // canonical YAML
	RulesFrozenAt *time.Time            `json:"rules_frozen_at,omitempty"`
}

func billingStatus(ctx context.Context, st *store.Store, c *BillingConfig) (BillingStatus, error) {
	out := BillingStatus{Rules: c.rulesInForce(), Schedule: c.Schedule}
	var err error
	if out.Uploads, err = st.Uploads(ctx); err != nil {
		return out, err
	}
	if out.Pending, err = st.BillingPending(ctx); err != nil {
		return out, err
	}
	sums, err := pipelines.BillingSummaries(ctx, st)
	if err != nil {
		return out, err
	}
	periods := map[string]bool{}
	for p := range sums {
		periods[p] = true
	}
	for _, u := range out.Uploads {
		periods[u.Period] = true
	}
	for _, p := range out.Pending {
		periods[p.Period] = true
	}
	for _, p := range slices.Sorted(maps.Keys(periods)) {
		ps := PeriodStatus{Period: p}
		if s, ok := sums[p]; ok {
			ps.LastBuild = &s
		}
		rules, at, ok, err := st.BillingRulesFor(ctx, p)
		if err != nil {
			return out, err
		}
		if ok {
			ps.FrozenRules, ps.RulesFrozenAt = rules, &at
		}
		out.Periods = append(out.Periods, ps)
	}
	if t, ok, err := pipelines.LedgerLastPoll(ctx, st); err != nil {
		return out, err
	} else if ok {
		out.LedgerLastPoll = &t
	}
	return out, nil
}

// Sandbox implements SandboxPartner: the partner's SFTP depot, in-process, with its host key
// pinned in a known_hosts file.
func (*Billing) Sandbox(ctx context.Context, sb *Sandbox) ([]string, error) {
	root := filepath.Join(sb.DataDir, "sftp")
	if err := os.MkdirAll(filepath.Join(root, "depot"), 0o750); err != nil {
		return nil, err
	}
	const user, password = "partner", "sandbox-sftp"
	depot, err := sftp.StartServer(ctx, sftp.ServerConfig{Root: root, User: user, Password: password})
	if err != nil {
		return nil, fmt.Errorf("start SFTP simulator: %w", err)
	}
	sb.Defer(func() { _ = depot.Close() })
	knownHosts := filepath.Join(sb.DataDir, "known_hosts")
	if err := depot.WriteKnownHosts(knownHosts); err != nil {
		return nil, err
	}
	prev := pipelines.PeriodOf(time.Now()).Previous()
	sb.Note(func(_, _ string) string {
		return fmt.Sprintf(`SFTP depot (in-process): %s, user %q, password %q; files land in %s
  Bill last month now, then look at the file:
    passerelle billing run --period %s
    cat %s
    passerelle billing run --period %s --dry-run   # print without uploading, then what it bills
    passerelle billing status                          # each period's unknown codes and clients without identity
  Name the clients Shop Application does not (the sa_key is the file's reference_client):
    printf 'sa_key;societe;nom;email\nSA-KEY;ACME SARL;Martin;compta@acme.example\n' > clients.csv
    passerelle clients import clients.csv --dry-run`,
			depot.Addr(), user, password, filepath.Join(root, "depot"), prev, filepath.Join(root, "depot", pipelines.FileName(prev)), prev)
	})
	return []string{
		"PASSERELLE_SFTP_ADDR=" + depot.Addr(), "PASSERELLE_SFTP_USER=" + user, "PASSERELLE_SFTP_PASSWORD=" + password,
		"PASSERELLE_SFTP_KNOWN_HOSTS=" + knownHosts, "PASSERELLE_SFTP_DIR=/depot/",
	}, nil
}

// Commands implements Commander: billing goes through the running daemon, which owns the ledger,
// the SFTP connection and the transport the billing.file_uploaded event goes out on; the client
// directory's commands open the daemon's store.
func (*Billing) Commands(cli *CLI) []*cobra.Command {
	root := Group(&cobra.Command{Use: "billing", Short: "Build and upload the monthly file of clients to bill, and see what was uploaded"})
	var period string
	var dry, force, strict bool
	run := &cobra.Command{
		Use:   "run",
		Short: "Build the period's file and upload it (through the running daemon)",
		Long: `Build the period's file and upload it, through the running daemon.

A period is billed once its month is over (Europe/Paris): an earlier one is refused (exit 2)
unless --force. A dry run prints the file on stdout and, on stderr, what it bills: rows, clients,
total HT, rows per rule, codes no rule names and clients without identity. The first build of a
period, dry or not, freezes its catalogue prices and its rule table.`,
		Args: cobra.NoArgs,
		Example: `  passerelle billing run --period 2026-11 --dry-run   # print the file, upload nothing
  passerelle billing run --period 2026-11 --strict    # refuse if a client has no identity
  passerelle billing run --period 2026-11`,
		RunE: func(c *cobra.Command, _ []string) error {
			if period == "" {
				period = pipelines.PeriodOf(time.Now()).Previous().String()
			}
			p, err := transforms.ParsePeriod(period)
			if err != nil {
				return UsageErrorf("--period %q: %v", period, err)
			}
			if _, end := p.Bounds(frtime.Paris()); time.Now().Before(end) {
				if !force {
					return UsageErrorf("--period %s is not over (it ends on %s, Europe/Paris): bill it once it is, or use --force "+
						"to build it now (its prices and rules are frozen now, the rest of the month is missing, and an upload counts as the period's)",
						p, end.Format("2006-01-02"))
				}
				fmt.Fprintf(cli.Err, "passerelle: --force: building %s before it ends: its prices and rules are frozen now, what the rest of the month brings is missing", p)
				if !dry {
					fmt.Fprint(cli.Err, ", and the upload counts as the period's (the scheduled run will not upload it again)")
				}
				fmt.Fprintln(cli.Err)
			}
			var rep pipelines.Report
			if err := cli.Admin(c.Context(), http.MethodPost, "/admin/billing/run", map[string]any{"period": period, "dry_run": dry, "force": force, "strict": strict}, &rep); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(rep)
			}
			if dry {
				// The file alone on stdout, so that it can be redirected; what it bills for a person on stderr.
				if _, err := fmt.Fprint(cli.Out, rep.CSV); err != nil {
					return err
				}
				return WriteBillingSummary(cli.Err, rep)
			}
			switch rep.Outcome {
			case "already_uploaded":
				fmt.Fprintf(cli.Out, "%s already uploaded to %s (%d rows, sha256 %s): nothing done; use --force to upload again\n", rep.Period, rep.RemotePath, rep.Rows, rep.SHA256)
				return nil
			default:
				fmt.Fprintf(cli.Out, "%s uploaded to %s: %d rows, %d bytes, sha256 %s\n", rep.Period, rep.RemotePath, rep.Rows, rep.Bytes, rep.SHA256)
			}
			return WriteBillingSummary(cli.Out, rep)
		},
	}
	run.Flags().StringVar(&period, "period", "", "month to bill, YYYY-MM (default: the previous month)")
	run.Flags().BoolVar(&dry, "dry-run", false, "print the file and what it bills, upload nothing")
	run.Flags().BoolVar(&force, "force", false, "upload a period already uploaded, or build one not over yet (freezing its prices and rules now)")
	run.Flags().BoolVar(&strict, "strict", false, "refuse to upload a file with rows whose client has no identity in the directory")
	status := &cobra.Command{
		Use:   "status",
		Short: "Uploaded and pending periods, what each last build billed, and the ledger's last poll (through the running daemon)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st BillingStatus
			if err := cli.Admin(c.Context(), http.MethodGet, "/admin/billing", nil, &st); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(st)
			}
			return writeBillingStatus(cli.Out, st)
		},
	}
	root.AddCommand(run, status)
	return []*cobra.Command{root, clientsCommand(cli)}
}

func writeBillingStatus(w io.Writer, st BillingStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "period\tstate\tremote_path\trows\tsha256\twhen\tlast_error")
	for _, u := range st.Uploads {
		fmt.Fprintf(tw, "%s\tuploaded\t%s\t%d\t%s\t%s\t\n", u.Period, u.RemotePath, u.Rows, u.SHA256, u.UploadedAt.Format(time.RFC3339))
	}
	for _, p := range st.Pending {
		fmt.Fprintf(tw, "%s\tpending (%d attempts)\t\t\t\t%s\t%s\n", p.Period, p.Attempts, p.Since.Format(time.RFC3339), p.LastError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range st.Periods {
		fmt.Fprintf(w, "\n%s\n", p.Period)
		if s := p.LastBuild; s != nil {
			fmt.Fprintf(w, "  last built %s (%s): %d rows, %d clients, total HT %s\n", s.BuiltAt.Format(time.RFC3339), s.Outcome, s.Rows, s.Clients, s.TotalHTCents)
			fmt.Fprintf(w, "  unknown codes (billed monthly): %s\n", listOrNone(s.UnknownCodes))
			fmt.Fprintf(w, "  clients without identity: %s\n", listOrNone(s.ClientsWithoutIdentity))
		}
		if p.FrozenRules != "" {
			line := p.FrozenRules
			if rs, err := transforms.ParseBillingRules([]byte(p.FrozenRules)); err == nil {
				line = rulesLine(rs)
			}
			fmt.Fprintf(w, "  rules frozen %s: %s\n", p.RulesFrozenAt.Format(time.RFC3339), line)
		}
	}
	fmt.Fprintln(w)
	if st.LedgerLastPoll != nil {
		fmt.Fprintf(w, "the ledger absorbed the last poll at %s\n", st.LedgerLastPoll.Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "the ledger has absorbed no Shop Application change yet")
	}
	fmt.Fprintf(w, "new periods: %s; schedule: %s\n", st.Rules, st.Schedule)
	return nil
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, ", ")
}

// WriteBillingSummary writes what a run's file bills, for a person to read before it goes out.
func WriteBillingSummary(w io.Writer, rep pipelines.Report) error {
	var kinds []string
	for _, k := range []transforms.BillingKind{transforms.BillingOnce, transforms.BillingMonthly, transforms.BillingAnnual} {
		if n := rep.PerKind[k]; n > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
	}
	_, err := fmt.Fprintf(w, `--- %s: %d rows, %d clients, total HT %s
  rows per rule: %s
  unknown codes (no rule names them, billed monthly): %s
  clients without identity (rows without company, name nor email): %s
`, rep.Period, rep.Rows, rep.Clients, rep.TotalHTCents, listOrNone(kinds), listOrNone(rep.UnknownCodes), listOrNone(rep.ClientsWithoutIdentity))
	return err
}
