package pipelines_test

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

// The -update flag rewrites golden files. It is registered only if no other test file of the
// package did, so that two files wanting it do not panic on a redefined flag.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite the golden files")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	if f == nil {
		return false
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	v, _ := g.Get().(bool)
	return v
}

// testClock is a settable clock shared by the simulator and the code under test.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock(t time.Time) *testClock { return &testClock{now: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// parisTime reads "2006-01-02 15:04" as a Paris wall-clock time.
func parisTime(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, frtime.Paris())
	require.NoError(t, err)
	return v
}

func ptrTo[T any](v T) *T { return &v }

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// startSim starts a Shop Application simulator on loopback with the given clock (nil: real time).
func startSim(t testing.TB, clk *testClock, catalogue ...shopapp.CatalogueEntry) *shopappsim.Sim {
	t.Helper()
	cfg := shopappsim.Config{Catalogue: catalogue}
	if clk != nil {
		cfg.Now = clk.Now
	}
	sim, err := shopappsim.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	return sim
}

// newSimClient is a client of sim without rate limit, retrying `retries` times, quickly.
func newSimClient(t testing.TB, sim *shopappsim.Sim, retries int) *shopapp.Client {
	t.Helper()
	c, err := shopapp.New(shopapp.Config{
		BaseURL: sim.URL(), ClientID: sim.ClientID(), ClientSecret: sim.ClientSecret(),
		Rate: -1, Retries: retries, RetryWaitMin: time.Millisecond, RetryWaitMax: 10 * time.Millisecond,
		Timeout: 5 * time.Second,
	}, nil, nil)
	require.NoError(t, err)
	return c
}

// openTestStore opens (or reopens) the SQLite store under dir.
func openTestStore(t testing.TB, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), filepath.Join(dir, "passerelle.db"))
	require.NoError(t, err)
	return s
}

// openTestBroker opens (or reopens) the embedded broker under dir, with a publisher.
func openTestBroker(t testing.TB, dir string) (*broker.Broker, *broker.Publisher) {
	t.Helper()
	b, err := broker.Open(context.Background(), broker.Config{DataDir: dir}, slog.New(slog.DiscardHandler), nil)
	require.NoError(t, err)
	pub, err := b.NewPublisher()
	if err != nil {
		_ = b.Close()
		require.NoError(t, err)
	}
	return b, pub
}

// countingPub passes messages to the real publisher and remembers every id it was asked to publish,
// so a test sees what the code under test published even when the broker would drop a duplicate.
type countingPub struct {
	Inner pipelines.ContextPublisher
	mu    sync.Mutex
	ids   []string
}

func (c *countingPub) PublishContext(ctx context.Context, topic string, msgs ...*message.Message) error {
	c.mu.Lock()
	for _, m := range msgs {
		c.ids = append(c.ids, topic+"/"+m.UUID)
	}
	c.mu.Unlock()
	return c.Inner.PublishContext(ctx, topic, msgs...)
}

func (c *countingPub) Published() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.ids...)
}

// collector reads a topic through a durable consumer of the real broker, acking each message. It
// can be detached and attached again to another broker on the same data dir (a restart) and keeps
// counting across.
type collector struct {
	topic, durable string

	mu       sync.Mutex
	payloads [][]byte
	seen     map[string]int // by message UUID
}

func newCollector(topic, durable string) *collector {
	return &collector{topic: topic, durable: durable, seen: map[string]int{}}
}

// attach subscribes on b until the returned function is called (it waits for the reader to stop).
func (c *collector) attach(t testing.TB, b *broker.Broker) (detach func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sub, err := b.NewSubscriber(ctx, c.durable, c.topic, broker.ConsumerConfig{AckWait: 30 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	ch, err := sub.Subscribe(ctx, c.topic)
	if err != nil {
		cancel()
		_ = sub.Close()
		require.NoError(t, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m := range ch {
			c.mu.Lock()
			c.payloads = append(c.payloads, append([]byte(nil), m.Payload...))
			c.seen[m.UUID]++
			c.mu.Unlock()
			m.Ack()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			_ = sub.Close()
			<-done
		})
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.payloads)
}

// since returns the payloads received from index i on.
func (c *collector) since(i int) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.payloads[i:]...)
}

// duplicates lists the message ids received more than once.
func (c *collector) duplicates() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id, n := range c.seen {
		if n > 1 {
			out = append(out, id)
		}
	}
	return out
}

// drain waits until the consumer has nothing pending nor unacknowledged: every message published
// so far has been received and acked.
func (c *collector) drain(t testing.TB, b *broker.Broker) {
	t.Helper()
	require.Eventually(t, func() bool {
		bl, err := b.Backlog(context.Background(), c.durable)
		return err == nil && bl.Messages == 0
	}, 15*time.Second, 10*time.Millisecond, "consumer %s never drained", c.durable)
}

// shopAppEvents decodes shopapp.events payloads.
func shopAppEvents(t testing.TB, payloads [][]byte) []pipelines.ShopAppEvent {
	t.Helper()
	out := make([]pipelines.ShopAppEvent, 0, len(payloads))
	for _, p := range payloads {
		var ev pipelines.ShopAppEvent
		require.NoError(t, json.Unmarshal(p, &ev))
		out = append(out, ev)
	}
	return out
}

// gathered returns the value of the sample of name whose labels include labels, and whether
// there is one.
func gathered(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			return sampleValue(mf.GetType(), m), true
		}
	}
	return 0, false
}

func sampleValue(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return m.GetUntyped().GetValue()
}
