package biway_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// startEcho serves one fixed answer on loopback, for answers the simulator never gives.
func startEcho(t *testing.T, status int, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
