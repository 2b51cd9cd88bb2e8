package pipelines_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/pipelines"
)

// yieldRouter runs a router with y and one stage, leads.normalize, reporting each message it
// handles on the returned channel; publish feeds it.
func yieldRouter(t *testing.T, y *pipelines.Yield) (handled <-chan string, publish func(id string)) {
	t.Helper()
	reg := prometheus.NewRegistry()
	ps := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	r, err := pipelines.NewRouter(pipelines.RouterConfig{HandlerTimeout: time.Minute, CloseTimeout: 5 * time.Second, Yield: y}, ps, pipelines.NewMetrics(reg), watermill.NopLogger{})
	require.NoError(t, err)
	ch := make(chan string, 10)
	r.AddConsumerHandler("leads.normalize", "in", ps, func(m *message.Message) error {
		ch <- m.UUID
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); _ = r.Close() })
	<-r.Running()
	return ch, func(id string) { require.NoError(t, ps.Publish("in", message.NewMessage(id, nil))) }
}

// storing marks n webhook requests as being stored, until the returned func is called.
func storing(y *pipelines.Yield, n int) (done func()) {
	for range n {
		y.Storing()
	}
	return func() {
		for range n {
			y.Stored()
		}
	}
}

func waitHandled(t *testing.T, handled <-chan string, want string) {
	t.Helper()
	select {
	case got := <-handled:
		require.Equal(t, want, got)
	case <-time.After(10 * time.Second):
		t.Fatalf("message %s not handled", want)
	}
}

func TestYieldHoldsStagesWhileIngestIsBusy(t *testing.T) {
	reg := prometheus.NewRegistry()
	y := pipelines.NewYield(time.Hour, reg)
	handled, publish := yieldRouter(t, y)

	// Fewer requests than the threshold: the stage does not wait (it would wait an hour).
	release := storing(y, pipelines.YieldAbove-1)
	publish("quiet")
	waitHandled(t, handled, "quiet")

	// A burst: the stage waits for it to pass.
	releaseMore := storing(y, 1)
	publish("burst")
	select {
	case id := <-handled:
		t.Fatalf("message %s handled while %d webhook requests were being stored", id, pipelines.YieldAbove)
	case <-time.After(200 * time.Millisecond):
	}
	releaseMore()
	waitHandled(t, handled, "burst")
	release()

	held, ok := gathered(t, reg, "passerelle_stage_yield_seconds_total", map[string]string{"pipeline": "leads", "stage": "normalize"})
	require.True(t, ok)
	require.GreaterOrEqual(t, held, 0.2, "the time held is counted")
}

func TestYieldIsBoundedPerBurst(t *testing.T) {
	const max = 300 * time.Millisecond
	reg := prometheus.NewRegistry()
	y := pipelines.NewYield(max, reg)
	handled, publish := yieldRouter(t, y)
	heldSoFar := func() float64 {
		v, _ := gathered(t, reg, "passerelle_stage_yield_seconds_total", map[string]string{"pipeline": "leads", "stage": "normalize"})
		return v
	}

	// The burst never ends, yet the stage is held for Max at most, then runs beside it.
	release := storing(y, pipelines.YieldAbove)
	start := time.Now()
	publish("a")
	waitHandled(t, handled, "a")
	require.GreaterOrEqual(t, time.Since(start), max-50*time.Millisecond, "held for the burst's first Max")
	first := heldSoFar()
	for _, id := range []string{"b", "c", "d"} {
		publish(id)
		waitHandled(t, handled, id)
	}
	require.Equal(t, first, heldSoFar(), "past Max, the same burst holds nothing more")
	// A request arriving long after the others, while they still wait (stuck publishes keep the
	// count up), is part of the same burst: it opens no new hold.
	y.Storing()
	publish("late")
	waitHandled(t, handled, "late")
	y.Stored()
	require.Equal(t, first, heldSoFar(), "no new hold while the count never fell")

	// Once it has ended (no burst for the linger, 100 ms), the next burst holds again.
	release()
	require.Eventually(t, y.BurstEnded, 10*time.Second, 10*time.Millisecond)
	release = storing(y, pipelines.YieldAbove)
	defer release()
	publish("e")
	select {
	case id := <-handled:
		t.Fatalf("message %s handled at once in a new burst", id)
	case <-time.After(max / 3):
	}
	waitHandled(t, handled, "e")
	require.Greater(t, heldSoFar(), first, "the new burst held the stage")
}

func TestYieldOff(t *testing.T) {
	y := pipelines.NewYield(0, prometheus.NewRegistry())
	handled, publish := yieldRouter(t, y)
	release := storing(y, 10*pipelines.YieldAbove)
	defer release()
	publish("a")
	waitHandled(t, handled, "a")
}
