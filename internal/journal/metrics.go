package journal

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics counts what the Writer does. A nil *Metrics is valid and records nothing. The source
// label takes the journal's sources, a set fixed by the wiring.
type Metrics struct {
	entries  *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	errors   *prometheus.CounterVec
	pruned   prometheus.Counter
	repaired prometheus.Counter
}

// NewMetrics registers the journal's metrics on reg; a nil reg builds unregistered metrics. Build
// it once per registry and share it between the Writers of a process. The series of sources are
// created up front, so that rate() works from their first entry.
func NewMetrics(reg prometheus.Registerer, sources ...string) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		entries: f.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_journal_entries_appended_total",
			Help: "Entries appended to the journal and synced, by source.",
		}, []string{"source"}),
		bytes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_journal_appended_bytes_total",
			Help: "Compressed bytes appended to the journal and synced, by source.",
		}, []string{"source"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_journal_append_errors_total",
			Help: "Appends to a day file that failed, by source.",
		}, []string{"source"}),
		pruned: f.NewCounter(prometheus.CounterOpts{
			Name: "passerelle_journal_files_pruned_total",
			Help: "Day files deleted because they were older than the retention.",
		}),
		repaired: f.NewCounter(prometheus.CounterOpts{
			Name: "passerelle_journal_tails_repaired_total",
			Help: "Day files whose cut-short last member (an append interrupted by a crash) was removed before appending.",
		}),
	}
	for _, s := range sources {
		m.entries.WithLabelValues(s)
		m.bytes.WithLabelValues(s)
		m.errors.WithLabelValues(s)
	}
	return m
}

func (m *Metrics) appended(source string, entries, bytes int) {
	if m == nil {
		return
	}
	m.entries.WithLabelValues(source).Add(float64(entries))
	m.bytes.WithLabelValues(source).Add(float64(bytes))
}

func (m *Metrics) appendFailed(source string) {
	if m == nil {
		return
	}
	m.errors.WithLabelValues(source).Inc()
}

func (m *Metrics) filePruned() {
	if m == nil {
		return
	}
	m.pruned.Inc()
}

func (m *Metrics) tailRepaired() {
	if m == nil {
		return
	}
	m.repaired.Inc()
}
