package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/internal/broker"
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
	RecordAttempt(ctx context.Context, eventID, endpoint string, attempts int, status int, lastErr string, delivered bool, at time.Time) error
	Delivery(ctx context.Context, eventID, endpoint string) (store.Delivery, bool, error)
	DisableEndpoint(ctx context.Context, endpoint, reason string, at time.Time) error
	EndpointDisabled(ctx context.Context, endpoint string) (reason string, disabled bool, err error)
}

// CRMSink delivers events to every configured endpoint. Each endpoint's delivery is recorded, so a
// redelivered message skips the endpoints that already have it. A retryable failure nacks the
// message (the broker redelivers it later); a permanent one, a 410, or a budget spent
// (MaxAttempts HTTP attempts on one endpoint, or MaxAge since the event was received) sends it
// to the dead-letter topic.
type CRMSink struct {
	Sender      CRMSender
	Endpoints   []string
	Format      crm.Format
	Store       DeliveryStore
	MaxAttempts int
	MaxAge      time.Duration
	ToEvent     func(payload []byte) (Event, error)
	// OnDelivered runs once every endpoint has the event (the leads pipeline commits its dedupe key).
	OnDelivered func(ctx context.Context, msg *message.Message, now time.Time) error
	Disabled    *prometheus.CounterVec
	Log         *slog.Logger
	Now         func() time.Time
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

// Handle delivers the event msg carries, or each event of a batch in turn. Within a batch, an
// event that fails for good goes to the dead-letter topic alone and the others go on; a retryable
// failure stops the batch and nacks it, and its redelivery skips what the delivery log shows as
// delivered.
func (s *CRMSink) Handle(msg *message.Message) ([]*message.Message, error) {
	if len(s.Endpoints) == 0 {
		return nil, Permanent(errNoEndpoints)
	}
	if !broker.IsBatch(msg) {
		return nil, s.handleEvent(msg)
	}
	events, err := broker.Unbatch(msg)
	if err != nil {
		return nil, Permanent(err)
	}
	for _, ev := range events {
		err := s.handleEvent(ev)
		if err == nil {
			continue
		}
		if !IsPermanent(err) {
			return nil, err
		}
		if derr := DeadLetterRecord(msg, ev, err); derr != nil {
			return nil, errors.Join(err, derr)
		}
	}
	return nil, nil
}

func (s *CRMSink) handleEvent(msg *message.Message) error {
	ev, err := s.ToEvent(msg.Payload)
	if err != nil {
		return Permanent(err)
	}
	body, err := s.body(ev)
	if err != nil {
		return Permanent(err)
	}
	ctx := msg.Context()
	base, _ := strconv.Atoi(msg.Metadata.Get(MetaAttemptsBase))
	var errs []error
	permanent := false
	for _, u := range s.Endpoints {
		id := EndpointID(u)
		err := s.deliver(ctx, ev, u, id, body, base)
		if err == nil {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %w", id, err))
		permanent = permanent || IsPermanent(err)
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		if permanent {
			return Permanent(err)
		}
		return err
	}
	if s.OnDelivered != nil {
		return s.OnDelivered(ctx, msg, s.Now())
	}
	return nil
}

func (s *CRMSink) deliver(ctx context.Context, ev Event, rawURL, id string, body []byte, base int) error {
	prev, _, err := s.Store.Delivery(ctx, ev.ID, id)
	if err != nil {
		return fmt.Errorf("delivery log: %w", err)
	}
	if prev.Delivered {
		return nil
	}
	if reason, off, err := s.Store.EndpointDisabled(ctx, id); err != nil {
		return fmt.Errorf("endpoint state: %w", err)
	} else if off {
		return Permanent(fmt.Errorf("endpoint disabled (%s): re-enable it with `passerelle endpoints enable %s`", reason, id))
	}
	res, sendErr := s.Sender.Send(ctx, rawURL, ev.ID, body)
	now := s.Now()
	lastErr := ""
	if sendErr != nil {
		lastErr = sendErr.Error()
	}
	if err := s.Store.RecordAttempt(ctx, ev.ID, id, res.Attempts, res.Status, lastErr, sendErr == nil, now); err != nil {
		return fmt.Errorf("delivery log: %w", err)
	}
	if sendErr == nil {
		return nil
	}
	spent := prev.Attempts + res.Attempts - base
	switch {
	case crm.IsGone(sendErr):
		if err := s.Store.DisableEndpoint(ctx, id, "410 Gone", now); err != nil {
			return fmt.Errorf("disable endpoint: %w", err)
		}
		s.Disabled.WithLabelValues("crm").Inc()
		s.Log.Warn("CRM endpoint answered 410 Gone: disabled until an operator re-enables it", "endpoint", id, "event_id", ev.ID)
		return Permanent(sendErr)
	case crm.IsPermanent(sendErr):
		return Permanent(sendErr)
	case spent >= s.MaxAttempts:
		return Permanent(fmt.Errorf("gave up after %d attempts: %w", spent, sendErr))
	case s.MaxAge > 0 && now.Sub(ev.OccurredAt) > s.MaxAge:
		return Permanent(fmt.Errorf("gave up after %s: %w", s.MaxAge, sendErr))
	}
	s.Log.Info("CRM delivery failed, will retry", "endpoint", id, "event_id", ev.ID, "attempts", spent, "error", sendErr)
	return sendErr
}

func (s *CRMSink) body(ev Event) ([]byte, error) {
	if s.Format == crm.FormatHubSpot && ev.HubSpot != nil {
		return json.Marshal(crm.HubSpotContact{Properties: ev.HubSpot})
	}
	return json.Marshal(crm.Envelope{Type: ev.Type, ID: ev.ID, OccurredAt: ev.OccurredAt, Source: ev.Source, Data: ev.Data})
}
