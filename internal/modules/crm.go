package modules

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/pipelines"
)

// CRMConfig configures the CRM webhook sink every module's events go to.
type CRMConfig struct {
	URLs        []string      `env:"CRM_URL" secret:"true" desc:"one or more endpoints, comma separated; the sink is off when empty"`
	Secret      string        `env:"CRM_SECRET" secret:"true" desc:"Standard Webhooks signing secret (whsec_…)"`
	Format      string        `env:"CRM_FORMAT, default=generic" desc:"generic (event envelope) or hubspot (contact properties)"`
	Timeout     time.Duration `env:"CRM_TIMEOUT, default=10s" desc:"per-request timeout"`
	MaxAttempts int           `env:"CRM_MAX_ATTEMPTS, default=12" desc:"HTTP attempts per endpoint before the event is dead-lettered"`
	MaxAge      time.Duration `env:"CRM_MAX_AGE, default=24h" desc:"age after which a failing event is dead-lettered"`
	Concurrency int           `env:"CRM_CONCURRENCY, default=32" desc:"requests in flight per endpoint at most; lowered while an endpoint answers 429, climbing back after successes"`
	Rate        float64       `env:"CRM_RATE, default=0" desc:"requests per second per endpoint at most; 0 is no limit"`
}

// Validate implements config.Section.
func (c *CRMConfig) Validate() error {
	var errs config.Errors
	seen := make(map[string]bool, len(c.URLs))
	for _, u := range c.URLs {
		errs.HTTPURL("CRM_URL", u)
		if seen[u] {
			// Each endpoint has its own delivery log and, on ordered topics, its own stage.
			errs.Add("CRM_URL", "an endpoint is listed twice")
		}
		seen[u] = true
	}
	if len(c.URLs) > 0 && c.Secret == "" {
		errs.Add("CRM_SECRET", "required when PASSERELLE_CRM_URL is set")
	}
	if c.Secret != "" {
		if err := stdwebhook.CheckSecret(c.Secret); err != nil || !strings.HasPrefix(c.Secret, "whsec_") {
			errs.Add("CRM_SECRET", "must be a whsec_ secret (whsec_ and base64)")
		}
	}
	if _, err := crm.ParseFormat(c.Format); err != nil {
		errs.Add("CRM_FORMAT", "%v", err)
	}
	if c.MaxAttempts < 1 {
		errs.Add("CRM_MAX_ATTEMPTS", "must be at least 1")
	}
	if c.Timeout <= 0 {
		errs.Add("CRM_TIMEOUT", "must be positive")
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs.Add("CRM_CONCURRENCY", "%d: want 1 to 256", c.Concurrency)
	}
	if c.Rate < 0 {
		errs.Add("CRM_RATE", "must not be negative")
	}
	return errs.Err()
}

// CRM is the CRM webhook sink: it builds the sink the other modules deliver their events with.
// It has no stage of its own: each module adds a "<module>.crm" stage on its topic.
type CRM struct{}

const nameCRM = "crm"

// Name implements Module.
func (CRM) Name() string { return nameCRM }

// Config implements Module.
func (CRM) Config() config.Section { return &CRMConfig{} }

// Enabled implements Module.
func (CRM) Enabled(cfg config.Config) (bool, string) {
	c := config.Get[*CRMConfig](cfg, nameCRM)
	if len(c.URLs) == 0 {
		return false, "PASSERELLE_CRM_URL is empty"
	}
	return true, fmt.Sprintf("%d endpoint(s), format %s", len(c.URLs), c.Format)
}

// Build implements Module.
func (m CRM) Build(_ context.Context, env *Env) error {
	if on, _ := m.Enabled(env.Cfg); !on {
		return nil
	}
	c := config.Get[*CRMConfig](env.Cfg, nameCRM)
	client, err := crm.New(crm.Config{Secret: c.Secret, Timeout: c.Timeout}, env.HTTPMetrics)
	if err != nil {
		return fmt.Errorf("crm: %w", err)
	}
	format, err := crm.ParseFormat(c.Format)
	if err != nil {
		return err
	}
	engine := delivery.New(delivery.Config{Concurrency: c.Concurrency, Rate: c.Rate}, env.DeliveryMetrics)
	for _, u := range c.URLs {
		env.DeliveryMetrics.Init(pipelines.EndpointID(u))
	}
	env.CRM = &pipelines.CRMSink{
		Sender: client, Engine: engine, Subscribers: c.Concurrency, Endpoints: c.URLs, Format: format, Store: env.Store,
		MaxAttempts: c.MaxAttempts, MaxAge: c.MaxAge, Disabled: env.DisabledEndpoints, Log: env.Log, Now: env.Now,
		Health: env.Guard, Sent: pipelines.NewSentCache(100_000),
	}
	return nil
}

// Sandbox implements SandboxPartner: a CRM endpoint that verifies Standard Webhooks signatures
// and counts what it receives by event type.
func (CRM) Sandbox(_ context.Context, sb *Sandbox) ([]string, error) {
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return nil, err
	}
	receiver, err := crmsim.Start(secret)
	if err != nil {
		return nil, fmt.Errorf("start CRM simulator: %w", err)
	}
	sb.Defer(receiver.Close)
	sb.OnRun(func(ctx context.Context, _, _ string) {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				byType := map[string]int{}
				for _, d := range receiver.Deliveries() {
					var ev struct {
						Type string `json:"type"`
					}
					_ = json.Unmarshal(d.Body, &ev)
					byType[ev.Type]++
				}
				sb.Log.Info("sandbox CRM simulator", "events_by_type", byType, "rejected_signatures", receiver.Rejected())
			}
		}
	})
	sb.Note(func(_, _ string) string {
		return fmt.Sprintf("CRM (simulated): %s, signing secret %s: it verifies every signature.", receiver.URL(), secret)
	})
	return []string{"PASSERELLE_CRM_URL=" + receiver.URL(), "PASSERELLE_CRM_SECRET=" + secret}, nil
}
