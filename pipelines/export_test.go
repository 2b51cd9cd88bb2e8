package pipelines

import (
	"context"
	"time"
)

// ScheduleEvery is Schedule with a tick every d: cron specs tick at most once a second.
func (b *Billing) ScheduleEvery(ctx context.Context, every, retryEvery time.Duration) error {
	return b.schedule(ctx, everySchedule(every), retryEvery)
}

type everySchedule time.Duration

func (e everySchedule) Next(t time.Time) time.Time { return t.Add(time.Duration(e)) }

// DurableName is the broker consumer of a handler.
func DurableName(handler string) string { return durableName(handler) }

// BurstEnded says whether the burst is over: fewer than YieldAbove requests being stored, for
// the linger.
func (y *Yield) BurstEnded() bool {
	return y.inflight.Load() < YieldAbove && y.lingered(int64(time.Since(y.start)))
}
