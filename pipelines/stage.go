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
)

// NewMetrics registers the stage metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "stage", Name: "messages_total",
			Help: "Messages by pipeline, stage and outcome (in, out, failed, duplicate, dead_lettered).",
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
	for _, o := range []string{OutcomeIn, OutcomeOut, OutcomeFailed, OutcomeDuplicate, OutcomeDeadLettered} {
		m.messages.WithLabelValues(pipeline, stage, o)
	}
	m.duration.WithLabelValues(pipeline, stage)
}

// StageCounters are one stage's series, resolved once for a path too hot to look labels up on
// every message.
type StageCounters struct {
	In, Out, Failed prometheus.Counter
	Duration        prometheus.Observer
}

// Stage resolves (and creates) the series of a stage.
func (m *Metrics) Stage(pipeline, stage string) StageCounters {
	m.Init(pipeline, stage)
	return StageCounters{
		In:       m.messages.WithLabelValues(pipeline, stage, OutcomeIn),
		Out:      m.messages.WithLabelValues(pipeline, stage, OutcomeOut),
		Failed:   m.messages.WithLabelValues(pipeline, stage, OutcomeFailed),
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

// middleware counts and times each handler call.
func (m *Metrics) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		p, s := splitHandler(message.HandlerNameFromCtx(msg.Context()))
		start := time.Now()
		n := broker.BatchSize(msg) // a batch counts as the records it carries
		m.Count(p, s, OutcomeIn, n)
		dup, dead := new(int), new(bool)
		ctx := context.WithValue(msg.Context(), duplicateKey{}, dup)
		msg.SetContext(context.WithValue(ctx, deadLetteredKey{}, dead))
		out, err := h(msg)
		m.Observe(p, s, time.Since(start))
		if err == nil && *dup > 0 {
			m.Count(p, s, OutcomeDuplicate, *dup)
		}
		switch {
		case err != nil:
			m.Count(p, s, OutcomeFailed, n)
		case *dup == n:
		case *dead:
			// counted as dead_lettered by the dead-letter middleware; not out, which for a sink
			// means delivered
		case message.PublishTopicFromCtx(msg.Context()) == "":
			m.Count(p, s, OutcomeOut, 1) // a sink: out means delivered
		default:
			m.Count(p, s, OutcomeOut, len(out))
		}
		return out, err
	}
}

type (
	duplicateKey    struct{}
	deadLetteredKey struct{}
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
}

// NewRouter builds a router with the standard stack: panics recovered, stages measured, permanent
// failures stored in the pipeline's dead-letter topic before the message is acked, and a handler
// timeout. Other failures are nacked and redelivered by the broker with a growing delay.
func NewRouter(cfg RouterConfig, pub message.Publisher, m *Metrics, logger watermill.LoggerAdapter) (*message.Router, error) {
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, logger)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	r.AddMiddleware(
		middleware.Recoverer,
		m.middleware,
		deadLetter(pub, m),
		middleware.Timeout(cfg.HandlerTimeout),
	)
	return r, nil
}

// deadLetter publishes a permanently failed message to "<pipeline>.dead" and acks it.
func deadLetter(pub message.Publisher, m *Metrics) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err == nil || !IsPermanent(err) {
				return out, err
			}
			p, s := splitHandler(message.HandlerNameFromCtx(msg.Context()))
			msg.Metadata.Set(middleware.ReasonForPoisonedKey, err.Error())
			msg.Metadata.Set(middleware.PoisonedTopicKey, message.SubscribeTopicFromCtx(msg.Context()))
			msg.Metadata.Set(middleware.PoisonedHandlerKey, message.HandlerNameFromCtx(msg.Context()))
			dead := message.NewMessage(msg.UUID+"-dead", msg.Payload)
			dead.Metadata = msg.Metadata
			if perr := pub.Publish(DeadTopic(p), dead); perr != nil {
				return nil, errors.Join(err, fmt.Errorf("publish to dead-letter topic: %w", perr))
			}
			m.Count(p, s, OutcomeDeadLettered, 1)
			if dead, ok := msg.Context().Value(deadLetteredKey{}).(*bool); ok {
				*dead = true
			}
			return nil, nil
		}
	}
}

// DeadTopic is the dead-letter topic of a pipeline.
func DeadTopic(pipeline string) string { return pipeline + ".dead" }

// markDuplicate tells the metrics middleware a record of the message was dropped as a duplicate.
func markDuplicate(msg *message.Message) {
	if dup, ok := msg.Context().Value(duplicateKey{}).(*int); ok {
		*dup++
	}
}

func copyMeta(md message.Metadata) message.Metadata {
	out := make(message.Metadata, len(md))
	for k, v := range md {
		out[k] = v
	}
	return out
}
