package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// WebhookMetrics counts the requests partners send to passerelle's webhook endpoints. A nil
// *WebhookMetrics is valid and records nothing.
type WebhookMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewWebhookMetrics registers the webhook metrics on reg, once per registry; a nil reg builds
// unregistered metrics.
func NewWebhookMetrics(reg prometheus.Registerer) *WebhookMetrics {
	f := promauto.With(reg)
	return &WebhookMetrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_webhook_requests_total",
			Help: "Webhook requests received, by source and HTTP status code answered.",
		}, []string{"source", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name: "passerelle_webhook_request_duration_seconds",
			Help: "Time to answer a webhook request, durable publish included, by source.",
			// 5 ms to 10 s: the answer waits for the broker, and a partner gives up after seconds.
			Buckets: prometheus.DefBuckets,
		}, []string{"source"}),
	}
}

// Instrument wraps h so that every request to it is counted under source with the status h
// wrote. source must come from a fixed set (the connector name), never from the request.
func (m *WebhookMetrics) Instrument(source string, h http.Handler) http.Handler {
	if m == nil {
		return h
	}
	// The answers webhook handlers give, created up front so that rate() over errors works
	// before the first error, and resolved once: the label lookup costs more than the count.
	known := map[int]prometheus.Counter{}
	for _, c := range []int{
		http.StatusOK, http.StatusBadRequest, http.StatusUnauthorized, http.StatusMethodNotAllowed,
		http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusServiceUnavailable,
	} {
		known[c] = m.requests.WithLabelValues(source, strconv.Itoa(c))
	}
	duration := m.duration.WithLabelValues(source)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r)
		duration.Observe(time.Since(start).Seconds())
		if c, ok := known[sw.status()]; ok {
			c.Inc()
			return
		}
		m.requests.WithLabelValues(source, strconv.Itoa(sw.status())).Inc()
	})
}

// statusWriter remembers the final status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	// 1xx are interim answers; the final status comes later.
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer (flush, deadlines).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// status is what the client received: net/http answers 200 when a handler writes nothing.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
