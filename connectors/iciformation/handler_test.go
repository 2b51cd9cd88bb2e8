package iciformation_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/redact/redacttest"
)

const testToken = "tok-9f8e7d6c5b4a"

var allSchemes = []httpapi.AuthScheme{httpapi.AuthBearer, httpapi.AuthAPIKey, httpapi.AuthXToken, httpapi.AuthToken}

// recorder is the pipeline's stand-in: it keeps what it is given and fails when told to.
type recorder struct {
	mu    sync.Mutex
	leads []iciformation.Lead
	err   error
}

func (a *recorder) AcceptLead(ctx context.Context, l iciformation.Lead) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("accept lead: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	a.leads = append(a.leads, l)
	return nil
}

func (a *recorder) got() []iciformation.Lead {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]iciformation.Lead(nil), a.leads...)
}

// newServer starts the real handler on loopback.
func newServer(t *testing.T, cfg iciformation.HandlerConfig, acc iciformation.Acceptor) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(iciformation.NewHandler(cfg, acc))
	t.Cleanup(srv.Close)
	return srv
}

func TestHandlerAcceptsSeedWithEveryScheme(t *testing.T) {
	t.Parallel()
	for _, scheme := range allSchemes {
		t.Run(string(scheme), func(t *testing.T) {
			t.Parallel()
			auth := httpapi.TokenAuth{Scheme: scheme, Token: testToken}
			acc := &recorder{}
			srv := newServer(t, iciformation.HandlerConfig{Auth: auth}, acc)
			s := &iciformationsim.Sender{URL: srv.URL, Auth: auth, Client: srv.Client()}

			status, body, err := s.Send(t.Context(), iciformationsim.SeedExample())
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, status)
			require.Empty(t, body, "the partner expects an empty body on success")

			leads := acc.got()
			require.Len(t, leads, 1)
			l := leads[0]
			require.Equal(t, "Doe", l.Nom)
			require.Equal(t, "John", l.Prenom)
			require.Equal(t, "M.", l.Civilite)
			require.Equal(t, "0102030405", l.Tel)
			require.Equal(t, "john.doe@example.com", l.Email)
			require.Equal(t, "paris", l.Ville)
			require.Equal(t, "75001", l.CodePostal)
			require.Equal(t, "Développement Web", l.Formation)
			require.Equal(t, "après-midi", l.HoraireRappel)
			require.Equal(t, "prospect", l.Statut)
			require.Equal(t, "XYZ Formations", l.Client)
			require.Equal(t, "1234", l.IDClient)
			require.Equal(t, string(iciformationsim.SeedExample()), string(l.Raw))
		})
	}
}

func TestHandlerAcceptsBareTokenForm(t *testing.T) {
	t.Parallel()
	acc := &recorder{}
	srv := newServer(t, iciformation.HandlerConfig{Auth: httpapi.TokenAuth{Scheme: httpapi.AuthToken, Token: testToken}}, acc)
	status, body := post(t, srv, http.MethodPost, "application/json; charset=utf-8",
		http.Header{"Authorization": {"Token " + testToken}}, iciformationsim.SeedExample())
	require.Equal(t, http.StatusOK, status, string(body))
	require.Len(t, acc.got(), 1)
}

func TestHandlerKeepsUnknownFieldsAndNumbers(t *testing.T) {
	t.Parallel()
	auth := httpapi.TokenAuth{Scheme: httpapi.AuthBearer, Token: testToken}
	acc := &recorder{}
	srv := newServer(t, iciformation.HandlerConfig{Auth: auth}, acc)
	s := &iciformationsim.Sender{URL: srv.URL, Auth: auth, Client: srv.Client()}
	payload := `{"nom":"Doe","tel":612345678,"email":null,"date_creation":"2024-11-28T10:00:00+01:00","utm":{"source":"x"}}`

	status, _, err := s.Send(t.Context(), []byte(payload))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status)
	leads := acc.got()
	require.Len(t, leads, 1)
	require.Equal(t, "612345678", leads[0].Tel)
	require.Empty(t, leads[0].Email)
	require.Equal(t, payload, string(leads[0].Raw))
}

type rejectRequest struct {
	method, contentType string      // POST and no Content-Type when empty
	header              http.Header // the configured token when nil
	body                []byte
	hideLength          bool // chunked, so the limit is hit while reading
}

type rejectCase struct {
	name        string
	scheme      httpapi.AuthScheme // bearer when empty
	acceptErr   error
	req         rejectRequest
	wantStatus  int
	wantMessage string // substring
}

func TestHandlerRejects(t *testing.T) {
	t.Parallel()
	seed := iciformationsim.SeedExample()
	big := []byte(`{"nom":"` + strings.Repeat("a", 64<<10) + `"}`)
	const ct = "application/json"

	tests := []rejectCase{
		{name: "GET", req: rejectRequest{method: http.MethodGet}, wantStatus: http.StatusMethodNotAllowed, wantMessage: "POST"},
		{name: "PUT", req: rejectRequest{method: http.MethodPut, contentType: ct, body: seed}, wantStatus: http.StatusMethodNotAllowed},

		{name: "text/plain", req: rejectRequest{contentType: "text/plain", body: seed}, wantStatus: http.StatusUnsupportedMediaType},
		{name: "no content type", req: rejectRequest{body: seed}, wantStatus: http.StatusUnsupportedMediaType},
		{name: "form content type", req: rejectRequest{contentType: "application/x-www-form-urlencoded", body: []byte("nom=Doe")}, wantStatus: http.StatusUnsupportedMediaType},

		{name: "over 64 KiB", req: rejectRequest{contentType: ct, body: big}, wantStatus: http.StatusRequestEntityTooLarge},
		{name: "over 64 KiB chunked", req: rejectRequest{contentType: ct, body: big, hideLength: true}, wantStatus: http.StatusRequestEntityTooLarge},

		{name: "malformed JSON", req: rejectRequest{contentType: ct, body: []byte(`{"nom":`)}, wantStatus: http.StatusBadRequest, wantMessage: "malformed JSON"},
		{name: "empty body", req: rejectRequest{contentType: ct}, wantStatus: http.StatusBadRequest, wantMessage: "malformed JSON"},
		{name: "JSON array", req: rejectRequest{contentType: ct, body: []byte(`[` + string(seed) + `]`)}, wantStatus: http.StatusBadRequest, wantMessage: "not a JSON object"},

		{
			name:      "acceptor says invalid",
			acceptErr: fmt.Errorf("%w: no usable contact", iciformation.ErrInvalidLead),
			req:       rejectRequest{contentType: ct, body: seed}, wantStatus: http.StatusBadRequest, wantMessage: "invalid lead: no usable contact",
		},
		{
			name:      "acceptor fails",
			acceptErr: errors.New("publish leads.received: nats: timeout"),
			req:       rejectRequest{contentType: ct, body: seed}, wantStatus: http.StatusServiceUnavailable, wantMessage: "lead could not be stored, retry later",
		},
	}
	for _, scheme := range allSchemes {
		bad := http.Header{}
		httpapi.TokenAuth{Scheme: scheme, Token: testToken + "x"}.SetHeader(bad)
		elsewhere := http.Header{}
		httpapi.TokenAuth{Scheme: otherScheme(scheme), Token: testToken}.SetHeader(elsewhere)
		tests = append(tests,
			rejectCase{name: string(scheme) + " missing token", scheme: scheme, req: rejectRequest{contentType: ct, header: http.Header{}, body: seed}, wantStatus: http.StatusUnauthorized},
			rejectCase{name: string(scheme) + " wrong token", scheme: scheme, req: rejectRequest{contentType: ct, header: bad, body: seed}, wantStatus: http.StatusUnauthorized},
			rejectCase{name: string(scheme) + " right token, wrong header", scheme: scheme, req: rejectRequest{contentType: ct, header: elsewhere, body: seed}, wantStatus: http.StatusUnauthorized},
		)
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			scheme := tt.scheme
			if scheme == "" {
				scheme = httpapi.AuthBearer
			}
			auth := httpapi.TokenAuth{Scheme: scheme, Token: testToken}
			acc := &recorder{err: tt.acceptErr}
			srv := newServer(t, iciformation.HandlerConfig{Auth: auth}, acc)

			header := tt.req.header
			if header == nil {
				header = http.Header{}
				auth.SetHeader(header)
			}
			method := tt.req.method
			if method == "" {
				method = http.MethodPost
			}
			var body io.Reader = bytes.NewReader(tt.req.body)
			if tt.req.hideLength {
				body = io.MultiReader(body)
			}
			status, respBody := do(t, srv, method, tt.req.contentType, header, body)

			require.Equal(t, tt.wantStatus, status, "body %s", respBody)
			var e httpapi.ErrorBody
			require.NoError(t, json.Unmarshal(respBody, &e), "error body must be JSON: %s", respBody)
			require.True(t, e.Error)
			require.NotEmpty(t, e.Message)
			require.Contains(t, e.Message, tt.wantMessage)
			require.NotContains(t, string(respBody), "nats", "internal errors are not sent")
			require.Empty(t, acc.got(), "the lead must not be taken")
		})
	}
}

func otherScheme(s httpapi.AuthScheme) httpapi.AuthScheme {
	if s == httpapi.AuthAPIKey {
		return httpapi.AuthXToken
	}
	return httpapi.AuthAPIKey
}

// The handler must finish making the lead durable when the partner hangs up mid-request.
func TestHandlerAcceptContextOutlivesClient(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	acc := acceptorFunc(func(ctx context.Context, _ iciformation.Lead) error {
		close(started)
		<-release
		done <- ctx.Err()
		return nil
	})
	auth := httpapi.TokenAuth{Scheme: httpapi.AuthBearer, Token: testToken}
	srv := newServer(t, iciformation.HandlerConfig{Auth: auth}, acc)
	s := &iciformationsim.Sender{URL: srv.URL, Auth: auth, Client: srv.Client()}

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, _, err := s.Send(ctx, iciformationsim.SeedExample())
		errc <- err
	}()
	<-started
	cancel()
	require.Error(t, <-errc)
	close(release)
	require.NoError(t, <-done, "AcceptLead's context must survive the client going away")
}

type acceptorFunc func(ctx context.Context, l iciformation.Lead) error

func (f acceptorFunc) AcceptLead(ctx context.Context, l iciformation.Lead) error { return f(ctx, l) }

func TestHandlerEmptyTokenRefusesEverything(t *testing.T) {
	t.Parallel()
	acc := &recorder{}
	srv := newServer(t, iciformation.HandlerConfig{Auth: httpapi.TokenAuth{Scheme: httpapi.AuthBearer}}, acc)
	for _, h := range []http.Header{{}, {"Authorization": {"Bearer "}}, {"Authorization": {"Bearer"}}} {
		status, _ := post(t, srv, http.MethodPost, "application/json", h, iciformationsim.SeedExample())
		require.Equal(t, http.StatusUnauthorized, status, "header %v", h)
	}
	require.Empty(t, acc.got())
}

func TestHandlerMaxBodyBoundary(t *testing.T) {
	t.Parallel()
	seed := iciformationsim.SeedExample()
	tests := []struct {
		name    string
		maxBody int64
		want    int
	}{
		{"exactly the limit", int64(len(seed)), http.StatusOK},
		{"one byte over", int64(len(seed)) - 1, http.StatusRequestEntityTooLarge},
		{"default is 64 KiB", 0, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			auth := httpapi.TokenAuth{Scheme: httpapi.AuthXToken, Token: testToken}
			srv := newServer(t, iciformation.HandlerConfig{Auth: auth, MaxBody: tt.maxBody}, &recorder{})
			s := &iciformationsim.Sender{URL: srv.URL, Auth: auth, Client: srv.Client()}
			status, _, err := s.Send(t.Context(), seed)
			require.NoError(t, err)
			require.Equal(t, tt.want, status)
		})
	}
}

// Logs must name no one: not on success, not on rejection, not on failure.
func TestHandlerLogsNoPersonalData(t *testing.T) {
	t.Parallel()
	var buf redacttest.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	auth := httpapi.TokenAuth{Scheme: httpapi.AuthToken, Token: testToken}
	lead := iciformation.Lead{
		Nom: "Lefèvre", Prenom: "Hélène", Civilite: "Mme", Tel: "06 12 34 56 78", Email: "helene.lefevre@orange.fr",
		Ville: "lyon", CodePostal: "69003", Formation: "Comptabilité", Client: "XYZ Formations", IDClient: "1234",
	}
	for _, acc := range []iciformation.Acceptor{
		&recorder{},
		&recorder{err: errors.New("publish: broker unavailable")},
		&recorder{err: fmt.Errorf("%w: no usable contact", iciformation.ErrInvalidLead)},
	} {
		srv := newServer(t, iciformation.HandlerConfig{Auth: auth, Logger: logger}, acc)
		s := &iciformationsim.Sender{URL: srv.URL, Auth: auth, Client: srv.Client()}
		_, err := s.SendLead(t.Context(), lead)
		require.NoError(t, err)
		// and with a wrong token, and a broken body
		bad := &iciformationsim.Sender{URL: srv.URL, Auth: httpapi.TokenAuth{Scheme: httpapi.AuthToken, Token: testToken + "!"}, Client: srv.Client()}
		_, err = bad.SendLead(t.Context(), lead)
		require.NoError(t, err)
		_, _, err = s.Send(t.Context(), []byte(`{"email":"helene.lefevre@orange.fr","tel":0612`))
		require.NoError(t, err)
	}

	logs := buf.String()
	require.Contains(t, logs, "broker unavailable", "the internal error is logged")
	require.Contains(t, logs, "lead accepted")
	redacttest.RequireNoLeak(t, logs, lead.Email, lead.Tel, "0612345678", lead.Nom, lead.Prenom, testToken)
}

// post sends body with the given content type (none when empty) and headers.
func post(t *testing.T, srv *httptest.Server, method, contentType string, header http.Header, body []byte) (int, []byte) {
	t.Helper()
	return do(t, srv, method, contentType, header, bytes.NewReader(body))
}

func do(t *testing.T, srv *httptest.Server, method, contentType string, header http.Header, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL, body)
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer func() { require.NoError(t, resp.Body.Close()) }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}
