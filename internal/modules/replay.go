package modules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/journal"
	"github.com/passerelle/passerelle/pipelines"
)

// ReplayConfig configures the journal of received records, and the Ici Formation
// reconciliation that feeds the leads the webhook missed.
type ReplayConfig struct {
	JournalRetention  time.Duration `env:"JOURNAL_RETENTION, default=720h" desc:"how long day files of the journal (<data dir>/journal/<source>/<day>.jsonl.gz: every received record as received, personal data included) are kept; pruned daily"`
	APIURL            string        `env:"ICIFORMATION_API_URL" desc:"Ici Formation's polling API (…/api/webservice/leads); reconciliation is off when empty"`
	APIKey            string        `env:"ICIFORMATION_API_KEY" secret:"true" desc:"token Ici Formation issues for its polling API (Authorization: Bearer)"`
	ReconcileInterval time.Duration `env:"ICIFORMATION_RECONCILE_INTERVAL, default=1h" desc:"time between two reconciliations of the last day's leads"`
}

// Validate implements config.Section.
func (c *ReplayConfig) Validate() error {
	var errs config.Errors
	if c.JournalRetention < 24*time.Hour {
		errs.Add("JOURNAL_RETENTION", "%s: must be at least 24h (a day file is pruned once its whole day is older)", c.JournalRetention)
	}
	if c.APIURL != "" {
		errs.HTTPURL("ICIFORMATION_API_URL", c.APIURL)
		if c.APIKey == "" {
			errs.Add("ICIFORMATION_API_KEY", "required when PASSERELLE_ICIFORMATION_API_URL is set")
		}
	}
	if c.ReconcileInterval < time.Minute {
		errs.Add("ICIFORMATION_RECONCILE_INTERVAL", "%s: must be at least 1m", c.ReconcileInterval)
	}
	return errs.Err()
}

// Replay is the journal (the leads.journal stage and its pruning), `passerelle replay` and the
// admin route it posts records to, and the Ici Formation reconciliation.
type Replay struct {
	// Reconciler is built when reconciliation is on, for tests that drive a run themselves.
	Reconciler *pipelines.Reconciler
	// JournalDir is where the journal is written, once built.
	JournalDir string
}

const nameReplay = "replay"

// Name implements Module.
func (*Replay) Name() string { return nameReplay }

// Config implements Module.
func (*Replay) Config() config.Section { return &ReplayConfig{} }

// Enabled implements Module: the journal runs whenever a lead source does.
func (*Replay) Enabled(cfg config.Config) (bool, string) {
	c := config.Get[*ReplayConfig](cfg, nameReplay)
	leads, _ := Leads{}.Enabled(cfg)
	if !leads && c.APIURL == "" {
		return false, "no lead source (PASSERELLE_ICIFORMATION_TOKEN and PASSERELLE_ICIFORMATION_API_URL are empty): nothing to journal"
	}
	why := "journal under " + journalDir(cfg) + ", kept " + c.JournalRetention.String()
	if c.APIURL != "" {
		why += "; reconciling " + config.RedactURL(c.APIURL) + " every " + c.ReconcileInterval.String()
	} else {
		why += "; reconciliation off (PASSERELLE_ICIFORMATION_API_URL is empty)"
	}
	return true, why
}

// Source implements Source: the reconciliation brings leads in.
func (*Replay) Source() string {
	return "PASSERELLE_ICIFORMATION_API_URL with _API_KEY (Ici Formation reconciliation)"
}

// Check implements Checker: reconciled leads must reach a sink.
func (*Replay) Check(cfg config.Config) error {
	c := config.Get[*ReplayConfig](cfg, nameReplay)
	if c.APIURL != "" {
		if crm, _ := (CRM{}).Enabled(cfg); !crm {
			return errors.New("PASSERELLE_ICIFORMATION_API_URL is set but nothing consumes the leads: set PASSERELLE_CRM_URL (and PASSERELLE_CRM_SECRET)")
		}
	}
	return nil
}

func journalDir(cfg config.Config) string { return filepath.Join(cfg.DataDir, "journal") }

func dataDirLock(dir string) string { return filepath.Join(dir, "passerelle.lock") }

// Build implements Module. It comes after the lead sources' modules: it journals what they
// decode (env.LeadSources).
func (m *Replay) Build(ctx context.Context, env *Env) error {
	c := config.Get[*ReplayConfig](env.Cfg, nameReplay)
	m.JournalDir = journalDir(env.Cfg)
	sources := sortedKeys(env.LeadSources)
	journaled := sources
	if _, ok := env.ReplaySources[pipelines.SourceSimplebo]; ok {
		journaled = append(slices.Clone(sources), pipelines.SourceSimplebo)
	}
	w, err := journal.Open(m.JournalDir, journal.Options{Retention: c.JournalRetention, Now: env.Now, Metrics: journal.NewMetrics(env.Registry, journaled...)})
	if err != nil {
		return err
	}
	env.OnClose(w.Close)
	if err := pipelines.AddJournal(ctx, env.Wiring, w); err != nil {
		return err
	}
	if _, ok := env.ReplaySources[pipelines.SourceSimplebo]; ok {
		if err := pipelines.AddSimpleboJournal(ctx, env.Wiring, w); err != nil {
			return err
		}
	}
	log := env.Log.With("module", nameReplay)
	// Held while the daemon runs: `passerelle replay` opens the embedded broker itself only when
	// it can take it. A second daemon on the same directory runs without it.
	if release, err := lockDataDir(env.Cfg.DataDir); err != nil {
		log.Debug("data directory lock not taken", "error", err)
	} else {
		env.OnClose(release)
	}
	env.Go(func(ctx context.Context) {
		every(ctx, 24*time.Hour, func(ctx context.Context) {
			if n, err := w.Prune(ctx); err != nil {
				log.Warn("prune journal", "error", err)
			} else if n > 0 {
				log.Info("pruned journal day files", "count", n, "retention", c.JournalRetention.String())
			}
		})
	})

	replayer := &pipelines.Replayer{Sources: env.LeadSources, Others: env.ReplaySources, Pub: env.Pub, Now: env.Now}
	sources = append(sources, sortedKeys(env.ReplaySources)...)
	env.Admin.HandleFunc("POST /admin/replay/records", func(w http.ResponseWriter, r *http.Request) {
		body, err := httpapi.ReadBody(w, r, maxReplayRequest)
		if err != nil {
			httpapi.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("a replay batch is at most %d bytes", maxReplayRequest))
			return
		}
		var req replayRequest
		if err := json.Unmarshal(body, &req); err != nil {
			httpapi.WriteError(w, http.StatusBadRequest, `want {"stage": "received"|"normalized", "records": [{"source", "received_at", "body"}]}`)
			return
		}
		for _, rec := range req.Records {
			_, lead := env.LeadSources[rec.Source]
			if _, other := env.ReplaySources[rec.Source]; !lead && !other {
				httpapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("source %q: the daemon replays %s", rec.Source, strings.Join(sources, ", ")))
				return
			}
		}
		if req.Stage != "" && req.Stage != pipelines.StageReceived && req.Stage != pipelines.StageNormalized {
			httpapi.WriteError(w, http.StatusBadRequest, fmt.Sprintf("stage %q: want %s or %s", req.Stage, pipelines.StageReceived, pipelines.StageNormalized))
			return
		}
		counts, err := replayer.Replay(r.Context(), req.Records, req.Stage)
		if err != nil {
			httpapi.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, replayAnswer{Counts: counts})
	})

	if c.APIURL == "" {
		return nil
	}
	client, err := iciformation.NewClient(iciformation.ClientConfig{URL: c.APIURL, Key: c.APIKey}, env.HTTPMetrics)
	if err != nil {
		return err
	}
	dir := m.JournalDir
	m.Reconciler = &pipelines.Reconciler{
		API: client, Pub: env.Pub, Metrics: pipelines.NewReconcileMetrics(env.Registry),
		Log: log.With("source", pipelines.SourceIciFormation), Now: env.Now, Location: frtime.Paris(),
		Received: func(ctx context.Context, since time.Time) (map[string]struct{}, error) {
			return pipelines.JournalEventIDs(ctx, &journal.Reader{}, dir, pipelines.SourceIciFormation, since)
		},
	}
	env.Go(func(ctx context.Context) { m.Reconciler.Run(ctx, c.ReconcileInterval) })
	return nil
}

// maxReplayRequest bounds one POST /admin/replay/records: a batch of 500 records of 64 KiB.
const maxReplayRequest = 34 << 20

type replayRequest struct {
	Stage   string                   `json:"stage"`
	Records []pipelines.ReplayRecord `json:"records"`
}

type replayAnswer struct {
	Counts pipelines.ReplayCounts `json:"counts"`
}

// replaySources are the lead sources `passerelle replay` reads, with the decoders the daemon's
// modules wire (Leads.Build).
func replaySources() pipelines.LeadSources {
	return pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}
}

// replayDirectSources are the other sources `passerelle replay` reads: their records go to the
// daemon as read, where their module's ingest decodes and publishes them (Env.ReplaySources).
// Here a record is only checked, for dry runs and the dedupe within a run: the func returns its
// event id ("" when a record has none of its own, as an Ecolix page).
func replayDirectSources() map[string]func(body []byte) (string, error) {
	return map[string]func([]byte) (string, error){
		pipelines.SourceSimplebo: func(b []byte) (string, error) {
			ev, err := pipelines.DecodeSimpleboReplay(b)
			if err != nil {
				return "", err
			}
			return pipelines.SimpleboEventID(ev), nil
		},
		// Snapshots are not deduped within a run: their order is their history.
		nameShopApp: func(b []byte) (string, error) {
			_, err := pipelines.DecodeShopAppSnapshot(b, time.Now())
			return "", err
		},
		nameEcolix: func(b []byte) (string, error) {
			_, err := ecolix.DecodePage(b)
			return "", err
		},
	}
}

// addReplaySource registers a module's replay path for source.
func (e *Env) addReplaySource(source string, f pipelines.ReplayFunc) {
	if e.ReplaySources == nil {
		e.ReplaySources = map[string]pipelines.ReplayFunc{}
	}
	e.ReplaySources[source] = f
}

// Commands implements Commander.
func (*Replay) Commands(cli *CLI) []*cobra.Command {
	var o replayOptions
	c := &cobra.Command{
		Use:   "replay [--source S FILE…] [--from-journal --since T --until T]",
		Short: "Feed records from files or the journal through the live stages (backfills)",
		Long: `Replay records through the same stages as live ones: the same decoder, the same event ids, so a
record already delivered is not delivered twice.

From files (one record's body per line, gzip or not, as testdata/replay holds):
  passerelle replay --source iciformation testdata/replay/iciformation/2026-11-20.jsonl
From the journal (<data dir>/journal), received in [--since, --until):
  passerelle replay --from-journal --since 2026-11-20 --until 2026-11-21T12:00:00+01:00 [--source iciformation]

Records go to the running daemon's admin API (--admin) in batches; within one run, a record whose
event id or dedupe key an earlier record had is not sent again, as the live dedupe would drop it.
--dry-run decodes, normalises and derives the event ids locally, and counts what would be sent.
Malformed lines are reported with their file and line and skipped. Interrupted (Ctrl-C), it
prints the --resume position of the first record the daemon has not taken.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(c *cobra.Command, args []string) error { return runReplay(c.Context(), cli, o, args) },
	}
	f := c.Flags()
	f.StringVar(&o.source, "source", "", "the records' source: iciformation, simplebo, shopapp or ecolix (required with files)")
	f.BoolVar(&o.fromJournal, "from-journal", false, "read the journal instead of files")
	f.StringVar(&o.since, "since", "", "with --from-journal: first reception time, RFC 3339 or YYYY-MM-DD (UTC)")
	f.StringVar(&o.until, "until", "", "with --from-journal: reception time to stop before, RFC 3339 or YYYY-MM-DD (UTC); default now")
	f.StringVar(&o.journalDir, "journal-dir", "", "the journal's directory (default <PASSERELLE_DATA_DIR>/journal)")
	f.Float64Var(&o.rate, "rate", 0, "records per second at most; 0 is as fast as the daemon takes them")
	f.BoolVar(&o.dryRun, "dry-run", false, "decode, normalise and derive event ids; publish nothing")
	f.StringVar(&o.stage, "to-stage", pipelines.StageReceived, "where records enter: received (every stage) or normalized (past normalize's dedupe, straight to delivery)")
	f.IntVar(&o.batch, "batch", 500, "records per admin API call")
	f.StringVar(&o.resume, "resume", "", "FILE:LINE to start at, as printed by an interrupted replay")
	return []*cobra.Command{c}
}

// Sandbox implements SandboxPartner: Ici Formation's polling API, listing a lead every 20 s that
// the webhook never sees (the reconciliation finds and feeds it), and, once the daemon runs, a
// replay of testdata/replay/iciformation/2026-11-20.jsonl.
func (*Replay) Sandbox(_ context.Context, sb *Sandbox) ([]string, error) {
	const key = "sandbox-api-key"
	api, err := iciformationsim.StartAPI(key)
	if err != nil {
		return nil, fmt.Errorf("start Ici Formation polling API simulator: %w", err)
	}
	sb.Defer(api.Close)
	const sample = "testdata/replay/iciformation/2026-11-20.jsonl"
	sb.OnRun(func(ctx context.Context, _, adminAddr string) {
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
		go every(ctx, 20*time.Second, func(context.Context) {
			b, _ := json.Marshal(iciformationsim.RandomLead(rng)) // a lead the webhook never got
			api.Add(b, time.Now())
		})
		if _, err := os.Stat(sample); err != nil {
			sb.Log.Info("sandbox replay skipped: run the sandbox from the repository's root to replay "+sample, "error", err)
			return
		}
		if err := waitReady(ctx, adminAddr); err != nil {
			return
		}
		send := func(ctx context.Context, recs []pipelines.ReplayRecord, stage string) (pipelines.ReplayCounts, error) {
			var ans replayAnswer
			err := adminPost(ctx, adminAddr, "/admin/replay/records", replayRequest{Stage: stage, Records: recs}, &ans)
			return ans.Counts, err
		}
		r := &replayRun{dedupe: pipelines.ReplayDedupe{Window: 24 * time.Hour}, sources: replaySources(), send: send, stage: pipelines.StageReceived, batch: 100, out: logWriter{sb}, now: time.Now}
		if err := r.files(ctx, pipelines.SourceIciFormation, []string{sample}); err != nil && ctx.Err() == nil {
			sb.Log.Warn("sandbox replay failed", "error", err)
			return
		}
		sb.Log.Info("sandbox replay of "+sample, "summary", r.summary())
	})
	sb.Note(func(_, adminAddr string) string {
		return fmt.Sprintf(`Journal and replay: every received lead is journaled under %s; the sandbox
  replays %s once at start (a second replay delivers nothing new):
    passerelle replay --admin %s --source iciformation %s
    passerelle replay --admin %s --journal-dir %s --from-journal --since $(date -u +%%F) --dry-run
  Ici Formation's polling API (simulated): %s, key %q, reconciled every minute; it lists a
  lead every 20s that the webhook never got (passerelle_iciformation_reconcile_leads_total{result="missed"}).`,
			filepath.Join(sb.DataDir, "journal"), sample, adminAddr, sample, adminAddr, filepath.Join(sb.DataDir, "journal"), api.URL(), key)
	})
	return []string{"PASSERELLE_ICIFORMATION_API_URL=" + api.URL(), "PASSERELLE_ICIFORMATION_API_KEY=" + key,
		"PASSERELLE_ICIFORMATION_RECONCILE_INTERVAL=1m"}, nil
}

// logWriter sends the replay's report lines to the sandbox's log.
type logWriter struct{ sb *Sandbox }

func (w logWriter) Write(p []byte) (int, error) {
	if s := strings.TrimSpace(string(p)); s != "" {
		w.sb.Log.Info(s)
	}
	return len(p), nil
}
