package ecolix

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// Label values beside the resources.
const (
	importLabel = "import_clients" // the resource label of ImportClient

	fileDone      = "done"      // processed, moved to traites/
	fileError     = "error"     // refused or failed, moved to erreurs/
	fileDuplicate = "duplicate" // already processed, moved to traites/ untouched
)

// Metrics measures the connector. A nil *Metrics is valid and records nothing; outbound HTTP
// attempts are also counted by httpclient.Metrics.
type Metrics struct {
	calls      *prometheus.CounterVec
	budgetWait prometheus.Histogram
	pulled     *prometheus.CounterVec
	torn       *prometheus.CounterVec
	files      *prometheus.CounterVec
}

// NewMetrics registers the connector's metrics on reg; a nil reg builds unregistered metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		calls: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "ecolix", Name: "calls_total",
			Help: "Ecolix API calls after in-call retries, by resource (import_clients for the import) and outcome.",
		}, []string{"resource", "outcome"}),
		budgetWait: f.NewHistogram(prometheus.HistogramOpts{
			Namespace: "passerelle", Subsystem: "ecolix", Name: "budget_wait_seconds",
			Help:    "Time an HTTP attempt waited for the shared call budget.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}),
		pulled: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "ecolix", Name: "records_pulled_total",
			Help: "New records returned by incremental pulls, by resource.",
		}, []string{"resource"}),
		torn: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "ecolix", Name: "torn_pulls_total",
			Help: "Pulls that received an id twice: the export moved under its pages, a record may have been missed.",
		}, []string{"resource"}),
		files: f.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "ecolix", Name: "inbox_files_total",
			Help: "Inbox files handled, by outcome (done, error, duplicate).",
		}, []string{"outcome"}),
	}
	// Pre-created so that rate() works from the first event.
	for _, r := range append(Resources(), importLabel) {
		for _, o := range []httpclient.Outcome{httpclient.Delivered, httpclient.Retry, httpclient.Gone, httpclient.Permanent} {
			m.calls.WithLabelValues(r, o.String())
		}
		if r != importLabel {
			m.pulled.WithLabelValues(r)
			m.torn.WithLabelValues(r)
		}
	}
	for _, o := range []string{fileDone, fileError, fileDuplicate} {
		m.files.WithLabelValues(o)
	}
	return m
}

func (m *Metrics) call(resource string, err error) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(resource, httpclient.OutcomeOf(err).String()).Inc()
}

func (m *Metrics) waited(d time.Duration) {
	if m == nil {
		return
	}
	m.budgetWait.Observe(d.Seconds())
}

func (m *Metrics) recordsPulled(resource string, n int) {
	if m == nil {
		return
	}
	m.pulled.WithLabelValues(resource).Add(float64(n))
}

func (m *Metrics) tornPull(resource string) {
	if m == nil {
		return
	}
	m.torn.WithLabelValues(resource).Inc()
}

func (m *Metrics) file(outcome string) {
	if m == nil {
		return
	}
	m.files.WithLabelValues(outcome).Inc()
}
