package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/transforms"
)

// Topics and state of the billing pipeline.
const (
	PipelineBilling    = "billing"
	TopicBillingEvents = "billing.events"
	EventFileUploaded  = "billing.file_uploaded"

	nsBillingLedger  = "billing.ledger"
	nsShopAppClients = "shopapp.clients" // before the client directory: read as a fallback
	nsBillingReports = "billing.reports" // the last build's summary, per period
	nsBillingMeta    = "billing.meta"
	keyLedgerPoll    = "ledger_last_poll"

	// billingLock is the leader lock of uploads: one replica at a time checks and uploads.
	billingLock = "passerelle.billing.upload"
)

// StateStore is generic keyed state.
type StateStore interface {
	GetState(ctx context.Context, ns, key string) ([]byte, bool, error)
	PutState(ctx context.Context, ns, key string, v []byte) error
	ListState(ctx context.Context, ns string) (map[string][]byte, error)
}

// LedgerEntry is what the billing ledger knows of one interface.
type LedgerEntry struct {
	Key          string                        `json:"key"`
	CreatedAt    time.Time                     `json:"created_at"`
	Status       int                           `json:"status"`
	AccessEndsAt *time.Time                    `json:"access_ends_at,omitempty"`
	Prestations  map[string]PrestationSnapshot `json:"prestations"`
	// ObservedAt is the poll time of the latest event applied to the status: an older event
	// redelivered late (after a nack) must not take the status back.
	ObservedAt time.Time `json:"observed_at,omitzero"`
}

// BillingLedger is the billing.ledger stage: it applies Shop Application events to the ledger.
// Applying the same event twice leaves the same state, so redeliveries are harmless.
type BillingLedger struct {
	Store StateStore
	// Metrics, when set, expose the poll time of the latest change applied.
	Metrics *BillingMetrics
}

// Handle applies one shopapp event.
func (l *BillingLedger) Handle(msg *message.Message) ([]*message.Message, error) {
	var ev ShopAppEvent
	if err := json.Unmarshal(msg.Payload, &ev); err != nil {
		return nil, Permanent(fmt.Errorf("decode shopapp event: %w", err))
	}
	ctx := msg.Context()
	var e LedgerEntry
	raw, ok, err := l.Store.GetState(ctx, nsBillingLedger, ev.InterfaceKey)
	if err != nil {
		return nil, fmt.Errorf("read ledger: %w", err)
	}
	if ok {
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, Permanent(fmt.Errorf("decode ledger entry %s: %w", ev.InterfaceKey, err))
		}
	}
	ApplyShopAppEvent(&e, ev)
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if err := l.Store.PutState(ctx, nsBillingLedger, ev.InterfaceKey, b); err != nil {
		return nil, fmt.Errorf("write ledger: %w", err)
	}
	if err := l.markPoll(ctx, ev.ObservedAt); err != nil {
		return nil, err
	}
	return nil, nil
}

// Restore sets the ledger's metric from the store, so that a restarted daemon shows the poll the
// ledger absorbed before it, not 0.
func (l *BillingLedger) Restore(ctx context.Context) error {
	t, ok, err := LedgerLastPoll(ctx, l.Store)
	if err != nil || !ok || l.Metrics == nil {
		return err
	}
	l.Metrics.ledgerPoll.Set(float64(t.Unix()))
	return nil
}

// markPoll records that the ledger absorbed the changes of the poll at t, unless it knows a later
// one: `billing status` and a metric tell an operator whether the ledger caught up before a run.
func (l *BillingLedger) markPoll(ctx context.Context, t time.Time) error {
	if t.IsZero() {
		return nil
	}
	last, ok, err := LedgerLastPoll(ctx, l.Store)
	if err != nil {
		return err
	}
	if ok && !t.After(last) {
		return nil
	}
	if err := l.Store.PutState(ctx, nsBillingMeta, keyLedgerPoll, []byte(t.UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("record ledger poll time: %w", err)
	}
	if l.Metrics != nil {
		l.Metrics.ledgerPoll.Set(float64(t.Unix()))
	}
	return nil
}

// LedgerLastPoll is the poll time of the latest Shop Application change the ledger applied; ok is
// false before the first.
func LedgerLastPoll(ctx context.Context, s StateStore) (time.Time, bool, error) {
	raw, ok, err := s.GetState(ctx, nsBillingMeta, keyLedgerPoll)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	t, err := time.Parse(time.RFC3339Nano, string(raw))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("ledger poll time %q: %w", raw, err)
	}
	return t, true, nil
}

// ApplyShopAppEvent folds one event into a ledger entry. An event applied again, or an older one
// redelivered late, takes nothing back: the status comes from the latest poll seen, an access cut
// once known stays (the deletion request fixed it) until a reactivation, and a cancelled
// occurrence stays cancelled.
func ApplyShopAppEvent(e *LedgerEntry, ev ShopAppEvent) {
	if e.Prestations == nil {
		e.Prestations = map[string]PrestationSnapshot{}
	}
	if e.Key == "" || !ev.ObservedAt.Before(e.ObservedAt) {
		e.Key, e.CreatedAt, e.Status, e.ObservedAt = ev.InterfaceKey, ev.CreatedAt, ev.Status, ev.ObservedAt
		switch ev.Status {
		case int(shopapp.StatusDeactivated), int(shopapp.StatusDeleted):
			cut := AccessCut(ev.DeletionAt, ev.ObservedAt)
			if e.AccessEndsAt != nil {
				// Already deactivated: the cut was fixed by the deletion request. A deletion done
				// before that cut only brings it forward.
				cut = *e.AccessEndsAt
				if ev.Status == int(shopapp.StatusDeleted) && ev.DeletionAt != nil && ev.DeletionAt.Before(cut) {
					cut = *ev.DeletionAt
				}
			}
			e.AccessEndsAt = &cut
		default:
			e.AccessEndsAt = nil // active again (reactivated) or installing
		}
	}
	if ev.Prestation != nil {
		ref := ev.Prestation.Ref
		if ref == "" {
			ref = ev.Prestation.Code
		}
		ps := *ev.Prestation
		if was, ok := e.Prestations[ref]; ok && was.CancelledAt != nil && ps.CancelledAt == nil {
			ps.CancelledAt = was.CancelledAt // a cancellation is never undone
		}
		e.Prestations[ref] = ps
	}
}

// AccessCut is when a deactivated interface loses access: the 1st of the month after the deletion
// request, which Shop Application makes 90 days before the scheduled deletion.
func AccessCut(deletionAt *time.Time, observed time.Time) time.Time {
	p := frtime.Paris()
	r := observed.In(p)
	if deletionAt != nil {
		// In Paris wall-clock days, as the partner counts them: in UTC, a request at 23:30 on the
		// last day of a summer month, deleted in winter, would move to the next month.
		r = deletionAt.In(p).AddDate(0, 0, -90)
	}
	return time.Date(r.Year(), r.Month()+1, 1, 0, 0, 0, 0, p).UTC()
}

// CatalogueReader prices prestations.
type CatalogueReader interface {
	Prestation(ctx context.Context, code string) (shopapp.CatalogueEntry, error)
}

// FileUploader puts a file on the partner's SFTP server atomically.
type FileUploader interface {
	Upload(ctx context.Context, name string, data []byte) (sftp.Result, error)
}

// BillingStore is the billing ledger's state plus the upload records.
type BillingStore interface {
	StateStore
	UploadFor(ctx context.Context, period string) (store.Upload, bool, error)
	RecordUpload(ctx context.Context, u store.Upload) error
	SetBillingPending(ctx context.Context, period, lastErr string, attempts int, at time.Time) error
	ClearBillingPending(ctx context.Context, period string) error
	BillingPending(ctx context.Context) ([]store.PendingRun, error)
	FreezeBillingRules(ctx context.Context, period, rules string, at time.Time) (string, error)
	// IdentitiesByKey is the client directory: fields by sa_key.
	IdentitiesByKey(ctx context.Context, kind string) (map[string]map[string]string, error)
	// TryLock is the leader lock replicas share (store.Store.TryLock).
	TryLock(ctx context.Context, name string) (release func(), ok bool, err error)
}

// BillingSource adds the rows of clients billed outside Shop Application's ledger (Simplébo's):
// their rows, the kind that billed them, and whether a rule named their code.
type BillingSource interface {
	BillingRows(ctx context.Context, p transforms.Period, rules transforms.BillingRules) ([]transforms.BillingRow, transforms.BillingKind, bool, error)
}

// Billing builds and uploads the monthly file of clients to bill.
type Billing struct {
	// Sources add the rows of other partners' clients to the same file.
	Sources   []BillingSource
	Store     BillingStore
	Catalogue CatalogueReader
	Uploader  FileUploader // nil: uploads are off (dry runs still work)
	Pub       ContextPublisher
	CSV       transforms.CSVOptions
	// Rules decide how each prestation code is billed; nil means transforms.DefaultBillingRules. The
	// table in force when a period is first built is frozen with it, as its catalogue prices are.
	Rules   transforms.BillingRules
	Metrics *BillingMetrics
	Log     *slog.Logger
	Now     func() time.Time
	// UploadAttempts and UploadBackoff bound the retries of one run on transient SFTP failures.
	UploadAttempts int
	UploadBackoff  time.Duration
	// LockWait bounds how long a run waits for another replica's upload to end (default 30s).
	LockWait time.Duration

	mu sync.Mutex // one run at a time: the schedule, the retry loop and an operator may collide
}

// BillingMetrics measures billing runs.
type BillingMetrics struct {
	runs       *prometheus.CounterVec
	rows       prometheus.Counter
	lastUpload *prometheus.GaugeVec
	pending    prometheus.Gauge
	// unknownCodes is a gauge, not a counter: it says whether the file as last built holds codes no
	// rule names, so it falls back to 0 once finance adds a rule, and rebuilding a period (dry runs,
	// retries) does not count the same codes again.
	unknownCodes prometheus.Gauge
	// withoutIdentity, a gauge for the same reason: clients billed in the last file built whom the
	// directory does not name.
	withoutIdentity prometheus.Gauge
	ledgerPoll      prometheus.Gauge
	locked          prometheus.Counter
}

// NewBillingMetrics registers the billing metrics.
func NewBillingMetrics(reg prometheus.Registerer) *BillingMetrics {
	m := &BillingMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "billing", Name: "runs_total",
			Help: "Billing runs by outcome (uploaded, already_uploaded, dry_run, refused, error, panic)."}, []string{"outcome"}),
		rows: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "billing", Name: "rows_total",
			Help: "Rows written to uploaded billing files."}),
		lastUpload: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "billing", Name: "last_upload_timestamp_seconds",
			Help: "Unix time of the last successful upload, by period (YYYY-MM)."}, []string{"period"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "billing", Name: "pending_periods",
			Help: "Periods whose upload keeps failing and will be retried."}),
		unknownCodes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "billing", Name: "unknown_codes",
			Help: "Distinct prestation codes that no billing rule names in the last file built (billed monthly)."}),
		withoutIdentity: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "billing", Name: "clients_without_identity",
			Help: "Clients billed in the last file built with no company, name nor email in the client directory."}),
		ledgerPoll: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "billing", Name: "ledger_last_poll_timestamp_seconds",
			Help: "Unix time of the Shop Application poll whose changes the billing ledger last applied."}),
		locked: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "billing", Name: "lock_waits_total",
			Help: "Runs that found another replica uploading and waited for it."}),
	}
	for _, o := range []string{"uploaded", "already_uploaded", "dry_run", "refused", "error", "panic"} {
		m.runs.WithLabelValues(o)
	}
	reg.MustRegister(m.runs, m.rows, m.lastUpload, m.pending, m.unknownCodes, m.withoutIdentity, m.ledgerPoll, m.locked)
	return m
}

// RunOptions are the operator's switches.
type RunOptions struct {
	DryRun bool // build the file, upload nothing, record no upload
	// Force uploads a period already uploaded, and builds one not yet over (its prices and rules
	// are frozen then, the rest of its month is missing, and once uploaded it counts as done).
	Force bool
	// Strict refuses to upload a file with rows whose client the directory does not name.
	Strict bool
}

// Report says what a run did.
type Report struct {
	Period     string `json:"period"`
	FileName   string `json:"file_name"`
	RemotePath string `json:"remote_path,omitempty"`
	Rows       int    `json:"rows"`
	Bytes      int    `json:"bytes"`
	SHA256     string `json:"sha256"`
	Outcome    string `json:"outcome"` // uploaded, already_uploaded, dry_run, refused (--strict)
	CSV        string `json:"csv,omitempty"`
	// What the file bills, for a person to read before it goes out; empty when already_uploaded.
	PerKind         map[transforms.BillingKind]int `json:"per_kind,omitempty"`      // rows by billing kind
	UnknownCodes    []string                       `json:"unknown_codes,omitempty"` // billed monthly: no rule names them
	Clients         int                            `json:"clients,omitempty"`
	TotalHTCents    transforms.Cents               `json:"total_ht_cents,omitempty"`
	WithoutIdentity int                            `json:"without_identity,omitempty"` // clients billed with no name, company nor email
	// ClientsWithoutIdentity are their reference_client (sa_key) values, sorted.
	ClientsWithoutIdentity []string `json:"clients_without_identity,omitempty"`
}

// RunSummary is what the last build of a period billed, kept per period for `billing status`.
type RunSummary struct {
	Period                 string                         `json:"period"`
	BuiltAt                time.Time                      `json:"built_at"`
	Outcome                string                         `json:"outcome"` // of the run that built it
	Rows                   int                            `json:"rows"`
	Clients                int                            `json:"clients"`
	TotalHTCents           transforms.Cents               `json:"total_ht_cents"`
	PerKind                map[transforms.BillingKind]int `json:"per_kind,omitempty"`
	UnknownCodes           []string                       `json:"unknown_codes,omitempty"`
	ClientsWithoutIdentity []string                       `json:"clients_without_identity,omitempty"`
}

// BillingSummaries returns the summary of the last build of each period, by period.
func BillingSummaries(ctx context.Context, s StateStore) (map[string]RunSummary, error) {
	all, err := s.ListState(ctx, nsBillingReports)
	if err != nil {
		return nil, fmt.Errorf("read billing summaries: %w", err)
	}
	out := make(map[string]RunSummary, len(all))
	for p, raw := range all {
		var sum RunSummary
		if err := json.Unmarshal(raw, &sum); err != nil {
			return nil, fmt.Errorf("decode billing summary of %s: %w", p, err)
		}
		out[p] = sum
	}
	return out, nil
}

func (b *Billing) recordSummary(ctx context.Context, rep Report) error {
	sum := RunSummary{Period: rep.Period, BuiltAt: b.now().UTC(), Outcome: rep.Outcome, Rows: rep.Rows, Clients: rep.Clients,
		TotalHTCents: rep.TotalHTCents, PerKind: rep.PerKind, UnknownCodes: rep.UnknownCodes, ClientsWithoutIdentity: rep.ClientsWithoutIdentity}
	raw, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	if err := b.Store.PutState(ctx, nsBillingReports, rep.Period, raw); err != nil {
		return fmt.Errorf("record billing summary: %w", err)
	}
	return nil
}

// Errors a run refuses with before building or uploading anything.
var (
	ErrPeriodNotOver   = errors.New("period not over")
	ErrWithoutIdentity = errors.New("rows whose client has no identity")
	ErrBusy            = errors.New("another replica is running billing")
)

// checkOver refuses a period whose month has not ended in Europe/Paris.
func (b *Billing) checkOver(p transforms.Period) error {
	if _, end := p.Bounds(frtime.Paris()); b.now().Before(end) {
		return fmt.Errorf("%w: %s ends on %s (Europe/Paris); --force builds it now, freezing its prices and rules, "+
			"without what the rest of the month brings, and an upload counts as the period's", ErrPeriodNotOver, p, end.Format("2006-01-02 15:04"))
	}
	return nil
}

// lock takes the replicas' upload lock, waiting up to LockWait for another run to end.
func (b *Billing) lock(ctx context.Context) (func(), error) {
	wait := b.LockWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	deadline := time.Now().Add(wait)
	waited := false
	for {
		release, ok, err := b.Store.TryLock(ctx, billingLock)
		if err != nil {
			return nil, err
		}
		if ok {
			return release, nil
		}
		if !waited && b.Metrics != nil {
			b.Metrics.locked.Inc()
		}
		waited = true
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%w: still running after %s; try again later", ErrBusy, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FileName is the partner's name for a period's file.
func FileName(p transforms.Period) string { return "clients_a_facturer_" + p.String() + ".csv" }

// Build renders the period's file from the ledger, with what it bills. The catalogue prices and the
// rule table used are frozen per period the first time it is built, so the same period always
// yields the same bytes.
func (b *Billing) Build(ctx context.Context, p transforms.Period) ([]byte, transforms.BillingReport, error) {
	var none transforms.BillingReport
	ledger, err := b.Store.ListState(ctx, nsBillingLedger)
	if err != nil {
		return nil, none, fmt.Errorf("read ledger: %w", err)
	}
	ids, err := b.Store.IdentitiesByKey(ctx, store.KeySAKey)
	if err != nil {
		return nil, none, err
	}
	legacy, err := b.Store.ListState(ctx, nsShopAppClients)
	if err != nil {
		return nil, none, fmt.Errorf("read clients: %w", err)
	}
	ifaces := make([]transforms.BillableInterface, 0, len(ledger))
	codes := map[string]bool{}
	for key, raw := range ledger {
		var e LedgerEntry
		if err := json.Unmarshal(raw, &e); err != nil {
			return nil, none, fmt.Errorf("decode ledger entry %s: %w", key, err)
		}
		bi := transforms.BillableInterface{Key: key, Source: transforms.SourceShopApp, CreatedAt: e.CreatedAt,
			AccessEndsAt: e.AccessEndsAt, Installing: e.Status == int(shopapp.StatusInstalling)}
		if f, ok := ids[key]; ok {
			bi.Company, bi.LastName, bi.FirstName, bi.Email = f[store.FieldCompany], f[store.FieldLastName], f[store.FieldFirstName], f[store.FieldEmail]
		} else if c, ok := legacy[key]; ok {
			// Recorded by a version before the client directory.
			var cu shopapp.Customer
			if err := json.Unmarshal(c, &cu); err == nil {
				bi.Company, bi.LastName, bi.FirstName, bi.Email = cu.Company, cu.LastName, cu.FirstName, cu.Email
			}
		}
		for _, ps := range e.Prestations {
			bi.Prestations = append(bi.Prestations, transforms.BillablePrestation{Code: ps.Code, UniqueRef: ps.Ref, OrderedAt: ps.OrderedAt, CancelledAt: ps.CancelledAt})
			codes[ps.Code] = true
		}
		ifaces = append(ifaces, bi)
	}
	sort.Slice(ifaces, func(i, j int) bool { return ifaces[i].Key < ifaces[j].Key })
	rules, err := b.rules(ctx, p)
	if err != nil {
		return nil, none, err
	}
	catalogue, err := b.catalogue(ctx, p, codes)
	if err != nil {
		return nil, none, err
	}
	rep, err := transforms.BillingRows(p, frtime.Paris(), ifaces, catalogue, rules)
	if err != nil {
		return nil, none, fmt.Errorf("billing rows: %w", err)
	}
	for _, src := range b.Sources {
		rows, kind, known, err := src.BillingRows(ctx, p, rules)
		if err != nil {
			return nil, none, fmt.Errorf("billing rows: %w", err)
		}
		rep.AddRows(rows, kind, known)
	}
	data, err := transforms.EncodeBillingCSV(rep.Rows, b.CSV)
	if err != nil {
		return nil, none, fmt.Errorf("encode billing file: %w", err)
	}
	if b.Metrics != nil {
		b.Metrics.unknownCodes.Set(float64(len(rep.Unknown)))
		b.Metrics.withoutIdentity.Set(float64(rep.WithoutIdentity))
	}
	if len(rep.Unknown) > 0 {
		// Codes come from the partner's catalogue, not from a person: safe to log.
		b.Log.Warn("billing: codes no rule names, billed monthly", "period", p.String(), "codes", rep.Unknown)
	}
	return data, rep, nil
}

// rules returns the rule table of period p: the one frozen when p was first built, else the
// configured one, which it freezes.
func (b *Billing) rules(ctx context.Context, p transforms.Period) (transforms.BillingRules, error) {
	current := b.Rules
	if len(current) == 0 {
		current = transforms.DefaultBillingRules()
	}
	if err := current.Validate(); err != nil {
		return nil, err
	}
	text := current.String()
	frozen, err := b.Store.FreezeBillingRules(ctx, p.String(), text, b.now())
	if err != nil {
		return nil, err
	}
	if frozen == text {
		return current, nil
	}
	rules, err := transforms.ParseBillingRules([]byte(frozen))
	if err != nil {
		return nil, fmt.Errorf("billing rules frozen for %s: %w", p, err)
	}
	b.Log.Warn("billing: the period keeps the rules frozen when it was first built, not the configured ones", "period", p.String())
	return rules, nil
}

func (b *Billing) now() time.Time {
	if b.Now == nil {
		return time.Now()
	}
	return b.Now()
}

func (b *Billing) catalogue(ctx context.Context, p transforms.Period, codes map[string]bool) (map[string]transforms.CatalogueItem, error) {
	ns := "billing.catalogue." + p.String()
	frozen, err := b.Store.ListState(ctx, ns)
	if err != nil {
		return nil, fmt.Errorf("read frozen catalogue: %w", err)
	}
	out := make(map[string]transforms.CatalogueItem, len(codes))
	for code := range codes {
		if raw, ok := frozen[code]; ok {
			var it transforms.CatalogueItem
			if err := json.Unmarshal(raw, &it); err == nil {
				out[code] = it
				continue
			}
		}
		if b.Catalogue == nil {
			return nil, fmt.Errorf("price of %s unknown and no Shop Application client configured", code)
		}
		entry, err := b.Catalogue.Prestation(ctx, code)
		if err != nil {
			return nil, fmt.Errorf("catalogue %s: %w", code, err)
		}
		it := transforms.CatalogueItem{Code: code, Name: entry.Name, PriceCents: entry.PriceCents}
		raw, _ := json.Marshal(it)
		if err := b.Store.PutState(ctx, ns, code, raw); err != nil {
			return nil, fmt.Errorf("freeze catalogue: %w", err)
		}
		out[code] = it
	}
	return out, nil
}

// ErrUploadsOff means no SFTP server is configured.
var ErrUploadsOff = errors.New("no SFTP server configured (PASSERELLE_SFTP_ADDR): only --dry-run is possible")

// Run builds the period's file and uploads it, unless it was already uploaded (without Force).
//
// A period not over is refused without Force. An upload takes the replicas' leader lock before it
// checks what was uploaded, so two replicas never upload one period twice: the second waits and
// finds it uploaded. With Strict, a file with rows whose client has no identity is not uploaded.
func (b *Billing) Run(ctx context.Context, p transforms.Period, opt RunOptions) (Report, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	rep := Report{Period: p.String(), FileName: FileName(p)}
	if !opt.Force {
		if err := b.checkOver(p); err != nil {
			return rep, err
		}
	}
	if !opt.DryRun {
		if b.Uploader == nil {
			return rep, ErrUploadsOff
		}
		release, err := b.lock(ctx)
		if err != nil {
			b.Metrics.runs.WithLabelValues("error").Inc()
			return rep, err
		}
		defer release()
	}
	if !opt.DryRun && !opt.Force {
		if u, ok, err := b.Store.UploadFor(ctx, p.String()); err != nil {
			return rep, err
		} else if ok {
			rep.Outcome, rep.RemotePath, rep.Rows, rep.SHA256, rep.Bytes = "already_uploaded", u.RemotePath, u.Rows, u.SHA256, int(u.Bytes)
			b.Metrics.runs.WithLabelValues(rep.Outcome).Inc()
			return rep, nil
		}
	}
	data, built, err := b.Build(ctx, p)
	if err != nil {
		b.Metrics.runs.WithLabelValues("error").Inc()
		return rep, err
	}
	rows := len(built.Rows)
	sum := sha256.Sum256(data)
	rep.Rows, rep.Bytes, rep.SHA256 = rows, len(data), hex.EncodeToString(sum[:])
	rep.PerKind, rep.UnknownCodes, rep.Clients = built.PerKind, built.Unknown, built.Clients
	rep.TotalHTCents, rep.WithoutIdentity = built.TotalHT, built.WithoutIdentity
	rep.ClientsWithoutIdentity = withoutIdentity(built.Rows)
	if opt.DryRun {
		rep.Outcome, rep.CSV = "dry_run", string(data)
		b.Metrics.runs.WithLabelValues(rep.Outcome).Inc()
		return rep, b.recordSummary(ctx, rep)
	}
	if opt.Strict && len(rep.ClientsWithoutIdentity) > 0 {
		rep.Outcome = "refused"
		b.Metrics.runs.WithLabelValues(rep.Outcome).Inc()
		err := fmt.Errorf("%w: %d client(s) (%s): record them (passerelle clients import) or run without --strict",
			ErrWithoutIdentity, len(rep.ClientsWithoutIdentity), strings.Join(rep.ClientsWithoutIdentity, ", "))
		return rep, errors.Join(err, b.recordSummary(ctx, rep))
	}
	res, err := b.upload(ctx, rep.FileName, data)
	if err != nil {
		b.Metrics.runs.WithLabelValues("error").Inc()
		if perr := b.markPending(ctx, p, err); perr != nil {
			err = errors.Join(err, perr)
		}
		return rep, fmt.Errorf("upload %s: %w", rep.FileName, err)
	}
	now := b.now().UTC()
	rep.RemotePath, rep.Outcome = res.RemotePath, "uploaded"
	if err := b.recordSummary(ctx, rep); err != nil {
		b.Log.Warn("billing: summary not recorded", "period", p.String(), "error", err)
	}
	if err := b.Store.RecordUpload(ctx, store.Upload{Period: p.String(), RemotePath: res.RemotePath, SHA256: rep.SHA256, Rows: rows, Bytes: int64(len(data)), UploadedAt: now}); err != nil {
		return rep, fmt.Errorf("record upload: %w", err)
	}
	if err := b.Store.ClearBillingPending(ctx, p.String()); err != nil {
		return rep, fmt.Errorf("clear pending: %w", err)
	}
	b.refreshPending(ctx)
	b.Metrics.runs.WithLabelValues("uploaded").Inc()
	b.Metrics.rows.Add(float64(rows))
	b.Metrics.lastUpload.WithLabelValues(p.String()).Set(float64(now.Unix()))
	if b.Pub != nil {
		id := "billing_" + p.String() + "_" + rep.SHA256[:16]
		payload, _ := json.Marshal(map[string]any{"type": EventFileUploaded, "id": id, "period": p.String(), "remote_path": res.RemotePath,
			"sha256": rep.SHA256, "rows": rows, "bytes": len(data), "uploaded_at": now})
		msg := message.NewMessage(id, payload)
		setMeta(msg, id, PipelineBilling, "billing", now)
		if err := b.Pub.PublishContext(ctx, TopicBillingEvents, msg); err != nil {
			return rep, fmt.Errorf("file uploaded but its event not published: %w", err)
		}
	}
	b.Log.Info("billing file uploaded", "period", p.String(), "remote_path", res.RemotePath, "rows", rows, "bytes", len(data))
	return rep, nil
}

func (b *Billing) upload(ctx context.Context, name string, data []byte) (sftp.Result, error) {
	attempts, wait := max(b.UploadAttempts, 1), b.UploadBackoff
	var err error
	for i := range attempts {
		var res sftp.Result
		if res, err = b.Uploader.Upload(ctx, name, data); err == nil {
			return res, nil
		}
		if !sftp.IsRetryable(err) || i == attempts-1 {
			break
		}
		b.Log.Warn("billing upload failed, retrying", "file", name, "attempt", i+1, "error", err)
		select {
		case <-ctx.Done():
			return sftp.Result{}, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
	return sftp.Result{}, err
}

func (b *Billing) markPending(ctx context.Context, p transforms.Period, cause error) error {
	attempts := 1
	runs, err := b.Store.BillingPending(ctx)
	if err != nil {
		return err
	}
	for _, r := range runs {
		if r.Period == p.String() {
			attempts = r.Attempts + 1
		}
	}
	if err := b.Store.SetBillingPending(ctx, p.String(), cause.Error(), attempts, b.now()); err != nil {
		return err
	}
	b.refreshPending(ctx)
	return nil
}

func (b *Billing) refreshPending(ctx context.Context) {
	if runs, err := b.Store.BillingPending(ctx); err == nil {
		b.Metrics.pending.Set(float64(len(runs)))
	}
}

// RetryPending re-runs every period whose upload failed.
func (b *Billing) RetryPending(ctx context.Context) {
	runs, err := b.Store.BillingPending(ctx)
	if err != nil {
		b.Log.Warn("billing: list pending runs", "error", err)
		return
	}
	b.Metrics.pending.Set(float64(len(runs)))
	for _, r := range runs {
		p, err := transforms.ParsePeriod(r.Period)
		if err != nil {
			continue
		}
		if _, err := b.Run(ctx, p, RunOptions{}); err != nil {
			b.Log.Warn("billing: pending period still failing", "period", r.Period, "error", err)
		}
	}
}

// Schedule runs the previous month's billing on the cron schedule (Europe/Paris) and retries
// pending periods every retryEvery, until ctx is done. A run that panics is logged, counted
// (runs_total{outcome="panic"}) and leaves its period pending; a tick while the previous run still
// runs is skipped.
func (b *Billing) Schedule(ctx context.Context, spec string, retryEvery time.Duration) error {
	sched, err := cron.ParseStandard(spec) // the parser cron.New uses by default
	if err != nil {
		return fmt.Errorf("PASSERELLE_BILLING_SCHEDULE %q: %w", spec, err)
	}
	return b.schedule(ctx, sched, retryEvery)
}

func (b *Billing) schedule(ctx context.Context, sched cron.Schedule, retryEvery time.Duration) error {
	logger := cronLogger{b.Log}
	// Recover is the last net (a panic outside Run, in b.Now say); runs recover themselves to
	// keep their period pending.
	c := cron.New(cron.WithLocation(frtime.Paris()), cron.WithLogger(logger),
		cron.WithChain(cron.Recover(logger), cron.SkipIfStillRunning(logger)))
	c.Schedule(sched, cron.FuncJob(func() {
		p := PeriodOf(b.now()).Previous()
		defer b.recoverRun(ctx, &p)
		if _, err := b.Run(ctx, p, RunOptions{}); err != nil {
			b.Log.Error("scheduled billing run failed; the period stays pending", "period", p.String(), "error", err)
		}
	}))
	c.Start()
	defer func() { <-c.Stop().Done() }()
	t := time.NewTicker(retryEvery)
	defer t.Stop()
	b.refreshPending(ctx)
	retry := func() {
		defer b.recoverRun(ctx, nil) // the periods retried were pending already
		b.RetryPending(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			retry()
		}
	}
}

// recoverRun, deferred, turns a panic of a billing run into a logged and counted failure; the
// period p (when known) is marked pending so that the retry loop tries it again.
func (b *Billing) recoverRun(ctx context.Context, p *transforms.Period) {
	r := recover()
	if r == nil {
		return
	}
	b.Metrics.runs.WithLabelValues("panic").Inc()
	period := ""
	if p != nil {
		period = p.String()
		if err := b.markPending(ctx, *p, fmt.Errorf("billing run panicked: %v", r)); err != nil {
			b.Log.Error("billing: mark the period pending after a panic", "period", period, "error", err)
		}
	}
	b.Log.Error("billing run panicked; the period stays pending", "period", period, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}

// cronLogger feeds cron's own messages to slog: its routine chatter at debug level, a skipped
// tick as a warning, errors (a recovered panic) as errors.
type cronLogger struct{ log *slog.Logger }

func (l cronLogger) Info(msg string, kv ...any) {
	if msg == "skip" {
		l.log.Warn("billing schedule: tick skipped, the previous run still runs", kv...)
		return
	}
	l.log.Debug("billing schedule: "+msg, kv...)
}

func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.log.Error("billing schedule: "+msg, append(kv, "error", err)...)
}

// PeriodOf is the month of t in Europe/Paris.
func PeriodOf(t time.Time) transforms.Period {
	pt := t.In(frtime.Paris())
	return transforms.Period{Year: pt.Year(), Month: pt.Month()}
}

// BillingCRMEvent turns a billing.events payload into its CRM event.
func BillingCRMEvent(payload []byte) (Event, error) {
	var ev struct {
		Type       string    `json:"type"`
		ID         string    `json:"id"`
		UploadedAt time.Time `json:"uploaded_at"`
	}
	if err := json.Unmarshal(payload, &ev); err != nil {
		return Event{}, fmt.Errorf("decode billing event: %w", err)
	}
	return Event{Type: ev.Type, ID: ev.ID, Source: "billing", OccurredAt: ev.UploadedAt, Data: payload}, nil
}

// withoutIdentity lists, sorted and once each, the reference_client of rows with no company, last
// name, first name nor email.
func withoutIdentity(rows []transforms.BillingRow) []string {
	var out []string
	for _, r := range rows {
		if r.Company == "" && r.LastName == "" && r.FirstName == "" && r.Email == "" && !slices.Contains(out, r.ClientRef) {
			out = append(out, r.ClientRef)
		}
	}
	slices.Sort(out)
	return out
}

// ClientRecorder is the client directory's write side (store.Store.RecordIdentity).
type ClientRecorder interface {
	RecordIdentity(ctx context.Context, id store.Identity) (store.IdentityChange, error)
}

// RecordClient records in the client directory the identity of an interface passerelle
// provisioned, under our guid and its sa_key: Shop Application does not return it, and the
// billing file needs it.
func RecordClient(ctx context.Context, d ClientRecorder, guid, key string, c shopapp.Customer, source string, at time.Time) error {
	id := store.Identity{GUID: guid, Keys: map[string]string{store.KeySAKey: key}, Source: source, At: at, Fields: map[string]string{
		store.FieldCompany: c.Company, store.FieldLastName: c.LastName, store.FieldFirstName: c.FirstName,
		store.FieldEmail: c.Email, store.FieldPhone: c.Phone, store.FieldAddress: c.Address,
		store.FieldPostalCode: c.PostalCode, store.FieldCity: c.City,
	}}
	if _, err := d.RecordIdentity(ctx, id); err != nil {
		return fmt.Errorf("record the client of %s: %w", key, err)
	}
	return nil
}
