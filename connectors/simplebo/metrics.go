package simplebo

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// Metrics counts what httpclient's metrics cannot see: the outcome of each API call as the
// partner's `response` field says it, SIRETs that fail their checksum, and the webhook's answers
// and event codes. Build it once per registry; a nil *Metrics counts nothing.
type Metrics struct {
	calls        *prometheus.CounterVec
	invalidSIRET *prometheus.CounterVec
	webhook      *prometheus.CounterVec
	events       *prometheus.CounterVec
}

// Label values, bounded and pre-created.
const (
	opMockup   = "mockup"
	opActivate = "activate"
)

const eventTypeOther = "other"

// NewMetrics registers the Simplébo metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "simplebo", Name: "api_calls_total",
			Help: "Simplébo API calls by operation (mockup, activate) and outcome of the outcome table, a response 1 with HTTP 200 counted permanent.",
		}, []string{"op", "outcome"}),
		invalidSIRET: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "simplebo", Name: "invalid_siret_total",
			Help: "Customers sent to Simplébo with a SIRET that fails its checksum (sent anyway).",
		}, []string{"op"}),
		webhook: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "simplebo", Name: "webhook_requests_total",
			Help: "Requests to the Simplébo webhook by HTTP status answered.",
		}, []string{"code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "simplebo", Name: "webhook_events_total",
			Help: "Decoded Simplébo webhook events by event_type (0 to 4, or other).",
		}, []string{"event_type"}),
	}
	reg.MustRegister(m.calls, m.invalidSIRET, m.webhook, m.events)
	outcomes := []httpclient.Outcome{httpclient.Delivered, httpclient.Retry, httpclient.Gone, httpclient.Permanent}
	webhookCodes := []int{200, 400, 401, 404, 405, 413, 415, 503}
	for _, op := range []string{opMockup, opActivate} {
		m.invalidSIRET.WithLabelValues(op)
		for _, o := range outcomes {
			m.calls.WithLabelValues(op, o.String())
		}
	}
	for _, c := range webhookCodes {
		m.webhook.WithLabelValues(strconv.Itoa(c))
	}
	for c := LeadCreated; c <= SwitchedToFree; c++ {
		m.events.WithLabelValues(eventTypeLabel(c))
	}
	m.events.WithLabelValues(eventTypeOther)
	return m
}

func eventTypeLabel(c EventCode) string {
	if !c.Known() {
		return eventTypeOther
	}
	return strconv.Itoa(int(c))
}

func (m *Metrics) call(op string, o httpclient.Outcome) {
	if m != nil {
		m.calls.WithLabelValues(op, o.String()).Inc()
	}
}

func (m *Metrics) siret(op string) {
	if m != nil {
		m.invalidSIRET.WithLabelValues(op).Inc()
	}
}

func (m *Metrics) answered(code int) {
	if m != nil {
		m.webhook.WithLabelValues(strconv.Itoa(code)).Inc()
	}
}

func (m *Metrics) event(c EventCode) {
	if m != nil {
		m.events.WithLabelValues(eventTypeLabel(c)).Inc()
	}
}
