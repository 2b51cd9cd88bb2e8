package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	// Subscribers is how many messages are handled at once (default 1); above 1, MaxAckPending
	// is raised to twice as many if below.
	Subscribers int
	// StartAfter names durables of the same topic: a consumer created now starts after the
	// furthest of their ack floors, where its siblings are, instead of at the stream's first
	// message. Those that do not exist are ignored; none at all: from the start. An existing
	// consumer keeps its position.
	StartAfter []string
}

// sameConsumer is whether the settings passerelle sets already hold.
func sameConsumer(have, want nats.ConsumerConfig) bool {
	return have.Description == want.Description && have.DeliverSubject == want.DeliverSubject &&
		have.DeliverGroup == want.DeliverGroup && have.FilterSubject == want.FilterSubject &&
		have.DeliverPolicy == want.DeliverPolicy && have.AckPolicy == want.AckPolicy &&
		have.AckWait == want.AckWait && have.MaxDeliver == want.MaxDeliver && have.MaxAckPending == want.MaxAckPending
}

func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.AckWait <= 0 {
		c.AckWait = 2 * time.Minute
	}
	if c.Subscribers <= 0 {
		c.Subscribers = 1
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 64
	}
	if c.Subscribers > 1 {
		c.MaxAckPending = max(c.MaxAckPending, 2*c.Subscribers)
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
	if err := retrySettling(ctx, func(ctx context.Context) error {
		info, err := b.js.ConsumerInfo(b.cfg.Stream, durable, nats.Context(ctx))
		if errors.Is(err, nats.ErrConsumerNotFound) {
			floor, ferr := b.furthestFloor(ctx, cc.StartAfter)
			if ferr != nil {
				return ferr
			}
			if floor > 0 {
				cfg.DeliverPolicy, cfg.OptStartSeq = nats.DeliverByStartSequencePolicy, floor+1
			}
			if _, err = b.js.AddConsumer(b.cfg.Stream, cfg, nats.Context(ctx)); err == nil {
				return nil
			}
			// Another replica starting at the same time may have created it: then update it.
			var ierr error
			if info, ierr = b.js.ConsumerInfo(b.cfg.Stream, durable, nats.Context(ctx)); ierr != nil {
				return fmt.Errorf("create consumer %s: %w", durable, err)
			}
		} else if err != nil {
			return fmt.Errorf("consumer %s: %w", durable, err)
		}
		// Where a consumer starts is fixed at its creation (the server refuses to change it).
		cfg.DeliverPolicy, cfg.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
		if sameConsumer(info.Config, *cfg) {
			return nil
		}
		if _, err := b.js.UpdateConsumer(b.cfg.Stream, cfg, nats.Context(ctx)); err != nil {
			return fmt.Errorf("update consumer %s: %w", durable, err)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}

	nc, err := b.connect("subscriber-" + durable)
	if err != nil {
		return nil, err
	}
	g := &closeGate{inner: &wmnats.NATSMarshaler{}, release: make(chan struct{})}
	sub, err := wmnats.NewSubscriberWithNatsConn(nc, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      g,
		SubscribersCount: cc.Subscribers,
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
	gs := newGatedSubscriber(sub, g)
	b.mu.Lock()
	b.subs = append(b.subs, gs)
	b.mu.Unlock()
	return gs, nil
}

// furthestFloor is the highest ack floor (a stream sequence) of the durables that exist; 0 when
// none does.
func (b *Broker) furthestFloor(ctx context.Context, durables []string) (uint64, error) {
	var floor uint64
	for _, d := range durables {
		info, err := b.js.ConsumerInfo(b.cfg.Stream, d, nats.Context(ctx))
		if errors.Is(err, nats.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("consumer %s: %w", d, err)
		}
		floor = max(floor, info.AckFloor.Stream)
	}
	return floor, nil
}

// gatedSubscriber works around a race in watermill-nats v2.1.3: when its subscriber is closed, or
// the context given to Subscribe is cancelled (the router cancels it as soon as it starts closing),
// it closes its output channel while a NATS callback may still be about to send a message on it —
// a data race, and a "send on closed channel" panic that kills the process during a graceful
// shutdown whenever the callback's select polls that case first. So the library gets a context of
// our own, and before that context is cancelled or the library's Close runs, the gate holds new
// callbacks in Unmarshal and waits until those already past it have handed their message over. The
// held callbacks are released once the library is closed, and find it closed: their messages are not
// acked, and the broker redelivers them after AckWait, like any message in flight at shutdown.
type gatedSubscriber struct {
	sub    *wmnats.Subscriber
	gate   *closeGate
	ctx    context.Context // the library's, cancelled after the gate is shut
	cancel context.CancelFunc
	once   sync.Once
	err    error
}

func newGatedSubscriber(sub *wmnats.Subscriber, g *closeGate) *gatedSubscriber {
	ctx, cancel := context.WithCancel(context.Background())
	return &gatedSubscriber{sub: sub, gate: g, ctx: ctx, cancel: cancel}
}

func (s *gatedSubscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := s.sub.Subscribe(s.ctx, topic)
	if err != nil {
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			s.gate.shut(5 * time.Second)
			s.cancel()
		case <-s.ctx.Done():
		}
	}()
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for msg := range in {
			s.gate.handedOver()
			select {
			case out <- msg:
			case <-ctx.Done(): // not acked: redelivered after AckWait
			}
		}
	}()
	return out, nil
}

// Close closes the subscriber once; a concurrent or later call waits for the first one.
func (s *gatedSubscriber) Close() error {
	s.once.Do(func() {
		s.gate.shut(5 * time.Second)
		s.err = s.sub.Close()
		s.cancel()
		close(s.gate.release)
	})
	return s.err
}

// closeGate is the Unmarshaler of a gatedSubscriber: it counts the messages between Unmarshal and
// the output channel, and holds new ones once the subscriber is closing.
type closeGate struct {
	inner    wmnats.Unmarshaler
	mu       sync.Mutex
	closing  bool
	inflight int
	release  chan struct{} // closed once the library's Close returned
}

func (g *closeGate) Unmarshal(m *nats.Msg) (*message.Message, error) {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		<-g.release
		return g.inner.Unmarshal(m) // the closed subscriber drops it without sending it
	}
	g.inflight++
	g.mu.Unlock()
	msg, err := g.inner.Unmarshal(m)
	if err != nil {
		g.handedOver()
	}
	return msg, err
}

func (g *closeGate) handedOver() {
	g.mu.Lock()
	g.inflight--
	g.mu.Unlock()
}

// shut holds new callbacks and waits (at most d) for the ones past Unmarshal to reach the output.
func (g *closeGate) shut(d time.Duration) {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		n := g.inflight
		g.mu.Unlock()
		if n <= 0 {
			return
		}
	}
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
