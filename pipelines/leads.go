package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nuid"

	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/redact"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/transforms"
)

// Topics of the leads pipeline: the webhook publishes what it received, the normalize stage drops
// duplicates and publishes normalised leads, the CRM sink delivers them.
const (
	PipelineLeads        = "leads"
	TopicLeadsReceived   = "leads.received"
	TopicLeadsNormalized = "leads.normalized"
	dedupeScopeLeads     = "leads"
	metaDedupeKey        = "dedupe_key"
)

// ContextPublisher publishes and returns once the broker holds the messages.
type ContextPublisher interface {
	PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error
}

// SubscriberFactory returns a subscriber on a durable consumer of topic.
type SubscriberFactory func(ctx context.Context, durable, topic string, opts SubscribeOptions) (message.Subscriber, error)

// SubscribeOptions shape a stage's consumer.
type SubscribeOptions struct {
	// Subscribers is how many messages the stage handles at once; default 1.
	Subscribers int
	// Ordered hands out one message at a time, the next only once this one is acked: a stage
	// whose events carry an ordering key keeps their order across redeliveries.
	Ordered bool
	// StartAfter names stages of the same topic: the stage's consumer, when it is created, starts
	// where the furthest of them is (broker.ConsumerConfig.StartAfter).
	StartAfter []string
}

// DedupeStore remembers which leads were already forwarded.
type DedupeStore interface {
	SeenKeys(ctx context.Context, scope string, keys []string, since time.Time) (map[string]string, error)
	CommitKeys(ctx context.Context, scope string, claims []store.KeyClaim, at time.Time) error
}

// SourceIciFormation names the Ici Formation webhook in MetaSource and in event ids. A
// leads.received message is the lead exactly as its source sent it (Ici Formation's JSON object),
// with MetaSource and MetaReceivedAt: the normalize stage decodes it with its source's decoder and
// derives its event id, so a replay runs today's normalisation on what was really received.
const SourceIciFormation = "iciformation"

// MessagePublisher publishes one message and returns once the broker holds it.
type MessagePublisher interface {
	Publish(ctx context.Context, msg *message.Message) error
}

// LeadIngest accepts leads from the Ici Formation webhook: it validates them and returns only once
// the lead is durably published, which is when the webhook may answer 200. Pub is normally a
// broker.Batcher: concurrent requests share a publish, each still waiting for its own ack.
type LeadIngest struct {
	pub     MessagePublisher
	metrics StageCounters
	yield   *Yield
	now     func() time.Time
}

// NewLeadIngest returns the ingest stage publishing through pub; y (may be nil) hears of each
// lead being stored.
func NewLeadIngest(pub MessagePublisher, m *Metrics, y *Yield, now func() time.Time) *LeadIngest {
	return &LeadIngest{pub: pub, metrics: m.Stage(PipelineLeads, "ingest"), yield: y, now: now}
}

// AcceptLead implements iciformation.Acceptor.
func (in *LeadIngest) AcceptLead(ctx context.Context, l iciformation.Lead) error {
	start := time.Now()
	in.metrics.In.Inc()
	msg, err := in.message(l)
	if err == nil {
		in.yield.Storing()
		err = in.pub.Publish(ctx, msg)
		in.yield.Stored()
	}
	in.metrics.Duration.Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, iciformation.ErrInvalidLead):
		in.metrics.Rejected.Inc()
		return err
	case err != nil:
		in.metrics.Failed.Inc()
		return err
	}
	in.metrics.Out.Inc()
	return nil
}

// message builds the leads.received message. Only what the answer depends on happens here (the
// partner waits): the check that the lead can be normalised, and the bytes to store. The event
// id is derived by the normalize stage from the same bytes, off the webhook's path.
func (in *LeadIngest) message(l iciformation.Lead) (*message.Message, error) {
	now := in.now().UTC()
	// Reject now what the normalize stage would reject, so the partner hears about it.
	if err := transforms.CheckLead(leadInput(l)); err != nil {
		return nil, fmt.Errorf("%w: %w", iciformation.ErrInvalidLead, err)
	}
	msg := message.NewMessage(nuid.Next(), message.Payload(l.Raw))
	msg.Metadata.Set(MetaPipeline, PipelineLeads)
	msg.Metadata.Set(MetaSource, SourceIciFormation)
	msg.Metadata.Set(MetaReceivedAt, now.Format(time.RFC3339Nano))
	return msg, nil
}

// LeadDecoder turns what a lead source received (its body, as stored) into a lead to normalise.
type LeadDecoder func(raw []byte) (transforms.LeadInput, error)

// LeadSources are the lead decoders by source name (MetaSource): the normalize stage and replay
// decode with them, so a recorded body goes through what a live one does.
type LeadSources map[string]LeadDecoder

// DecodeIciFormation is the Ici Formation webhook's decoder.
func DecodeIciFormation(raw []byte) (transforms.LeadInput, error) {
	l, err := iciformation.DecodeLead(raw)
	if err != nil {
		return transforms.LeadInput{}, err
	}
	return leadInput(l), nil
}

// receivedLead decodes a leads.received message with its source's decoder.
func (s LeadSources) receivedLead(msg *message.Message) (transforms.LeadInput, time.Time, error) {
	source := msg.Metadata.Get(MetaSource)
	decode, ok := s[source]
	if !ok {
		return transforms.LeadInput{}, time.Time{}, fmt.Errorf("unknown lead source %q", source)
	}
	in, err := decode(msg.Payload)
	if err != nil {
		return in, time.Time{}, err
	}
	at, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(MetaReceivedAt))
	if err != nil {
		return in, time.Time{}, fmt.Errorf("%s: %w", MetaReceivedAt, err)
	}
	// Empty for what the webhook stores (NormalizeLead derives it); set on what an earlier
	// version stored, which derived it at ingest the same way.
	in.EventID = msg.Metadata.Get(MetaEventID)
	return in, at, nil
}

func leadInput(l iciformation.Lead) transforms.LeadInput {
	return transforms.LeadInput{
		Source: SourceIciFormation, LastName: l.Nom, FirstName: l.Prenom, Title: l.Civilite,
		Phone: l.Tel, Email: l.Email, City: l.Ville, PostalCode: l.CodePostal,
		Course: l.Formation, CallbackTime: l.HoraireRappel, Status: l.Statut,
		Company: l.Client, ClientID: l.IDClient, Raw: l.Raw,
	}
}

func setMeta(msg *message.Message, eventID, pipeline, source string, receivedAt time.Time) {
	msg.Metadata.Set(MetaEventID, eventID)
	msg.Metadata.Set(MetaPipeline, pipeline)
	msg.Metadata.Set(MetaSource, source)
	msg.Metadata.Set(MetaCorrelationID, eventID)
	msg.Metadata.Set(MetaReceivedAt, receivedAt.UTC().Format(time.RFC3339Nano))
}

// LeadNormalizer is the leads.normalize stage.
type LeadNormalizer struct {
	Sources LeadSources
	Store   DedupeStore
	Window  time.Duration
	// Key keys the dedupe keys (transforms.LeadDedupeKey); Hasher the contact's hash in logs.
	Key    []byte
	Hasher redact.Hasher
	Log    *slog.Logger
	Now    func() time.Time
}

// Handle normalises a received lead and drops it when another lead with the same contact,
// formation and id_client was forwarded inside the window. The key is only read here; the CRM
// stage commits it once the lead is delivered, so a failed delivery is never mistaken for a
// duplicate on redelivery.
func (n *LeadNormalizer) Handle(msg *message.Message) ([]*message.Message, error) {
	items, err := broker.Unbatch(msg)
	if err != nil {
		return nil, Permanent(err)
	}
	type normalized struct {
		lead transforms.Lead
		meta message.Metadata
	}
	good := make([]normalized, 0, len(items))
	keys := make([]string, 0, len(items))
	for _, it := range items {
		lead, err := n.normalizeReceived(it)
		if err != nil {
			err = Permanent(err)
			if it.Metadata.Get(MetaEventID) == "" { // named in the dead-letter topic all the same
				it.Metadata.Set(MetaEventID, transforms.EventID(it.Metadata.Get(MetaSource), it.Payload))
			}
			if !broker.IsBatch(msg) {
				return nil, err
			}
			// One unreadable lead does not hold back the others: it goes to the dead-letter topic alone.
			if derr := DeadLetterRecord(msg, it, err); derr != nil {
				return nil, errors.Join(err, derr)
			}
			continue
		}
		good = append(good, normalized{lead, it.Metadata})
		keys = append(keys, transforms.LeadDedupeKey(lead, n.Key))
	}
	// One lookup for the whole batch. Two leads of one batch with the same key both pass: neither
	// is forwarded yet, and a key only counts once its lead reached the CRM.
	var seen map[string]string
	if n.Window > 0 && len(keys) > 0 {
		var err error
		if seen, err = n.Store.SeenKeys(msg.Context(), dedupeScopeLeads, keys, n.Now().Add(-n.Window)); err != nil {
			return nil, fmt.Errorf("dedupe lookup: %w", err)
		}
	}
	outs := make([]*message.Message, 0, len(good))
	for i, g := range good {
		key, lead := keys[i], g.lead
		// The same event again (a redelivery or a replay) passes: receivers recognise its id.
		if prev, ok := seen[key]; ok && prev != lead.EventID {
			markDuplicate(msg)
			n.Log.Info("duplicate lead dropped", "event_id", lead.EventID, "first_event_id", prev, "contact", n.Hasher.Hash(key))
			continue
		}
		out := message.NewMessage(lead.EventID, lead.AppendJSON(make([]byte, 0, 512+len(lead.Raw))))
		out.Metadata = copyMeta(g.meta)
		out.Metadata.Set(MetaEventID, lead.EventID)
		out.Metadata.Set(MetaCorrelationID, lead.EventID)
		out.Metadata.Set(metaDedupeKey, key)
		outs = append(outs, out)
	}
	if len(outs) <= 1 || !broker.IsBatch(msg) {
		return outs, nil
	}
	// A batch in, a batch out: one broker message instead of one per lead. Its id is the input's,
	// so a redelivered input makes the same message, which the broker drops as a duplicate.
	batch := broker.NewBatch(outs)
	batch.UUID = msg.UUID
	return []*message.Message{batch}, nil
}

// normalizeReceived decodes and normalises one received lead.
func (n *LeadNormalizer) normalizeReceived(m *message.Message) (transforms.Lead, error) {
	in, at, err := n.Sources.receivedLead(m)
	if err != nil {
		return transforms.Lead{}, fmt.Errorf("decode received lead %s: %w", m.UUID, err)
	}
	lead, err := transforms.NormalizeLead(in, at)
	if err != nil {
		return transforms.Lead{}, fmt.Errorf("normalise lead %s: %w", in.EventID, err)
	}
	return lead, nil
}

// LeadEvent turns a normalised lead into the CRM event of the lead.created type.
func LeadEvent(payload []byte) (Event, error) {
	var lead transforms.Lead
	if err := json.Unmarshal(payload, &lead); err != nil {
		return Event{}, fmt.Errorf("decode lead: %w", err)
	}
	return Event{
		Type: "lead.created", ID: lead.EventID, Source: lead.Source, OccurredAt: lead.ReceivedAt,
		Data: payload, HubSpot: transforms.LeadHubSpotProperties(lead),
	}, nil
}

// commitLeadKeys records the dedupe keys of leads that reached every endpoint.
func commitLeadKeys(st DedupeStore) func(ctx context.Context, msgs []*message.Message, now time.Time) error {
	return func(ctx context.Context, msgs []*message.Message, now time.Time) error {
		claims := make([]store.KeyClaim, 0, len(msgs))
		for _, m := range msgs {
			if key := m.Metadata.Get(metaDedupeKey); key != "" {
				claims = append(claims, store.KeyClaim{Key: key, EventID: m.Metadata.Get(MetaEventID)})
			}
		}
		if err := st.CommitKeys(ctx, dedupeScopeLeads, claims, now); err != nil {
			return fmt.Errorf("commit dedupe keys: %w", err)
		}
		return nil
	}
}

var errNoEndpoints = errors.New("no CRM endpoint configured")

// Wiring is what every pipeline needs to add its handlers.
type Wiring struct {
	Router    *message.Router
	Subscribe SubscriberFactory
	Pub       message.Publisher
	Metrics   *Metrics
	// Backlogs, when set, exports each added stage's backlog in the broker.
	Backlogs *Backlogs
	// Yield, when set, is the router's: each added stage's series start at zero.
	Yield *Yield
	Log   *slog.Logger
	Now   func() time.Time
}

func (w Wiring) handler(ctx context.Context, name, from, to string, h message.HandlerFunc) error {
	return w.handlerWith(ctx, name, from, to, h, SubscribeOptions{})
}

func (w Wiring) handlerWith(ctx context.Context, name, from, to string, h message.HandlerFunc, opts SubscribeOptions) error {
	durable := durableName(name)
	after := make([]string, len(opts.StartAfter))
	for i, n := range opts.StartAfter {
		after[i] = durableName(n)
	}
	opts.StartAfter = after
	sub, err := w.Subscribe(ctx, durable, from, opts)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	p, s := splitHandler(name)
	w.Metrics.Init(p, s)
	w.Yield.initSeries(p, s)
	if w.Backlogs != nil {
		w.Backlogs.add(p, s, durable)
	}
	if to == "" {
		w.Router.AddConsumerHandler(name, from, sub, func(m *message.Message) error { _, err := h(m); return err })
		return nil
	}
	w.Router.AddHandler(name, from, sub, to, w.Pub, h)
	return nil
}

// crmStage adds "<pipeline>.crm": a copy of sink delivering topic's events, mapped by toEvent,
// taken one message at a time when they carry ordering keys. A nil sink (no CRM) adds nothing.
//
// An ordered topic with several endpoints gets a stage per endpoint instead,
// "<pipeline>.crm.<digest>" (the digest of EndpointID): each endpoint then keeps its own place in
// the topic, so one that is down, slow or disabled holds back only its own events. A stage created
// later (an endpoint added, or the switch from one endpoint to several) starts where its siblings
// are, not at the topic's first event.
func (w Wiring) crmStage(ctx context.Context, pipeline, topic string, sink *CRMSink, toEvent func([]byte) (Event, error), ordered bool) error {
	if sink == nil {
		return nil
	}
	c := *sink
	c.ToEvent, c.OnDelivered = toEvent, nil
	shared := pipeline + ".crm"
	if !ordered {
		return w.handlerWith(ctx, shared, topic, "", c.Handle, SubscribeOptions{})
	}
	if len(c.Endpoints) < 2 {
		// Back to one endpoint after several: start where its own stage had come.
		var after []string
		for _, u := range c.Endpoints {
			after = append(after, CRMStageName(pipeline, u))
		}
		return w.handlerWith(ctx, shared, topic, "", c.Handle, SubscribeOptions{Ordered: true, StartAfter: after})
	}
	// Every stage of the topic, the single one of an earlier configuration first.
	siblings := []string{shared}
	for _, u := range c.Endpoints {
		siblings = append(siblings, CRMStageName(pipeline, u))
	}
	for i, u := range c.Endpoints {
		one := c
		one.Endpoints = []string{u}
		if err := w.handlerWith(ctx, siblings[i+1], topic, "", one.Handle, SubscribeOptions{Ordered: true, StartAfter: siblings}); err != nil {
			return err
		}
	}
	return nil
}

// CRMStageName is the handler of an ordered topic's CRM stage for one endpoint, when there are
// several: "<pipeline>.crm.<digest>", the digest that ends EndpointID.
func CRMStageName(pipeline, rawURL string) string {
	_, digest, _ := strings.Cut(EndpointID(rawURL), "#")
	return pipeline + ".crm." + digest
}

// deadLetters adds "<pipeline>.deadletter", which indexes the pipeline's dead-letter topic in the
// store for `passerelle dlq`.
func (w Wiring) deadLetters(ctx context.Context, pipeline string, st DeadLetterStore) error {
	rec := &DeadLetterRecorder{Pipeline: pipeline, Store: st, Now: w.Now}
	return w.handler(ctx, pipeline+".deadletter", DeadTopic(pipeline), "", rec.Handle)
}

// durableName derives a consumer name from a handler name; consumer names may not hold dots.
func durableName(handler string) string {
	b := []byte(handler)
	for i, c := range b {
		if c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

// LeadsConfig is the leads pipeline's own settings and collaborators.
type LeadsConfig struct {
	Store interface {
		DedupeStore
		DeliveryStore
		DeadLetterStore
	}
	DedupeWindow time.Duration
	// DedupeKey keys the dedupe keys; LogHasher hashes contacts in logs (see internal/hashkey).
	DedupeKey []byte
	LogHasher redact.Hasher
	Sources   LeadSources
	CRM       *CRMSink // nil when no CRM endpoint is configured: normalised leads wait in their topic
}

// AddLeads adds the leads pipeline's handlers: normalize, crm and deadletter.
func AddLeads(ctx context.Context, w Wiring, cfg LeadsConfig) error {
	norm := &LeadNormalizer{Sources: cfg.Sources, Store: cfg.Store, Window: cfg.DedupeWindow, Key: cfg.DedupeKey,
		Hasher: cfg.LogHasher, Log: w.Log, Now: w.Now}
	if err := w.handler(ctx, "leads.normalize", TopicLeadsReceived, TopicLeadsNormalized, norm.Handle); err != nil {
		return err
	}
	if cfg.CRM != nil {
		c := *cfg.CRM
		c.ToEvent, c.OnDelivered, c.Requeue = LeadEvent, commitLeadKeys(cfg.Store), w.Pub
		// Leads have no order among themselves: as many at once as the endpoints take.
		opts := SubscribeOptions{Subscribers: c.Subscribers}
		if err := w.handlerWith(ctx, "leads.crm", TopicLeadsNormalized, "", c.Handle, opts); err != nil {
			return err
		}
	}
	return w.deadLetters(ctx, PipelineLeads, cfg.Store)
}
