package modules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/ecolix/ecolixsim"
	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/pipelines"
)

// EcolixConfig configures the Ecolix ERP exports (API or file inbox) and the lead import.
type EcolixConfig struct {
	URL             string        `env:"ECOLIX_URL" desc:"API base URL; the export poller and the import are off when empty"`
	APIKey          string        `env:"ECOLIX_API_KEY" secret:"true" desc:"API key, sent as Authorization: Bearer"`
	Resources       []string      `env:"ECOLIX_RESOURCES, default=clients,devis,commandes,articles,stocks" desc:"exports to pull, comma separated"`
	PollInterval    time.Duration `env:"ECOLIX_POLL_INTERVAL, default=5m" desc:"time between two polls of the exports and scans of the inbox; a poll still running when the next is due skips it"`
	RatePerMin      int           `env:"ECOLIX_RATE_PER_MIN" desc:"the contractual call limit: calls per sliding minute, shared by every export and the import (required with ECOLIX_URL)"`
	Inbox           string        `env:"ECOLIX_INBOX" desc:"where CSV exports are dropped (file mode): a local folder, or sftp://user@host:port/path; processed files move to traites/ or erreurs/"`
	InboxPassword   string        `env:"ECOLIX_INBOX_PASSWORD" secret:"true" desc:"SFTP inbox: password (or use ECOLIX_INBOX_KEY_FILE)"`
	InboxKeyFile    string        `env:"ECOLIX_INBOX_KEY_FILE" desc:"SFTP inbox: private key file for key auth"`
	InboxKnownHosts string        `env:"ECOLIX_INBOX_KNOWN_HOSTS" desc:"SFTP inbox: known_hosts file holding the server's host key; unknown or changed keys are refused"`
	ImportLeads     string        `env:"ECOLIX_IMPORT_LEADS, default=off" desc:"on: every new lead is upserted as an Ecolix client (POST /api/v1/import/clients), under the same call limit"`
}

// Validate implements config.Section.
func (c *EcolixConfig) Validate() error {
	var errs config.Errors
	if c.URL != "" {
		errs.HTTPURL("ECOLIX_URL", c.URL)
		if c.APIKey == "" {
			errs.Add("ECOLIX_API_KEY", "required when PASSERELLE_ECOLIX_URL is set")
		}
		if c.RatePerMin <= 0 {
			errs.Add("ECOLIX_RATE_PER_MIN", "required when PASSERELLE_ECOLIX_URL is set: the contractual calls per minute, at least 1")
		}
	}
	if c.RatePerMin < 0 {
		errs.Add("ECOLIX_RATE_PER_MIN", "must not be negative")
	}
	if len(c.Resources) == 0 {
		errs.Add("ECOLIX_RESOURCES", "name at least one of %s", strings.Join(ecolix.Resources(), ", "))
	}
	for _, r := range c.Resources {
		if !ecolix.KnownResource(strings.TrimSpace(r)) {
			errs.Add("ECOLIX_RESOURCES", "%q: want some of %s", r, strings.Join(ecolix.Resources(), ", "))
		}
	}
	if c.PollInterval <= 0 {
		errs.Add("ECOLIX_POLL_INTERVAL", "must be positive")
	}
	if u, remote, err := c.sftpInbox(); err != nil {
		errs.Add("ECOLIX_INBOX", "%v", err)
	} else if remote {
		if u.User == nil || u.User.Username() == "" {
			errs.Add("ECOLIX_INBOX", "sftp://user@host:port/path: the user is missing")
		}
		if c.InboxKnownHosts == "" {
			errs.Add("ECOLIX_INBOX_KNOWN_HOSTS", "required with an sftp:// inbox: host keys are always checked")
		}
		if c.InboxPassword == "" && c.InboxKeyFile == "" {
			errs.Add("ECOLIX_INBOX_PASSWORD", "set a password or PASSERELLE_ECOLIX_INBOX_KEY_FILE for the sftp:// inbox")
		}
	}
	switch c.ImportLeads {
	case "on":
		if c.URL == "" {
			errs.Add("ECOLIX_IMPORT_LEADS", "on needs PASSERELLE_ECOLIX_URL")
		}
	case "off":
	default:
		errs.Add("ECOLIX_IMPORT_LEADS", "%q: want on or off", c.ImportLeads)
	}
	return errs.Err()
}

// sftpInbox parses an sftp:// inbox; remote is false for a local folder (no scheme). Errors quote
// no credentials.
func (c *EcolixConfig) sftpInbox() (u *url.URL, remote bool, err error) {
	if !strings.Contains(c.Inbox, "://") {
		return nil, false, nil
	}
	u, err = url.Parse(c.Inbox)
	switch {
	case err != nil:
		return nil, false, errors.New("not a URL nor a local folder")
	case u.Scheme != "sftp":
		return nil, false, fmt.Errorf("%s:// inboxes are not supported: give a local folder or sftp://user@host:port/path", u.Scheme)
	case u.Host == "":
		return nil, false, errors.New("sftp://user@host:port/path: the host is missing")
	case u.User != nil:
		if _, has := u.User.Password(); has {
			return nil, false, errors.New("no password in the URL: set PASSERELLE_ECOLIX_INBOX_PASSWORD")
		}
	}
	return u, true, nil
}

// inboxFS opens the configured inbox: a local folder (created if missing) or an SFTP one.
func (c *EcolixConfig) inboxFS() (ecolix.FS, error) {
	u, remote, err := c.sftpInbox()
	if err != nil {
		return nil, fmt.Errorf("PASSERELLE_ECOLIX_INBOX: %w", err)
	}
	if !remote {
		if err := os.MkdirAll(c.Inbox, 0o750); err != nil {
			return nil, fmt.Errorf("PASSERELLE_ECOLIX_INBOX: %w", err)
		}
		return ecolix.LocalFS(c.Inbox), nil
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "22")
	}
	dir := u.Path
	if dir == "" {
		dir = "."
	}
	sc := sftp.Config{Addr: addr, User: u.User.Username(), Password: c.InboxPassword, KnownHostsFile: c.InboxKnownHosts, Dir: dir}
	if c.InboxKeyFile != "" {
		key, err := os.ReadFile(c.InboxKeyFile)
		if err != nil {
			return nil, fmt.Errorf("PASSERELLE_ECOLIX_INBOX_KEY_FILE: %w", err)
		}
		sc.PrivateKey = key
	}
	d, err := sftp.NewRemoteDir(sc)
	if err != nil {
		return nil, fmt.Errorf("PASSERELLE_ECOLIX_INBOX: %w", err)
	}
	return sftpInbox{d}, nil
}

// sftpInbox is an Ecolix inbox on an SFTP server.
type sftpInbox struct{ d *sftp.RemoteDir }

// maxInboxFile is read at most from an SFTP inbox file, one byte past the inbox's own limit, which
// then refuses the file.
const maxInboxFile = 256<<20 + 1

func (s sftpInbox) List(ctx context.Context, dir string) ([]ecolix.FileInfo, error) {
	list, err := s.d.List(ctx, dir)
	out := make([]ecolix.FileInfo, 0, len(list))
	for _, fi := range list {
		out = append(out, ecolixFileInfo(fi))
	}
	return out, err
}

func (s sftpInbox) Open(ctx context.Context, name string) (io.ReadCloser, error) {
	data, err := s.d.ReadFile(ctx, name, maxInboxFile)
	if err != nil {
		return nil, err
	}
	return io.NopCloser(bytes.NewReader(data)), nil
}

func (s sftpInbox) Rename(ctx context.Context, from, to string) error {
	return s.d.Rename(ctx, from, to)
}

func (s sftpInbox) WriteFile(ctx context.Context, name string, data []byte) error {
	return s.d.WriteFile(ctx, name, data)
}

func (s sftpInbox) Stat(ctx context.Context, name string) (ecolix.FileInfo, error) {
	fi, err := s.d.Stat(ctx, name)
	if err != nil {
		return ecolix.FileInfo{}, err
	}
	return ecolixFileInfo(fi), nil
}

func (s sftpInbox) MkdirAll(ctx context.Context, dir string) error { return s.d.MkdirAll(ctx, dir) }

func ecolixFileInfo(fi fs.FileInfo) ecolix.FileInfo {
	return ecolix.FileInfo{Name: fi.Name(), Size: fi.Size(), ModTime: fi.ModTime(), IsDir: fi.IsDir()}
}

// resources are the configured exports, trimmed.
func (c *EcolixConfig) resources() []string {
	out := make([]string, 0, len(c.Resources))
	for _, r := range c.Resources {
		out = append(out, strings.TrimSpace(r))
	}
	return out
}

// Ecolix is the Ecolix ERP module: incremental exports (or CSV files dropped in an inbox)
// published as erp.*_changed events to the CRM, clients kept as the client directory, validated
// quotes with Shop Application codes turned into provisioning commands, and new leads imported as
// Ecolix clients. One call budget covers every call to Ecolix.
type Ecolix struct {
	// Built, for tests; nil until Build, and when off.
	Budget *ecolix.Budget
	Client *ecolix.Client
	Poller *pipelines.EcolixPoller
}

const nameEcolix = pipelines.PipelineEcolix

// Name implements Module.
func (*Ecolix) Name() string { return nameEcolix }

// Config implements Module.
func (*Ecolix) Config() config.Section { return &EcolixConfig{} }

// Enabled implements Module.
func (*Ecolix) Enabled(cfg config.Config) (bool, string) {
	c := config.Get[*EcolixConfig](cfg, nameEcolix)
	var what []string
	if c.URL != "" {
		what = append(what, fmt.Sprintf("polling %s (%s) every %s under %d calls/min", config.RedactURL(c.URL), strings.Join(c.resources(), ","), c.PollInterval, c.RatePerMin))
	}
	if c.Inbox != "" {
		where := c.Inbox
		if u, remote, err := c.sftpInbox(); err == nil && remote {
			where = "sftp://" + u.Host + u.Path
		}
		what = append(what, "scanning inbox "+where+" every "+c.PollInterval.String())
	}
	if len(what) == 0 {
		return false, "PASSERELLE_ECOLIX_URL and PASSERELLE_ECOLIX_INBOX are empty"
	}
	if c.ImportLeads == "on" {
		what = append(what, "importing new leads")
	}
	return true, strings.Join(what, "; ")
}

// Source implements Source.
func (*Ecolix) Source() string {
	return "PASSERELLE_ECOLIX_URL with _API_KEY and _RATE_PER_MIN, or PASSERELLE_ECOLIX_INBOX (Ecolix exports)"
}

// Check implements Checker: the exports' events must reach a sink.
func (m *Ecolix) Check(cfg config.Config) error {
	if on, _ := m.Enabled(cfg); on {
		if crm, _ := (CRM{}).Enabled(cfg); !crm {
			return fmt.Errorf("PASSERELLE_ECOLIX_URL or _INBOX is set but nothing consumes its events: set PASSERELLE_CRM_URL (and PASSERELLE_CRM_SECRET)")
		}
	}
	return nil
}

// Build implements Module.
func (m *Ecolix) Build(ctx context.Context, env *Env) error {
	c := config.Get[*EcolixConfig](env.Cfg, nameEcolix)
	var imp *pipelines.EcolixImporter
	if on, _ := m.Enabled(env.Cfg); on {
		cm := ecolix.NewMetrics(env.Registry)
		log := env.Log.With("pipeline", nameEcolix)
		p := &pipelines.EcolixPoller{Resources: c.resources(), Store: env.Store, Pub: env.Pub,
			Metrics: pipelines.NewEcolixMetrics(env.Registry), Log: log, Now: env.Now}
		if c.URL != "" {
			// One budget for every call: the exports, the inbox has none, and the import.
			m.Budget = ecolix.NewBudget(c.RatePerMin)
			client, err := ecolix.New(ecolix.Config{BaseURL: c.URL, APIKey: c.APIKey, Metrics: cm}, m.Budget, env.HTTPMetrics)
			if err != nil {
				return err
			}
			m.Client, p.API = client, client
			if c.ImportLeads == "on" {
				endpoint := pipelines.EndpointID(c.URL)
				env.DeliveryMetrics.Init(endpoint)
				// The budget is the real limit; the engine adds Retry-After pauses and a cap on
				// calls in flight.
				imp = &pipelines.EcolixImporter{API: client, Engine: delivery.New(delivery.Config{Concurrency: 2}, env.DeliveryMetrics),
					Endpoint: endpoint, Store: env.Store, Log: log}
			}
		}
		if c.Inbox != "" {
			fsys, err := c.inboxFS()
			if err != nil {
				return err
			}
			in, err := ecolix.NewInbox(ecolix.InboxConfig{FS: fsys,
				Processed: pipelines.EcolixProcessed{Store: env.Store, Now: env.Now}, Metrics: cm})
			if err != nil {
				return err
			}
			p.Inbox = in
		}
		m.Poller = p
		env.addReplaySource(nameEcolix, pipelines.EcolixReplay(p))
		env.Go(func(ctx context.Context) { p.Run(ctx, c.PollInterval) })
	}
	return pipelines.AddEcolix(ctx, env.Wiring, env.CRM, imp, env.Store)
}

// Sandbox implements SandboxPartner: the Ecolix API with generated records of every resource, a
// validated quote for Shop Application, and an inbox with a CSV export dropped in.
func (*Ecolix) Sandbox(_ context.Context, sb *Sandbox) ([]string, error) {
	const perMin = 120
	sim, err := ecolixsim.Start(ecolixsim.SimConfig{PerMinute: perMin})
	if err != nil {
		return nil, fmt.Errorf("start Ecolix simulator: %w", err)
	}
	sb.Defer(sim.Close)
	from := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	for _, r := range ecolixsim.Resources {
		if _, err := sim.Generate(r, 600, from, 3); err != nil {
			return nil, err
		}
	}
	if err := sim.Put("clients", map[string]any{"id": "C-DEMO", "reference": "ecolix-demo-1", "societe": "ACME SARL", "nom": "Martin",
		"email": "compta@acme.example", "date_modification": from}); err != nil {
		return nil, err
	}
	if err := sim.Put("devis", map[string]any{"id": "D-DEMO", "statut": "valide", "reference_client": "ecolix-demo-1",
		"lignes": []map[string]any{{"code": "IN-BTQST-S"}, {"code": "IN-BTQZ-AMM"}}, "date_modification": from}); err != nil {
		return nil, err
	}
	inbox := filepath.Join(sb.DataDir, "ecolix-inbox")
	if err := os.MkdirAll(inbox, 0o750); err != nil {
		return nil, err
	}
	csv := "id;reference;societe;nom;email;date_modification\r\n" +
		"F-1;ecolix-file-1;Boulangerie Dupont;Dupont;contact@dupont.example;" + frtime.Format(from) + "\r\n"
	if err := os.WriteFile(filepath.Join(inbox, "clients_sandbox.csv"), []byte(csv), 0o640); err != nil {
		return nil, err
	}
	sb.Note(func(_, _ string) string {
		return fmt.Sprintf(`Ecolix (simulated): %s, API key %q, %d calls/min (the daemon keeps under %d)
  3000 records and a validated quote (D-DEMO: IN-BTQST-S, IN-BTQZ-AMM) are exported; the CRM gets erp.*_changed
  events and Shop Application a provisioning command. Drop a CSV export in %s: it moves to traites/.`,
			sim.URL(), sim.APIKey(), perMin, perMin-20, inbox)
	})
	return []string{
		"PASSERELLE_ECOLIX_URL=" + sim.URL(), "PASSERELLE_ECOLIX_API_KEY=" + sim.APIKey(),
		fmt.Sprintf("PASSERELLE_ECOLIX_RATE_PER_MIN=%d", perMin-20), "PASSERELLE_ECOLIX_POLL_INTERVAL=15s",
		"PASSERELLE_ECOLIX_INBOX=" + inbox, "PASSERELLE_ECOLIX_IMPORT_LEADS=on",
	}, nil
}
