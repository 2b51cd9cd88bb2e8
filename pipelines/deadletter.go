package pipelines

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/passerelle/passerelle/internal/store"
)

// DeadLetterStore indexes dead letters so operators can list and re-drive them.
type DeadLetterStore interface {
	AddDeadLetter(ctx context.Context, d store.DeadLetter) (int64, error)
	DeadLetters(ctx context.Context, pipeline string, pending bool) ([]store.DeadLetter, error)
	DeadLetter(ctx context.Context, id int64) (store.DeadLetter, bool, error)
	MarkRetried(ctx context.Context, id int64, at time.Time) error
}

// DeliveryCounter reads the attempts already spent, so a retried dead letter gets a fresh budget.
type DeliveryCounter interface {
	Deliveries(ctx context.Context, eventID string) ([]store.Delivery, error)
}

// DeadLetterRecorder is the "<pipeline>.deadletter" stage: it indexes each message of the
// dead-letter topic in the store (the topic keeps the message itself).
type DeadLetterRecorder struct {
	Pipeline string
	Store    DeadLetterStore
	Now      func() time.Time
}

// Handle records one dead letter.
func (r *DeadLetterRecorder) Handle(msg *message.Message) ([]*message.Message, error) {
	md := map[string]string(copyMeta(msg.Metadata))
	_, err := r.Store.AddDeadLetter(msg.Context(), store.DeadLetter{
		Pipeline: r.Pipeline, Topic: msg.Metadata.Get(middleware.PoisonedTopicKey),
		EventID: msg.Metadata.Get(MetaEventID), Payload: msg.Payload, Metadata: md,
		Error: msg.Metadata.Get(middleware.ReasonForPoisonedKey), CreatedAt: r.Now(),
	})
	if err != nil {
		return nil, fmt.Errorf("index dead letter: %w", err)
	}
	return nil, nil
}

// DeadLetters lists and re-drives dead letters.
type DeadLetters struct {
	Store      DeadLetterStore
	Deliveries DeliveryCounter
	Pub        ContextPublisher
	Now        func() time.Time
}

// Retry publishes dead letter id back to the topic it failed on, with a fresh attempt budget.
func (d *DeadLetters) Retry(ctx context.Context, id int64) error {
	dl, ok, err := d.Store.DeadLetter(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("dead letter %d: %w", id, store.ErrNotFound)
	}
	if dl.RetriedAt != nil {
		return fmt.Errorf("dead letter %d was already retried at %s", id, dl.RetriedAt.Format(time.RFC3339))
	}
	if dl.Topic == "" {
		return fmt.Errorf("dead letter %d has no topic to return to", id)
	}
	spent := 0
	if dl.EventID != "" {
		ds, err := d.Deliveries.Deliveries(ctx, dl.EventID)
		if err != nil {
			return err
		}
		for _, x := range ds {
			spent = max(spent, x.Attempts)
		}
	}
	// A new message id: the broker would drop the original id as a duplicate if it is recent.
	// The event id, which receivers dedupe on, stays in the metadata.
	msg := message.NewMessage(fmt.Sprintf("%s-retry-%d", dl.EventID, id), dl.Payload)
	for k, v := range dl.Metadata {
		switch k {
		case middleware.ReasonForPoisonedKey, middleware.PoisonedTopicKey, middleware.PoisonedHandlerKey, middleware.PoisonedSubscriberKey:
		default:
			msg.Metadata.Set(k, v)
		}
	}
	msg.Metadata.Set(MetaAttemptsBase, strconv.Itoa(spent))
	if err := d.Pub.PublishContext(ctx, dl.Topic, msg); err != nil {
		return fmt.Errorf("re-publish dead letter %d: %w", id, err)
	}
	return d.Store.MarkRetried(ctx, id, d.Now())
}

// RetryAll re-drives every pending dead letter of pipeline ("" for all) and returns how many.
func (d *DeadLetters) RetryAll(ctx context.Context, pipeline string) (int, error) {
	dls, err := d.Store.DeadLetters(ctx, pipeline, true)
	if err != nil {
		return 0, err
	}
	for i, dl := range dls {
		if err := d.Retry(ctx, dl.ID); err != nil {
			return i, err
		}
	}
	return len(dls), nil
}
