package broker

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/broker/brokertest"
	"github.com/passerelle/passerelle/internal/testwait"
)

// TestConfigs returns the embedded and the external configuration, each isolated for one test.
func testConfigs(t *testing.T) map[string]func() Config {
	dir := t.TempDir()
	return map[string]func() Config{
		"embedded": func() Config { return Config{DataDir: dir} },
		"external": func() Config {
			id := fmt.Sprintf("t%d", rand.Int64())
			return Config{URL: brokertest.ExternalURL(t), Stream: "TEST_" + id, Prefix: "test" + id}
		},
	}
}

// openTest opens the broker cfg describes, with a publisher; the caller closes both. An external
// server's test stream is deleted at cleanup.
func openTest(t *testing.T, cfg Config) (*Broker, *Publisher) {
	t.Helper()
	b, err := Open(context.Background(), cfg, slog.Default(), nil)
	require.NoError(t, err)
	if cfg.URL != "" {
		t.Cleanup(func() { brokertest.DeleteStream(t, cfg.URL, cfg.Stream) })
	}
	pub, err := b.NewPublisher()
	if err != nil {
		_ = b.Close()
		require.NoError(t, err)
	}
	return b, pub
}

func TestPublishConsumeResume(t *testing.T) {
	for name, mk := range testConfigs(t) {
		t.Run(name, func(t *testing.T) {
			cfg := mk()
			ctx := context.Background()
			b, pub := openTest(t, cfg)
			for i := range 20 {
				require.NoError(t, pub.Publish("things.in", message.NewMessage(fmt.Sprintf("id-%d", i), []byte("x"))))
			}
			// Same id again inside the duplicate window: dropped by the broker.
			require.NoError(t, pub.Publish("things.in", message.NewMessage("id-0", []byte("x"))))

			got := consume(t, b, "things_reader", 10, true)
			require.Len(t, got, 10)
			require.NoError(t, pub.Close())
			require.NoError(t, b.Close())

			// Reopen: the durable resumes after the 10 acked messages, nothing replayed, nothing lost.
			b, err := Open(ctx, cfg, slog.Default(), nil)
			require.NoError(t, err)
			defer b.Close()
			rest := consume(t, b, "things_reader", 10, true)
			require.Len(t, rest, 10)
			seen := map[string]bool{}
			for _, id := range append(got, rest...) {
				require.False(t, seen[id], "message %s delivered twice", id)
				seen[id] = true
			}
			require.Len(t, seen, 20)
			bl, err := b.Backlog(ctx, "things_reader")
			require.NoError(t, err)
			require.Equal(t, Backlog{}, bl)
		})
	}
}

// A consumer created with StartAfter starts after the furthest ack floor of the siblings that
// exist, keeps its own position once created, and starts at the beginning when none exists.
func TestConsumerStartsAfterItsSiblings(t *testing.T) {
	ctx := context.Background()
	b, pub := openTest(t, Config{DataDir: t.TempDir()})
	defer b.Close()
	defer pub.Close()
	for i := range 20 {
		require.NoError(t, pub.Publish("things.in", message.NewMessage(fmt.Sprintf("id-%d", i), []byte("x"))))
	}
	require.Len(t, consume(t, b, "things_behind", 5, true), 5)
	require.Len(t, consume(t, b, "things_ahead", 12, true), 12)

	cc := ConsumerConfig{AckWait: time.Second, StartAfter: []string{"things_behind", "things_gone", "things_ahead"}}
	got := consumeWith(t, b, "things_new", cc, 3, true)
	require.Equal(t, []string{"id-12", "id-13", "id-14"}, got, "after the furthest sibling")
	got = consumeWith(t, b, "things_new", cc, 5, true)
	require.Equal(t, []string{"id-15", "id-16", "id-17", "id-18", "id-19"}, got, "reopened, it resumes from its own position")
	bl, err := b.Backlog(ctx, "things_new")
	require.NoError(t, err)
	require.Equal(t, Backlog{}, bl)

	sub, err := b.NewSubscriber(ctx, "things_alone", "things.in", ConsumerConfig{StartAfter: []string{"things_gone"}}, watermill.NopLogger{})
	require.NoError(t, err)
	require.NoError(t, sub.Close())
	bl, err = b.Backlog(ctx, "things_alone")
	require.NoError(t, err)
	require.Equal(t, uint64(20), bl.Messages, "no sibling: from the first message")
}

// The backlog counts what the consumer has not acked, and dates the oldest of it by the first
// message after the ack floor on the consumer's own subject.
func TestBacklog(t *testing.T) {
	for name, mk := range testConfigs(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			b, pub := openTest(t, mk())
			defer b.Close()
			defer pub.Close()
			consume(t, b, "backlog_reader", 0, true) // creates the durable
			bl, err := b.Backlog(ctx, "backlog_reader")
			require.NoError(t, err)
			require.Equal(t, Backlog{}, bl)

			start := time.Now()
			// The pauses space the stored times apart, for the comparisons with start and mid below
			// (the server's clock may not be this one); nothing is awaited.
			require.NoError(t, pub.Publish("things.in", message.NewMessage("a", []byte("x"))))
			time.Sleep(50 * time.Millisecond)
			require.NoError(t, pub.Publish("other.in", message.NewMessage("o", []byte("x"))))
			time.Sleep(50 * time.Millisecond)
			mid := time.Now()
			require.NoError(t, pub.Publish("things.in", message.NewMessage("b", []byte("x"))))

			// The consumer learns of new messages just after their publish is acked.
			require.Eventually(t, func() bool {
				bl, err = b.Backlog(ctx, "backlog_reader")
				return err == nil && bl.Messages == 2
			}, 5*time.Second, 5*time.Millisecond, "backlog %+v, %v", bl, err)
			require.False(t, bl.Oldest.Before(start.Add(-time.Second)), "oldest %s, published from %s", bl.Oldest, start)
			require.True(t, bl.Oldest.Before(mid), "oldest %s is a's, stored before %s", bl.Oldest, mid)

			require.Equal(t, []string{"a"}, consume(t, b, "backlog_reader", 1, true))
			bl, err = b.Backlog(ctx, "backlog_reader")
			require.NoError(t, err)
			require.EqualValues(t, 1, bl.Messages)
			// b, not the other topic's message stored between a and b.
			require.False(t, bl.Oldest.Before(mid), "oldest %s is b's, stored after %s", bl.Oldest, mid)

			require.Equal(t, []string{"b"}, consume(t, b, "backlog_reader", 1, true))
			bl, err = b.Backlog(ctx, "backlog_reader")
			require.NoError(t, err)
			require.Equal(t, Backlog{}, bl)

			_, err = b.Backlog(ctx, "no_such_consumer")
			require.Error(t, err)
		})
	}
}

func TestNackRedelivers(t *testing.T) {
	ctx := context.Background()
	b, err := Open(ctx, Config{DataDir: t.TempDir()}, slog.Default(), nil)
	require.NoError(t, err)
	defer b.Close()
	pub, err := b.NewPublisher()
	require.NoError(t, err)
	defer pub.Close()
	require.NoError(t, pub.Publish("things.in", message.NewMessage("only", []byte("x"))))

	sub, err := b.NewSubscriber(ctx, "nacker", "things.in", ConsumerConfig{NakDelay: ExpDelay{Min: 10 * time.Millisecond, Max: 10 * time.Millisecond}}, watermill.NopLogger{})
	require.NoError(t, err)
	defer sub.Close()
	ch, err := sub.Subscribe(ctx, "things.in")
	require.NoError(t, err)
	m := receive(t, ch)
	require.Equal(t, "only", m.UUID)
	m.Nack()
	m = receive(t, ch)
	require.Equal(t, "only", m.UUID, "a nacked message comes back")
	m.Ack()
}

func TestEmbeddedOpensNoPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:4222")
	if err == nil {
		ln.Close()
	}
	b, err := Open(context.Background(), Config{DataDir: t.TempDir()}, slog.Default(), nil)
	require.NoError(t, err)
	defer b.Close()
	require.Nil(t, b.srv.Addr(), "embedded server must not listen unless asked")
}

func TestExpDelay(t *testing.T) {
	d := ExpDelay{Min: time.Second, Max: 5 * time.Second}
	for _, tc := range []struct {
		n    uint64
		want time.Duration
	}{{0, time.Second}, {1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {4, 5 * time.Second}, {100, 5 * time.Second}} {
		require.Equal(t, tc.want, d.WaitTime(tc.n), "delivery %d", tc.n)
	}
}

func consume(t *testing.T, b *Broker, durable string, n int, ack bool) []string {
	t.Helper()
	// Messages handed to the closed subscriber but not acked come back after AckWait: keep it short.
	return consumeWith(t, b, durable, ConsumerConfig{AckWait: time.Second}, n, ack)
}

func consumeWith(t *testing.T, b *Broker, durable string, cc ConsumerConfig, n int, ack bool) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub, err := b.NewSubscriber(ctx, durable, "things.in", cc, watermill.NopLogger{})
	require.NoError(t, err)
	defer sub.Close()
	ch, err := sub.Subscribe(ctx, "things.in")
	require.NoError(t, err)
	// Nothing is published while consume runs: what is unacked now, less what is acked below, is
	// what the server counts once the acks reached it.
	before, err := b.Backlog(ctx, durable)
	require.NoError(t, err)
	var ids []string
	for range n {
		m := receive(t, ch)
		ids = append(ids, m.UUID)
		if ack {
			m.Ack()
		}
	}
	if ack && n > 0 {
		// The acks are sent asynchronously: wait for the server to count them before the subscriber closes.
		var bl Backlog
		testwait.For(t, 10*time.Second, "acks to reach the server", func() bool {
			bl, err = b.Backlog(ctx, durable)
			return err == nil && bl.Messages+uint64(n) <= before.Messages
		})
	}
	return ids
}

func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message within 10s")
		return nil
	}
}

// A stage's output keeps its input's event id: the broker must not take it for a duplicate.
func TestSameIDOnAnotherTopicIsNotADuplicate(t *testing.T) {
	ctx := context.Background()
	b, err := Open(ctx, Config{DataDir: t.TempDir()}, slog.Default(), nil)
	require.NoError(t, err)
	defer b.Close()
	pub, err := b.NewPublisher()
	require.NoError(t, err)
	defer pub.Close()
	require.NoError(t, pub.Publish("things.in", message.NewMessage("evt-1", []byte("x"))))
	require.NoError(t, pub.Publish("things.out", message.NewMessage("evt-1", []byte("y"))))
	sub, err := b.NewSubscriber(ctx, "out_reader", "things.out", ConsumerConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	defer sub.Close()
	ch, err := sub.Subscribe(ctx, "things.out")
	require.NoError(t, err)
	m := receive(t, ch)
	require.Equal(t, "evt-1", m.UUID)
	require.Equal(t, "y", string(m.Payload))
	m.Ack()
}

// Concurrent publishers share batches; every message comes out of Unbatch once, with its metadata.
// One flusher is what the daemon runs; two keep publishes in flight side by side.
func TestBatcher(t *testing.T) {
	for _, workers := range []int{1, 2} {
		t.Run(fmt.Sprintf("flushers=%d", workers), func(t *testing.T) { testBatcher(t, workers) })
	}
}

func testBatcher(t *testing.T, workers int) {
	ctx := context.Background()
	b, err := Open(ctx, Config{DataDir: t.TempDir()}, slog.Default(), nil)
	require.NoError(t, err)
	defer b.Close()
	pub, err := b.NewPublisher()
	require.NoError(t, err)
	defer pub.Close()
	bat := NewBatcher(pub, "things.in", 16, workers)

	const n = 200
	errs := make(chan error, n)
	for i := range n {
		go func() {
			m := message.NewMessage(fmt.Sprintf("id-%d", i), []byte(fmt.Sprintf(`{"n":%d}`, i)))
			m.Metadata.Set("k", fmt.Sprint(i))
			errs <- bat.Publish(ctx, m)
		}()
	}
	for range n {
		require.NoError(t, <-errs)
	}
	bat.Close()
	require.ErrorIs(t, bat.Publish(ctx, message.NewMessage("late", []byte(`{}`))), ErrBatcherClosed)

	sub, err := b.NewSubscriber(ctx, "batch_reader", "things.in", ConsumerConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	defer sub.Close()
	ch, err := sub.Subscribe(ctx, "things.in")
	require.NoError(t, err)
	seen := map[string]string{}
	batches := 0
	for len(seen) < n {
		m := receive(t, ch)
		batches++
		items, err := Unbatch(m)
		require.NoError(t, err)
		require.Equal(t, len(items), BatchSize(m))
		for _, it := range items {
			_, dup := seen[it.UUID]
			require.False(t, dup, "message %s twice", it.UUID)
			seen[it.UUID] = it.Metadata.Get("k")
			require.Equal(t, fmt.Sprintf(`{"n":%s}`, it.Metadata.Get("k")), string(it.Payload))
		}
		m.Ack()
	}
	require.Len(t, seen, n)
	require.Less(t, batches, n, "concurrent messages should share batches")
}

// A publish the broker cannot take is answered with an error in bounded time, whatever the
// caller's context: the webhook's has no deadline and relies on this to answer 503.
func TestBatcherAnswersWhenTheBrokerIsGone(t *testing.T) {
	b, err := Open(context.Background(), Config{DataDir: t.TempDir(), PublishTimeout: 500 * time.Millisecond}, slog.Default(), nil)
	require.NoError(t, err)
	pub, err := b.NewPublisher()
	require.NoError(t, err)
	defer pub.Close()
	bat := NewBatcher(pub, "things.in", 16, 1)
	defer bat.Close()
	require.NoError(t, bat.Publish(context.Background(), message.NewMessage("before", []byte(`{}`))))
	require.NoError(t, b.Close())

	errc := make(chan error, 1)
	go func() { errc <- bat.Publish(context.Background(), message.NewMessage("after", []byte(`{}`))) }()
	select {
	case err := <-errc:
		require.Error(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Publish still waiting 10 s after the broker closed")
	}
}

// Replicas: the stream (and the consumers, which inherit it) is kept by as many nodes of an
// external cluster as configured, and an existing stream is scaled to the setting on open.
func TestStreamReplicas(t *testing.T) {
	t.Parallel()
	cluster := brokertest.StartCluster(t, 3)
	ctx := context.Background()
	for _, replicas := range []int{1, 3} {
		// One stream, opened first with 1 then with 3: the second open scales it up.
		cfg := Config{URL: cluster.URL(), Stream: "REPL", Prefix: "repl", Replicas: replicas}
		b, err := Open(ctx, cfg, slog.Default(), nil)
		require.NoError(t, err, "open with %d replicas", replicas)
		sub, err := b.NewSubscriber(ctx, "repl_stage", "work", ConsumerConfig{}, watermill.NopLogger{})
		require.NoError(t, err, "consumer with %d replicas", replicas)
		require.NoError(t, sub.Close())
		var configured, current int
		require.Eventually(t, func() bool {
			configured, current, err = cluster.StreamReplicas("REPL")
			return err == nil && configured == replicas && current == replicas
		}, 20*time.Second, 50*time.Millisecond, "stream replicas %d (%d current, %v), want %d", configured, current, err, replicas)
		require.Eventually(t, func() bool {
			info, err := b.js.ConsumerInfo("REPL", "repl_stage")
			return err == nil && info.Cluster != nil && 1+len(info.Cluster.Replicas) == replicas
		}, 20*time.Second, 50*time.Millisecond, "the consumer is kept by as many nodes as the stream")
		require.NoError(t, b.Close())
	}
}

func TestReplicasValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"embedded takes one", Config{DataDir: t.TempDir(), Replicas: 3}, "need an external JetStream cluster"},
		{"JetStream's limit", Config{URL: "nats://127.0.0.1:1", Replicas: 6}, "at most 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(context.Background(), tc.cfg, slog.Default(), nil)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// Replicas of the daemon start together (a Deployment's pods do): each creates or updates the
// stream and the consumers while the others do, and none may fail for it.
func TestReplicasStartingTogether(t *testing.T) {
	t.Parallel()
	cluster := brokertest.StartCluster(t, 3)
	ctx := context.Background()
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			// A few dozen milliseconds apart, as processes are: each comes while the stream another
			// created has no leader yet.
			time.Sleep(time.Duration(i) * 60 * time.Millisecond)
			b, err := Open(ctx, Config{URL: cluster.URL(), Stream: "TOGETHER", Prefix: "together", Replicas: 3}, slog.Default(), nil)
			if err != nil {
				errs[i] = err
				return
			}
			defer b.Close()
			for _, durable := range []string{"a_stage", "b_stage"} {
				sub, err := b.NewSubscriber(ctx, durable, "work."+durable, ConsumerConfig{}, watermill.NopLogger{})
				if err != nil {
					errs[i] = err
					return
				}
				if err := sub.Close(); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "replica %d", i+1)
	}
	configured, _, err := cluster.StreamReplicas("TOGETHER")
	require.NoError(t, err)
	require.Equal(t, 3, configured)
}
