package shopapp

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Reasons a token is fetched, the values of the reason label.
const (
	renewInitial      = "initial"      // none cached yet
	renewExpiry       = "expiry"       // the cached one is near its end
	renewUnauthorized = "unauthorized" // the API refused the cached one
)

// Metrics counts API calls and token renewals. A nil *Metrics is valid and records nothing.
// Outbound HTTP attempts and their durations are measured by httpclient.Metrics.
type Metrics struct {
	calls    *prometheus.CounterVec
	renewals *prometheus.CounterVec
}

// NewMetrics registers the connector's metrics on reg; a nil reg builds unregistered metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		calls: f.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_shopapp_api_calls_total",
			Help: "Shop Application API calls after retries, by route template and final status code (\"error\" without a response).",
		}, []string{"endpoint", "code"}),
		renewals: f.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_shopapp_token_renewals_total",
			Help: "Shop Application tokens fetched, by reason (initial, expiry, unauthorized).",
		}, []string{"reason"}),
	}
	// Pre-created so that rate() works from the first event.
	for _, r := range []string{renewInitial, renewExpiry, renewUnauthorized} {
		m.renewals.WithLabelValues(r)
	}
	for _, e := range Routes() {
		m.calls.WithLabelValues(e, "200")
	}
	return m
}

func (m *Metrics) call(endpoint, code string) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(endpoint, code).Inc()
}

func (m *Metrics) renewal(reason string) {
	if m == nil {
		return
	}
	m.renewals.WithLabelValues(reason).Inc()
}
