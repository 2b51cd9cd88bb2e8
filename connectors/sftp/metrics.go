package sftp

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics counts uploads. A nil *Metrics is valid and records nothing.
type Metrics struct {
	bytes    prometheus.Counter
	duration prometheus.Histogram
	ok       prometheus.Counter
	failed   prometheus.Counter
}

// NewMetrics registers the connector's metrics on reg; a nil reg builds
// unregistered metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	uploads := f.NewCounterVec(prometheus.CounterOpts{
		Name: "passerelle_sftp_uploads_total",
		Help: "SFTP upload attempts, by outcome (ok, error).",
	}, []string{"outcome"})
	return &Metrics{
		bytes: f.NewCounter(prometheus.CounterOpts{
			Name: "passerelle_sftp_upload_bytes_total",
			Help: "Bytes of files uploaded and renamed into place over SFTP.",
		}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name: "passerelle_sftp_upload_duration_seconds",
			Help: "Duration of SFTP upload attempts, dial to rename, whatever their outcome.",
			// 50 ms to ~100 s: a monthly file over a slow partner link fits.
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}),
		// Pre-created so that both series exist from start-up and rate()
		// works on the first error.
		ok:     uploads.WithLabelValues("ok"),
		failed: uploads.WithLabelValues("error"),
	}
}

func (m *Metrics) observe(d time.Duration, bytes int64, err error) {
	if m == nil {
		return
	}
	m.duration.Observe(d.Seconds())
	if err != nil {
		m.failed.Inc()
		return
	}
	m.ok.Inc()
	m.bytes.Add(float64(bytes))
}
