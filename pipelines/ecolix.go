package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/transforms"
)

// Topics, event types and state of the Ecolix pipeline: the poller (exports and the file inbox)
// publishes each changed record to ecolix.events, the CRM stage delivers them, and the import stage
// upserts new leads as Ecolix clients.
const (
	PipelineEcolix    = "ecolix"
	TopicEcolixEvents = "ecolix.events"

	EventERPClientChanged  = "erp.client_changed"
	EventERPQuoteChanged   = "erp.quote_changed"
	EventERPOrderChanged   = "erp.order_changed"
	EventERPArticleChanged = "erp.article_changed"
	EventERPStockChanged   = "erp.stock_changed"

	// OriginAPI and OriginFile say where an Ecolix record came from.
	OriginAPI  = "api"
	OriginFile = "file"
	// OriginReplay: a record fed by `passerelle replay` from an export page or a CSV file.
	OriginReplay = "replay"

	nsEcolixCursors = "ecolix.cursors"  // resource → ecolix.Cursor
	nsEcolixClients = "ecolix.clients"  // Ecolix reference (our guid) → shopapp.Customer
	nsEcolixQuotes  = "ecolix.quotes"   // quote id → the provisioning command sent for it
	nsEcolixFiles   = "ecolix.files"    // inbox file key → when processed
	nsEcolixImports = "ecolix.imported" // lead event id → Ecolix client id
)

// ecolixEventTypes maps each export resource to its event type.
var ecolixEventTypes = map[string]string{
	"clients":   EventERPClientChanged,
	"devis":     EventERPQuoteChanged,
	"commandes": EventERPOrderChanged,
	"articles":  EventERPArticleChanged,
	"stocks":    EventERPStockChanged,
}

// EcolixEventType is the event type of an export resource, "" for an unknown one.
func EcolixEventType(resource string) string { return ecolixEventTypes[resource] }

// EcolixEvent is the payload of ecolix.events: one changed record, as received.
type EcolixEvent struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	Resource   string          `json:"resource"`
	RecordID   string          `json:"record_id"`
	ModifiedAt time.Time       `json:"modified_at"`
	Origin     string          `json:"origin"`
	File       string          `json:"file,omitempty"`
	ObservedAt time.Time       `json:"observed_at"`
	Record     json.RawMessage `json:"record"`
}

// EcolixEventID is the stable id of a record's version: its resource, its id and its
// date_modification. The same version pulled twice, or read from the API and from a file, has the
// same id, which the broker and the CRM's delivery log drop.
func EcolixEventID(resource, id string, modified time.Time) string {
	b, _ := json.Marshal(map[string]string{"resource": resource, "id": id, "date_modification": frtime.Format(modified)})
	return transforms.EventID(PipelineEcolix, b)
}

// EcolixCRMEvent turns an ecolix.events payload into its CRM event.
func EcolixCRMEvent(payload []byte) (Event, error) {
	var ev EcolixEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return Event{}, fmt.Errorf("decode ecolix event: %w", err)
	}
	return Event{Type: ev.Type, ID: ev.ID, Source: PipelineEcolix, OccurredAt: ev.ObservedAt, Data: payload}, nil
}

// EcolixPuller pulls one resource's changes since a cursor (ecolix.Client).
type EcolixPuller interface {
	Pull(ctx context.Context, resource string, cur ecolix.Cursor) ([]ecolix.Record, ecolix.Cursor, error)
}

// EcolixInbox scans the file inbox (ecolix.Inbox).
type EcolixInbox interface {
	Scan(ctx context.Context, process ecolix.ProcessFunc) (ecolix.ScanReport, error)
}

// EcolixStore is the poller's state: cursors, client identities, quote markers, and a lock so that
// two replicas do not poll at once.
type EcolixStore interface {
	StateStore
	ClientRecorder
	TryLock(ctx context.Context, name string) (release func(), ok bool, err error)
}

// EcolixMetrics measures the poller.
type EcolixMetrics struct {
	polls       *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	duration    prometheus.Histogram
	events      *prometheus.CounterVec
	provision   prometheus.Counter
}

// NewEcolixMetrics registers the poller's metrics on reg, label values pre-created.
func NewEcolixMetrics(reg prometheus.Registerer) *EcolixMetrics {
	m := &EcolixMetrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "ecolix",
			Name: "polls_total", Help: "Ecolix polls (every resource, then the inbox) by outcome: ok, error, skipped (the previous poll still ran, or another replica holds the lock)."}, []string{"outcome"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "ecolix",
			Name: "last_successful_poll_timestamp_seconds", Help: "Unix time of the last Ecolix poll that completed with every resource committed."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "passerelle", Subsystem: "ecolix",
			Name: "poll_duration_seconds", Help: "Duration of a whole Ecolix poll.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 16)}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "ecolix",
			Name: "events_published_total", Help: "Changed Ecolix records published to ecolix.events, by resource and origin (api, file)."}, []string{"resource", "origin"}),
		provision: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "ecolix",
			Name: "provision_commands_total", Help: "Validated quotes turned into Shop Application provisioning commands."}),
	}
	for _, o := range []string{"ok", "error", "skipped"} {
		m.polls.WithLabelValues(o)
	}
	for _, r := range ecolix.Resources() {
		m.events.WithLabelValues(r, OriginAPI)
		m.events.WithLabelValues(r, OriginFile)
		m.events.WithLabelValues(r, OriginReplay)
	}
	reg.MustRegister(m.polls, m.lastSuccess, m.duration, m.events, m.provision)
	return m
}

// EcolixPoller pulls every configured resource's changes and scans the inbox, once per Poll.
// For each resource the records are published, clients recorded and quotes turned into
// provisioning commands before its cursor is committed: a poll that fails part-way commits
// nothing for that resource, and the next one publishes the same ids again.
type EcolixPoller struct {
	API       EcolixPuller // nil when only the inbox is configured
	Resources []string
	Inbox     EcolixInbox // nil when no inbox is configured
	Store     EcolixStore
	Pub       ContextPublisher
	Metrics   *EcolixMetrics
	Log       *slog.Logger
	Now       func() time.Time
}

// EcolixPollResult says what one poll did.
type EcolixPollResult struct {
	Events  int // records published
	Files   int // inbox files processed
	Skipped bool
}

// Poll runs one poll: each resource in turn (one failing does not hold back the others), then the
// inbox.
func (p *EcolixPoller) Poll(ctx context.Context) (res EcolixPollResult, err error) {
	start := time.Now()
	defer func() {
		observePoll(p.Metrics.polls, p.Metrics.lastSuccess, p.Metrics.duration, start, err, res.Skipped)
	}()
	release, ok, err := p.Store.TryLock(ctx, "ecolix.poller")
	if err != nil {
		return res, fmt.Errorf("ecolix poller lock: %w", err)
	}
	if !ok {
		return EcolixPollResult{Skipped: true}, nil
	}
	defer release()

	var errs []error
	if p.API != nil {
		for _, r := range p.Resources {
			n, err := p.pullResource(ctx, r)
			res.Events += n
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", r, err))
			}
		}
	}
	if p.Inbox != nil {
		rep, err := p.Inbox.Scan(ctx, func(ctx context.Context, f ecolix.File, recs []ecolix.Record) error {
			if err := p.Publish(ctx, f.Resource, recs, OriginFile, f.Name); err != nil {
				return err
			}
			res.Events += len(recs)
			return nil
		})
		res.Files = len(rep.Done)
		for _, name := range rep.Failed {
			p.Log.Warn("ecolix inbox file refused, moved to "+ecolix.ErrorDir, "file", name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("inbox: %w", err))
		}
	}
	return res, errors.Join(errs...)
}

// pullResource pulls one resource, handles its records and commits its cursor.
func (p *EcolixPoller) pullResource(ctx context.Context, resource string) (int, error) {
	var cur ecolix.Cursor
	raw, ok, err := p.Store.GetState(ctx, nsEcolixCursors, resource)
	if err != nil {
		return 0, fmt.Errorf("load cursor: %w", err)
	}
	if ok {
		if err := json.Unmarshal(raw, &cur); err != nil {
			return 0, fmt.Errorf("decode cursor: %w", err)
		}
	}
	recs, next, err := p.API.Pull(ctx, resource, cur)
	if err != nil {
		return 0, err
	}
	if len(recs) == 0 {
		return 0, nil
	}
	if err := p.Publish(ctx, resource, recs, OriginAPI, ""); err != nil {
		return 0, err
	}
	b, err := json.Marshal(next)
	if err != nil {
		return 0, fmt.Errorf("encode cursor: %w", err)
	}
	if err := p.Store.PutState(ctx, nsEcolixCursors, resource, b); err != nil {
		return 0, fmt.Errorf("commit cursor: %w", err)
	}
	return len(recs), nil
}

// Publish sends records as events, then records client identities and turns validated quotes
// into provisioning commands. It returns once all of it is durable. Polls, the inbox and
// replays all go through it: the same ids, topic and ordering key whatever brought a record.
func (p *EcolixPoller) Publish(ctx context.Context, resource string, recs []ecolix.Record, origin, file string) error {
	typ := EcolixEventType(resource)
	if typ == "" {
		return fmt.Errorf("unknown resource %q", resource)
	}
	now := p.Now().UTC()
	msgs := make([]*message.Message, 0, len(recs))
	for _, r := range recs {
		ev := EcolixEvent{Type: typ, ID: EcolixEventID(resource, r.ID, r.Modified), Resource: resource, RecordID: r.ID,
			ModifiedAt: r.Modified.UTC(), Origin: origin, File: file, ObservedAt: now, Record: r.Raw}
		payload, err := json.Marshal(ev)
		if err != nil {
			return fmt.Errorf("encode event: %w", err)
		}
		m := message.NewMessage(ev.ID, payload)
		setMeta(m, ev.ID, PipelineEcolix, PipelineEcolix, now)
		// A record's versions reach the CRM in the order they were made.
		m.Metadata.Set(MetaOrderingKey, resource+":"+r.ID)
		msgs = append(msgs, m)
	}
	for i := 0; i < len(msgs); i += 256 {
		if err := p.Pub.PublishContext(ctx, TopicEcolixEvents, msgs[i:min(i+256, len(msgs))]...); err != nil {
			return fmt.Errorf("publish changes: %w", err)
		}
	}
	p.Metrics.events.WithLabelValues(resource, origin).Add(float64(len(msgs)))
	switch resource {
	case "clients":
		return p.recordClients(ctx, recs)
	case "devis":
		return p.provisionQuotes(ctx, recs)
	}
	return nil
}

// ecolixClient is what the client directory reads of an Ecolix client; CSV exports carry every
// value as a string, the API may not.
type ecolixClient struct {
	Reference  any `json:"reference"`
	Societe    any `json:"societe"`
	Nom        any `json:"nom"`
	Prenom     any `json:"prenom"`
	Email      any `json:"email"`
	Telephone  any `json:"telephone"`
	Adresse    any `json:"adresse"`
	CodePostal any `json:"code_postal"`
	Ville      any `json:"ville"`
	Pays       any `json:"pays"`
}

// text reads a JSON scalar as text: a string as is, a number in its shortest form.
func text(v any) string {
	switch x := v.(type) {
	case string:
		return strings.TrimSpace(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case nil:
		return ""
	default:
		return strings.TrimSpace(fmt.Sprint(x))
	}
}

// recordClients keeps each client's identity under its reference (our guid), for billing; a
// client created in the ERP has no reference and is not ours. When the guid names an interface
// passerelle provisioned, its billing identity is refreshed too.
func (p *EcolixPoller) recordClients(ctx context.Context, recs []ecolix.Record) error {
	for _, r := range recs {
		var c ecolixClient
		if err := json.Unmarshal(r.Raw, &c); err != nil {
			continue // kept as an event; not a directory entry
		}
		guid := text(c.Reference)
		if guid == "" {
			continue
		}
		cust := shopapp.Customer{Company: text(c.Societe), LastName: text(c.Nom), FirstName: text(c.Prenom), Email: text(c.Email),
			Phone: text(c.Telephone), Address: text(c.Adresse), PostalCode: text(c.CodePostal), City: text(c.Ville), Country: text(c.Pays)}
		b, err := json.Marshal(cust)
		if err != nil {
			return err
		}
		if err := p.Store.PutState(ctx, nsEcolixClients, guid, b); err != nil {
			return fmt.Errorf("record client identity: %w", err)
		}
		key, ok, err := p.Store.GetState(ctx, nsShopAppGUIDs, guid)
		if err != nil {
			return fmt.Errorf("read interface of guid: %w", err)
		}
		// The Ecolix reference is our guid: the client directory knows the client by it, and by its
		// interface's sa_key when it has one, for the billing file.
		id := store.Identity{GUID: guid, Keys: map[string]string{}, Source: "ecolix", At: p.Now(), Fields: map[string]string{
			store.FieldCompany: cust.Company, store.FieldLastName: cust.LastName, store.FieldFirstName: cust.FirstName,
			store.FieldEmail: cust.Email, store.FieldPhone: cust.Phone, store.FieldAddress: cust.Address,
			store.FieldPostalCode: cust.PostalCode, store.FieldCity: cust.City,
		}}
		if ok {
			id.Keys[store.KeySAKey] = string(key)
		}
		if _, err := p.Store.RecordIdentity(ctx, id); err != nil {
			return fmt.Errorf("record billing identity: %w", err)
		}
	}
	return nil
}

// EcolixQuote is what the poller reads of a quote (our design, README "Ecolix"): its status, the
// client's reference (our guid), and its lines' article codes, as a JSON array of lines or, in a
// CSV export, a "codes" column of codes separated by "," or "|".
type EcolixQuote struct {
	Status          string
	ClientReference string
	Codes           []string
}

// ParseEcolixQuote reads a devis record.
func ParseEcolixQuote(raw []byte) (EcolixQuote, error) {
	var w struct {
		Statut          any             `json:"statut"`
		ReferenceClient any             `json:"reference_client"`
		Lignes          json.RawMessage `json:"lignes"`
		Codes           any             `json:"codes"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return EcolixQuote{}, fmt.Errorf("decode quote: %w", err)
	}
	q := EcolixQuote{Status: text(w.Statut), ClientReference: text(w.ReferenceClient)}
	// Lines that are not an array of objects (a CSV cell, null) carry no code: the codes column
	// may.
	var lines []struct {
		Code        any `json:"code"`
		CodeArticle any `json:"code_article"`
	}
	_ = json.Unmarshal(w.Lignes, &lines)
	for _, l := range lines {
		code := text(l.Code)
		if code == "" {
			code = text(l.CodeArticle)
		}
		if code != "" {
			q.Codes = append(q.Codes, code)
		}
	}
	for _, c := range strings.FieldsFunc(text(w.Codes), func(r rune) bool { return r == ',' || r == '|' }) {
		if c = strings.TrimSpace(c); c != "" {
			q.Codes = append(q.Codes, c)
		}
	}
	return q, nil
}

// Validated reports whether the quote's status says the client accepted it.
func (q EcolixQuote) Validated() bool {
	switch strings.ToLower(q.Status) {
	case "valide", "validé", "accepte", "accepté", "signe", "signé":
		return true
	}
	return false
}

// ShopAppCodes are the quote's Shop Application prestation codes (IN-… setups, MO-… modules), in
// line order, each once.
func (q EcolixQuote) ShopAppCodes() []string {
	var out []string
	seen := map[string]bool{}
	for _, c := range q.Codes {
		u := strings.ToUpper(c)
		if (strings.HasPrefix(u, "IN-") || strings.HasPrefix(u, "MO-")) && !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

// provisionQuotes publishes one provisioning command per validated quote carrying Shop Application
// codes, once per quote (a marker in the store): creation for a guid with no interface yet, or
// the prestations added to the guid's interface.
func (p *EcolixPoller) provisionQuotes(ctx context.Context, recs []ecolix.Record) error {
	for _, r := range recs {
		q, err := ParseEcolixQuote(r.Raw)
		if err != nil || !q.Validated() || q.ClientReference == "" {
			continue
		}
		codes := q.ShopAppCodes()
		if len(codes) == 0 {
			continue
		}
		if _, done, err := p.Store.GetState(ctx, nsEcolixQuotes, r.ID); err != nil {
			return fmt.Errorf("read quote marker: %w", err)
		} else if done {
			continue
		}
		cmd := ProvisionCommand{Op: OpCreate, GUID: q.ClientReference, Prestations: codes}
		if key, ok, err := p.Store.GetState(ctx, nsShopAppGUIDs, q.ClientReference); err != nil {
			return fmt.Errorf("read interface of guid: %w", err)
		} else if ok {
			cmd = ProvisionCommand{Op: OpAddPrestations, Key: string(key), Prestations: codes}
		} else if raw, ok, err := p.Store.GetState(ctx, nsEcolixClients, q.ClientReference); err != nil {
			return fmt.Errorf("read client identity: %w", err)
		} else if ok {
			_ = json.Unmarshal(raw, &cmd.Client) // an unreadable identity: created without one
		}
		payload, err := json.Marshal(cmd)
		if err != nil {
			return err
		}
		// The id is the quote's: a command published again before its marker was written is
		// dropped by the broker, and creation is idempotent on the guid anyway.
		id := "ecolix-devis-" + r.ID
		m := message.NewMessage(id, payload)
		setMeta(m, id, PipelineEcolix, PipelineEcolix, p.Now())
		if err := p.Pub.PublishContext(ctx, TopicShopAppProvision, m); err != nil {
			return fmt.Errorf("publish provisioning command: %w", err)
		}
		if err := p.Store.PutState(ctx, nsEcolixQuotes, r.ID, payload); err != nil {
			return fmt.Errorf("record quote marker: %w", err)
		}
		p.Metrics.provision.Inc()
		p.Log.Info("ecolix quote provisioning", "quote_id", r.ID, "op", cmd.Op, "prestations", strings.Join(codes, ","))
	}
	return nil
}

// Run polls every interval until ctx is done, and once at start. A tick that comes while the
// previous poll still runs is skipped (counted), never queued: polls never overlap.
func (p *EcolixPoller) Run(ctx context.Context, interval time.Duration) {
	var running atomic.Bool
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func() {
		if !running.CompareAndSwap(false, true) {
			p.Metrics.polls.WithLabelValues("skipped").Inc()
			return
		}
		wg.Go(func() {
			defer running.Store(false)
			res, err := p.Poll(ctx)
			switch {
			case ctx.Err() != nil:
			case err != nil:
				p.Log.Warn("ecolix poll failed: what failed is pulled again next time", "error", err)
			case res.Events > 0 || res.Files > 0:
				p.Log.Info("ecolix poll", "events", res.Events, "files", res.Files)
			}
		})
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	start()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			start()
		}
	}
}

// EcolixProcessed is the inbox's durable record of processed files, in the store.
type EcolixProcessed struct {
	Store StateStore
	Now   func() time.Time
}

var _ ecolix.Processed = EcolixProcessed{}

// Seen implements ecolix.Processed.
func (e EcolixProcessed) Seen(ctx context.Context, key string) (bool, error) {
	_, ok, err := e.Store.GetState(ctx, nsEcolixFiles, key)
	return ok, err
}

// Mark implements ecolix.Processed.
func (e EcolixProcessed) Mark(ctx context.Context, key string) error {
	return e.Store.PutState(ctx, nsEcolixFiles, key, []byte(e.Now().UTC().Format(time.RFC3339)))
}

// EcolixImportAPI is the client import of Ecolix.
type EcolixImportAPI interface {
	ImportClient(ctx context.Context, in ecolix.ClientImport) (ecolix.ImportAnswer, error)
}

// EcolixImporter is the ecolix.import stage: each new lead becomes an Ecolix client (upsert on its
// event id as reference), through the delivery engine and under the Ecolix call budget. A lead
// imported is marked in the store, so a redelivered batch spends no call on it again.
type EcolixImporter struct {
	API      EcolixImportAPI
	Engine   *delivery.Engine
	Endpoint string // the engine's endpoint id for Ecolix
	Store    StateStore
	Log      *slog.Logger
}

// Handle imports the lead msg carries, or each lead of a batch. A lead Ecolix refuses for good is
// dead-lettered alone; any other failure fails the message, redelivered later.
func (im *EcolixImporter) Handle(msg *message.Message) ([]*message.Message, error) {
	recs, err := broker.Unbatch(msg)
	if err != nil {
		return nil, Permanent(err)
	}
	ctx := msg.Context()
	for _, rec := range recs {
		err := im.importOne(ctx, rec)
		if err == nil {
			continue
		}
		if !IsPermanent(err) {
			return nil, err
		}
		if !broker.IsBatch(msg) {
			return nil, err
		}
		if derr := DeadLetterRecord(msg, rec, err); derr != nil {
			return nil, errors.Join(err, derr)
		}
	}
	return nil, nil
}

func (im *EcolixImporter) importOne(ctx context.Context, rec *message.Message) error {
	var lead transforms.Lead
	if err := json.Unmarshal(rec.Payload, &lead); err != nil {
		return Permanent(fmt.Errorf("decode lead: %w", err))
	}
	if lead.EventID == "" {
		return Permanent(errors.New("lead without event id"))
	}
	if _, done, err := im.Store.GetState(ctx, nsEcolixImports, lead.EventID); err != nil {
		return fmt.Errorf("read import marker: %w", err)
	} else if done {
		return nil
	}
	in := ecolix.ClientImport{Reference: lead.EventID, Societe: lead.Company, Nom: lead.LastName, Prenom: lead.FirstName,
		Email: lead.Email, Telephone: lead.Phone, CodePostal: lead.PostalCode, Ville: lead.City}
	var ans ecolix.ImportAnswer
	err := im.Engine.Do(ctx, im.Endpoint, func(ctx context.Context) error {
		var err error
		ans, err = im.API.ImportClient(ctx, in)
		return err
	})
	if err != nil {
		if httpclient.IsPermanent(err) {
			return Permanent(fmt.Errorf("ecolix import of lead %s: %w", lead.EventID, err))
		}
		return fmt.Errorf("ecolix import of lead %s: %w", lead.EventID, err)
	}
	if err := im.Store.PutState(ctx, nsEcolixImports, lead.EventID, []byte(ans.ID)); err != nil {
		return fmt.Errorf("record import marker: %w", err)
	}
	return nil
}

// AddEcolix adds the Ecolix handlers: the CRM sink of its events, the lead import (nil: off), and
// its dead letters.
func AddEcolix(ctx context.Context, w Wiring, crm *CRMSink, imp *EcolixImporter, dead DeadLetterStore) error {
	// A record's versions reach the CRM in the order they were made.
	if err := w.crmStage(ctx, PipelineEcolix, TopicEcolixEvents, crm, EcolixCRMEvent, true); err != nil {
		return err
	}
	if imp != nil {
		if err := w.handler(ctx, "ecolix.import", TopicLeadsNormalized, "", imp.Handle); err != nil {
			return err
		}
	}
	return w.deadLetters(ctx, PipelineEcolix, dead)
}
