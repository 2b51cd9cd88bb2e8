package modules

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

// ShopAppConfig configures the Shop Application (Cegid) poller and provisioning client.
type ShopAppConfig struct {
	URL          string        `env:"SHOPAPP_URL" desc:"API base URL; the poller is off when empty"`
	ClientID     string        `env:"SHOPAPP_CLIENT_ID" desc:"client_id for GET /token"`
	ClientSecret string        `env:"SHOPAPP_CLIENT_SECRET" secret:"true" desc:"client_secret for GET /token"`
	Rate         float64       `env:"SHOPAPP_RATE, default=5" desc:"client-side limit, requests per second"`
	PollInterval time.Duration `env:"SHOPAPP_POLL_INTERVAL, default=5m" desc:"time between two polls"`
	Concurrency  int           `env:"SHOPAPP_CONCURRENCY, default=4" desc:"interfaces fetched in parallel during a poll"`
}

// Validate implements config.Section.
func (c *ShopAppConfig) Validate() error {
	var errs config.Errors
	if c.URL != "" {
		if p, err := url.Parse(c.URL); err != nil || p.Host == "" {
			errs.Add("SHOPAPP_URL", "%q is not a URL", config.RedactURL(c.URL))
		}
		if c.ClientID == "" || c.ClientSecret == "" {
			errs.Add("SHOPAPP_CLIENT_ID", "client id and secret are required when PASSERELLE_SHOPAPP_URL is set")
		}
	}
	if c.Rate <= 0 {
		errs.Add("SHOPAPP_RATE", "must be positive")
	}
	if c.PollInterval <= 0 {
		errs.Add("SHOPAPP_POLL_INTERVAL", "must be positive")
	}
	if c.Concurrency < 1 {
		errs.Add("SHOPAPP_CONCURRENCY", "must be at least 1")
	}
	return errs.Err()
}

// client builds the Shop Application client.
func (c *ShopAppConfig) client(hm *httpclient.Metrics, m *shopapp.Metrics) (*shopapp.Client, error) {
	cl, err := shopapp.New(shopapp.Config{BaseURL: c.URL, ClientID: c.ClientID, ClientSecret: c.ClientSecret, Rate: c.Rate}, hm, m)
	if err != nil {
		return nil, fmt.Errorf("shopapp: %w", err)
	}
	return cl, nil
}

// ShopApp is the Shop Application poller (interface and prestation changes as events), its
// provisioning (the shopapp.provision topic and the operator commands) and the CRM stage of its
// events.
type ShopApp struct {
	// Built, for tests that drive a poll or a call themselves; nil until Build, and when off.
	Client *shopapp.Client
	Poller *pipelines.ShopAppPoller
}

const nameShopApp = pipelines.PipelineShopApp

// Name implements Module.
func (*ShopApp) Name() string { return nameShopApp }

// Config implements Module.
func (*ShopApp) Config() config.Section { return &ShopAppConfig{} }

// Enabled implements Module.
func (*ShopApp) Enabled(cfg config.Config) (bool, string) {
	c := config.Get[*ShopAppConfig](cfg, nameShopApp)
	if c.URL == "" {
		return false, "PASSERELLE_SHOPAPP_URL is empty"
	}
	return true, "polling " + config.RedactURL(c.URL) + " every " + c.PollInterval.String()
}

// Source implements Source.
func (*ShopApp) Source() string {
	return "PASSERELLE_SHOPAPP_URL with _CLIENT_ID and _CLIENT_SECRET (Shop Application polling)"
}

// Build implements Module.
func (m *ShopApp) Build(ctx context.Context, env *Env) error {
	c := config.Get[*ShopAppConfig](env.Cfg, nameShopApp)
	var prov *pipelines.Provisioner
	if on, _ := m.Enabled(env.Cfg); on {
		client, err := c.client(env.HTTPMetrics, shopapp.NewMetrics(env.Registry))
		if err != nil {
			return err
		}
		m.Client = client
		env.Catalogue = client
		prov = &pipelines.Provisioner{API: client, Store: env.Store}
		m.Poller = &pipelines.ShopAppPoller{API: client, Store: env.Store, Pub: env.Pub, Concurrency: c.Concurrency,
			Log: env.Log.With("pipeline", nameShopApp), Now: env.Now, Metrics: pipelines.NewShopAppMetrics(env.Registry)}
		env.addReplaySource(nameShopApp, pipelines.ShopAppReplay(m.Poller))
		env.Go(func(ctx context.Context) { m.Poller.Run(ctx, c.PollInterval) })
	}
	return pipelines.AddShopApp(ctx, env.Wiring, env.CRM, prov, env.Store)
}

// Sandbox implements SandboxPartner: a few dozen interfaces that keep changing.
func (*ShopApp) Sandbox(_ context.Context, sb *Sandbox) ([]string, error) {
	sim, err := shopappsim.Start(shopappsim.Config{InstallDelay: time.Minute})
	if err != nil {
		return nil, fmt.Errorf("start Shop Application simulator: %w", err)
	}
	sb.Defer(sim.Close)
	sim.Seed(40, rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3)))
	sb.OnRun(func(ctx context.Context, _, _ string) {
		r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
		every(ctx, 5*time.Second, func(context.Context) { sim.Mutate(r) })
	})
	sb.Note(func(_, _ string) string {
		return fmt.Sprintf(`Shop Application (simulated): %s, client_id %q, client_secret %q
  interfaces change every 5s and are polled every 10s. Provision one (the daemon's store is shared):
    passerelle shopapp create --guid demo-1 --prestations IN-BTQST-S,IN-BTQZ-AMM --company "ACME SARL" --email compta@acme.example`,
			sim.URL(), sim.ClientID(), sim.ClientSecret())
	})
	return []string{
		"PASSERELLE_SHOPAPP_URL=" + sim.URL(), "PASSERELLE_SHOPAPP_CLIENT_ID=" + sim.ClientID(), "PASSERELLE_SHOPAPP_CLIENT_SECRET=" + sim.ClientSecret(),
		"PASSERELLE_SHOPAPP_POLL_INTERVAL=10s", "PASSERELLE_SHOPAPP_RATE=50",
	}, nil
}

// Commands implements Commander: provisioning straight against the API, recording what
// creation needs (the guid's key, the client's identity for billing) in the daemon's store.
func (*ShopApp) Commands(cli *CLI) []*cobra.Command {
	root := Group(&cobra.Command{
		Use:   "shopapp",
		Short: "Provision Shop Application interfaces (create, delete, reactivate, prestations)",
		Long: `Provision Shop Application interfaces straight through its API.

The commands record what billing needs (the guid's interface key, the client's identity) in the
daemon's store: run them with the daemon's PASSERELLE_DATA_DIR or PASSERELLE_STORE_DSN.`,
	})
	var cmd pipelines.ProvisionCommand
	var prestations string
	run := func(op string) func(*cobra.Command, []string) error {
		return func(c *cobra.Command, _ []string) error {
			cmd.Op = op
			if prestations != "" {
				cmd.Prestations = strings.Split(prestations, ",")
			}
			return shopappExecute(c.Context(), cli, cmd)
		}
	}
	create := &cobra.Command{Use: "create", Short: "Create an interface (idempotent on --guid)", Args: cobra.NoArgs, RunE: run(pipelines.OpCreate),
		Example: `  passerelle shopapp create --guid G-1 --prestations IN-BTQST-S,IN-BTQZ-AMM --company "ACME" --lastname Martin --email compta@acme.example`}
	create.Flags().StringVar(&cmd.GUID, "guid", "", "our id for the interface (creation is idempotent on it)")
	create.Flags().StringVar(&prestations, "prestations", "", "prestation codes, comma separated: exactly one setup IN-…-S")
	create.Flags().StringVar(&cmd.Subdomain, "subdomain", "", "sous_domaine")
	cl := &cmd.Client
	for _, f := range []struct {
		name string
		p    *string
		help string
	}{
		{"company", &cl.Company, "client company (societe)"}, {"lastname", &cl.LastName, "client last name (nom)"},
		{"firstname", &cl.FirstName, "client first name (prenom)"}, {"email", &cl.Email, "client email"},
		{"phone", &cl.Phone, "client phone (telephone)"}, {"address", &cl.Address, "client address (adresse)"},
		{"postal-code", &cl.PostalCode, "client postal code (code_postal)"}, {"city", &cl.City, "client city (ville)"},
		{"country", &cl.Country, "client country (pays)"}, {"rcs", &cl.RCS, "client RCS number"}, {"ape", &cl.APE, "client APE code"},
	} {
		create.Flags().StringVar(f.p, f.name, "", f.help)
	}
	_ = create.MarkFlagRequired("guid")
	_ = create.MarkFlagRequired("prestations")

	byKey := func(use, short, op string) *cobra.Command {
		c := &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs, RunE: run(op)}
		c.Flags().StringVar(&cmd.Key, "key", "", "the interface key (sa_key)")
		_ = c.MarkFlagRequired("key")
		return c
	}
	add := byKey("add-prestations", "Add prestations to an interface", pipelines.OpAddPrestations)
	add.Flags().StringVar(&prestations, "prestations", "", "prestation codes, comma separated")
	_ = add.MarkFlagRequired("prestations")
	cancel := byKey("cancel-prestation", "Cancel one prestation of an interface", pipelines.OpCancelPrestation)
	cancel.Flags().StringVar(&cmd.CodeOrRef, "prestation", "", "prestation code or reference_unique to cancel")
	_ = cancel.MarkFlagRequired("prestation")
	root.AddCommand(create,
		byKey("delete", "Request an interface's deletion (access cut on the 1st of next month)", pipelines.OpDelete),
		byKey("reactivate", "Reactivate an interface whose deletion was requested", pipelines.OpReactivate),
		add, cancel)
	return []*cobra.Command{root}
}

func shopappExecute(ctx context.Context, cli *CLI, cmd pipelines.ProvisionCommand) error {
	cfg, err := cli.Config(ctx)
	if err != nil {
		return err
	}
	c := config.Get[*ShopAppConfig](cfg, nameShopApp)
	if c.URL == "" {
		return UsageErrorf("PASSERELLE_SHOPAPP_URL is empty: set it with PASSERELLE_SHOPAPP_CLIENT_ID and PASSERELLE_SHOPAPP_CLIENT_SECRET")
	}
	reg := prometheus.NewRegistry()
	client, err := c.client(httpclient.NewMetrics(reg), shopapp.NewMetrics(reg))
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.StoreLocation())
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := (&pipelines.Provisioner{API: client, Store: st}).Execute(ctx, cmd)
	if err != nil {
		if errors.Is(err, pipelines.ErrBadCommand) {
			return UsageErrorf("%v", err)
		}
		return err
	}
	if err := cli.PrintJSON(res); err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	return nil
}
