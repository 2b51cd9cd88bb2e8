package pipelines

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/internal/broker"
)

// Metadata keys every message carries.
const (
	MetaEventID       = "event_id"
	MetaPipeline      = "pipeline"
	MetaSource        = "source"
	MetaCorrelationID = "correlation_id"
	MetaReceivedAt    = "received_at"
	// MetaOrderingKey, when set, orders a message after the earlier ones of the same key at every
	// sink endpoint (an interface's events, a client's states); leads have none.
	MetaOrderingKey = "ordering_key"
	// MetaAttemptsBase is the delivery-attempt count already spent when a dead letter is retried,
	// so the retry gets a fresh budget.
	MetaAttemptsBase = "attempts_base"
)

// Metrics are the per-stage counters and durations every pipeline shares.
type Metrics struct {
	messages *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// Stage outcomes counted by Metrics.
const (
	OutcomeIn           = "in"
	OutcomeOut          = "out"
	OutcomeFailed       = "failed"
	OutcomeDuplicate    = "duplicate"
	OutcomeDeadLettered = "dead_lettered"
	// OutcomeRejected is a partner's bad record refused at the edge (a 400): their data, not a
	// failure of ours, so it never counts toward StageFailing.
	OutcomeRejected = "rejected"
)

// NewMetrics registers the stage metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "stage", Name: "messages_total",
			Help: "Messages by pipeline, stage and outcome (in, out, failed, duplicate, dead_lettered, rejected).",
		}, []string{"pipeline", "stage", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "passerelle", Subsystem: "stage", Name: "duration_seconds",
			Help:    "Handler duration by pipeline and stage.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}, []string{"pipeline", "stage"}),
	}
	reg.MustRegister(m.messages, m.duration)
	return m
}

// Init pre-creates the series of a stage so dashboards show zeros rather than gaps.
func (m *Metrics) Init(pipeline, stage string) {
	for _, o := range []string{OutcomeIn, OutcomeOut, OutcomeFailed, OutcomeDuplicate, OutcomeDeadLettered, OutcomeRejected} {
		m.messages.WithLabelValues(pipeline, stage, o)
	}
	m.duration.WithLabelValues(pipeline, stage)
}

// StageCounters are one stage's series, resolved once for a path too hot to look labels up on
// every message.
type StageCounters struct {
	In, Out, Failed, Rejected prometheus.Counter
	Duration                  prometheus.Observer
}

// Stage resolves (and creates) the series of a stage.
func (m *Metrics) Stage(pipeline, stage string) StageCounters {
	m.Init(pipeline, stage)
	return StageCounters{
		In:       m.messages.WithLabelValues(pipeline, stage, OutcomeIn),
		Out:      m.messages.WithLabelValues(pipeline, stage, OutcomeOut),
		Failed:   m.messages.WithLabelValues(pipeline, stage, OutcomeFailed),
		Rejected: m.messages.WithLabelValues(pipeline, stage, OutcomeRejected),
		Duration: m.duration.WithLabelValues(pipeline, stage),
	}
}

// Count adds n to a stage outcome.
func (m *Metrics) Count(pipeline, stage, outcome string, n int) {
	m.messages.WithLabelValues(pipeline, stage, outcome).Add(float64(n))
}

// Observe records a stage duration.
func (m *Metrics) Observe(pipeline, stage string, d time.Duration) {
	m.duration.WithLabelValues(pipeline, stage).Observe(d.Seconds())
}

// splitHandler turns a handler name "<pipeline>.<stage>" into its labels.
func splitHandler(name string) (string, string) {
	p, s, ok := strings.Cut(name, ".")
	if !ok {
		return name, name
	}
	return p, s
}

// middleware counts and times each handler call, in records: a batch counts as the records it
// carries, and the records a handler drops as duplicates or dead-letters one by one are not out.
func (m *Metrics) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		p, s := splitHandler(message.HandlerNameFromCtx(msg.Context()))
		start := time.Now()
		n := broker.BatchSize(msg)
		m.Count(p, s, OutcomeIn, n)
		oc := &outcomes{}
		msg.SetContext(context.WithValue(msg.Context(), outcomesKey{}, oc))
		out, err := h(msg)
		m.Observe(p, s, time.Since(start))
		if err == nil && oc.duplicate > 0 {
			m.Count(p, s, OutcomeDuplicate, oc.duplicate)
		}
		if err == nil && oc.failed > 0 {
			m.Count(p, s, OutcomeFailed, oc.failed)
		}
		switch {
		case err != nil:
			m.Count(p, s, OutcomeFailed, n)
		case message.PublishTopicFromCtx(msg.Context()) == "":
			// A sink: out means delivered.
			m.Count(p, s, OutcomeOut, max(0, n-oc.duplicate-oc.deadLettered-oc.failed))
		default:
			produced := 0
			for _, o := range out {
				produced += broker.BatchSize(o)
			}
			m.Count(p, s, OutcomeOut, produced)
		}
		return out, err
	}
}

// outcomes are what a handler call did with its records besides passing them on.
type outcomes struct{ duplicate, deadLettered, failed int }

type (
	outcomesKey   struct{}
	deadLetterKey struct{}
)

// PermanentError marks a failure that no retry will fix: the message goes to the dead-letter topic.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err so the router dead-letters the message instead of redelivering it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent tells whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}

// RouterConfig is the middleware stack shared by every pipeline.
type RouterConfig struct {
	HandlerTimeout time.Duration // must stay under the consumers' AckWait
	CloseTimeout   time.Duration
	// Yield, when set, holds the stages while webhook ingest is busy.
	Yield *Yield
	// Pause, when set, is waited before each message: it returns an error (the message is
	// redelivered later, nothing done) while the disk or the store cannot take work.
	Pause func(ctx context.Context) error
}

// NewRouter builds a router with the standard stack: panics recovered, stages measured, permanent
// failures stored in the pipeline's dead-letter topic before the message is acked, and a handler
// timeout. Other failures are nacked and redelivered by the broker with a growing delay. With a
// Yield, a stage waits before a message while webhook ingest is busy (not counted in its duration).
func NewRouter(cfg RouterConfig, pub message.Publisher, m *Metrics, logger watermill.LoggerAdapter) (*message.Router, error) {
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, logger)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	if cfg.Pause != nil {
		r.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
			return func(msg *message.Message) ([]*message.Message, error) {
				if err := cfg.Pause(msg.Context()); err != nil {
					return nil, err
				}
				return h(msg)
			}
		})
	}
	if cfg.Yield != nil {
		r.AddMiddleware(cfg.Yield.middleware)
	}
	r.AddMiddleware(
		middleware.Recoverer,
		m.middleware,
		deadLetter(pub, m),
		middleware.Timeout(cfg.HandlerTimeout),
	)
	return r, nil
}

// deadLetter publishes a permanently failed message to "<pipeline>.dead" and acks it. Handlers
// of batches dead-letter single records themselves with DeadLetterRecord, through the same path.
func deadLetter(pub message.Publisher, m *Metrics) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			send := func(rec *message.Message, err error) error {
				p, s := splitHandler(message.HandlerNameFromCtx(msg.Context()))
				rec.Metadata.Set(middleware.ReasonForPoisonedKey, err.Error())
				rec.Metadata.Set(middleware.PoisonedTopicKey, message.SubscribeTopicFromCtx(msg.Context()))
				rec.Metadata.Set(middleware.PoisonedHandlerKey, message.HandlerNameFromCtx(msg.Context()))
				dead := message.NewMessage(rec.UUID+"-dead", rec.Payload)
				dead.Metadata = rec.Metadata
				if perr := pub.Publish(DeadTopic(p), dead); perr != nil {
					return fmt.Errorf("publish to dead-letter topic: %w", perr)
				}
				n := broker.BatchSize(rec)
				m.Count(p, s, OutcomeDeadLettered, n)
				if oc, ok := msg.Context().Value(outcomesKey{}).(*outcomes); ok {
					oc.deadLettered += n
				}
				return nil
			}
			msg.SetContext(context.WithValue(msg.Context(), deadLetterKey{}, send))
			out, err := h(msg)
			if err == nil || !IsPermanent(err) {
				return out, err
			}
			if perr := send(msg, err); perr != nil {
				return nil, errors.Join(err, perr)
			}
			return nil, nil
		}
	}
}

// DeadLetterRecord stores one record of the batch msg in the pipeline's dead-letter topic with
// the reason err, so that the rest of the batch goes on. An error means it is not stored: the
// handler must fail the whole batch.
func DeadLetterRecord(msg, record *message.Message, err error) error {
	send, ok := msg.Context().Value(deadLetterKey{}).(func(*message.Message, error) error)
	if !ok {
		return errors.New("dead-letter topic not wired: handler not run by NewRouter")
	}
	return send(record, err)
}

// DeadTopic is the dead-letter topic of a pipeline.
func DeadTopic(pipeline string) string { return pipeline + ".dead" }

// markFailed tells the metrics middleware that n records of the message failed and will be tried
// again on their own, though the message itself succeeded.
func markFailed(msg *message.Message, n int) {
	if oc, ok := msg.Context().Value(outcomesKey{}).(*outcomes); ok {
		oc.failed += n
	}
}

// markDuplicate tells the metrics middleware a record of the message was dropped as a duplicate.
func markDuplicate(msg *message.Message) {
	if oc, ok := msg.Context().Value(outcomesKey{}).(*outcomes); ok {
		oc.duplicate++
	}
}

func copyMeta(md message.Metadata) message.Metadata {
	out := make(message.Metadata, len(md))
	for k, v := range md {
		out[k] = v
	}
	return out
}
