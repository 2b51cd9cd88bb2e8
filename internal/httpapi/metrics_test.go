package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/httpapi"
)

func TestWebhookMetricsInstrument(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		handler  http.HandlerFunc
		wantCode string
	}{
		{"explicit status", func(w http.ResponseWriter, _ *http.Request) {
			httpapi.WriteError(w, http.StatusUnauthorized, "unauthorized")
		}, "401"},
		{"nothing written is 200", func(http.ResponseWriter, *http.Request) {}, "200"},
		{"body without header is 200", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("ok"))
		}, "200"},
		{"interim 1xx then final", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusRequestEntityTooLarge)
		}, "413"},
		{"uncommon code", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusTeapot)
		}, "418"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewPedanticRegistry()
			m := httpapi.NewWebhookMetrics(reg)
			srv := httptest.NewServer(m.Instrument("iciformation", tt.handler))
			t.Cleanup(srv.Close)

			for range 2 {
				resp, err := srv.Client().Post(srv.URL, "application/json", strings.NewReader("{}"))
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
			}

			got := counter(t, reg, "iciformation", tt.wantCode)
			require.Equal(t, 2.0, got, "requests with code %s", tt.wantCode)
			require.Equal(t, 1, testutil.CollectAndCount(reg, "passerelle_webhook_request_duration_seconds"))
			problems, err := testutil.GatherAndLint(reg)
			require.NoError(t, err)
			require.Empty(t, problems)
		})
	}
}

func TestWebhookMetricsPrecreatesSeries(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	httpapi.NewWebhookMetrics(reg).Instrument("iciformation", http.NotFoundHandler())
	require.Equal(t, 7, testutil.CollectAndCount(reg, "passerelle_webhook_requests_total"))
	require.Zero(t, counter(t, reg, "iciformation", "503"))
}

func TestWebhookMetricsNilIsNoop(t *testing.T) {
	t.Parallel()
	var m *httpapi.WebhookMetrics
	h := http.NewServeMux()
	require.Same(t, h, m.Instrument("iciformation", h))
}

func TestWebhookMetricsNilRegistry(t *testing.T) {
	t.Parallel()
	m := httpapi.NewWebhookMetrics(nil)
	rec := httptest.NewRecorder()
	m.Instrument("x", http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusNotFound, rec.Code)
}

// counter reads the gathered value of the requests counter for source and code; -1 if absent.
func counter(t *testing.T, reg prometheus.Gatherer, source, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "passerelle_webhook_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["source"] == source && labels["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}
