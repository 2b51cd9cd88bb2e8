package delivery

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkEngine delivers b.N jobs through Run to a loopback receiver. With latency, it reports
// delivered/s beside the ceiling concurrency/latency, the latency being the receiver's own mean
// time per request in the same run (issue 11's goal: delivered ≥ 0.8 × ceiling).
func BenchmarkEngine(b *testing.B) {
	for _, bc := range []struct {
		latency     time.Duration
		concurrency int
	}{
		{50 * time.Millisecond, 32},
		{50 * time.Millisecond, 64},
		{0, 32},
	} {
		b.Run(fmt.Sprintf("latency=%s/concurrency=%d", bc.latency, bc.concurrency), func(b *testing.B) {
			rcv := newReceiver(b, bc.latency, nil)
			c := newClient(b)
			e := New(Config{Concurrency: bc.concurrency}, nil)
			js := jobs(c, rcv.srv.URL, b.N)
			b.ResetTimer()
			begin := time.Now()
			errs := e.Run(context.Background(), "ep", js)
			elapsed := time.Since(begin)
			b.StopTimer()
			for i, err := range errs {
				if err != nil {
					b.Fatalf("job %d: %v", i, err)
				}
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "delivered/s")
			if bc.latency > 0 {
				mean := time.Duration(rcv.handled.Load() / rcv.total.Load())
				ceiling := float64(bc.concurrency) / mean.Seconds()
				b.ReportMetric(ceiling, "ceiling/s")
				b.ReportMetric(float64(b.N)/elapsed.Seconds()/ceiling, "of-ceiling")
			}
		})
	}
}
