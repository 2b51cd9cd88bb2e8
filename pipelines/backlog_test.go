package pipelines_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
)

// Each stage the wiring adds exports its backlog in the broker: the messages it has not acked
// and the age of the oldest, read at scrape time.
func TestBacklogs(t *testing.T) {
	dir := t.TempDir()
	b, pub := openTestBroker(t, dir)
	defer b.Close()
	defer pub.Close()
	st := openTestStore(t, dir)
	defer st.Close()

	later := time.Now().Add(time.Hour) // the scrape's clock: every stored message is an hour old
	reg := prometheus.NewRegistry()
	metrics := pipelines.NewMetrics(reg)
	backlogs := pipelines.NewBacklogs(b, func() time.Time { return later })
	reg.MustRegister(backlogs)
	router, err := pipelines.NewRouter(pipelines.RouterConfig{HandlerTimeout: 5 * time.Second, CloseTimeout: 5 * time.Second}, pub, metrics, watermill.NopLogger{})
	require.NoError(t, err)
	w := pipelines.Wiring{
		Router: router, Pub: pub, Metrics: metrics, Backlogs: backlogs, Log: slogDiscard(), Now: time.Now,
		Subscribe: func(ctx context.Context, durable, topic string, opts pipelines.SubscribeOptions) (message.Subscriber, error) {
			return b.NewSubscriber(ctx, durable, topic, broker.ConsumerConfig{}, watermill.NopLogger{})
		},
	}
	// The router never runs: the consumers exist and nothing consumes.
	require.NoError(t, pipelines.AddLeads(context.Background(), w, pipelines.LeadsConfig{Sources: pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}, Store: st, DedupeWindow: time.Hour}))
	for _, id := range []string{"a", "b", "c"} {
		require.NoError(t, pub.Publish(pipelines.TopicLeadsReceived, message.NewMessage(id, []byte(`{}`))))
	}

	gauge := func(name, stage string) float64 {
		t.Helper()
		v, ok := gathered(t, reg, name, map[string]string{"pipeline": "leads", "stage": stage})
		require.True(t, ok, "no %s for stage %s", name, stage)
		return v
	}
	testwait.For(t, 10*time.Second, "a backlog of 3 at normalize", func() bool { return gauge("passerelle_stage_backlog_messages", "normalize") == 3 })
	require.InDelta(t, time.Hour.Seconds(), gauge("passerelle_stage_backlog_oldest_seconds", "normalize"), 60)
	require.Zero(t, gauge("passerelle_stage_backlog_messages", "deadletter"))
	require.Zero(t, gauge("passerelle_stage_backlog_oldest_seconds", "deadletter"))
}
