package delivery

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// outcomes are the values of the outcome label, in the table's order.
var outcomes = [...]httpclient.Outcome{httpclient.Delivered, httpclient.Retry, httpclient.Gone, httpclient.Permanent}

// Metrics measures an Engine per endpoint. The endpoint label is the caller's bounded endpoint id
// (such as "host#1a2b3c4d"), never a URL, which may hold a secret.
type Metrics struct {
	inFlight    *prometheus.GaugeVec
	concurrency *prometheus.GaugeVec
	paused      *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	requests    *prometheus.CounterVec
}

// NewMetrics registers the delivery metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "passerelle", Subsystem: "delivery", Name: "in_flight",
			Help: "Requests being sent, by endpoint.",
		}, []string{"endpoint"}),
		concurrency: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "passerelle", Subsystem: "delivery", Name: "concurrency",
			Help: "Most requests in flight the endpoint is currently allowed (AIMD on 429s).",
		}, []string{"endpoint"}),
		paused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "delivery", Name: "paused_seconds_total",
			Help: "Time the endpoint was paused by Retry-After (capped), counted when the pause is set or extended.",
		}, []string{"endpoint"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "passerelle", Subsystem: "delivery", Name: "duration_seconds",
			Help:    "Delivery duration (the send, without the wait for a slot), by endpoint and outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"endpoint", "outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "delivery", Name: "requests_total",
			Help: "Deliveries sent, by endpoint and outcome (delivered, retry, gone, permanent).",
		}, []string{"endpoint", "outcome"}),
	}
	reg.MustRegister(m.inFlight, m.concurrency, m.paused, m.duration, m.requests)
	return m
}

// Init creates endpoint's series at zero, so that dashboards and rate() see them before the
// first delivery. The Engine calls it for each endpoint it meets.
func (m *Metrics) Init(endpoint string) {
	if m == nil {
		return
	}
	m.inFlight.WithLabelValues(endpoint)
	m.concurrency.WithLabelValues(endpoint)
	m.paused.WithLabelValues(endpoint)
	for _, o := range outcomes {
		m.duration.WithLabelValues(endpoint, o.String())
		m.requests.WithLabelValues(endpoint, o.String())
	}
}

// observer is one endpoint's series, looked up once. Its zero value (no Metrics) measures nothing.
type observer struct {
	inFlight, concurrency prometheus.Gauge
	paused                prometheus.Counter
	duration              [len(outcomes)]prometheus.Observer
	requests              [len(outcomes)]prometheus.Counter
}

func (m *Metrics) observer(endpoint string) observer {
	if m == nil {
		return observer{}
	}
	m.Init(endpoint)
	o := observer{
		inFlight:    m.inFlight.WithLabelValues(endpoint),
		concurrency: m.concurrency.WithLabelValues(endpoint),
		paused:      m.paused.WithLabelValues(endpoint),
	}
	for i, out := range outcomes {
		o.duration[i] = m.duration.WithLabelValues(endpoint, out.String())
		o.requests[i] = m.requests.WithLabelValues(endpoint, out.String())
	}
	return o
}

func (o *observer) setInFlight(n int) {
	if o.inFlight != nil {
		o.inFlight.Set(float64(n))
	}
}

func (o *observer) setConcurrency(n int) {
	if o.concurrency != nil {
		o.concurrency.Set(float64(n))
	}
}

func (o *observer) addPaused(d time.Duration) {
	if o.paused != nil {
		o.paused.Add(d.Seconds())
	}
}

func (o *observer) observe(out httpclient.Outcome, took time.Duration) {
	i := int(out)
	if o.requests[0] == nil || i < 0 || i >= len(outcomes) || outcomes[i] != out {
		return
	}
	o.duration[i].Observe(took.Seconds())
	o.requests[i].Inc()
}
