package modules

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/hashkey"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/redact"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// LeadsConfig configures the Ici Formation lead webhook and the leads pipeline.
type LeadsConfig struct {
	Token        string        `env:"ICIFORMATION_TOKEN" secret:"true" desc:"token Ici Formation sends; the webhook is off when empty"`
	Auth         string        `env:"ICIFORMATION_AUTH, default=bearer" desc:"how the token is sent: bearer, api-key, x-token or token"`
	DedupeWindow time.Duration `env:"DEDUPE_WINDOW, default=24h" desc:"a lead with the same contact, formation and id_client inside this window is a duplicate"`
	HashKey      string        `env:"HASH_KEY" secret:"true" desc:"secret keying the digests of emails and phones (dedupe keys, log hashes), 16 bytes or more; when empty, one is generated once into hash.key in the data directory; daemons sharing a PostgreSQL store must share it"`
}

// Validate implements config.Section.
func (c *LeadsConfig) Validate() error {
	var errs config.Errors
	if _, err := httpapi.ParseAuthScheme(c.Auth); err != nil {
		errs.Add("ICIFORMATION_AUTH", "%v", err)
	}
	if c.DedupeWindow < 0 {
		errs.Add("DEDUPE_WINDOW", "must not be negative")
	}
	if c.HashKey != "" && len(c.HashKey) < hashkey.MinLen {
		errs.Add("HASH_KEY", "must be at least %d bytes", hashkey.MinLen)
	}
	return errs.Err()
}

// Leads is the Ici Formation lead webhook and the leads pipeline: ingest, normalize (with
// dedupe), and delivery to the CRM.
type Leads struct{}

const nameLeads = pipelines.PipelineLeads

// Name implements Module.
func (Leads) Name() string { return nameLeads }

// Config implements Module.
func (Leads) Config() config.Section { return &LeadsConfig{} }

// Enabled implements Module.
func (Leads) Enabled(cfg config.Config) (bool, string) {
	c := config.Get[*LeadsConfig](cfg, nameLeads)
	if c.Token == "" {
		return false, "PASSERELLE_ICIFORMATION_TOKEN is empty"
	}
	return true, "POST /webhooks/iciformation, auth " + c.Auth
}

// Check implements Checker: leads received must reach a sink.
func (m Leads) Check(cfg config.Config) error {
	if on, _ := m.Enabled(cfg); on {
		if crm, _ := (CRM{}).Enabled(cfg); !crm {
			return fmt.Errorf("PASSERELLE_ICIFORMATION_TOKEN is set but nothing consumes the leads: set PASSERELLE_CRM_URL (and PASSERELLE_CRM_SECRET)")
		}
	}
	return nil
}

// Source implements Source.
func (Leads) Source() string { return "PASSERELLE_ICIFORMATION_TOKEN (Ici Formation leads)" }

// Build implements Module.
func (m Leads) Build(ctx context.Context, env *Env) error {
	c := config.Get[*LeadsConfig](env.Cfg, nameLeads)
	env.LeadSources[pipelines.SourceIciFormation] = pipelines.DecodeIciFormation
	dedupeKey, logHasher, err := leadHashKeys(ctx, env, c.HashKey)
	if err != nil {
		return err
	}
	env.Hasher = logHasher
	if err := pipelines.AddLeads(ctx, env.Wiring, pipelines.LeadsConfig{
		Store: env.Store, DedupeWindow: c.DedupeWindow, DedupeKey: dedupeKey, LogHasher: logHasher,
		Sources: env.LeadSources, CRM: env.CRM,
	}); err != nil {
		return err
	}
	// Dedupe keys older than the window can never match again: drop them so the table stays small.
	env.Go(func(ctx context.Context) {
		every(ctx, time.Hour, func(ctx context.Context) {
			if n, err := env.Store.PruneKeys(ctx, env.Now().Add(-c.DedupeWindow)); err != nil {
				env.Log.Warn("prune dedupe keys", "error", err)
			} else if n > 0 {
				env.Log.Debug("pruned dedupe keys", "count", n)
			}
		})
	})
	if on, _ := m.Enabled(env.Cfg); !on {
		return nil
	}
	scheme, err := httpapi.ParseAuthScheme(c.Auth)
	if err != nil {
		return err
	}
	// Up to 256 concurrent leads share one publish. One flusher: the next batch fills while the
	// last one is acknowledged, so batches are larger and the broker does less per lead.
	batcher := broker.NewBatcher(env.Pub, pipelines.TopicLeadsReceived, 256, 1)
	env.OnClose(func() error { batcher.Close(); return nil })
	ingest := pipelines.NewLeadIngest(batcher, env.Stages, env.Yield, env.Now)
	env.Webhooks.Handle("/webhooks/iciformation", env.WebhookMetrics.Instrument("iciformation", iciformation.NewHandler(iciformation.HandlerConfig{
		Auth: httpapi.TokenAuth{Scheme: scheme, Token: c.Token}, Logger: env.Log.With("source", "iciformation"),
	}, ingest)))
	return nil
}

// leadHashKeys loads the hash key (PASSERELLE_HASH_KEY or the data directory's) and derives the
// dedupe and log keys. Dedupe keys stored unkeyed by an earlier version are rewritten with it the
// first time, so a lead seen before the upgrade is still a duplicate after.
func leadHashKeys(ctx context.Context, env *Env, configured string) ([]byte, redact.Hasher, error) {
	key, generated, err := hashkey.Load(configured, env.Cfg.DataDir)
	if err != nil {
		return nil, redact.Hasher{}, err
	}
	if generated {
		env.Log.Info("hash key generated", "file", filepath.Join(env.Cfg.DataDir, hashkey.FileName))
		if env.Cfg.StoreDSN != "" {
			env.Log.Warn("hash key generated while the store is shared (PASSERELLE_STORE_DSN): set PASSERELLE_HASH_KEY to the same value on every daemon, or their dedupe keys will not match")
		}
	}
	dedupeKey := hashkey.Derive(key, hashkey.PurposeDedupe)
	n, err := env.Store.RekeyDedupe(ctx, hashkey.ID(dedupeKey), func(digest string) string {
		return transforms.KeyedDedupeKey(dedupeKey, digest)
	})
	switch {
	case errors.Is(err, store.ErrDedupeKeyChanged):
		env.Log.Warn("the hash key changed: dedupe keys stored before match nothing, a lead seen inside the dedupe window may pass once more")
	case err != nil:
		return nil, redact.Hasher{}, fmt.Errorf("key the stored dedupe keys: %w", err)
	case n > 0:
		env.Log.Info("stored dedupe keys rewritten with the hash key", "count", n)
	}
	return dedupeKey, redact.NewHasher(hashkey.Derive(key, hashkey.PurposeLogs)), nil
}

const sandboxLeadToken = "sandbox-token"

// Sandbox implements SandboxPartner: a simulated Ici Formation posts a lead every few seconds.
func (Leads) Sandbox(_ context.Context, sb *Sandbox) ([]string, error) {
	sb.OnRun(func(ctx context.Context, webhookBase, _ string) {
		sender := &iciformationsim.Sender{URL: webhookBase + "/webhooks/iciformation", Auth: httpapi.TokenAuth{Scheme: httpapi.AuthBearer, Token: sandboxLeadToken}}
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		sender.Run(ctx, sb.LeadEvery, rng, func(status int, err error) {
			if err != nil && ctx.Err() == nil {
				sb.Log.Warn("simulated lead not accepted", "status", status, "error", err)
			}
		})
	})
	sb.Note(func(webhookBase, _ string) string {
		return fmt.Sprintf(`Ici Formation (simulated): posts a lead every %s to /webhooks/iciformation, token %q (bearer).
  Post one yourself:
    curl -i -X POST %s/webhooks/iciformation \
      -H 'Authorization: Bearer %s' -H 'Content-Type: application/json' \
      -d '{"nom":"Doe","prenom":"John","civilite":"M.","tel":"0102030405","email":"john.doe@example.com","ville":"paris","code_postal":"75001","formation":"Développement Web","id_client":"1234"}'`,
			sb.LeadEvery, sandboxLeadToken, webhookBase, sandboxLeadToken)
	})
	return []string{"PASSERELLE_ICIFORMATION_TOKEN=" + sandboxLeadToken, "PASSERELLE_ICIFORMATION_AUTH=bearer"}, nil
}

// every runs f now and then every interval until ctx is done.
func every(ctx context.Context, interval time.Duration, f func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		f(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
