package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/connectors/biway"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/redact"
	"github.com/passerelle/passerelle/transforms"
)

// Topics, stages and event types of the Bi-way pipeline. biway.ack consumes leads.normalized on
// a durable consumer of its own, beside leads.crm; callbacks the webhook received wait in
// biway.callbacks for biway.reports, whose changes go out to the CRM through biway.events.
const (
	PipelineBiway       = "biway"
	TopicBiwayCallbacks = "biway.callbacks"
	TopicBiwayEvents    = "biway.events"

	EventMessageStatusChanged = "message.status_changed"

	// nsBiway holds, by key prefix: lead/<event id> (what was done for a lead), day/<date>/<number
	// digest> (messages a number got that day), ref/<reference> (the lead and channel of a
	// submission, written before the call: a report may come back before the partner's answer), msg/<message id> (its state), entity/<type>/<id>, and callback.
	nsBiway = "biway"
	// nsBiwayScheduled holds the acknowledgements waiting for the send window, by lead event id.
	nsBiwayScheduled = "biway.scheduled"
	// biwayEndpoint is the delivery engine's endpoint id: one partner, one base URL.
	biwayEndpoint = "biway"
)

// What the ack stage did with a lead: the outcome label of passerelle_biway_acks_total.
const (
	AckSubmitted = "submitted"
	AckScheduled = "scheduled"
	AckNoMobile  = "no_mobile"
	AckDailyCap  = "daily_cap"
	AckRefused   = "refused"
	AckDuplicate = "duplicate"
	AckTooOld    = "too_old"
)

// BiwayStore is the part of the store the Bi-way pipeline keeps its records in.
type BiwayStore interface {
	// TryLock is the lock replicas share (store.Store.TryLock): one send to a number at a time.
	TryLock(ctx context.Context, name string) (release func(), ok bool, err error)
	GetState(ctx context.Context, ns, key string) ([]byte, bool, error)
	PutState(ctx context.Context, ns, key string, v []byte) error
	ListState(ctx context.Context, ns string) (map[string][]byte, error)
	PutStates(ctx context.Context, ns string, kv map[string][]byte, deleted []string) error
}

// BiwaySubmitter sends one message.
type BiwaySubmitter interface {
	Submit(ctx context.Context, s biway.Submission) (biway.SubmitAnswer, error)
}

// BiwayMetrics count acknowledgements and message state changes.
type BiwayMetrics struct {
	acks      *prometheus.CounterVec
	messages  *prometheus.CounterVec
	scheduled prometheus.Gauge
}

// Channels of the messages_total channel label: the configured channel of a message we
// submitted, "broadcast" for one of `passerelle biway broadcast`, "unknown" for one we have no
// record of.
var biwayChannels = []string{biway.ChannelSMS, biway.ChannelRCS, biway.ChannelAuto, "broadcast", "unknown"}

// NewBiwayMetrics registers the pipeline's metrics on reg with every label value pre-created.
func NewBiwayMetrics(reg prometheus.Registerer) *BiwayMetrics {
	m := &BiwayMetrics{
		acks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "biway", Name: "acks_total",
			Help: "Leads seen by the Bi-way acknowledgement stage, by outcome (submitted, scheduled for the send window, no_mobile, daily_cap, refused by the partner, duplicate, too_old)."},
			[]string{"outcome"}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "biway", Name: "messages_total",
			Help: "Bi-way message state changes applied (duplicates and stale reports excluded), by state and configured channel."},
			[]string{"state", "channel"}),
		scheduled: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "biway", Name: "scheduled_acks",
			Help: "Lead acknowledgements waiting for the send window to open."}),
	}
	reg.MustRegister(m.acks, m.messages, m.scheduled)
	for _, o := range []string{AckSubmitted, AckScheduled, AckNoMobile, AckDailyCap, AckRefused, AckDuplicate, AckTooOld} {
		m.acks.WithLabelValues(o)
	}
	for _, s := range []biway.State{biway.StateAccepted, biway.StateSent, biway.StateDelivered, biway.StateRead, biway.StateFailed} {
		for _, c := range biwayChannels {
			m.messages.WithLabelValues(string(s), c)
		}
	}
	return m
}

func (m *BiwayMetrics) ack(outcome string) {
	if m != nil {
		m.acks.WithLabelValues(outcome).Inc()
	}
}

// LeadAck is what the ack stage recorded for a lead (lead/<event id>).
type LeadAck struct {
	Outcome   string    `json:"outcome"` // one of the Ack* values but duplicate
	MessageID string    `json:"message_id,omitempty"`
	Channel   string    `json:"channel,omitempty"`
	Due       time.Time `json:"due,omitzero"`
	Error     string    `json:"error,omitempty"`
	At        time.Time `json:"at"`
}

// pendingAck is an acknowledgement to send (now or at the window's opening).
type pendingAck struct {
	EventID    string            `json:"event_id"`
	To         string            `json:"to"` // E.164
	Variables  map[string]string `json:"variables"`
	Due        time.Time         `json:"due"`
	ReceivedAt time.Time         `json:"received_at"`
}

// sentRecord links a submission's reference to its lead (ref/<reference>).
type sentRecord struct {
	LeadEventID string    `json:"lead_event_id"`
	Channel     string    `json:"channel"`
	At          time.Time `json:"at"`
}

// BiwayAck is the biway.ack stage: each new lead with a mobile number gets one message from the
// template, inside the send window, at most MaxPerDay a number a day. The lead's event id is the
// submission's reference, so the partner never sends twice for a lead even when a crash loses
// our record of the first send; the record (lead/<event id>) makes redeliveries skip the call.
type BiwayAck struct {
	// Hasher keys the digest of a number in the daily count's record: no phone number in clear.
	Hasher    redact.Hasher
	API       BiwaySubmitter
	Engine    *delivery.Engine
	Store     BiwayStore
	Window    SendWindow
	Template  string
	Channel   string
	MaxPerDay int
	// MaxAge skips leads received longer ago (0: no limit). The stage's consumer starts at the
	// beginning of leads.normalized, so turning acknowledgements on would otherwise message every
	// lead the stream still holds.
	MaxAge  time.Duration
	Metrics *BiwayMetrics
	Log     *slog.Logger
	Now     func() time.Time
}

// Handle acknowledges the leads msg carries (one, or a batch).
func (a *BiwayAck) Handle(msg *message.Message) ([]*message.Message, error) {
	items, err := broker.Unbatch(msg)
	if err != nil {
		return nil, Permanent(err)
	}
	ctx := msg.Context()
	for _, it := range items {
		if err := a.handleLead(ctx, it.Payload); err != nil {
			return nil, err // redelivered: the leads done already have their record
		}
	}
	return nil, nil
}

func (a *BiwayAck) handleLead(ctx context.Context, payload []byte) error {
	var lead transforms.Lead
	if err := json.Unmarshal(payload, &lead); err != nil || lead.EventID == "" {
		return Permanent(fmt.Errorf("decode lead: %w", errors.Join(err, errors.New("no event id"))))
	}
	if !transforms.IsMobile(lead.Phone) {
		a.Metrics.ack(AckNoMobile)
		return nil
	}
	if _, done, err := a.Store.GetState(ctx, nsBiway, "lead/"+lead.EventID); err != nil {
		return fmt.Errorf("biway ack record: %w", err)
	} else if done {
		a.Metrics.ack(AckDuplicate)
		return nil
	}
	now := a.Now()
	if a.MaxAge > 0 && !lead.ReceivedAt.IsZero() && now.Sub(lead.ReceivedAt) > a.MaxAge {
		a.Metrics.ack(AckTooOld)
		return nil
	}
	p := pendingAck{EventID: lead.EventID, To: lead.Phone, ReceivedAt: lead.ReceivedAt, Due: a.Window.Next(now), Variables: map[string]string{
		"prenom": lead.FirstName, "formation": lead.Course, "horaire_rappel": lead.CallbackTime,
	}}
	if p.Due.After(now) {
		return a.schedule(ctx, p, now)
	}
	return a.send(ctx, p)
}

// schedule keeps an acknowledgement for the window's opening: the scheduled entry first, so a
// crash between the two writes only schedules it again.
func (a *BiwayAck) schedule(ctx context.Context, p pendingAck, now time.Time) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := a.Store.PutState(ctx, nsBiwayScheduled, p.EventID, b); err != nil {
		return fmt.Errorf("schedule biway ack: %w", err)
	}
	if err := a.putLead(ctx, p.EventID, LeadAck{Outcome: AckScheduled, Due: p.Due, At: now}, nil); err != nil {
		return err
	}
	a.Metrics.ack(AckScheduled)
	a.Log.Info("biway ack scheduled for the send window", "event_id", p.EventID, "due", p.Due)
	return nil
}

// ErrBiwayNumberBusy is a send not tried because another one to the same number is in progress,
// on this replica or another: the message is redelivered, the scheduler tries at its next tick.
var ErrBiwayNumberBusy = errors.New("biway: another acknowledgement to this number is being sent; tried again later")

// send submits one acknowledgement through the delivery engine unless the number had its
// share today. A refusal no retry fixes is recorded, not retried; a retryable failure is
// returned. The number's lock, shared by every replica on the store, makes the daily count's
// read and write one step; under it the lead's record is read again, so a lead that another
// replica's scheduler has just sent is not sent, nor taken for the day's second message.
func (a *BiwayAck) send(ctx context.Context, p pendingAck) error {
	number := a.Hasher.Hash(p.To)
	release, ok, err := a.Store.TryLock(ctx, "biway.number/"+number)
	if err != nil {
		return fmt.Errorf("biway number lock: %w", err)
	}
	if !ok {
		return ErrBiwayNumberBusy
	}
	defer release()
	if b, ok, err := a.Store.GetState(ctx, nsBiway, "lead/"+p.EventID); err != nil {
		return fmt.Errorf("biway ack record: %w", err)
	} else if ok {
		var rec LeadAck
		if json.Unmarshal(b, &rec) == nil && rec.Outcome != AckScheduled {
			return nil
		}
	}
	now := a.Now()
	dayKey := "day/" + a.Window.LocalDay(now) + "/" + number
	count := 0
	if b, ok, err := a.Store.GetState(ctx, nsBiway, dayKey); err != nil {
		return fmt.Errorf("biway daily count: %w", err)
	} else if ok {
		_ = json.Unmarshal(b, &count)
	}
	if count >= a.MaxPerDay {
		a.Metrics.ack(AckDailyCap)
		a.Log.Info("biway ack skipped: the number had its messages today", "event_id", p.EventID, "to", redact.Phone(p.To), "max", a.MaxPerDay)
		return a.putLead(ctx, p.EventID, LeadAck{Outcome: AckDailyCap, At: now}, nil)
	}
	// Before the call: the partner may report on the message before it answers us.
	s, _ := json.Marshal(sentRecord{LeadEventID: p.EventID, Channel: a.channel(), At: now})
	if err := a.Store.PutState(ctx, nsBiway, "ref/"+p.EventID, s); err != nil {
		return fmt.Errorf("biway submission record: %w", err)
	}
	var ans biway.SubmitAnswer
	err = a.Engine.Do(ctx, biwayEndpoint, func(ctx context.Context) error {
		var err error
		ans, err = a.API.Submit(ctx, biway.Submission{To: p.To, Canal: a.Channel, Modele: a.Template, Variables: p.Variables, Reference: p.EventID})
		return err
	})
	switch {
	case err != nil && httpclient.IsPermanent(err):
		a.Metrics.ack(AckRefused)
		a.Log.Warn("biway ack refused", "event_id", p.EventID, "error", err)
		return a.putLead(ctx, p.EventID, LeadAck{Outcome: AckRefused, Error: err.Error(), At: now}, nil)
	case err != nil:
		return fmt.Errorf("biway submit %s: %w", p.EventID, err)
	}
	c, _ := json.Marshal(count + 1)
	if err := a.putLead(ctx, p.EventID, LeadAck{Outcome: AckSubmitted, MessageID: ans.MessageID, Channel: a.channel(), At: now},
		map[string][]byte{dayKey: c}); err != nil {
		return err
	}
	a.Metrics.ack(AckSubmitted)
	return nil
}

func (a *BiwayAck) channel() string {
	if a.Channel == "" {
		return biway.ChannelAuto
	}
	return a.Channel
}

// putLead writes a lead's record with more keys of nsBiway, in one transaction.
func (a *BiwayAck) putLead(ctx context.Context, eventID string, rec LeadAck, more map[string][]byte) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	kv := map[string][]byte{"lead/" + eventID: b}
	for k, v := range more {
		kv[k] = v
	}
	// Not the handler's context alone: what was sent must be recorded even if its time ran out.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	if err := a.Store.PutStates(wctx, nsBiway, kv, nil); err != nil {
		return fmt.Errorf("biway ack record: %w", err)
	}
	return nil
}

// SendDue sends the scheduled acknowledgements whose time came, oldest first, and returns how
// many are still waiting. A retryable failure stops the run; the rest wait for the next one.
func (a *BiwayAck) SendDue(ctx context.Context) (int, error) {
	all, err := a.Store.ListState(ctx, nsBiwayScheduled)
	if err != nil {
		return 0, fmt.Errorf("list scheduled biway acks: %w", err)
	}
	now := a.Now()
	var due []pendingAck
	waiting := 0
	for k, v := range all {
		var p pendingAck
		if err := json.Unmarshal(v, &p); err != nil {
			a.Log.Error("unreadable scheduled biway ack dropped", "event_id", k, "error", err)
			_ = a.Store.PutStates(ctx, nsBiwayScheduled, nil, []string{k})
			continue
		}
		if p.Due.After(now) {
			waiting++
			continue
		}
		due = append(due, p)
	}
	sort.Slice(due, func(i, j int) bool {
		return due[i].Due.Before(due[j].Due) || due[i].Due.Equal(due[j].Due) && due[i].EventID < due[j].EventID
	})
	defer func() {
		if a.Metrics != nil {
			a.Metrics.scheduled.Set(float64(waiting))
		}
	}()
	for i, p := range due {
		left := len(due) - i
		// The window may have closed again since (a long outage): wait for the next one.
		if t := a.Now(); a.Window.Next(t).After(t) {
			waiting += left
			return waiting, nil
		}
		b, ok, err := a.Store.GetState(ctx, nsBiway, "lead/"+p.EventID)
		if err != nil {
			waiting += left
			return waiting, fmt.Errorf("biway ack record: %w", err)
		}
		var rec LeadAck
		if ok {
			_ = json.Unmarshal(b, &rec)
		}
		// Sent already when the record says so: a crash came between the send and the delete.
		if !ok || rec.Outcome == AckScheduled {
			if err := a.send(ctx, p); err != nil {
				waiting += left
				return waiting, err
			}
		}
		if err := a.Store.PutStates(ctx, nsBiwayScheduled, nil, []string{p.EventID}); err != nil {
			waiting += left - 1
			return waiting, fmt.Errorf("unschedule biway ack: %w", err)
		}
	}
	return waiting, nil
}

// RunScheduler sends due acknowledgements every interval until ctx is done.
func (a *BiwayAck) RunScheduler(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := a.SendDue(ctx); err != nil && ctx.Err() == nil {
			a.Log.Warn("scheduled biway acks not all sent, retrying later", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// BiwayCallbackIngest makes the callbacks the webhook verified durable: it publishes each to
// biway.callbacks and returns once the broker holds it, when the webhook may answer 200.
type BiwayCallbackIngest struct {
	Pub ContextPublisher
	Now func() time.Time
}

// callbackPublishTimeout bounds the wait for the broker: the partner is waiting.
const callbackPublishTimeout = 10 * time.Second

// AcceptCallback implements biway.CallbackAcceptor.
func (in *BiwayCallbackIngest) AcceptCallback(ctx context.Context, cb biway.Callback) error {
	b, err := json.Marshal(cb)
	if err != nil {
		return fmt.Errorf("encode callback: %w", err)
	}
	id := cb.WebhookID
	if id == "" {
		id = "biway_cb_" + digest(string(b))
	}
	msg := message.NewMessage(id, b)
	setMeta(msg, id, PipelineBiway, "biway", in.Now())
	ctx, cancel := context.WithTimeout(ctx, callbackPublishTimeout)
	defer cancel()
	if err := in.Pub.PublishContext(ctx, TopicBiwayCallbacks, msg); err != nil {
		return fmt.Errorf("publish callback: %w", err)
	}
	return nil
}

// MessageState is a message's state as the reports made it (msg/<message id>).
type MessageState struct {
	MessageID   string      `json:"message_id"`
	State       biway.State `json:"state"`
	Reason      string      `json:"reason,omitempty"`
	At          time.Time   `json:"at"`
	LeadEventID string      `json:"lead_event_id,omitempty"`
	Reference   string      `json:"reference,omitempty"`
	Channel     string      `json:"channel"`
	// Unknown is true for a message we have no submission of (sent by another tool, or our
	// record of it lost): recorded all the same.
	Unknown bool `json:"unknown,omitempty"`
}

// EntityRecord is an account, company or agent as its state callbacks made it.
type EntityRecord struct {
	Type string           `json:"type"`
	ID   string           `json:"id"`
	Etat biway.EntityEtat `json:"etat"`
	At   time.Time        `json:"at"`
}

// MessageStatusChanged is the data of a message.status_changed event.
type MessageStatusChanged struct {
	MessageID     string      `json:"message_id"`
	State         biway.State `json:"state"`
	PreviousState biway.State `json:"previous_state,omitempty"`
	Reason        string      `json:"reason,omitempty"`
	Channel       string      `json:"channel"`
	// CorrelationID is the lead's event id (the submission's reference).
	CorrelationID string    `json:"correlation_id,omitempty"`
	At            time.Time `json:"at"`
}

// BiwayReports is the biway.reports stage: it applies each callback to the store. A message's
// state only moves forward (biway.Advance), so duplicates and reordered reports change nothing;
// each change is published as message.status_changed first, then stored, so a crash between
// the two publishes the same event id again rather than losing it.
type BiwayReports struct {
	Store   BiwayStore
	Pub     ContextPublisher
	Metrics *BiwayMetrics
	Log     *slog.Logger
	Now     func() time.Time
}

// Handle applies one callback.
func (r *BiwayReports) Handle(msg *message.Message) ([]*message.Message, error) {
	var cb biway.Callback
	if err := json.Unmarshal(msg.Payload, &cb); err != nil {
		return nil, Permanent(fmt.Errorf("decode callback: %w", err))
	}
	ctx := msg.Context()
	switch {
	case cb.Report != nil:
		return nil, r.report(ctx, *cb.Report)
	case cb.Entity != nil:
		return nil, r.entity(ctx, *cb.Entity)
	}
	return nil, Permanent(fmt.Errorf("callback %s of type %q has neither report nor entity", msg.UUID, cb.Type))
}

func (r *BiwayReports) report(ctx context.Context, rep biway.Report) error {
	key := "msg/" + rep.MessageID
	var cur MessageState
	b, known, err := r.Store.GetState(ctx, nsBiway, key)
	if err != nil {
		return fmt.Errorf("message state: %w", err)
	}
	if known {
		if err := json.Unmarshal(b, &cur); err != nil {
			return Permanent(fmt.Errorf("stored message state %s: %w", rep.MessageID, err))
		}
	} else {
		cur = MessageState{MessageID: rep.MessageID, Reference: rep.Reference, Channel: "unknown", Unknown: true}
		var sb []byte
		var sent bool
		if rep.Reference != "" {
			if sb, sent, err = r.Store.GetState(ctx, nsBiway, "ref/"+rep.Reference); err != nil {
				return fmt.Errorf("message submission: %w", err)
			}
		}
		if sent {
			var s sentRecord
			if json.Unmarshal(sb, &s) == nil {
				cur.LeadEventID, cur.Channel, cur.Unknown = s.LeadEventID, s.Channel, false
			}
		}
		if cur.Unknown && strings.HasPrefix(rep.Reference, BroadcastReferencePrefix) {
			cur.Channel, cur.Unknown = "broadcast", false
		}
		if cur.Unknown {
			r.Log.Warn("biway report for a message we have no submission of: recorded", "message_id", rep.MessageID, "etat", rep.Etat)
		}
	}
	if !biway.Advance(cur.State, rep.Etat) {
		return nil // a duplicate or a stale report
	}
	corr := cur.LeadEventID
	if corr == "" {
		corr = rep.Reference
	}
	ev := MessageStatusChanged{MessageID: rep.MessageID, State: rep.Etat, PreviousState: cur.State, Reason: rep.Raison,
		Channel: cur.Channel, CorrelationID: corr, At: rep.Date}
	id := "biway_" + digest(rep.MessageID+"\x00"+string(rep.Etat))
	payload, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	out := message.NewMessage(id, payload)
	setMeta(out, id, PipelineBiway, "biway", r.Now())
	if corr != "" {
		out.Metadata.Set(MetaCorrelationID, corr)
	}
	out.Metadata.Set(MetaOrderingKey, rep.MessageID)
	if err := r.Pub.PublishContext(ctx, TopicBiwayEvents, out); err != nil {
		return fmt.Errorf("publish %s: %w", EventMessageStatusChanged, err)
	}
	cur.State, cur.Reason, cur.At = rep.Etat, rep.Raison, rep.Date
	if rep.Reference != "" {
		cur.Reference = rep.Reference
	}
	nb, err := json.Marshal(cur)
	if err != nil {
		return err
	}
	if err := r.Store.PutState(ctx, nsBiway, key, nb); err != nil {
		return fmt.Errorf("store message state: %w", err)
	}
	if r.Metrics != nil {
		r.Metrics.messages.WithLabelValues(string(rep.Etat), channelLabel(cur.Channel)).Inc()
	}
	return nil
}

// BroadcastReferencePrefix starts the references `passerelle biway broadcast` gives its
// recipients: their reports are not of unknown messages.
const BroadcastReferencePrefix = "bc_"

func channelLabel(c string) string {
	switch c {
	case biway.ChannelSMS, biway.ChannelRCS, biway.ChannelAuto, "broadcast":
		return c
	}
	return "unknown"
}

// entity records an entity's state unless a later one is stored: entity states have no order,
// so the callbacks' dates decide.
func (r *BiwayReports) entity(ctx context.Context, e biway.EntityState) error {
	key := "entity/" + e.Type + "/" + e.ID
	b, ok, err := r.Store.GetState(ctx, nsBiway, key)
	if err != nil {
		return fmt.Errorf("entity state: %w", err)
	}
	if ok {
		var cur EntityRecord
		if json.Unmarshal(b, &cur) == nil && cur.At.After(e.Date) {
			return nil
		}
	}
	nb, err := json.Marshal(EntityRecord{Type: e.Type, ID: e.ID, Etat: e.Etat, At: e.Date})
	if err != nil {
		return err
	}
	if err := r.Store.PutState(ctx, nsBiway, key, nb); err != nil {
		return fmt.Errorf("store entity state: %w", err)
	}
	return nil
}

// PruneBiway deletes the records no decision needs any more: daily counts of days before
// yesterday, and lead, message and submission records older than keep (a lead that old is past
// the stage's age limit, and a message's reports have long arrived). Entities and the callback
// registration stay. It returns how many records it deleted.
func PruneBiway(ctx context.Context, st BiwayStore, now time.Time, keep time.Duration, window SendWindow) (int, error) {
	yesterday := window.LocalDay(now.AddDate(0, 0, -1))
	before := now.Add(-keep)
	return pruneState(ctx, st, nsBiway, func(k string, v []byte) bool {
		prefix, rest, _ := strings.Cut(k, "/")
		var rec struct {
			At time.Time `json:"at"`
		}
		switch prefix {
		case "day":
			day, _, _ := strings.Cut(rest, "/")
			return day < yesterday
		case "lead", "msg", "ref":
			return json.Unmarshal(v, &rec) == nil && rec.At.Before(before)
		}
		return false
	})
}

// BiwayCRMEvent turns a biway.events payload into the CRM's message.status_changed event.
func BiwayCRMEvent(payload []byte) (Event, error) {
	var ev MessageStatusChanged
	if err := json.Unmarshal(payload, &ev); err != nil {
		return Event{}, fmt.Errorf("decode biway event: %w", err)
	}
	return Event{Type: EventMessageStatusChanged, ID: "biway_" + digest(ev.MessageID+"\x00"+string(ev.State)), Source: "biway",
		OccurredAt: ev.At, Data: payload}, nil
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:13])
}

// BiwayStatus is what `passerelle biway status` shows.
type BiwayStatus struct {
	Callback *BiwayCallbackRegistration `json:"callback,omitempty"`
	// SecretSource says which secret reports are verified with (set by the module).
	SecretSource string         `json:"secret_source,omitempty"`
	Entities     []EntityRecord `json:"entities"`
	Messages     map[string]int `json:"messages"` // by state
	Unknown      int            `json:"unknown_messages"`
	Acks         map[string]int `json:"acks"` // leads by outcome
	Scheduled    int            `json:"scheduled"`
}

// BiwayCallbackRegistration is the registered callback (the secret is kept, never shown).
type BiwayCallbackRegistration struct {
	ID           string    `json:"id"`
	URL          string    `json:"url"`
	Secret       string    `json:"secret,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
}

// ReadBiwayStatus reads the pipeline's records.
func ReadBiwayStatus(ctx context.Context, st BiwayStore) (BiwayStatus, error) {
	all, err := st.ListState(ctx, nsBiway)
	if err != nil {
		return BiwayStatus{}, fmt.Errorf("read biway records: %w", err)
	}
	out := BiwayStatus{Entities: []EntityRecord{}, Messages: map[string]int{}, Acks: map[string]int{}}
	for k, v := range all {
		prefix, _, _ := strings.Cut(k, "/")
		switch prefix {
		case "entity":
			var e EntityRecord
			if json.Unmarshal(v, &e) == nil {
				out.Entities = append(out.Entities, e)
			}
		case "msg":
			var m MessageState
			if json.Unmarshal(v, &m) == nil {
				out.Messages[string(m.State)]++
				if m.Unknown {
					out.Unknown++
				}
			}
		case "lead":
			var l LeadAck
			if json.Unmarshal(v, &l) == nil {
				out.Acks[l.Outcome]++
			}
		case "callback":
			var c BiwayCallbackRegistration
			if json.Unmarshal(v, &c) == nil {
				c.Secret = ""
				out.Callback = &c
			}
		}
	}
	sort.Slice(out.Entities, func(i, j int) bool {
		a, b := out.Entities[i], out.Entities[j]
		return a.Type < b.Type || a.Type == b.Type && a.ID < b.ID
	})
	sched, err := st.ListState(ctx, nsBiwayScheduled)
	if err != nil {
		return out, fmt.Errorf("read scheduled biway acks: %w", err)
	}
	out.Scheduled = len(sched)
	return out, nil
}

// BiwayCallback returns the registration stored by register-callback, if any.
func BiwayCallback(ctx context.Context, st BiwayStore) (BiwayCallbackRegistration, bool, error) {
	b, ok, err := st.GetState(ctx, nsBiway, "callback")
	if err != nil || !ok {
		return BiwayCallbackRegistration{}, false, err
	}
	var c BiwayCallbackRegistration
	if err := json.Unmarshal(b, &c); err != nil {
		return c, false, fmt.Errorf("stored biway callback: %w", err)
	}
	return c, true, nil
}

// SaveBiwayCallback stores a registration, its secret included: the webhook verifies with it.
func SaveBiwayCallback(ctx context.Context, st BiwayStore, c BiwayCallbackRegistration) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return st.PutState(ctx, nsBiway, "callback", b)
}

// BiwayConfig is the Bi-way pipeline's collaborators: Ack nil when lead acknowledgements are off.
type BiwayConfig struct {
	Ack     *BiwayAck
	Reports *BiwayReports
	CRM     *CRMSink // nil when no CRM endpoint is configured: events wait in their topic
	Dead    DeadLetterStore
}

// AddBiway adds the Bi-way handlers: ack (a consumer of leads.normalized of its own), reports,
// crm and deadletter.
func AddBiway(ctx context.Context, w Wiring, cfg BiwayConfig) error {
	if cfg.Ack != nil {
		if err := w.handler(ctx, "biway.ack", TopicLeadsNormalized, "", cfg.Ack.Handle); err != nil {
			return err
		}
	}
	if cfg.Reports != nil {
		// One callback at a time: a message's state is read, then written.
		if err := w.handlerWith(ctx, "biway.reports", TopicBiwayCallbacks, "", cfg.Reports.Handle, SubscribeOptions{Ordered: true}); err != nil {
			return err
		}
	}
	// A message's changes reach the CRM in the order they were applied.
	if err := w.crmStage(ctx, PipelineBiway, TopicBiwayEvents, cfg.CRM, BiwayCRMEvent, true); err != nil {
		return err
	}
	return w.deadLetters(ctx, PipelineBiway, cfg.Dead)
}
