package modules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// BillingConfig configures the monthly file of clients to bill and the SFTP server it goes to.
type BillingConfig struct {
	Schedule     string `env:"BILLING_SCHEDULE, default=0 6 1 * *" desc:"cron schedule (Europe/Paris) of the run for the previous month"`
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
}

// Validate implements config.Section.
func (c *BillingConfig) Validate() error {
	var errs config.Errors
	if _, err := cron.ParseStandard(strings.TrimSpace(c.Schedule)); err != nil {
		errs.Add("BILLING_SCHEDULE", "%q is not a cron schedule (minute hour day month weekday): %v", c.Schedule, err)
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
		return false, "PASSERELLE_SFTP_ADDR is empty: the ledger is kept and dry runs work, nothing is uploaded"
	}
	return true, fmt.Sprintf("files to %s%s on %q (Europe/Paris)", c.SFTPAddr, c.SFTPDir, c.Schedule)
}

// Build implements Module.
func (m *Billing) Build(ctx context.Context, env *Env) error {
	c := config.Get[*BillingConfig](env.Cfg, nameBilling)
	if err := pipelines.AddBilling(ctx, env.Wiring, &pipelines.BillingLedger{Store: env.Store}, env.CRM, env.Store); err != nil {
		return err
	}
	b := &pipelines.Billing{
		Store: env.Store, Pub: env.Pub, CSV: transforms.CSVOptions{BOM: c.BOM, DecimalComma: c.DecimalComma},
		Metrics: pipelines.NewBillingMetrics(env.Registry), Log: env.Log.With("pipeline", nameBilling), Now: env.Now,
		UploadAttempts: 4, UploadBackoff: 2 * time.Second, Catalogue: env.Catalogue, Sources: env.BillingSources,
	}
	m.Run = b
	if on, _ := m.Enabled(env.Cfg); on {
		up, err := c.uploader(sftp.NewMetrics(env.Registry))
		if err != nil {
			return err
		}
		b.Uploader = up
		env.Go(func(ctx context.Context) {
			if err := b.Schedule(ctx, c.Schedule, 10*time.Minute); err != nil {
				env.Log.Error("billing schedule stopped", "error", err)
			}
		})
	}
	env.Admin.HandleFunc("POST /admin/billing/run", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Period string `json:"period"`
			DryRun bool   `json:"dry_run"`
			Force  bool   `json:"force"`
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
		rep, err := b.Run(r.Context(), p, pipelines.RunOptions{DryRun: req.DryRun, Force: req.Force})
		if err != nil {
			status := http.StatusBadGateway
			if errors.Is(err, pipelines.ErrUploadsOff) {
				status = http.StatusConflict
			}
			httpapi.WriteError(w, status, err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, rep)
	})
	env.Admin.HandleFunc("GET /admin/billing", func(w http.ResponseWriter, r *http.Request) {
		ups, err := env.Store.Uploads(r.Context())
		if err == nil {
			var pending []store.PendingRun
			if pending, err = env.Store.BillingPending(r.Context()); err == nil {
				httpapi.WriteJSON(w, http.StatusOK, BillingStatus{Uploads: ups, Pending: pending})
				return
			}
		}
		httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
	})
	return nil
}

// BillingStatus is what `passerelle billing status` shows.
type BillingStatus struct {
	Uploads []store.Upload     `json:"uploads"`
	Pending []store.PendingRun `json:"pending"`
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
    passerelle billing run --period %s --dry-run   # print without uploading`,
			depot.Addr(), user, password, filepath.Join(root, "depot"), prev, filepath.Join(root, "depot", pipelines.FileName(prev)), prev)
	})
	return []string{
		"PASSERELLE_SFTP_ADDR=" + depot.Addr(), "PASSERELLE_SFTP_USER=" + user, "PASSERELLE_SFTP_PASSWORD=" + password,
		"PASSERELLE_SFTP_KNOWN_HOSTS=" + knownHosts, "PASSERELLE_SFTP_DIR=/depot/",
	}, nil
}

// Commands implements Commander: billing goes through the running daemon, which owns the ledger,
// the SFTP connection and the transport the billing.file_uploaded event goes out on.
func (*Billing) Commands(cli *CLI) []*cobra.Command {
	root := Group(&cobra.Command{Use: "billing", Short: "Build and upload the monthly file of clients to bill, and see what was uploaded"})
	var period string
	var dry, force bool
	run := &cobra.Command{
		Use:   "run",
		Short: "Build the period's file and upload it (through the running daemon)",
		Args:  cobra.NoArgs,
		Example: `  passerelle billing run --period 2026-11 --dry-run   # print the file, upload nothing
  passerelle billing run --period 2026-11`,
		RunE: func(c *cobra.Command, _ []string) error {
			if period == "" {
				period = pipelines.PeriodOf(time.Now()).Previous().String()
			}
			if _, err := transforms.ParsePeriod(period); err != nil {
				return UsageErrorf("--period %q: %v", period, err)
			}
			var rep pipelines.Report
			if err := cli.Admin(c.Context(), http.MethodPost, "/admin/billing/run", map[string]any{"period": period, "dry_run": dry, "force": force}, &rep); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(rep)
			}
			if dry {
				_, err := fmt.Fprint(cli.Out, rep.CSV)
				return err
			}
			switch rep.Outcome {
			case "already_uploaded":
				fmt.Fprintf(cli.Out, "%s already uploaded to %s (%d rows, sha256 %s): nothing done; use --force to upload again\n", rep.Period, rep.RemotePath, rep.Rows, rep.SHA256)
			default:
				fmt.Fprintf(cli.Out, "%s uploaded to %s: %d rows, %d bytes, sha256 %s\n", rep.Period, rep.RemotePath, rep.Rows, rep.Bytes, rep.SHA256)
			}
			return nil
		},
	}
	run.Flags().StringVar(&period, "period", "", "month to bill, YYYY-MM (default: the previous month)")
	run.Flags().BoolVar(&dry, "dry-run", false, "print the file, upload and record nothing")
	run.Flags().BoolVar(&force, "force", false, "upload even if the period was already uploaded")
	status := &cobra.Command{
		Use:   "status",
		Short: "Uploaded and pending periods (through the running daemon)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st BillingStatus
			if err := cli.Admin(c.Context(), http.MethodGet, "/admin/billing", nil, &st); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(st)
			}
			tw := tabwriter.NewWriter(cli.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "period\tstate\tremote_path\trows\tsha256\twhen\tlast_error")
			for _, u := range st.Uploads {
				fmt.Fprintf(tw, "%s\tuploaded\t%s\t%d\t%s\t%s\t\n", u.Period, u.RemotePath, u.Rows, u.SHA256, u.UploadedAt.Format(time.RFC3339))
			}
			for _, p := range st.Pending {
				fmt.Fprintf(tw, "%s\tpending (%d attempts)\t\t\t\t%s\t%s\n", p.Period, p.Attempts, p.Since.Format(time.RFC3339), p.LastError)
			}
			return tw.Flush()
		},
	}
	root.AddCommand(run, status)
	return []*cobra.Command{root}
}
