package modules

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/connectors/biway"
	"github.com/passerelle/passerelle/connectors/biway/biwaysim"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// BiwayConfig configures Bi-way/Api: the message partner, its delivery reports, and the lead
// acknowledgement.
type BiwayConfig struct {
	URL            string `env:"BIWAY_URL" desc:"Bi-way/Api base URL; the module is off when empty"`
	APIKey         string `env:"BIWAY_API_KEY" secret:"true" desc:"API key, sent as Authorization: Bearer"`
	CallbackSecret string `env:"BIWAY_CALLBACK_SECRET" secret:"true" desc:"whsec_ secret Bi-way signs its reports with; empty: the one passerelle biway register-callback generated and stored (a stored one wins)"`
	LeadAck        string `env:"BIWAY_LEAD_ACK, default=off" desc:"on: every new lead with a mobile number gets one message from BIWAY_TEMPLATE"`
	Template       string `env:"BIWAY_TEMPLATE" desc:"template id of the lead acknowledgement (variables prenom, formation, horaire_rappel)"`
	Channel        string `env:"BIWAY_CHANNEL, default=auto" desc:"auto (RCS where the partner can, SMS otherwise), sms or rcs"`
	SendWindow     string `env:"BIWAY_SEND_WINDOW, default=08:00-20:00 Europe/Paris mon-sat" desc:"when acknowledgements may go out: HH:MM-HH:MM, a zone, days (mon-sat, or mon+wed); a lead outside it is sent at the next opening"`
	MaxPerDay      int    `env:"BIWAY_MAX_PER_NUMBER_PER_DAY, default=1" desc:"most acknowledgements one number gets in a day (of the window's zone); more are skipped"`
}

// Validate implements config.Section.
func (c *BiwayConfig) Validate() error {
	var errs config.Errors
	if c.URL != "" {
		errs.HTTPURL("BIWAY_URL", c.URL)
		if c.APIKey == "" {
			errs.Add("BIWAY_API_KEY", "required when PASSERELLE_BIWAY_URL is set")
		}
	}
	if c.CallbackSecret != "" {
		if err := stdwebhook.CheckSecret(c.CallbackSecret); err != nil {
			errs.Add("BIWAY_CALLBACK_SECRET", "%v", err)
		}
	}
	switch c.LeadAck {
	case "on", "off":
	default:
		errs.Add("BIWAY_LEAD_ACK", "%q: want on or off", c.LeadAck)
	}
	if c.LeadAck == "on" {
		if c.URL == "" {
			errs.Add("BIWAY_LEAD_ACK", "on needs PASSERELLE_BIWAY_URL and PASSERELLE_BIWAY_API_KEY")
		}
		if c.Template == "" {
			errs.Add("BIWAY_TEMPLATE", "required when PASSERELLE_BIWAY_LEAD_ACK is on")
		}
	}
	switch c.Channel {
	case biway.ChannelAuto, biway.ChannelSMS, biway.ChannelRCS:
	default:
		errs.Add("BIWAY_CHANNEL", "%q: want auto, sms or rcs", c.Channel)
	}
	if _, err := pipelines.ParseSendWindow(c.SendWindow); err != nil {
		errs.Add("BIWAY_SEND_WINDOW", "%q: %v", c.SendWindow, err)
	}
	if c.MaxPerDay < 1 {
		errs.Add("BIWAY_MAX_PER_NUMBER_PER_DAY", "must be at least 1")
	}
	return errs.Err()
}

func (c *BiwayConfig) client(hm *httpclient.Metrics) (*biway.Client, error) {
	cl, err := biway.New(biway.Config{Mobile: transforms.MobileE164, BaseURL: c.URL, APIKey: c.APIKey}, hm)
	if err != nil {
		return nil, fmt.Errorf("biway: %w", err)
	}
	return cl, nil
}

// Biway is Bi-way/Api: lead acknowledgements by SMS or RCS (biway.ack, a consumer of
// leads.normalized of its own), the signed delivery reports (POST /webhooks/biway, then
// biway.reports), their message.status_changed events to the CRM (biway.crm), and the operator
// commands (register-callback, the one-off set-up, broadcast, status).
type Biway struct {
	// Built, for tests; nil until Build, and when off.
	Client *biway.Client
	Ack    *pipelines.BiwayAck

	secret biwaySecret
}

// biwaySecret is the secret reports are verified with: the one register-callback stored (read
// again from the store every few seconds, so a registration made through another replica takes
// effect here too), else the configured one.
type biwaySecret struct {
	store      pipelines.BiwayStore
	configured string
	now        func() time.Time

	mu     sync.Mutex
	value  string
	loaded time.Time
}

// secretRefresh is how long a secret read from the store is used before it is read again.
const secretRefresh = 5 * time.Second

func (s *biwaySecret) load(ctx context.Context) error {
	reg, ok, err := pipelines.BiwayCallback(ctx, s.store)
	if err != nil {
		return err
	}
	v := s.configured
	if ok && reg.Secret != "" {
		v = reg.Secret
	}
	s.mu.Lock()
	s.value, s.loaded = v, s.now()
	s.mu.Unlock()
	return nil
}

// get returns the secret, reading the store again when the last read is old; a store that
// cannot be read leaves the last value in use.
func (s *biwaySecret) get() string {
	s.mu.Lock()
	stale := s.now().Sub(s.loaded) > secretRefresh
	v := s.value
	s.mu.Unlock()
	if stale {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if s.load(ctx) == nil {
			s.mu.Lock()
			v = s.value
			s.mu.Unlock()
		}
	}
	return v
}

// set is a registration made here: in use at once.
func (s *biwaySecret) set(v string) {
	s.mu.Lock()
	s.value, s.loaded = v, s.now()
	s.mu.Unlock()
}

const nameBiway = pipelines.PipelineBiway

// Name implements Module.
func (*Biway) Name() string { return nameBiway }

// Config implements Module.
func (*Biway) Config() config.Section { return &BiwayConfig{} }

// Enabled implements Module.
func (*Biway) Enabled(cfg config.Config) (bool, string) {
	c := config.Get[*BiwayConfig](cfg, nameBiway)
	if c.URL == "" {
		return false, "PASSERELLE_BIWAY_URL is empty"
	}
	ack := "lead acknowledgement off"
	if c.LeadAck == "on" {
		ack = fmt.Sprintf("lead acknowledgement on (template %s, %s, %s, %d a number a day)", c.Template, c.Channel, c.SendWindow, c.MaxPerDay)
	}
	return true, config.RedactURL(c.URL) + ", reports at POST /webhooks/biway, " + ack
}

// maxLeadAge bounds how old a lead may be when the ack stage first sees it: a lead from last week
// (the stream keeps PASSERELLE_NATS_MAX_AGE) is not acknowledged when the stage is turned on.
const maxLeadAge = 24 * time.Hour

// keepBiwayRecords is how long lead, message and submission records are kept.
const keepBiwayRecords = 30 * 24 * time.Hour

// scheduleEvery is how often acknowledgements waiting for the send window are looked at.
const scheduleEvery = 15 * time.Second

// Build implements Module.
func (m *Biway) Build(ctx context.Context, env *Env) error {
	c := config.Get[*BiwayConfig](env.Cfg, nameBiway)
	metrics := pipelines.NewBiwayMetrics(env.Registry)
	cbMetrics := biway.NewMetrics(env.Registry)
	cfg := pipelines.BiwayConfig{CRM: env.CRM, Dead: env.Store}
	on, _ := m.Enabled(env.Cfg)
	if on {
		client, err := c.client(env.HTTPMetrics)
		if err != nil {
			return err
		}
		m.Client = client
		log := env.Log.With("pipeline", nameBiway)
		// The secret a registration stored wins over the configured one: the partner signs with
		// the last one registered.
		m.secret = biwaySecret{store: env.Store, configured: c.CallbackSecret, now: time.Now}
		if err := m.secret.load(ctx); err != nil {
			return err
		}
		window, err := pipelines.ParseSendWindow(c.SendWindow)
		if err != nil {
			return err
		}
		cfg.Reports = &pipelines.BiwayReports{Store: env.Store, Pub: env.Pub, Metrics: metrics, Log: log, Now: env.Now}
		if c.LeadAck == "on" {
			engine := delivery.New(delivery.Config{Concurrency: 4}, env.DeliveryMetrics)
			env.DeliveryMetrics.Init("biway")
			m.Ack = &pipelines.BiwayAck{Hasher: env.Hasher, API: client, Engine: engine, Store: env.Store, Window: window, Template: c.Template,
				Channel: c.Channel, MaxPerDay: c.MaxPerDay, MaxAge: maxLeadAge, Metrics: metrics, Log: log, Now: env.Now}
			cfg.Ack = m.Ack
			env.Go(func(ctx context.Context) { m.Ack.RunScheduler(ctx, scheduleEvery) })
		}
		env.Go(func(ctx context.Context) {
			every(ctx, 24*time.Hour, func(ctx context.Context) {
				if n, err := pipelines.PruneBiway(ctx, env.Store, env.Now(), keepBiwayRecords, window); err != nil {
					log.Warn("prune biway records", "error", err)
				} else if n > 0 {
					log.Debug("pruned biway records", "count", n)
				}
			})
		})
		ingest := &pipelines.BiwayCallbackIngest{Pub: env.Pub, Now: env.Now}
		env.Webhooks.Handle("/webhooks/biway", env.WebhookMetrics.Instrument("biway", biway.NewCallbackHandler(biway.CallbackConfig{
			Secret: m.secret.get, Logger: log, Metrics: cbMetrics,
		}, ingest)))
		env.Admin.HandleFunc("POST /admin/biway/callback", func(w http.ResponseWriter, r *http.Request) {
			m.registerCallback(w, r, env, c)
		})
	}
	env.Admin.HandleFunc("GET /admin/biway", func(w http.ResponseWriter, r *http.Request) {
		st, err := pipelines.ReadBiwayStatus(r.Context(), env.Store)
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		switch {
		case !on:
			st.SecretSource = "module off"
		case st.Callback != nil:
			st.SecretSource = "stored by register-callback"
		case c.CallbackSecret != "":
			st.SecretSource = "PASSERELLE_BIWAY_CALLBACK_SECRET"
		default:
			st.SecretSource = "none: every report is refused until register-callback runs"
		}
		httpapi.WriteJSON(w, http.StatusOK, st)
	})
	return pipelines.AddBiway(ctx, env.Wiring, cfg)
}

// CallbackAnswer is what POST /admin/biway/callback (register-callback) answers.
type CallbackAnswer struct {
	ID           string `json:"id"`
	URL          string `json:"url"`
	SecretSource string `json:"secret_source"` // given, config or generated: the secret itself is never shown
}

// registerCallback registers the webhook with the partner and stores the secret, which the
// webhook uses from the next request on.
func (m *Biway) registerCallback(w http.ResponseWriter, r *http.Request, env *Env, c *BiwayConfig) {
	var req struct {
		URL    string `json:"url"`
		Secret string `json:"secret"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, `want {"url": "https://…/webhooks/biway", "secret": "whsec_… or empty"}`)
		return
	}
	if req.URL == "" {
		addr := loopbackAddr(env.Cfg.HTTPAddr)
		if strings.HasSuffix(addr, ":0") {
			httpapi.WriteError(w, http.StatusBadRequest, "PASSERELLE_HTTP_ADDR has no fixed port: give the URL (--url)")
			return
		}
		req.URL = "http://" + addr + "/webhooks/biway"
	}
	source := "given"
	switch {
	case req.Secret != "":
	case c.CallbackSecret != "":
		req.Secret, source = c.CallbackSecret, "config"
	default:
		s, err := stdwebhook.NewSecret()
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		req.Secret, source = s, "generated"
	}
	if err := stdwebhook.CheckSecret(req.Secret); err != nil {
		httpapi.WriteError(w, http.StatusBadRequest, "secret: "+err.Error())
		return
	}
	id, err := m.Client.RegisterCallback(r.Context(), req.URL, req.Secret)
	if err != nil {
		httpapi.WriteError(w, http.StatusBadGateway, err.Error())
		return
	}
	if err := pipelines.SaveBiwayCallback(r.Context(), env.Store, pipelines.BiwayCallbackRegistration{
		ID: id, URL: req.URL, Secret: req.Secret, RegisteredAt: env.Now().UTC(),
	}); err != nil {
		// The partner signs with the new secret already: say so loudly.
		httpapi.WriteError(w, http.StatusInternalServerError, "registered with the partner but not stored, run register-callback again: "+err.Error())
		return
	}
	m.secret.set(req.Secret)
	env.Log.Info("biway callback registered", "url", config.RedactURL(req.URL), "id", id, "secret", source)
	httpapi.WriteJSON(w, http.StatusOK, CallbackAnswer{ID: id, URL: req.URL, SecretSource: source})
}

// loopbackAddr makes ":8080" usable as a URL host.
func loopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || host == "::" || host == "0.0.0.0" {
		return "127.0.0.1:" + port
	}
	return net.JoinHostPort(host, port)
}

const sandboxBiwayTemplate = "tpl_accuse_reception"

// Sandbox implements SandboxPartner: a simulated Bi-way whose reports come back every 2s, and
// lead acknowledgements on at any hour.
func (*Biway) Sandbox(_ context.Context, sb *Sandbox) ([]string, error) {
	sim, err := biwaysim.Start(biwaysim.SimConfig{Interval: 2 * time.Second, Delay: time.Second, Logger: sb.Log})
	if err != nil {
		return nil, fmt.Errorf("start Bi-way simulator: %w", err)
	}
	sb.Defer(sim.Close)
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return nil, err
	}
	sb.OnRun(func(ctx context.Context, webhookBase, _ string) {
		client, err := biway.New(biway.Config{Mobile: transforms.MobileE164, BaseURL: sim.URL(), APIKey: sim.APIKey()}, nil)
		if err == nil {
			_, err = client.RegisterCallback(ctx, webhookBase+"/webhooks/biway", secret)
		}
		if err != nil && ctx.Err() == nil {
			sb.Log.Warn("sandbox: Bi-way callback not registered", "error", err)
		}
	})
	sb.Note(func(_, _ string) string {
		return fmt.Sprintf(`Bi-way (simulated): %s, API key %q. Every lead with a mobile number gets an acknowledgement
  (the send window is open all day in the sandbox); delivery reports come back to /webhooks/biway
  and reach the CRM as message.status_changed. Numbers ending in 99 fail.
    passerelle biway status
    passerelle biway broadcast --template %s --to-file numbers.csv --dry-run`, sim.URL(), sim.APIKey(), sandboxBiwayTemplate)
	})
	return []string{
		"PASSERELLE_BIWAY_URL=" + sim.URL(), "PASSERELLE_BIWAY_API_KEY=" + sim.APIKey(), "PASSERELLE_BIWAY_CALLBACK_SECRET=" + secret,
		"PASSERELLE_BIWAY_LEAD_ACK=on", "PASSERELLE_BIWAY_TEMPLATE=" + sandboxBiwayTemplate,
		"PASSERELLE_BIWAY_SEND_WINDOW=00:00-24:00", "PASSERELLE_BIWAY_MAX_PER_NUMBER_PER_DAY=3",
	}, nil
}

// Commands implements Commander.
func (*Biway) Commands(cli *CLI) []*cobra.Command {
	root := Group(&cobra.Command{Use: "biway", Short: "Bi-way (SMS/RCS): register the report callback, set up the account, broadcast, status"})
	root.AddCommand(biwayRegisterCommand(cli), biwayStatusCommand(cli), biwayBroadcastCommand(cli))
	root.AddCommand(biwayCreateCommands(cli)...)
	return []*cobra.Command{root}
}

func biwayRegisterCommand(cli *CLI) *cobra.Command {
	var u, secret string
	c := &cobra.Command{
		Use:   "register-callback",
		Short: "Register /webhooks/biway with Bi-way and store the signing secret (through the running daemon)",
		Long: `Register the URL Bi-way posts its reports to, with the secret it signs them with. Without
--secret, PASSERELLE_BIWAY_CALLBACK_SECRET is used, or a new secret is generated; the daemon stores
it and verifies reports with it at once. Without --url, the daemon's own PASSERELLE_HTTP_ADDR is
used, which only a partner on the same machine reaches: give the public URL in production.`,
		Args:    cobra.NoArgs,
		Example: `  passerelle biway register-callback --url https://passerelle.example.com/webhooks/biway`,
		RunE: func(c *cobra.Command, _ []string) error {
			var ans CallbackAnswer
			if err := cli.Admin(c.Context(), http.MethodPost, "/admin/biway/callback", map[string]string{"url": u, "secret": secret}, &ans); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(ans)
			}
			_, err := fmt.Fprintf(cli.Out, "registered %s (id %s), secret %s and stored\n", ans.URL, ans.ID, ans.SecretSource)
			return err
		},
	}
	c.Flags().StringVar(&u, "url", "", "the public URL of POST /webhooks/biway")
	c.Flags().StringVar(&secret, "secret", "", "whsec_ secret (default: PASSERELLE_BIWAY_CALLBACK_SECRET, or a new one)")
	return c
}

func biwayStatusCommand(cli *CLI) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Callback, partner entities (accounts, companies, agents), messages by state (through the running daemon)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var st pipelines.BiwayStatus
			if err := cli.Admin(c.Context(), http.MethodGet, "/admin/biway", nil, &st); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(st)
			}
			tw := tabwriter.NewWriter(cli.Out, 0, 4, 2, ' ', 0)
			if st.Callback != nil {
				fmt.Fprintf(tw, "callback\t%s\tid %s\tregistered %s\n", st.Callback.URL, st.Callback.ID, st.Callback.RegisteredAt.Format(time.RFC3339))
			} else {
				fmt.Fprintln(tw, "callback\tnot registered by passerelle biway register-callback")
			}
			fmt.Fprintf(tw, "report secret\t%s\n", st.SecretSource)
			for _, e := range st.Entities {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ToLower(strings.TrimSuffix(e.Type, "_STATE")), e.ID, e.Etat, e.At.Format(time.RFC3339))
			}
			for _, s := range []biway.State{biway.StateAccepted, biway.StateSent, biway.StateDelivered, biway.StateRead, biway.StateFailed} {
				fmt.Fprintf(tw, "messages\t%s\t%d\t\n", s, st.Messages[string(s)])
			}
			fmt.Fprintf(tw, "messages\tunknown (no submission of ours)\t%d\t\n", st.Unknown)
			for _, o := range []string{pipelines.AckSubmitted, pipelines.AckScheduled, pipelines.AckDailyCap, pipelines.AckRefused} {
				fmt.Fprintf(tw, "lead acks\t%s\t%d\t\n", o, st.Acks[o])
			}
			fmt.Fprintf(tw, "lead acks\twaiting for the send window\t%d\t\n", st.Scheduled)
			return tw.Flush()
		},
	}
}

// biwayClient builds a client from the configuration, for the commands that call the partner
// straight.
func biwayClient(ctx context.Context, cli *CLI) (*biway.Client, *BiwayConfig, error) {
	cfg, err := cli.Config(ctx)
	if err != nil {
		return nil, nil, err
	}
	c := config.Get[*BiwayConfig](cfg, nameBiway)
	if c.URL == "" {
		return nil, nil, UsageErrorf("PASSERELLE_BIWAY_URL is empty: set it with PASSERELLE_BIWAY_API_KEY")
	}
	client, err := c.client(httpclient.NewMetrics(prometheus.NewRegistry()))
	return client, c, err
}

// biwayCreateCommands are the one-off set-up calls: each prints what the partner answered.
func biwayCreateCommands(cli *CLI) []*cobra.Command {
	type field struct {
		name, help string
		p          *string
		required   bool
	}
	group := func(use, short string, fields []field, call func(ctx context.Context, cl *biway.Client) (biway.Entity, error)) *cobra.Command {
		create := &cobra.Command{
			Use: "create", Short: short, Args: cobra.NoArgs,
			RunE: func(c *cobra.Command, _ []string) error {
				client, _, err := biwayClient(c.Context(), cli)
				if err != nil {
					return err
				}
				e, err := call(c.Context(), client)
				if err != nil {
					return err
				}
				return cli.PrintJSON(e)
			},
		}
		for _, f := range fields {
			create.Flags().StringVar(f.p, f.name, "", f.help)
			if f.required {
				_ = create.MarkFlagRequired(f.name)
			}
		}
		g := Group(&cobra.Command{Use: use, Short: short})
		g.AddCommand(create)
		return g
	}
	var co biway.Company
	var ac biway.Account
	var ag biway.Agent
	var te biway.RCSTester
	var tp biway.Template
	var vars string
	tpl := group("template", "Create a reusable message", []field{
		{"nom", "template name", &tp.Nom, true}, {"texte", "text, with {placeholders}", &tp.Texte, true},
		{"canal", "sms, rcs or auto", &tp.Canal, false}, {"variables", "placeholder names, comma separated", &vars, false},
	}, func(ctx context.Context, cl *biway.Client) (biway.Entity, error) {
		if tp.Canal == "" {
			tp.Canal = biway.ChannelAuto
		}
		if vars != "" {
			tp.Variables = strings.Split(vars, ",")
		}
		return cl.CreateTemplate(ctx, tp)
	})
	return []*cobra.Command{
		group("company", "Register an establishment (COMPANY_STATE callbacks follow)", []field{
			{"nom", "company name", &co.Nom, true}, {"siret", "SIRET (14 digits)", &co.Siret, true},
			{"adresse", "address", &co.Adresse, false}, {"code-postal", "postal code", &co.CodePostal, false},
			{"ville", "city", &co.Ville, false}, {"email", "email", &co.Email, false}, {"telephone", "phone", &co.Telephone, false},
		}, func(ctx context.Context, cl *biway.Client) (biway.Entity, error) { return cl.CreateCompany(ctx, co) }),
		group("account", "Create a user account for an establishment (ACCOUNT_STATE callbacks follow)", []field{
			{"etablissement", "company id", &ac.Etablissement, true}, {"nom", "last name", &ac.Nom, true},
			{"prenom", "first name", &ac.Prenom, false}, {"email", "email", &ac.Email, true}, {"telephone", "phone", &ac.Telephone, false},
		}, func(ctx context.Context, cl *biway.Client) (biway.Entity, error) { return cl.CreateAccount(ctx, ac) }),
		group("agent", "Create a chat agent (AGENT_STATE callbacks follow)", []field{
			{"nom", "agent name", &ag.Nom, true}, {"description", "description", &ag.Description, false},
			{"logo", "logo URL", &ag.Logo, false}, {"site", "web site URL", &ag.Site, false},
		}, func(ctx context.Context, cl *biway.Client) (biway.Entity, error) { return cl.CreateAgent(ctx, ag) }),
		group("tester", "Register an RCS test device for an agent", []field{
			{"agent", "agent id", &te.Agent, true}, {"telephone", "the device's mobile number", &te.Telephone, true},
		}, func(ctx context.Context, cl *biway.Client) (biway.Entity, error) { return cl.CreateRCSTester(ctx, te) }),
		tpl,
	}
}

// BroadcastReport is what `passerelle biway broadcast` prints with --output json.
type BroadcastReport struct {
	Campaign   string          `json:"campaign"`
	Recipients int             `json:"recipients"`
	Batches    int             `json:"batches"`
	Accepted   int             `json:"accepted"`
	Refused    []biway.Refusal `json:"refused"`
	DryRun     bool            `json:"dry_run"`
}

func biwayBroadcastCommand(cli *CLI) *cobra.Command {
	var template, file, canal, campaign string
	var dry bool
	c := &cobra.Command{
		Use:   "broadcast",
		Short: "Send a template to the numbers of a CSV file, one /messenger/broadcast per 10,000 recipients",
		Long: `Send a template to every number of a CSV file: the first column is the number, and a header
row ("to,prenom,…") names the template variables of the other columns. Each recipient's reference
is derived from the campaign (default: the template and the file's content) and the number, so
running the same file again after an interruption messages nobody twice.`,
		Args:    cobra.NoArgs,
		Example: `  passerelle biway broadcast --template tpl_rentree --to-file numbers.csv --dry-run`,
		RunE: func(c *cobra.Command, _ []string) error {
			raw, err := os.ReadFile(file)
			if err != nil {
				return UsageErrorf("--to-file: %v", err)
			}
			recips, refused, err := ReadBroadcastCSV(raw)
			if err != nil {
				return UsageErrorf("--to-file %s: %v", file, err)
			}
			if campaign == "" {
				sum := sha256.Sum256(append([]byte(template+"\x00"), raw...))
				campaign = hex.EncodeToString(sum[:8])
			}
			for i := range recips {
				sum := sha256.Sum256([]byte(campaign + "\x00" + recips[i].To))
				recips[i].Reference = "bc_" + hex.EncodeToString(sum[:12])
			}
			rep := BroadcastReport{Campaign: campaign, Recipients: len(recips), Batches: (len(recips) + biway.MaxBroadcast - 1) / biway.MaxBroadcast,
				Refused: refused, DryRun: dry}
			if !dry {
				client, _, err := biwayClient(c.Context(), cli)
				if err != nil {
					return err
				}
				for i := 0; i < len(recips); i += biway.MaxBroadcast {
					batch := recips[i:min(i+biway.MaxBroadcast, len(recips))]
					ans, err := client.Broadcast(c.Context(), biway.Broadcast{Destinataires: batch, Modele: template, Canal: canal})
					if err != nil {
						return fmt.Errorf("batch %d of %d (%d sent before; run the same command again, nobody gets it twice): %w", i/biway.MaxBroadcast+1, rep.Batches, rep.Accepted, err)
					}
					rep.Accepted += ans.Acceptes
					rep.Refused = append(rep.Refused, ans.Refuses...)
					fmt.Fprintf(cli.Err, "batch %d/%d: %d accepted, %d refused\n", i/biway.MaxBroadcast+1, rep.Batches, ans.Acceptes, len(ans.Refuses))
				}
			}
			if cli.JSON() {
				return cli.PrintJSON(rep)
			}
			verb := "accepted"
			n := rep.Accepted
			if dry {
				verb, n = "would be sent (dry run: nothing sent)", rep.Recipients
			}
			fmt.Fprintf(cli.Out, "campaign %s: %d recipients %s in %d batch(es), %d refused\n", rep.Campaign, n, verb, rep.Batches, len(rep.Refused))
			for _, r := range rep.Refused {
				fmt.Fprintf(cli.Out, "  refused %s: %s\n", r.To, r.Raison)
			}
			return nil
		},
	}
	c.Flags().StringVar(&template, "template", "", "template id")
	c.Flags().StringVar(&file, "to-file", "", "CSV file of numbers")
	c.Flags().StringVar(&canal, "canal", biway.ChannelAuto, "auto, sms or rcs")
	c.Flags().StringVar(&campaign, "campaign", "", "campaign name the references derive from (default: from the template and the file)")
	c.Flags().BoolVar(&dry, "dry-run", false, "check the numbers and count the batches, send nothing")
	_ = c.MarkFlagRequired("template")
	_ = c.MarkFlagRequired("to-file")
	return c
}

// ReadBroadcastCSV reads recipients: one a row, the number first; a first row whose first cell is
// not a number is a header naming the variables of the other columns. Numbers are normalised to
// E.164; those that are not mobiles are refused with the partner's reason, and a number twice is
// kept once. Refusals quote the number as the operator wrote it, for them to fix.
func ReadBroadcastCSV(raw []byte) ([]biway.Recipient, []biway.Refusal, error) {
	r := csv.NewReader(strings.NewReader(string(raw)))
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	var header []string
	var out []biway.Recipient
	var refused []biway.Refusal
	seen := map[string]bool{}
	for line := 1; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", line, err)
		}
		if len(rec) == 0 || strings.TrimSpace(rec[0]) == "" {
			continue
		}
		n, err := transforms.NormalizePhone(rec[0])
		if line == 1 && err != nil && !strings.ContainsAny(rec[0], "0123456789") {
			header = rec
			continue
		}
		if err != nil || !transforms.IsMobile(n) {
			refused = append(refused, biway.Refusal{To: rec[0], Raison: "not a mobile number"})
			continue
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		rc := biway.Recipient{To: n}
		for i := 1; i < len(rec) && i < len(header); i++ {
			if rc.Variables == nil {
				rc.Variables = map[string]string{}
			}
			rc.Variables[strings.TrimSpace(header[i])] = rec[i]
		}
		out = append(out, rc)
	}
	return out, refused, nil
}
