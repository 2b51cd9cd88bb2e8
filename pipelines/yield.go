package pipelines

import (
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
)

// YieldAbove is how many webhook requests must be waiting for their publish at once for the
// stages to yield: one partner posting lead after lead never gets there, a burst of concurrent
// posts does.
const YieldAbove = 8

// A burst is over once fewer than YieldAbove requests have been stored at once for yieldLinger:
// under load the count swings below the threshold between batches, and a stage let through in
// such a gap would take a whole batch's worth of CPU in the middle of the burst.
const yieldLinger = 100 * time.Millisecond

// yieldPoll is how often a held stage looks again.
const yieldPoll = 10 * time.Millisecond

// Yield gives webhook ingest priority over the stages. A webhook answers only once its lead is
// stored, while the stages only forward what is already stored: during a burst, every CPU
// second a stage takes is a partner waiting longer for its answer. So while at least YieldAbove
// webhook requests are being stored, the stages hold their next message until the burst passes
// (yieldLinger after the last moment with YieldAbove requests), for Max at most per burst: past
// that, they run beside it until it ends. Nothing is lost or reordered; deliveries lag by the
// burst, and catch up after it.
//
// Holding outright, rather than letting one message through now and then, also keeps memory
// flat: a stage that reads the stream near where the webhooks write keeps each 8 MB block of the
// embedded server in memory for 10 s after (see ApplyMemoryLimit); a stage that reads nothing
// lets the server reuse one block's buffer for the next.
//
// Max must stay well under the consumers' AckWait: a stage's prefetched messages wait behind the
// held one, their AckWait running.
type Yield struct {
	max      time.Duration
	inflight atomic.Int64
	start    time.Time    // the monotonic origin of lastBusy and burstStart
	lastBusy atomic.Int64 // since start: the last moment YieldAbove or more were being stored
	// burstStart is when the current burst began: its first moment with YieldAbove requests
	// after yieldLinger without.
	burstStart atomic.Int64
	held       *prometheus.CounterVec
}

// NewYield returns a Yield holding stages up to max per burst (0 never holds) and registers
// passerelle_stage_yield_seconds_total on reg.
func NewYield(max time.Duration, reg prometheus.Registerer) *Yield {
	y := &Yield{max: max, start: time.Now(), held: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "passerelle", Subsystem: "stage", Name: "yield_seconds_total",
		Help: "Time stages held their next message because webhook requests were being stored (PASSERELLE_STAGE_YIELD).",
	}, []string{"pipeline", "stage"})}
	y.lastBusy.Store(int64(-yieldLinger)) // no burst yet
	reg.MustRegister(y.held)
	return y
}

// Storing marks a webhook request as being stored, until Stored. Both do nothing on a nil Yield.
func (y *Yield) Storing() {
	if y == nil {
		return
	}
	n := y.inflight.Add(1)
	if n < YieldAbove {
		return
	}
	now := int64(time.Since(y.start))
	// A burst starts when the count reaches the threshold after the linger without: not on
	// each arrival, which may come seconds apart while stuck requests keep the count up.
	if n == YieldAbove && y.lingered(now) {
		y.burstStart.Store(now) // concurrent requests may each store about the same instant
	}
	y.lastBusy.Store(now)
}

// Stored ends what Storing started.
func (y *Yield) Stored() {
	if y != nil {
		y.inflight.Add(-1)
	}
}

// lingered says whether yieldLinger has passed, at now since start, since the last moment with
// YieldAbove requests being stored.
func (y *Yield) lingered(now int64) bool {
	return now-y.lastBusy.Load() >= int64(yieldLinger)
}

// busy says whether the stages should hold: a burst is on and has not yet lasted Max.
func (y *Yield) busy() bool {
	now := int64(time.Since(y.start))
	on := y.inflight.Load() >= YieldAbove || !y.lingered(now)
	return on && now-y.burstStart.Load() < int64(y.max)
}

// initSeries creates a stage's series, so dashboards show zeros rather than gaps.
func (y *Yield) initSeries(pipeline, stage string) {
	if y != nil {
		y.held.WithLabelValues(pipeline, stage)
	}
}

// middleware holds each message of a stage while ingest is busy, within Max per burst.
func (y *Yield) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if y.max <= 0 || !y.busy() {
			return h(msg)
		}
		start := time.Now()
		t := time.NewTicker(yieldPoll)
	wait:
		for y.busy() {
			select {
			case <-t.C:
			case <-msg.Context().Done():
				break wait
			}
		}
		t.Stop()
		y.held.WithLabelValues(splitHandler(message.HandlerNameFromCtx(msg.Context()))).Add(time.Since(start).Seconds())
		return h(msg)
	}
}
