package biway_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/biway"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

// store is the acceptor a reports pipeline would be: a message's state only moves forward.
type store struct {
	mu       sync.Mutex
	states   map[string]biway.State      // message_id → state
	refs     map[string]string           // message_id → reference
	reasons  map[string]string           // message_id → raison of a failure
	entities map[string]biway.EntityEtat // type/id → state
	calls    int
	err      error // returned by AcceptCallback when set
}

func newStore() *store {
	return &store{states: map[string]biway.State{}, refs: map[string]string{}, reasons: map[string]string{},
		entities: map[string]biway.EntityEtat{}}
}

func (s *store) AcceptCallback(_ context.Context, cb biway.Callback) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.err != nil {
		return s.err
	}
	switch {
	case cb.Report != nil:
		r := cb.Report
		if biway.Advance(s.states[r.MessageID], r.Etat) {
			s.states[r.MessageID], s.refs[r.MessageID], s.reasons[r.MessageID] = r.Etat, r.Reference, r.Raison
		}
	case cb.Entity != nil:
		s.entities[cb.Entity.Type+"/"+cb.Entity.ID] = cb.Entity.Etat
	}
	return nil
}

func (s *store) snapshot() (map[string]biway.State, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]biway.State, len(s.states))
	for k, v := range s.states {
		out[k] = v
	}
	return out, s.calls
}

// vectors are CONTRACTS.md's Standard Webhooks test vectors.
var vectors = []struct{ secret, id, ts, body, sig string }{
	{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", `{"test": 2432232314}`,
		"v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="},
	{"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", "1649367553",
		`{"email":"test@example.com","username":"test_user"}`, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="},
}

const report = `{"type":"MESSENGER_REPORT","message_id":"m_1","reference":"evt_1","etat":"delivered","raison":"","date":"2026-03-14 09:30:00"}`

func serve(t *testing.T, cfg biway.CallbackConfig, acc biway.CallbackAcceptor) string {
	t.Helper()
	srv := httptest.NewServer(biway.NewCallbackHandler(cfg, acc))
	t.Cleanup(srv.Close)
	return srv.URL + "/webhooks/biway"
}

func postTo(t *testing.T, url string, h http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func signed(t *testing.T, secret, id string, at time.Time, body string) http.Header {
	t.Helper()
	h, err := stdwebhook.Headers(secret, id, at, []byte(body))
	require.NoError(t, err)
	return h
}

// TestCallbackHandlerVectors: the vectors' signatures pass the handler at their own time (the
// bodies are no callbacks, so the answer is 400, not 401), and fail once altered.
func TestCallbackHandlerVectors(t *testing.T) {
	t.Parallel()
	for _, v := range vectors {
		var ts int64
		_, err := fmt.Sscan(v.ts, &ts)
		require.NoError(t, err)
		url := serve(t, biway.CallbackConfig{Secret: func() string { return v.secret },
			Now: func() time.Time { return time.Unix(ts, 0).Add(4 * time.Minute) }}, newStore())
		h := http.Header{}
		h.Set("webhook-id", v.id)
		h.Set("webhook-timestamp", v.ts)
		h.Set("webhook-signature", v.sig)
		status, body := postTo(t, url, h, v.body)
		require.Equal(t, http.StatusBadRequest, status, body)
		require.Contains(t, body, `"error":true`)

		h.Set("webhook-signature", "v2,abc "+v.sig) // other versions are ignored
		status, _ = postTo(t, url, h, v.body)
		require.Equal(t, http.StatusBadRequest, status)

		status, _ = postTo(t, url, h, v.body+" ") // tampered body
		require.Equal(t, http.StatusUnauthorized, status)
	}
}

func TestCallbackHandler(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 14, 8, 30, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	tests := []struct {
		name     string
		method   string
		secret   string
		header   http.Header
		body     string
		accErr   error
		want     int
		accepted bool
	}{
		{name: "signed report", header: signed(t, testSecret, "msg_1", now, report), body: report, want: 200, accepted: true},
		{name: "4 minutes old", header: signed(t, testSecret, "msg_1", now.Add(-4*time.Minute), report), body: report, want: 200, accepted: true},
		{name: "stale", header: signed(t, testSecret, "msg_1", now.Add(-6*time.Minute), report), body: report, want: 401},
		{name: "from the future", header: signed(t, testSecret, "msg_1", now.Add(6*time.Minute), report), body: report, want: 401},
		{name: "tampered body", header: signed(t, testSecret, "msg_1", now, report),
			body: strings.Replace(report, "delivered", "read", 1), want: 401},
		{name: "other id", header: func() http.Header {
			h := signed(t, testSecret, "msg_1", now, report)
			h.Set("webhook-id", "msg_2")
			return h
		}(), body: report, want: 401},
		{name: "missing signature", header: func() http.Header {
			h := signed(t, testSecret, "msg_1", now, report)
			h.Del("webhook-signature")
			return h
		}(), body: report, want: 401},
		{name: "unsigned", header: http.Header{}, body: report, want: 401},
		{name: "other secret", header: signed(t, vectors[1].secret, "msg_1", now, report), body: report, want: 401},
		{name: "no secret registered", secret: "-", header: signed(t, testSecret, "msg_1", now, report), body: report, want: 401},
		{name: "bad JSON", header: signed(t, testSecret, "msg_1", now, "{"), body: "{", want: 400},
		{name: "unknown state", header: signed(t, testSecret, "msg_1", now, strings.Replace(report, "delivered", "lost", 1)),
			body: strings.Replace(report, "delivered", "lost", 1), want: 400},
		{name: "too large", header: http.Header{}, body: strings.Repeat(" ", 65<<10), want: 413},
		{name: "GET", method: http.MethodGet, header: http.Header{}, want: 405},
		{name: "acceptor down", header: signed(t, testSecret, "msg_1", now, report), body: report,
			accErr: errors.New("broker: publish timeout"), want: 503, accepted: true},
		{name: "acceptor refuses", header: signed(t, testSecret, "msg_1", now, report), body: report,
			accErr: fmt.Errorf("unknown reference: %w", biway.ErrInvalidCallback), want: 400, accepted: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secret := testSecret
			if tt.secret == "-" {
				secret = ""
			}
			st := newStore()
			st.err = tt.accErr
			var logs bytes.Buffer
			var logMu sync.Mutex
			h := biway.NewCallbackHandler(biway.CallbackConfig{Secret: func() string { return secret }, Now: clock,
				Logger: slog.New(slog.NewJSONHandler(&lockedWriter{w: &logs, mu: &logMu}, nil))}, st)
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequestWithContext(t.Context(), method, "/webhooks/biway", strings.NewReader(tt.body))
			for k, v := range tt.header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			require.Equal(t, tt.want, rec.Code, rec.Body.String())
			if tt.want != http.StatusOK {
				require.Contains(t, rec.Body.String(), `"error":true`)
			} else {
				require.Empty(t, rec.Body.String())
			}
			_, calls := st.snapshot()
			require.Equal(t, tt.accepted, calls == 1, "acceptor called %d times", calls)
			logMu.Lock()
			defer logMu.Unlock()
			require.NotContains(t, logs.String(), strings.TrimPrefix(testSecret, "whsec_"))
		})
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestCallbackSecretRotates: the secret is read per request, so a new registration applies at once.
func TestCallbackSecretRotates(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	secret := testSecret
	url := serve(t, biway.CallbackConfig{Secret: func() string { mu.Lock(); defer mu.Unlock(); return secret }}, newStore())
	status, _ := postTo(t, url, signed(t, testSecret, "msg_1", time.Now(), report), report)
	require.Equal(t, http.StatusOK, status)

	mu.Lock()
	secret = vectors[1].secret
	mu.Unlock()
	status, _ = postTo(t, url, signed(t, testSecret, "msg_2", time.Now(), report), report)
	require.Equal(t, http.StatusUnauthorized, status)
	status, _ = postTo(t, url, signed(t, vectors[1].secret, "msg_3", time.Now(), report), report)
	require.Equal(t, http.StatusOK, status)
}
