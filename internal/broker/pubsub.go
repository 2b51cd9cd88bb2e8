package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
)

// Publisher publishes Watermill messages to JetStream asynchronously and waits for every ack, so
// concurrent callers share the broker's round trips (many publishes in flight on one connection)
// while each caller still returns only once its own messages are stored. The topic and message UUID
// make the Nats-Msg-Id, so a re-publish of the same event to the same topic inside the duplicate
// window is dropped.
type Publisher struct {
	b  *Broker
	nc *nats.Conn
	js nats.JetStreamContext
}

// NewPublisher opens a publisher on a connection of its own.
func (b *Broker) NewPublisher() (*Publisher, error) {
	nc, err := b.connect("publisher")
	if err != nil {
		return nil, err
	}
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("broker: publisher jetstream: %w", err)
	}
	return &Publisher{b: b, nc: nc, js: js}, nil
}

// ErrPublishTimeout means the broker did not acknowledge in time; the message may or may not be stored.
var ErrPublishTimeout = errors.New("broker: publish not acknowledged in time")

// Publish implements message.Publisher. It returns once every message is acknowledged.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	ctx := context.Background()
	if len(msgs) > 0 && msgs[0].Context() != nil {
		ctx = msgs[0].Context()
	}
	return p.PublishContext(ctx, topic, msgs...)
}

// PublishContext is Publish bounded by ctx as well as the publish timeout.
func (p *Publisher) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	start := time.Now()
	subject := p.b.Subject(topic)
	futures := make([]nats.PubAckFuture, 0, len(msgs))
	for _, m := range msgs {
		nm := nats.NewMsg(subject)
		nm.Header.Set(wmnats.WatermillUUIDHdr, m.UUID)
		for k, v := range m.Metadata {
			nm.Header.Set(k, v)
		}
		nm.Data = m.Payload
		// The stream holds every topic and dedupes ids across all of them: scope the id to the
		// topic, or a stage's output (which keeps its input's event id) would be dropped.
		f, err := p.js.PublishMsgAsync(nm, nats.MsgId(topic+"/"+m.UUID))
		if err != nil {
			err = fmt.Errorf("broker: publish to %s: %w", topic, err)
			p.b.metrics.observePublish(topic, start, err)
			return err
		}
		futures = append(futures, f)
	}
	timer := time.NewTimer(p.b.cfg.PublishTimeout)
	defer timer.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			err = fmt.Errorf("broker: publish to %s: %w", topic, err)
			p.b.metrics.observePublish(topic, start, err)
			return err
		case <-timer.C:
			p.b.metrics.observePublish(topic, start, ErrPublishTimeout)
			return fmt.Errorf("%w (topic %s)", ErrPublishTimeout, topic)
		case <-ctx.Done():
			p.b.metrics.observePublish(topic, start, ctx.Err())
			return fmt.Errorf("broker: publish to %s: %w", topic, ctx.Err())
		}
	}
	p.b.metrics.observePublish(topic, start, nil)
	return nil
}

// Close waits for outstanding acks (briefly) and closes the connection.
func (p *Publisher) Close() error {
	select {
	case <-p.js.PublishAsyncComplete():
	case <-time.After(5 * time.Second):
	}
	p.nc.Close()
	return nil
}

// ConsumerConfig tunes one durable consumer.
type ConsumerConfig struct {
	// AckWait is how long the server waits for an ack before redelivering. It must exceed the
	// handler's longest run (its timeout), or a slow message is delivered twice.
	AckWait time.Duration
	// MaxAckPending bounds messages handed out and not yet acked: the client buffers that many
	// while their AckWait runs, so a large value with a slow handler means redeliveries.
	MaxAckPending int
	// NakDelay is the wait before a failed message is redelivered, by delivery count.
	NakDelay wmnats.Delay
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.AckWait <= 0 {
		c.AckWait = 2 * time.Minute
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 64
	}
	if c.NakDelay == nil {
		c.NakDelay = ExpDelay{Min: time.Second, Max: 5 * time.Minute}
	}
	return c
}

// NewSubscriber creates (or updates) the durable consumer named durable on topic and returns a
// Watermill subscriber bound to it, on a connection of its own. The consumer outlives the
// subscriber: a restart resumes where the last ack left off.
func (b *Broker) NewSubscriber(ctx context.Context, durable, topic string, cc ConsumerConfig, logger watermill.LoggerAdapter) (message.Subscriber, error) {
	cc = cc.withDefaults()
	subject := b.Subject(topic)
	cfg := &nats.ConsumerConfig{
		Durable:        durable,
		Description:    "passerelle " + topic,
		DeliverSubject: "_deliver." + b.cfg.Prefix + "." + durable, // outside the stream, or it loops
		DeliverGroup:   durable,
		FilterSubject:  subject,
		DeliverPolicy:  nats.DeliverAllPolicy,
		AckPolicy:      nats.AckExplicitPolicy,
		AckWait:        cc.AckWait,
		MaxDeliver:     -1, // we dead-letter ourselves; the server must never drop a message
		MaxAckPending:  cc.MaxAckPending,
	}
	if _, err := b.js.ConsumerInfo(b.cfg.Stream, durable, nats.Context(ctx)); errors.Is(err, nats.ErrConsumerNotFound) {
		if _, err := b.js.AddConsumer(b.cfg.Stream, cfg, nats.Context(ctx)); err != nil {
			return nil, fmt.Errorf("broker: create consumer %s: %w", durable, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("broker: consumer %s: %w", durable, err)
	} else if _, err := b.js.UpdateConsumer(b.cfg.Stream, cfg, nats.Context(ctx)); err != nil {
		return nil, fmt.Errorf("broker: update consumer %s: %w", durable, err)
	}

	nc, err := b.connect("subscriber-" + durable)
	if err != nil {
		return nil, err
	}
	sub, err := wmnats.NewSubscriberWithNatsConn(nc, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      &wmnats.NATSMarshaler{},
		SubscribersCount: 1,
		AckWaitTimeout:   cc.AckWait,
		CloseTimeout:     30 * time.Second,
		SubscribeTimeout: 30 * time.Second,
		SubjectCalculator: func(_, topic string) *wmnats.SubjectDetail {
			return &wmnats.SubjectDetail{Primary: b.Subject(topic), QueueGroup: durable}
		},
		NakDelay:         cc.NakDelay,
		QueueGroupPrefix: durable,
		JetStream: wmnats.JetStreamConfig{
			// Bind to the consumer made above (never let nats.go create one it would delete on
			// close), and ack by hand: auto-ack would ack messages Watermill gave up on.
			SubscribeOptions:  []nats.SubOpt{nats.Bind(b.cfg.Stream, durable), nats.ManualAck()},
			AckAsync:          true,
			DurablePrefix:     durable,
			DurableCalculator: func(prefix, _ string) string { return prefix },
		},
	}, logger)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("broker: subscriber %s: %w", durable, err)
	}
	return sub, nil
}

// ExpDelay doubles the redelivery wait from Min up to Max. It never terminates a message:
// giving up is the dead-letter middleware's decision, taken after the message is stored there.
type ExpDelay struct{ Min, Max time.Duration }

// WaitTime implements the watermill-nats Delay.
func (d ExpDelay) WaitTime(delivered uint64) time.Duration {
	w := d.Min
	for i := uint64(1); i < delivered && w < d.Max; i++ {
		w *= 2
	}
	return min(w, d.Max)
}
