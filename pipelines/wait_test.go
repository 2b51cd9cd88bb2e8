package pipelines_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
)

// metricValue is gathered's value, 0 when the sample is absent.
func metricValue(t testing.TB, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, _ := gathered(t, reg, name, labels)
	return v
}

// waitDrained waits until the consumers of handlers have nothing pending, nothing unacked and no
// redelivery scheduled: whatever those stages will ever do with what was published, they did.
func waitDrained(t testing.TB, b *broker.Broker, handlers ...string) {
	t.Helper()
	for _, h := range handlers {
		var bl broker.Backlog
		var err error
		testwait.For(t, 10*time.Second, h+" drained", func() bool {
			bl, err = b.Backlog(context.Background(), pipelines.DurableName(h))
			return err == nil && bl.Messages == 0
		})
	}
}
