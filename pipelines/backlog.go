package pipelines

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/internal/broker"
)

// BacklogSource reads what a stage's broker consumer has not acknowledged yet.
type BacklogSource interface {
	Backlog(ctx context.Context, durable string) (broker.Backlog, error)
}

// Backlogs exports, at each scrape, every stage's backlog in the broker: how many messages wait
// for it (or are in its hands, not yet acked) and how long the oldest has waited. A stage that
// falls behind, because an endpoint is down or a burst outruns it, shows here long before
// anything is dead-lettered. Stages join when the Wiring that holds it adds their handler.
type Backlogs struct {
	src      BacklogSource
	now      func() time.Time
	messages *prometheus.Desc
	oldest   *prometheus.Desc

	mu     sync.Mutex
	stages []backlogStage
}

type backlogStage struct{ pipeline, stage, durable string }

// NewBacklogs returns the collector; register it on the metrics registry.
func NewBacklogs(src BacklogSource, now func() time.Time) *Backlogs {
	return &Backlogs{
		src: src, now: now,
		messages: prometheus.NewDesc("passerelle_stage_backlog_messages",
			"Broker messages a stage has not acknowledged yet (waiting or in progress), by pipeline and stage; a batch of webhook records counts once.",
			[]string{"pipeline", "stage"}, nil),
		oldest: prometheus.NewDesc("passerelle_stage_backlog_oldest_seconds",
			"Age of the oldest message a stage has not acknowledged yet, by pipeline and stage; 0 when it has none.",
			[]string{"pipeline", "stage"}, nil),
	}
}

func (b *Backlogs) add(pipeline, stage, durable string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.stages = append(b.stages, backlogStage{pipeline, stage, durable})
}

// Describe implements prometheus.Collector.
func (b *Backlogs) Describe(ch chan<- *prometheus.Desc) {
	ch <- b.messages
	ch <- b.oldest
}

// StageBacklog is one stage's backlog, as the admin API shows it.
type StageBacklog struct {
	Pipeline string `json:"pipeline"`
	Stage    string `json:"stage"`
	Messages uint64 `json:"messages"`
	// Oldest is when the oldest unacknowledged message was stored; nil when there is none.
	Oldest *time.Time `json:"oldest,omitempty"`
	// Waited is how long it has waited, in seconds.
	Waited float64 `json:"waited_seconds"`
	Error  string  `json:"error,omitempty"` // the broker could not tell
}

// Read returns every stage's backlog, in the order the stages were added. A stage whose consumer
// cannot be read carries the error; the others are still read.
func (b *Backlogs) Read(ctx context.Context) []StageBacklog {
	b.mu.Lock()
	stages := append([]backlogStage(nil), b.stages...)
	b.mu.Unlock()
	now := b.now()
	out := make([]StageBacklog, 0, len(stages))
	for _, s := range stages {
		sb := StageBacklog{Pipeline: s.pipeline, Stage: s.stage}
		bl, err := b.src.Backlog(ctx, s.durable)
		switch {
		case err != nil:
			sb.Error = err.Error()
		case !bl.Oldest.IsZero():
			sb.Oldest = &bl.Oldest
			sb.Waited = max(0, now.Sub(bl.Oldest).Seconds())
		}
		sb.Messages = bl.Messages
		out = append(out, sb)
	}
	return out
}

// Collect implements prometheus.Collector. A stage whose consumer cannot be read is reported as
// an error for that stage only.
func (b *Backlogs) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range b.Read(ctx) {
		if s.Error != "" {
			ch <- prometheus.NewInvalidMetric(b.messages, fmt.Errorf("%s/%s: %s", s.Pipeline, s.Stage, s.Error))
			continue
		}
		ch <- prometheus.MustNewConstMetric(b.messages, prometheus.GaugeValue, float64(s.Messages), s.Pipeline, s.Stage)
		ch <- prometheus.MustNewConstMetric(b.oldest, prometheus.GaugeValue, s.Waited, s.Pipeline, s.Stage)
	}
}
