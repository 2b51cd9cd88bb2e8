package biway

import "github.com/prometheus/client_golang/prometheus"

// Results of a callback request, the values of the result label.
const (
	resultAccepted    = "accepted"
	resultSignature   = "bad_signature"
	resultInvalid     = "invalid"
	resultTooLarge    = "too_large"
	resultUnavailable = "unavailable"
	typeUnknown       = "unknown"
)

// Metrics counts the callbacks the handler received. Build it once per registry; the outbound
// calls are counted by httpclient.Metrics.
type Metrics struct {
	callbacks *prometheus.CounterVec
	reports   *prometheus.CounterVec
}

// NewMetrics registers the callback metrics on reg, with every label value pre-created so that
// dashboards and alerts see zeros rather than gaps.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		callbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "biway", Name: "callbacks_total",
			Help: "Bi-way callback requests by type (\"unknown\" before decoding) and result.",
		}, []string{"type", "result"}),
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "biway", Name: "reports_total",
			Help: "Accepted MESSENGER_REPORT callbacks by state, duplicates included.",
		}, []string{"etat"}),
	}
	reg.MustRegister(m.callbacks, m.reports)
	for _, t := range []string{TypeMessengerReport, TypeAccountState, TypeCompanyState, TypeAgentState} {
		for _, r := range []string{resultAccepted, resultInvalid, resultUnavailable} {
			m.callbacks.WithLabelValues(t, r)
		}
	}
	for _, r := range []string{resultSignature, resultInvalid, resultTooLarge} {
		m.callbacks.WithLabelValues(typeUnknown, r)
	}
	for _, s := range []State{StateAccepted, StateSent, StateDelivered, StateRead, StateFailed} {
		m.reports.WithLabelValues(string(s))
	}
	return m
}

// observe counts one callback request; typ is "" before the body was decoded. A nil Metrics
// counts nothing.
func (m *Metrics) observe(cb Callback, result string) {
	if m == nil {
		return
	}
	typ := cb.Type
	if typ == "" {
		typ = typeUnknown
	}
	m.callbacks.WithLabelValues(typ, result).Inc()
	if result == resultAccepted && cb.Report != nil {
		m.reports.WithLabelValues(string(cb.Report.Etat)).Inc()
	}
}
