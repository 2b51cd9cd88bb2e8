package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/store"
)

// Event is what the CRM sink delivers, whatever the pipeline.
type Event struct {
	Type       string
	ID         string
	Source     string
	OccurredAt time.Time
	Data       json.RawMessage
	// HubSpot holds contact properties for the hubspot format; nil when the event has no such
	// shape (it is then sent as the generic envelope).
	HubSpot map[string]string
}

// CRMSender posts a signed body to one endpoint.
type CRMSender interface {
	Send(ctx context.Context, endpoint, msgID string, body []byte) (crm.Result, error)
}

// DeliveryStore is the delivery log and the endpoints disabled by a 410.
type DeliveryStore interface {
	RecordAttempts(ctx context.Context, attempts []store.Attempt) error
	DeliveriesTo(ctx context.Context, endpoint string, eventIDs []string) (map[string]store.Delivery, error)
	DisableEndpoint(ctx context.Context, endpoint, reason string, at time.Time) error
	EndpointDisabled(ctx context.Context, endpoint string) (reason string, disabled bool, err error)
}

// CRMSink delivers events to every configured endpoint. Each endpoint's delivery is recorded, so a
// redelivered message skips the endpoints that already have it. A retryable failure nacks the
// message (the broker redelivers it later); a permanent one, a 410, or a budget spent
// (MaxAttempts HTTP attempts on one endpoint, or MaxAge since the event was received) sends it
// to the dead-letter topic.
type CRMSink struct {
	Sender CRMSender
	// Engine sends every request, under each endpoint's limits (in flight, rate, Retry-After,
	// AIMD on 429s).
	Engine *delivery.Engine
	// Subscribers is how many messages of an unordered topic (leads) the sink handles at once.
	Subscribers int
	Endpoints   []string
	Format      crm.Format
	Store       DeliveryStore
	MaxAttempts int
	MaxAge      time.Duration
	ToEvent     func(payload []byte) (Event, error)
	// Requeue publishes the events of a batch that must be tried again on their own.
	Requeue message.Publisher
	// OnDelivered runs with the messages whose event every endpoint has, once per handled message
	// (the leads pipeline commits their dedupe keys).
	OnDelivered func(ctx context.Context, msgs []*message.Message, now time.Time) error
	Disabled    *prometheus.CounterVec
	Log         *slog.Logger
	Now         func() time.Time
	// Health, when set, hears whether the delivery log could be written: while it cannot, the
	// daemon takes no work (diskguard).
	Health StoreHealth
	// Sent remembers what was delivered in this process, so a delivery whose log could not be
	// written is not sent again when its message comes back; nil: the log alone decides.
	Sent *SentCache
}

// StoreHealth hears of the store's writes.
type StoreHealth interface {
	StoreFailed(error)
	StoreOK()
}

// SentCache is a bounded memory of deliveries made, by event and endpoint. It only bridges a
// failed write of the delivery log until the log is written again; it is emptied when full.
type SentCache struct {
	mu   sync.Mutex
	max  int
	seen map[string]struct{}
}

// NewSentCache remembers up to max deliveries.
func NewSentCache(max int) *SentCache {
	return &SentCache{max: max, seen: make(map[string]struct{}, min(max, 1024))}
}

func (c *SentCache) has(eventID, endpoint string) bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.seen[eventID+"\x00"+endpoint]
	return ok
}

func (c *SentCache) add(eventID, endpoint string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.seen) >= c.max {
		clear(c.seen)
	}
	c.seen[eventID+"\x00"+endpoint] = struct{}{}
}

// EndpointID names an endpoint in the store and logs: its host and a digest of the full URL, which
// may hold a secret.
func EndpointID(rawURL string) string {
	sum := sha256.Sum256([]byte(rawURL))
	host := "invalid"
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		host = u.Host
	}
	return host + "#" + hex.EncodeToString(sum[:4])
}

// Handle delivers the event msg carries, or each event of a batch in turn. A lone event that
// fails is nacked (retried later) or, for good, dead-lettered by the middleware. Within a batch, an
// event that fails for good is dead-lettered alone, and the events that must be tried again (a
// retryable failure, or not tried because two failures in a row mean the endpoint is down) are
// published again one by one to the batch's topic, where each retries on its own schedule; then
// the batch is acked. The delivery log is read once per endpoint and written once per call.
func (s *CRMSink) Handle(msg *message.Message) ([]*message.Message, error) {
	if len(s.Endpoints) == 0 {
		return nil, Permanent(errNoEndpoints)
	}
	if !broker.IsBatch(msg) {
		r := crmRun{CRMSink: s, ctx: msg.Context()}
		err := r.deliverAll([]*message.Message{msg}, func(_ *message.Message, err error) error { return err })
		if ferr := r.record(); ferr != nil {
			return nil, errors.Join(err, ferr)
		}
		if err == nil && len(r.later) > 0 {
			err = r.retry
		}
		return nil, err
	}
	records, err := broker.Unbatch(msg)
	if err != nil {
		return nil, Permanent(err)
	}
	r := crmRun{CRMSink: s, ctx: msg.Context()}
	err = r.deliverAll(records, func(rec *message.Message, err error) error { return DeadLetterRecord(msg, rec, err) })
	if ferr := r.record(); ferr != nil {
		return nil, errors.Join(err, ferr)
	}
	if err != nil {
		return nil, err // the redelivery skips what the log shows delivered
	}
	if len(r.later) > 0 {
		for _, m := range r.later {
			// Bounded by the publisher's own timeout, not the handler's, which may be what ran out.
			m.SetContext(context.WithoutCancel(r.ctx))
		}
		if err := s.Requeue.Publish(message.SubscribeTopicFromCtx(msg.Context()), r.later...); err != nil {
			return nil, fmt.Errorf("requeue %d undelivered events: %w (first failure: %w)", len(r.later), err, r.retry)
		}
		markFailed(msg, len(r.later))
	}
	return nil, nil
}

// crmRun is one Handle call: the delivery log as read at its start and kept current, and what to
// write at its end.
type crmRun struct {
	*CRMSink
	ctx       context.Context
	mu        sync.Mutex                           // guards what follows: an endpoint's requests run concurrently
	prev      map[string]map[string]store.Delivery // by endpoint id, then event id
	disabled  map[string]string                    // endpoint id → reason
	attempts  []store.Attempt
	delivered []*message.Message
	later     []*message.Message // to be tried again
	retry     error              // the first retryable failure
	down      map[string]int     // endpoint id → failures since its last success in this run
}

// deliverAll delivers records to every endpoint, each endpoint's requests concurrently through the
// engine. An error is one of the infrastructure (the delivery log, or permanent, which disposes of
// an event that failed for good): nothing may be acked.
func (r *crmRun) deliverAll(records []*message.Message, permanent func(*message.Message, error) error) error {
	events := make([]Event, len(records))
	bodies := make([][]byte, len(records))
	ids := make([]string, 0, len(records))
	for i, rec := range records {
		ev, err := r.ToEvent(rec.Payload)
		if err == nil {
			bodies[i], err = r.body(ev)
		}
		if err != nil {
			if err := permanent(rec, Permanent(err)); err != nil {
				return err
			}
			records[i] = nil
			continue
		}
		events[i] = ev
		ids = append(ids, ev.ID)
	}
	r.prev = make(map[string]map[string]store.Delivery, len(r.Endpoints))
	r.disabled = map[string]string{}
	r.down = map[string]int{}
	for _, u := range r.Endpoints {
		id := EndpointID(u)
		prev, err := r.Store.DeliveriesTo(r.ctx, id, ids)
		if err != nil {
			return fmt.Errorf("delivery log: %w", err)
		}
		r.prev[id] = prev
		if reason, off, err := r.Store.EndpointDisabled(r.ctx, id); err != nil {
			return fmt.Errorf("endpoint state: %w", err)
		} else if off {
			r.disabled[id] = reason
		}
	}
	perEndpoint := make([][]error, len(r.Endpoints))
	var wg sync.WaitGroup
	for e, u := range r.Endpoints {
		id := EndpointID(u)
		jobs := make([]delivery.Job, 0, len(records))
		index := make([]int, 0, len(records))
		for i, rec := range records {
			if rec == nil {
				continue
			}
			// Events of one key (MetaOrderingKey) reach the endpoint in the order of the batch.
			key := rec.Metadata.Get(MetaOrderingKey)
			base, _ := strconv.Atoi(rec.Metadata.Get(MetaAttemptsBase))
			ev, body := events[i], bodies[i]
			jobs = append(jobs, delivery.Job{Key: key, Send: func(ctx context.Context) error {
				return r.deliver(ctx, ev, u, id, body, base)
			}})
			index = append(index, i)
		}
		errs := make([]error, len(records))
		perEndpoint[e] = errs
		wg.Go(func() {
			for j, err := range r.Engine.Run(r.ctx, id, jobs) {
				if err != nil {
					errs[index[j]] = fmt.Errorf("%s: %w", id, err)
				}
			}
		})
	}
	wg.Wait()
	for i, rec := range records {
		if rec == nil {
			continue
		}
		var errs []error
		failedForGood := false
		for e := range r.Endpoints {
			if err := perEndpoint[e][i]; err != nil {
				errs = append(errs, err)
				failedForGood = failedForGood || IsPermanent(err)
			}
		}
		err := errors.Join(errs...)
		switch {
		case err == nil:
			r.delivered = append(r.delivered, rec)
		case failedForGood:
			if err := permanent(rec, Permanent(err)); err != nil {
				return err
			}
		default:
			if r.retry == nil {
				r.retry = err
			}
			r.later = append(r.later, rec)
		}
	}
	return nil
}

// errEndpointDown marks an event not sent in this run: its endpoint failed twice since its last
// success, and trying the rest would only spend their attempts. It is retried later.
var errEndpointDown = errors.New("not sent: the endpoint failed twice in this run")

// deliver sends one event to one endpoint, unless the log shows it there already.
func (r *crmRun) deliver(ctx context.Context, ev Event, rawURL, id string, body []byte, base int) error {
	r.mu.Lock()
	prev := r.prev[id][ev.ID]
	reason, off := r.disabled[id]
	down := r.down[id] >= 2
	r.mu.Unlock()
	switch {
	case prev.Delivered:
		return nil
	case r.Sent.has(ev.ID, id):
		// Sent in this process, but its log was not written: log it now, send nothing.
		r.mu.Lock()
		defer r.mu.Unlock()
		r.attempts = append(r.attempts, store.Attempt{EventID: ev.ID, Endpoint: id, Status: http.StatusOK, Delivered: true, At: r.Now()})
		prev.Delivered = true
		r.prev[id][ev.ID] = prev
		return nil
	case off:
		return r.hold(ev, id, reason)
	case down:
		return errEndpointDown
	}
	res, sendErr := r.Sender.Send(ctx, rawURL, ev.ID, body)
	now := r.Now()
	a := store.Attempt{EventID: ev.ID, Endpoint: id, Attempts: res.Attempts, Status: res.Status, Delivered: sendErr == nil, At: now}
	if sendErr != nil {
		a.LastError = sendErr.Error()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts = append(r.attempts, a)
	// Kept current, so the same event twice in a batch is sent once and budgets add up.
	prev = r.prev[id][ev.ID]
	prev.Attempts += res.Attempts
	prev.Delivered = prev.Delivered || sendErr == nil
	r.prev[id][ev.ID] = prev
	if sendErr == nil {
		r.down[id] = 0
		r.Sent.add(ev.ID, id)
		return nil
	}
	r.down[id]++
	spent := prev.Attempts - base
	switch {
	case httpclient.IsGone(sendErr):
		if _, already := r.disabled[id]; !already {
			if err := r.Store.DisableEndpoint(r.ctx, id, "410 Gone", now); err != nil {
				return fmt.Errorf("disable endpoint: %w", err)
			}
			r.disabled[id] = "410 Gone"
			r.Disabled.WithLabelValues("crm").Inc()
			r.Log.Warn("CRM endpoint answered 410 Gone: disabled, its events held until an operator re-enables it", "endpoint", id, "event_id", ev.ID)
		}
		return r.holdLocked(ev, id, "410 Gone")
	case httpclient.IsPermanent(sendErr):
		return Permanent(sendErr)
	case spent >= r.MaxAttempts:
		return Permanent(fmt.Errorf("gave up after %d attempts: %w", spent, sendErr))
	case r.MaxAge > 0 && now.Sub(ev.OccurredAt) > r.MaxAge:
		return Permanent(fmt.Errorf("gave up after %s: %w", r.MaxAge, sendErr))
	}
	r.Log.Info("CRM delivery failed, will retry", "endpoint", id, "event_id", ev.ID, "attempts", spent, "error", sendErr)
	return sendErr
}

// recordTimeout bounds the write of a run's delivery log.
const recordTimeout = 30 * time.Second

// errHeld marks an event held for a disabled endpoint: it waits in the broker, redelivered on the
// stage's backoff (at most PASSERELLE_REDELIVERY_MAX apart), until the endpoint is enabled again
// or the event is older than MaxAge.
var errHeld = errors.New("held: the endpoint is disabled")

// hold keeps an event for a disabled endpoint instead of dead-lettering it, and records it as held
// in the delivery log (passerelle endpoints list counts them).
func (r *crmRun) hold(ev Event, id, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.holdLocked(ev, id, reason)
}

func (r *crmRun) holdLocked(ev Event, id, reason string) error {
	now := r.Now()
	if r.MaxAge > 0 && now.Sub(ev.OccurredAt) > r.MaxAge {
		return Permanent(fmt.Errorf("gave up after %s: endpoint %s disabled (%s); re-enable it with `passerelle endpoints enable %s`", r.MaxAge, id, reason, id))
	}
	r.attempts = append(r.attempts, store.Attempt{EventID: ev.ID, Endpoint: id, LastError: store.HeldPrefix + "endpoint disabled (" + reason + ")", At: now})
	return fmt.Errorf("%w (%s): delivered once `passerelle endpoints enable %s` runs", errHeld, reason, id)
}

// record writes the run's attempts to the delivery log, then hands over what was delivered.
func (r *crmRun) record() error {
	// Not the handler's context: what was sent must be logged even when its time ran out. Bounded
	// all the same, so a hung store cannot outlive the handler and its AckWait for long.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), recordTimeout)
	defer cancel()
	if err := r.Store.RecordAttempts(ctx, r.attempts); err != nil {
		if r.Health != nil {
			r.Health.StoreFailed(err)
		}
		return fmt.Errorf("delivery log: %w", err)
	}
	if r.Health != nil && len(r.attempts) > 0 {
		r.Health.StoreOK()
	}
	if r.OnDelivered == nil || len(r.delivered) == 0 {
		return nil
	}
	return r.OnDelivered(ctx, r.delivered, r.Now())
}

func (s *CRMSink) body(ev Event) ([]byte, error) {
	if s.Format == crm.FormatHubSpot && ev.HubSpot != nil {
		return json.Marshal(crm.HubSpotContact{Properties: ev.HubSpot})
	}
	return json.Marshal(crm.Envelope{Type: ev.Type, ID: ev.ID, OccurredAt: ev.OccurredAt, Source: ev.Source, Data: ev.Data})
}
