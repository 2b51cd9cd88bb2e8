package biway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/passerelle/passerelle/internal/stdwebhook"
)

type nopAcceptor struct{}

func (nopAcceptor) AcceptCallback(_ context.Context, _ Callback) error { return nil }

func TestCallbackMetrics(t *testing.T) {
	t.Parallel()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	const body = `{"type":"MESSENGER_REPORT","message_id":"m_1","reference":"evt_1","etat":"read","raison":"","date":"2026-03-14 09:30:00"}`
	m := NewMetrics(prometheus.NewRegistry())
	h := NewCallbackHandler(CallbackConfig{Secret: func() string { return secret }, Metrics: m}, nopAcceptor{})
	post := func(hdr http.Header, b string) int {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/webhooks/biway", strings.NewReader(b))
		for k, v := range hdr {
			req.Header[k] = v
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	good, err := stdwebhook.Headers(secret, "msg_1", time.Now(), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if got := post(good, body); got != http.StatusOK {
			t.Fatalf("signed report: status %d", got)
		}
	}
	if got := post(http.Header{}, body); got != http.StatusUnauthorized {
		t.Fatalf("unsigned report: status %d", got)
	}
	tests := []struct {
		c    prometheus.Collector
		want float64
	}{
		{m.callbacks.WithLabelValues(TypeMessengerReport, resultAccepted), 2},
		{m.callbacks.WithLabelValues(typeUnknown, resultSignature), 1},
		{m.reports.WithLabelValues(string(StateRead)), 2},
		{m.reports.WithLabelValues(string(StateSent)), 0},
	}
	for i, tt := range tests {
		if got := testutil.ToFloat64(tt.c); got != tt.want {
			t.Errorf("counter %d = %v, want %v", i, got, tt.want)
		}
	}
}
