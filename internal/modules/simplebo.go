package modules

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/connectors/simplebo/simplebosim"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// SimpleboConfig configures the Simplébo API client (provisioning) and its client-state webhook.
type SimpleboConfig struct {
	URL           string `env:"SIMPLEBO_URL, default=https://api.www.simplebo.fr/v1/" desc:"Simplébo API base URL"`
	Token         string `env:"SIMPLEBO_TOKEN" secret:"true" desc:"Simplébo API token (sent as Authorization: Token token=…); provisioning is off when empty"`
	PartnerCode   string `env:"SIMPLEBO_PARTNER_CODE" desc:"partner_code sent with every Simplébo API call (required with the token)"`
	Partner       string `env:"SIMPLEBO_PARTNER" desc:"partner sent with every Simplébo API call (required with the token)"`
	WebhookSecret string `env:"SIMPLEBO_WEBHOOK_SECRET" secret:"true" desc:"secret last path segment of the client-state webhook, POST /webhooks/simplebo/<secret> (16 characters or more); the webhook is off when empty"`
	WebhookAuth   string `env:"SIMPLEBO_WEBHOOK_AUTH" desc:"optional token the webhook also requires, and how it is sent: bearer, api-key, x-token or token; empty for the secret path alone"`
	WebhookToken  string `env:"SIMPLEBO_WEBHOOK_TOKEN" secret:"true" desc:"the token of PASSERELLE_SIMPLEBO_WEBHOOK_AUTH"`
	EventMap      string `env:"SIMPLEBO_EVENT_MAP" desc:"event_type to state table, replacing the default 0=lead_created,1=service_activated,2=contract_ended,3=billing_started,4=switched_to_free"`
	BillingCode   string `env:"SIMPLEBO_BILLING_CODE, default=SB-SITE-AMM" desc:"prestation code of a Simplébo client's row in the billing file (billed as the rule table says; *-AMM is monthly)"`
	BillingLabel  string `env:"SIMPLEBO_BILLING_LABEL, default=Site Simplébo" desc:"libelle of a Simplébo client's row in the billing file"`
	BillingPrice  string `env:"SIMPLEBO_BILLING_PRICE" desc:"monthly price HT of a Simplébo client, in euros (29.00); Simplébo clients are not billed when empty"`
}

// billingCents reads PASSERELLE_SIMPLEBO_BILLING_PRICE: euros with at most two decimals, a point
// or a comma.
func billingCents(s string) (int64, error) {
	s = strings.Replace(strings.TrimSpace(s), ",", ".", 1)
	whole, frac, _ := strings.Cut(s, ".")
	if len(frac) > 2 {
		return 0, fmt.Errorf("%q: at most two decimals", s)
	}
	frac += strings.Repeat("0", 2-len(frac))
	w, err1 := strconv.ParseInt(whole, 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil || w < 0 {
		return 0, fmt.Errorf("%q: want euros such as 29.00", s)
	}
	return w*100 + f, nil
}

// minWebhookSecret keeps the secret path segment out of reach of guessing.
const minWebhookSecret = 16

// Validate implements config.Section.
func (c *SimpleboConfig) Validate() error {
	var errs config.Errors
	if c.BillingPrice != "" {
		if _, err := billingCents(c.BillingPrice); err != nil {
			errs.Add("SIMPLEBO_BILLING_PRICE", "%v", err)
		}
		if strings.TrimSpace(c.BillingCode) == "" {
			errs.Add("SIMPLEBO_BILLING_CODE", "required when PASSERELLE_SIMPLEBO_BILLING_PRICE is set")
		}
	}
	errs.HTTPURL("SIMPLEBO_URL", c.URL)
	if c.Token != "" {
		if strings.ContainsAny(c.Token, "\"\r\n") {
			errs.Add("SIMPLEBO_TOKEN", "must not contain quotes or line breaks")
		}
		if c.PartnerCode == "" {
			errs.Add("SIMPLEBO_PARTNER_CODE", "required when PASSERELLE_SIMPLEBO_TOKEN is set")
		}
		if c.Partner == "" {
			errs.Add("SIMPLEBO_PARTNER", "required when PASSERELLE_SIMPLEBO_TOKEN is set")
		}
	}
	if c.WebhookSecret != "" {
		if len(c.WebhookSecret) < minWebhookSecret {
			errs.Add("SIMPLEBO_WEBHOOK_SECRET", "must be at least %d characters", minWebhookSecret)
		}
		if strings.ContainsAny(c.WebhookSecret, "/?#% \t\r\n") {
			errs.Add("SIMPLEBO_WEBHOOK_SECRET", "must be one URL path segment: no /, ?, #, %% or spaces")
		}
	}
	if c.WebhookAuth != "" {
		if _, err := httpapi.ParseAuthScheme(c.WebhookAuth); err != nil {
			errs.Add("SIMPLEBO_WEBHOOK_AUTH", "%v", err)
		}
		if c.WebhookToken == "" {
			errs.Add("SIMPLEBO_WEBHOOK_TOKEN", "required when PASSERELLE_SIMPLEBO_WEBHOOK_AUTH is set")
		}
	} else if c.WebhookToken != "" {
		errs.Add("SIMPLEBO_WEBHOOK_AUTH", "required when PASSERELLE_SIMPLEBO_WEBHOOK_TOKEN is set")
	}
	if _, err := pipelines.ParseSimpleboEventMap(c.EventMap); err != nil {
		errs.Add("SIMPLEBO_EVENT_MAP", "%v", err)
	}
	return errs.Err()
}

// client builds the Simplébo API client.
func (c *SimpleboConfig) client(hm *httpclient.Metrics, m *simplebo.Metrics) (*simplebo.Client, error) {
	cl, err := simplebo.New(simplebo.Config{BaseURL: c.URL, Token: c.Token, PartnerCode: c.PartnerCode, Partner: c.Partner, Metrics: m}, hm)
	if err != nil {
		return nil, fmt.Errorf("simplebo: %w", err)
	}
	return cl, nil
}

// Simplebo is the Simplébo partner: provisioning (the simplebo.provision topic and the operator
// commands) through its API, the client-state webhook applied to the client directory, and the
// CRM stage of their events.
type Simplebo struct {
	// Built, for tests; nil until Build, and while provisioning is off.
	Client *simplebo.Client
}

const nameSimplebo = pipelines.PipelineSimplebo

// webhookPrefix is where the client-state webhook is mounted; the secret follows.
const simpleboWebhookPrefix = "/webhooks/simplebo/"

// Name implements Module.
func (*Simplebo) Name() string { return nameSimplebo }

// Config implements Module.
func (*Simplebo) Config() config.Section { return &SimpleboConfig{} }

// Enabled implements Module.
func (*Simplebo) Enabled(cfg config.Config) (bool, string) {
	c := config.Get[*SimpleboConfig](cfg, nameSimplebo)
	var on []string
	if c.Token != "" {
		on = append(on, "provisioning through "+config.RedactURL(c.URL))
	}
	if c.WebhookSecret != "" {
		auth := "secret path only"
		if c.WebhookAuth != "" {
			auth = "secret path and " + c.WebhookAuth + " token"
		}
		on = append(on, "webhook POST "+simpleboWebhookPrefix+"<secret> ("+auth+")")
	}
	if len(on) == 0 {
		return false, "PASSERELLE_SIMPLEBO_TOKEN and PASSERELLE_SIMPLEBO_WEBHOOK_SECRET are empty"
	}
	return true, strings.Join(on, "; ")
}

// simpleboConcurrency bounds the API calls in flight: provisioning is an operator's pace.
const simpleboConcurrency = 4

// Build implements Module. The state and dead-letter stages and the admin routes are there even
// when the module is off, so what was stored earlier stays visible.
func (m *Simplebo) Build(ctx context.Context, env *Env) error {
	if c := config.Get[*SimpleboConfig](env.Cfg, nameSimplebo); c.BillingPrice != "" {
		cents, err := billingCents(c.BillingPrice)
		if err != nil {
			return err
		}
		env.BillingSources = append(env.BillingSources, &pipelines.SimpleboBilling{Store: env.Store,
			Item: transforms.CatalogueItem{Code: c.BillingCode, Name: c.BillingLabel, PriceCents: cents}})
	}
	c := config.Get[*SimpleboConfig](env.Cfg, nameSimplebo)
	eventMap, err := pipelines.ParseSimpleboEventMap(c.EventMap)
	if err != nil {
		return err
	}
	log := env.Log.With("pipeline", nameSimplebo)
	cm := simplebo.NewMetrics(env.Registry)
	stages := pipelines.SimpleboStages{
		CRM: env.CRM, Dead: env.Store,
		States: &pipelines.SimpleboStateStage{
			Store: env.Store, Pub: env.Pub, Map: eventMap, Metrics: pipelines.NewSimpleboMetrics(env.Registry, env.Store),
			Log: log, Now: env.Now,
		},
	}
	if c.Token != "" {
		client, err := c.client(env.HTTPMetrics, cm)
		if err != nil {
			return err
		}
		m.Client = client
		endpoint := pipelines.EndpointID(c.URL)
		env.DeliveryMetrics.Init(endpoint)
		stages.Provisioner = &pipelines.SimpleboProvisioner{
			API: client, Engine: delivery.New(delivery.Config{Concurrency: simpleboConcurrency}, env.DeliveryMetrics),
			Endpoint: endpoint, Store: env.Store, Log: log, Now: env.Now,
		}
	}
	if err := pipelines.AddSimplebo(ctx, env.Wiring, stages); err != nil {
		return err
	}
	env.Go(func(ctx context.Context) {
		every(ctx, 24*time.Hour, func(ctx context.Context) {
			if n, err := pipelines.PruneSimpleboSeen(ctx, env.Store, env.Now().Add(-pipelines.SimpleboSeenKeep)); err != nil {
				log.Warn("prune simplebo dedupe records", "error", err)
			} else if n > 0 {
				log.Debug("pruned simplebo dedupe records", "count", n)
			}
		})
	})
	env.Admin.HandleFunc("GET /admin/simplebo/clients", func(w http.ResponseWriter, r *http.Request) {
		clients, err := pipelines.ListSimpleboClients(r.Context(), env.Store)
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, clients)
	})
	env.Admin.HandleFunc("POST /admin/simplebo/provision", func(w http.ResponseWriter, r *http.Request) {
		if stages.Provisioner == nil {
			httpapi.WriteError(w, http.StatusConflict, "provisioning is off: PASSERELLE_SIMPLEBO_TOKEN is empty")
			return
		}
		var cmd pipelines.SimpleboCommand
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&cmd); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, `want {"op": "mockup"|"activate", "client": {…}}`)
			return
		}
		if err := checkSimpleboCommand(cmd); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		b, err := json.Marshal(cmd)
		if err != nil {
			httpapi.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		msg := message.NewMessage(nuid.Next(), b)
		msg.Metadata.Set(pipelines.MetaEventID, msg.UUID)
		msg.Metadata.Set(pipelines.MetaPipeline, nameSimplebo)
		if err := env.Pub.PublishContext(r.Context(), pipelines.TopicSimpleboProvision, msg); err != nil {
			httpapi.WriteError(w, http.StatusServiceUnavailable, "command not queued: "+err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusAccepted, map[string]string{"queued": msg.UUID, "topic": pipelines.TopicSimpleboProvision})
	})
	// Replays go through the webhook's ingest, whether the webhook is on or not.
	env.addReplaySource(pipelines.SourceSimplebo, pipelines.SimpleboReplay(pipelines.NewSimpleboIngest(env.Pub, env.Stages, env.Yield, env.Now)))
	if c.WebhookSecret == "" {
		return nil
	}
	var auth *httpapi.TokenAuth
	if c.WebhookAuth != "" {
		scheme, err := httpapi.ParseAuthScheme(c.WebhookAuth)
		if err != nil {
			return err
		}
		auth = &httpapi.TokenAuth{Scheme: scheme, Token: c.WebhookToken}
	}
	hook := simplebo.NewWebhookHandler(simplebo.WebhookConfig{
		Secret: c.WebhookSecret, Auth: auth, Logger: env.Log.With("source", nameSimplebo), Metrics: cm,
	}, pipelines.NewSimpleboIngest(env.Pub, env.Stages, env.Yield, env.Now))
	env.Webhooks.Handle(simpleboWebhookPrefix, env.WebhookMetrics.Instrument(nameSimplebo, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The handler reads the last segment: a deeper path is no endpoint of ours.
		if strings.Contains(strings.TrimPrefix(r.URL.Path, simpleboWebhookPrefix), "/") {
			httpapi.WriteError(w, http.StatusNotFound, "no such endpoint")
			return
		}
		hook.ServeHTTP(w, r)
	})))
	return nil
}

// checkSimpleboCommand refuses what the provision stage would dead-letter at once.
func checkSimpleboCommand(cmd pipelines.SimpleboCommand) error {
	if cmd.Op != pipelines.SimpleboOpMockup && cmd.Op != pipelines.SimpleboOpActivate {
		return fmt.Errorf("op %q: want %s or %s", cmd.Op, pipelines.SimpleboOpMockup, pipelines.SimpleboOpActivate)
	}
	return cmd.Client.Validate()
}

// Commands implements Commander: mockup and activate call the API straight (recording what was
// sent in the daemon's store), clients lists the directory through the running daemon.
func (*Simplebo) Commands(cli *CLI) []*cobra.Command {
	root := Group(&cobra.Command{
		Use:   "simplebo",
		Short: "Ask Simplébo for mock-ups and activations, and list its clients and their states",
		Long: `Ask Simplébo for a free mock-up site or activate its paid service, straight through its API,
and list the clients with their states as Simplébo's webhooks told them.

mockup and activate record the client's identity in the daemon's store: run them with the
daemon's PASSERELLE_DATA_DIR or PASSERELLE_STORE_DSN. Both are idempotent on --client-id.`,
	})
	var cu simplebo.Customer
	provision := func(op, short string) *cobra.Command {
		c := &cobra.Command{
			Use: op, Short: short, Args: cobra.NoArgs,
			Example: `  passerelle simplebo ` + op + ` --client-id G-1 --company "Boulangerie Martin" --lastname Martin --firstname Claire \
    --email contact@boulangerie.example --phone 0612345678 --zipcode 69003 --city Lyon --typology 12`,
			RunE: func(c *cobra.Command, _ []string) error {
				return simpleboExecute(c.Context(), cli, pipelines.SimpleboCommand{Op: op, Client: cu})
			},
		}
		f := c.Flags()
		for _, s := range []struct {
			name string
			p    *string
			help string
		}{
			{"client-id", &cu.ClientID, "our id for the client (client_id; calls are idempotent on it)"},
			{"company", &cu.CompanyName, "company_name"}, {"lastname", &cu.Lastname, "client last name"},
			{"firstname", &cu.Firstname, "client first name"}, {"title", &cu.ClientTitle, "client_title (M., Mme)"},
			{"email", &cu.Email, "client email"}, {"phone", &cu.PhoneNumber1, "phone_number1"},
			{"phone2", &cu.PhoneNumber2, "phone_number2"}, {"address", &cu.Address1, "address1"},
			{"address2", &cu.Address2, "address2"}, {"zipcode", &cu.Zipcode, "client postal code"},
			{"city", &cu.City, "client city"}, {"siret", &cu.SIRET, "client SIRET (one failing its checksum is sent with a warning)"},
			{"campaign-code", &cu.CampaignCode, "campaign_code"}, {"other-info", &cu.OtherInfo, "other_info"},
		} {
			f.StringVar(s.p, s.name, "", s.help)
		}
		f.StringVar(&cu.Country, "country", "FR", "client country")
		f.IntVar(&cu.Typology, "typology", 0, "typology, the integer Simplébo assigns to the kind of site")
		for _, req := range []string{"client-id", "lastname", "email", "phone", "zipcode", "city", "typology"} {
			_ = c.MarkFlagRequired(req)
		}
		return c
	}
	clients := &cobra.Command{
		Use:   "clients",
		Short: "List Simplébo clients and their states (through the running daemon)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var list []pipelines.SimpleboClient
			if err := cli.Admin(c.Context(), http.MethodGet, "/admin/simplebo/clients", nil, &list); err != nil {
				return err
			}
			if cli.JSON() {
				return cli.PrintJSON(list)
			}
			tw := tabwriter.NewWriter(cli.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "client_id\tcompany\tstate\tas_of\tbilling_start\tend_of_contract\tredirect_to")
			for _, cl := range list {
				state := cl.State
				if state == "" {
					state = "(no event yet)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", cl.ClientID, cl.Identity.CompanyName, state, day(cl.StateOrder.Date),
					day(cl.Contract.BillingStartingDate), day(cl.Contract.EndOfContractDate), cl.RedirectTo)
			}
			return tw.Flush()
		},
	}
	root.AddCommand(
		provision(pipelines.SimpleboOpMockup, "Ask Simplébo for a free mock-up site (POST /v1/leads) and print its link"),
		provision(pipelines.SimpleboOpActivate, "Activate Simplébo's paid service for a client (POST /v1/customers) and print its link"),
		clients,
	)
	return []*cobra.Command{root}
}

func day(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(simplebo.DateLayout)
}

func simpleboExecute(ctx context.Context, cli *CLI, cmd pipelines.SimpleboCommand) error {
	cfg, err := cli.Config(ctx)
	if err != nil {
		return err
	}
	c := config.Get[*SimpleboConfig](cfg, nameSimplebo)
	if c.Token == "" {
		return UsageErrorf("PASSERELLE_SIMPLEBO_TOKEN is empty: set it with PASSERELLE_SIMPLEBO_PARTNER_CODE and PASSERELLE_SIMPLEBO_PARTNER")
	}
	if err := checkSimpleboCommand(cmd); err != nil {
		return UsageErrorf("%v", err)
	}
	reg := prometheus.NewRegistry()
	client, err := c.client(httpclient.NewMetrics(reg), simplebo.NewMetrics(reg))
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.StoreLocation())
	if err != nil {
		return err
	}
	defer st.Close()
	p := &pipelines.SimpleboProvisioner{API: client, Store: st, Now: time.Now,
		Log: slog.New(slog.NewTextHandler(cli.Err, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	res, err := p.Execute(ctx, cmd)
	if err != nil {
		if errors.Is(err, pipelines.ErrBadCommand) {
			return UsageErrorf("%v", err)
		}
		return err
	}
	if cli.JSON() {
		return cli.PrintJSON(res)
	}
	_, err = fmt.Fprintln(cli.Out, res.RedirectTo)
	return err
}

// Sandbox implements SandboxPartner: a simulated Simplébo, and a client sent through its life
// every so often: mock-up and activation through the daemon's provisioning topic, then the
// webhooks 0 (lead created), 1 (service activated) and 3 (billing started).
func (*Simplebo) Sandbox(_ context.Context, sb *Sandbox) ([]string, error) {
	sim, err := simplebosim.Start(simplebosim.SimConfig{})
	if err != nil {
		return nil, fmt.Errorf("start Simplébo simulator: %w", err)
	}
	sb.Defer(sim.Close)
	secret, token := randomHex(16), randomHex(12)
	auth := httpapi.TokenAuth{Scheme: httpapi.AuthBearer, Token: token}
	interval := max(10*sb.LeadEvery, 30*time.Second)
	sb.OnRun(func(ctx context.Context, webhookBase, adminAddr string) {
		n := 0
		every(ctx, interval, func(ctx context.Context) {
			n++
			id := fmt.Sprintf("sandbox-%d-%d", time.Now().Unix(), n)
			if err := simpleboSandboxClient(ctx, sim, id, "http://"+adminAddr, webhookBase+simpleboWebhookPrefix+secret, auth); err != nil && ctx.Err() == nil {
				sb.Log.Warn("sandbox Simplébo client did not go through its states", "client_id", id, "error", err)
			}
		})
	})
	sb.Note(func(webhookBase, _ string) string {
		return fmt.Sprintf(`Simplébo (simulated): %s, token %q, partner_code %q; a client goes through its states every %s.
  Client-state webhook: %s%s%s (bearer token %q). Send one yourself:
    curl -i -X POST %s%s%s -H 'Authorization: Bearer %s' \
      -d event_type=1 -d client_id=demo-1 -d lead_creation_date=2026-01-05 -d service_starting_date=2026-01-19 -d company_name=ACME
  Provision and list:
    passerelle simplebo mockup --client-id demo-1 --company ACME --lastname Martin --email compta@acme.example --phone 0612345678 --zipcode 69003 --city Lyon --typology 12
    passerelle simplebo clients`,
			sim.URL(), sim.Token(), sim.PartnerCode(), interval, webhookBase, simpleboWebhookPrefix, secret, token,
			webhookBase, simpleboWebhookPrefix, secret, token)
	})
	return []string{
		"PASSERELLE_SIMPLEBO_URL=" + sim.URL(), "PASSERELLE_SIMPLEBO_TOKEN=" + sim.Token(),
		"PASSERELLE_SIMPLEBO_PARTNER_CODE=" + sim.PartnerCode(), "PASSERELLE_SIMPLEBO_PARTNER=sandbox",
		"PASSERELLE_SIMPLEBO_WEBHOOK_SECRET=" + secret, "PASSERELLE_SIMPLEBO_WEBHOOK_AUTH=bearer", "PASSERELLE_SIMPLEBO_WEBHOOK_TOKEN=" + token, "PASSERELLE_SIMPLEBO_BILLING_PRICE=29.00",
	}, nil
}

// simpleboSandboxClient provisions a client through the daemon's admin API (and so its
// simplebo.provision topic), waits for the simulator to have it, then posts its webhooks.
func simpleboSandboxClient(ctx context.Context, sim *simplebosim.Sim, id, admin, hook string, auth httpapi.TokenAuth) error {
	snap := simplebosim.SnapshotFor(id)
	cu := simplebo.Customer{
		ClientID: id, Lastname: snap.Lastname, Firstname: snap.Firstname, CompanyName: snap.CompanyName, SIRET: snap.SIRET,
		Email: snap.Email, PhoneNumber1: snap.PhoneNumber1, Address1: snap.Address1, Zipcode: snap.Zipcode, City: snap.City,
		Country: snap.Country, Typology: 12,
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, op := range []string{pipelines.SimpleboOpMockup, pipelines.SimpleboOpActivate} {
		b, err := json.Marshal(pipelines.SimpleboCommand{Op: op, Client: cu})
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, admin+"/admin/simplebo/provision", bytes.NewReader(b))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("queue %s: %w", op, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("queue %s: admin API answered %d", op, resp.StatusCode)
		}
		done := func() bool {
			r, ok := sim.Client(id)
			return ok && (r.Lead || op == pipelines.SimpleboOpActivate) && (r.Activated || op == pipelines.SimpleboOpMockup)
		}
		if err := waitFor(ctx, 30*time.Second, done); err != nil {
			return fmt.Errorf("%s not seen by the simulator: %w", op, err)
		}
	}
	for _, ev := range simplebosim.EventsFor(id, time.Now().AddDate(0, -2, 0), simplebo.LeadCreated, simplebo.ServiceActivated, simplebo.BillingStarted) {
		if err := sleepCtx(ctx, 3*time.Second); err != nil {
			return err
		}
		if err := sim.SendEvents(ctx, hook, []simplebo.Event{ev}, simplebosim.WithAuth(auth)); err != nil {
			return err
		}
	}
	return nil
}

// waitFor polls cond until it holds, ctx ends or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for !cond() {
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
