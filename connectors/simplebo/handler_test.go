package simplebo_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/connectors/simplebo/simplebosim"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/redact/redacttest"
	"github.com/passerelle/passerelle/transforms"
)

const secret = "s3cr3t-path-Segment"

// acceptor records the events it is given; err, when set, is returned instead.
type acceptor struct {
	mu  sync.Mutex
	evs []simplebo.Event
	err error
}

func (a *acceptor) AcceptEvent(_ context.Context, ev simplebo.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.evs = append(a.evs, ev)
	return nil
}

func (a *acceptor) events() []simplebo.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]simplebo.Event(nil), a.evs...)
}

type hook struct {
	srv  *httptest.Server
	acc  *acceptor
	sim  *simplebosim.Sim
	logs *redacttest.Buffer
	reg  *prometheus.Registry
}

func (h hook) url(seg string) string { return h.srv.URL + "/webhooks/simplebo/" + seg }

// newHook serves the handler the way the daemon mounts it, next to a 404 for unknown paths
// written as the daemon writes it.
func newHook(t *testing.T, mutate ...func(*simplebo.WebhookConfig)) hook {
	t.Helper()
	h := hook{acc: &acceptor{}, logs: &redacttest.Buffer{}, reg: prometheus.NewRegistry()}
	cfg := simplebo.WebhookConfig{
		Secret:  secret,
		Logger:  slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: simplebo.NewMetrics(h.reg),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	mux := http.NewServeMux()
	mux.Handle("/webhooks/simplebo/", simplebo.NewWebhookHandler(cfg, h.acc))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteError(w, http.StatusNotFound, "no such endpoint")
	})
	h.srv = httptest.NewServer(mux)
	t.Cleanup(h.srv.Close)
	var err error
	h.sim, err = simplebosim.Start(simplebosim.SimConfig{})
	require.NoError(t, err)
	t.Cleanup(h.sim.Close)
	return h
}

func post(t *testing.T, method, url, ct string, body []byte, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, bytes.NewReader(body))
	require.NoError(t, err)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestWebhookWrongSecretLooksLikeAnUnknownPath(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	body := []byte("event_type=1&client_id=a")
	wantStatus, wantBody := post(t, http.MethodPost, h.srv.URL+"/nothing/here", formCT, body, nil)
	require.Equal(t, http.StatusNotFound, wantStatus)
	require.JSONEq(t, `{"error":true,"message":"no such endpoint"}`, wantBody)

	for _, u := range []string{
		h.url("wrong"), h.url(""), h.url(secret + "x"), h.url(secret[:len(secret)-1]),
		h.url(secret + "/"), h.url(secret + "/more"), h.srv.URL + "/webhooks/simplebo/" + strings.ToUpper(secret),
	} {
		for _, method := range []string{http.MethodPost, http.MethodGet} {
			status, got := post(t, method, u, formCT, body, nil)
			require.Equal(t, wantStatus, status, "%s %s", method, u)
			require.Equal(t, wantBody, got, "%s %s", method, u)
		}
	}
	require.Empty(t, h.acc.events())
	require.NotContains(t, h.logs.String(), "wrong", "the guessed path is not logged")
	require.Equal(t, 14.0, counter(h.reg, "passerelle_simplebo_webhook_requests_total", "404"))

	status, _ := post(t, http.MethodGet, h.url(secret), "", nil, nil)
	require.Equal(t, http.StatusMethodNotAllowed, status, "with the right secret, the method is checked")
}

func TestWebhookWithoutSecretRefusesEverything(t *testing.T) {
	t.Parallel()
	h := newHook(t, func(c *simplebo.WebhookConfig) { c.Secret = "" })
	status, _ := post(t, http.MethodPost, h.url(""), formCT, []byte("event_type=1"), nil)
	require.Equal(t, http.StatusNotFound, status)
	require.Contains(t, h.logs.String(), "no webhook secret configured")
}

func TestWebhookToken(t *testing.T) {
	t.Parallel()
	auth := httpapi.TokenAuth{Scheme: httpapi.AuthToken, Token: "hook-token"}
	h := newHook(t, func(c *simplebo.WebhookConfig) { c.Auth = &auth })
	ev := simplebosim.EventsFor("g-1", date("2026-01-05"))[0]

	status, err := h.sim.SendEvent(context.Background(), h.url(secret), ev)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status, "no token")
	status, err = h.sim.SendEvent(context.Background(), h.url(secret), ev,
		simplebosim.WithAuth(httpapi.TokenAuth{Scheme: httpapi.AuthToken, Token: "other"}))
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, status, "wrong token")
	status, err = h.sim.SendEvent(context.Background(), h.url("wrong"), ev, simplebosim.WithAuth(auth))
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, status, "right token, wrong secret")
	require.Empty(t, h.acc.events())

	status, err = h.sim.SendEvent(context.Background(), h.url(secret), ev, simplebosim.WithAuth(auth))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, []simplebo.Event{ev}, h.acc.events())
	redacttest.RequireNoLeak(t, h.logs.String(), "hook-token", secret)
}

func TestWebhookEncodings(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	ev := simplebosim.EventsFor("g-2", date("2026-01-05"), simplebo.LeadCreated, simplebo.ServiceActivated)[1]
	for _, enc := range []simplebosim.Encoding{simplebosim.Form, simplebosim.Multipart, simplebosim.JSON} {
		status, err := h.sim.SendEvent(context.Background(), h.url(secret), ev, simplebosim.WithEncoding(enc))
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "encoding %d", enc)
	}
	require.Equal(t, []simplebo.Event{ev, ev, ev}, h.acc.events())

	status, body := post(t, http.MethodPost, h.url(secret), "text/csv", []byte("event_type;1"), nil)
	require.Equal(t, http.StatusUnsupportedMediaType, status, body)
	status, body = post(t, http.MethodPost, h.url(secret), formCT, []byte("event_type=1&billing_starting_date=demain"), nil)
	require.Equal(t, http.StatusBadRequest, status)
	require.JSONEq(t, `{"error":true,"message":"invalid event: billing_starting_date is not a date (want YYYY-MM-DD)"}`, body)
	require.Len(t, h.acc.events(), 3)
}

func TestWebhookBodyLimit(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	const limit = 64 << 10
	head := "event_type=1&client_id=a&pad="
	fits := []byte(head + strings.Repeat("x", limit-len(head)))
	status, body := post(t, http.MethodPost, h.url(secret), formCT, fits, nil)
	require.Equal(t, http.StatusOK, status, body)

	status, body = post(t, http.MethodPost, h.url(secret), formCT, append(fits, 'x'), nil)
	require.Equal(t, http.StatusRequestEntityTooLarge, status)
	require.JSONEq(t, `{"error":true,"message":"request body too large"}`, body)

	// Chunked, without a Content-Length.
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, h.url(secret),
		io.MultiReader(bytes.NewReader(fits), strings.NewReader("x")))
	require.NoError(t, err)
	req.Header.Set("Content-Type", formCT)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	require.Len(t, h.acc.events(), 1)
}

func TestWebhookAcceptorErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err        error
		wantStatus int
		wantBody   string
	}{
		{fmt.Errorf("client unknown: %w", simplebo.ErrInvalidEvent), 400, `{"error":true,"message":"client unknown: invalid event"}`},
		{errors.New("broker down"), 503, `{"error":true,"message":"event could not be stored, retry later"}`},
	}
	for _, tc := range tests {
		h := newHook(t)
		h.acc.err = tc.err
		body, ct, err := simplebosim.Encode(simplebosim.EventsFor("g-3", date("2026-01-05"))[0], simplebosim.Form)
		require.NoError(t, err)
		status, got := post(t, http.MethodPost, h.url(secret), ct, body, nil)
		require.Equal(t, tc.wantStatus, status)
		require.JSONEq(t, tc.wantBody, got)
		require.Equal(t, 1.0, counter(h.reg, "passerelle_simplebo_webhook_requests_total", fmt.Sprint(tc.wantStatus)))
		redacttest.RequireNoLeak(t, h.logs.String(), "contact+g-3@example.com", "0612345678", "Martin", "Claire", "12 rue des Lilas")
	}
}

// Deliveries repeated and shuffled give one event id per distinct event, and unknown codes go
// through as sent.
func TestWebhookDuplicatesShareAnEventID(t *testing.T) {
	t.Parallel()
	h := newHook(t)
	chain := simplebosim.EventsFor("g-4", date("2026-03-10"),
		simplebo.LeadCreated, simplebo.ServiceActivated, simplebo.BillingStarted, simplebo.SwitchedToFree, 9)
	want := map[string]bool{}
	for _, ev := range chain {
		want[transforms.EventID("simplebo", ev.Canonical())] = true
	}
	require.Len(t, want, len(chain), "distinct events, distinct ids")

	sent := simplebosim.Scramble(chain, rand.New(rand.NewPCG(1, 2)), 7)
	require.Len(t, sent, len(chain)+7)
	require.NoError(t, h.sim.SendEvents(context.Background(), h.url(secret), sent))

	got := h.acc.events()
	require.Len(t, got, len(sent), "every delivery reaches the acceptor, which dedupes")
	ids := map[string]int{}
	for _, ev := range got {
		ids[transforms.EventID("simplebo", ev.Canonical())]++
	}
	require.Len(t, ids, len(chain))
	for id := range ids {
		require.True(t, want[id], "unexpected id %s", id)
	}
	require.Equal(t, float64(countType(sent, 9)), counter(h.reg, "passerelle_simplebo_webhook_events_total", "other"))
	redacttest.RequireNoLeak(t, h.logs.String(), "contact+g-4@example.com", "0612345678", "Martin")
}

func countType(evs []simplebo.Event, c simplebo.EventCode) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == c {
			n++
		}
	}
	return n
}

// An acceptor still at work when the partner hangs up finishes with a live context.
func TestWebhookFinishesAfterTheSenderHangsUp(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	acc := acceptorFunc(func(ctx context.Context, _ simplebo.Event) error {
		close(entered)
		<-release
		done <- ctx.Err()
		return nil
	})
	mux := http.NewServeMux()
	mux.Handle("/webhooks/simplebo/", simplebo.NewWebhookHandler(simplebo.WebhookConfig{Secret: secret}, acc))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	sim, err := simplebosim.Start(simplebosim.SimConfig{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sent := make(chan error, 1)
	go func() {
		_, err := sim.SendEvent(ctx, srv.URL+"/webhooks/simplebo/"+secret, simplebosim.EventsFor("g", date("2026-01-01"))[0])
		sent <- err
	}()
	waitFor(t, entered)
	cancel()
	require.ErrorIs(t, <-sent, context.Canceled)
	close(release)
	select {
	case err := <-done:
		require.NoError(t, err, "the acceptor's context is not cancelled")
	case <-time.After(5 * time.Second):
		t.Fatal("the acceptor did not finish")
	}
}

func waitFor(t *testing.T, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("timed out")
	}
}

type acceptorFunc func(context.Context, simplebo.Event) error

func (f acceptorFunc) AcceptEvent(ctx context.Context, ev simplebo.Event) error { return f(ctx, ev) }
