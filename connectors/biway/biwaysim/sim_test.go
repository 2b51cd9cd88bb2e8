package biwaysim_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/biway/biwaysim"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func start(t *testing.T, cfg biwaysim.SimConfig) *biwaysim.Sim {
	t.Helper()
	s, err := biwaysim.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func call(t *testing.T, s *biwaysim.Sim, key, route, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+route, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a := answer{status: resp.StatusCode, header: resp.Header}
	require.NoError(t, json.Unmarshal(raw, &a.body), "answer %s", raw)
	return a
}

func TestErrorsInThePartnerShape(t *testing.T) {
	t.Parallel()
	s := start(t, biwaysim.SimConfig{APIKey: "k"})
	tests := []struct {
		name, key, route, body string
		status                 int
		code                   string
	}{
		{"bad key", "nope", "/messenger/submit", `{}`, 401, biwaysim.CodeUnauthorized},
		{"unknown field", "k", "/messenger/submit", `{"numero":"+33612345678"}`, 400, biwaysim.CodeBadRequest},
		{"not JSON", "k", "/client/company", `nom=x`, 400, biwaysim.CodeBadRequest},
		{"national number", "k", "/messenger/submit", `{"to":"0612345678","canal":"sms","texte":"x","reference":"r"}`, 400, biwaysim.CodeInvalidNumber},
		{"landline", "k", "/messenger/submit", `{"to":"+33123456789","canal":"sms","texte":"x","reference":"r"}`, 400, biwaysim.CodeInvalidNumber},
		{"channel", "k", "/messenger/submit", `{"to":"+33612345678","canal":"fax","texte":"x","reference":"r"}`, 400, biwaysim.CodeInvalidChannel},
		{"no reference", "k", "/messenger/submit", `{"to":"+33612345678","canal":"sms","texte":"x"}`, 400, biwaysim.CodeMissingField},
		{"null template, no text", "k", "/messenger/submit", `{"to":"+33612345678","canal":"sms","modele":null,"reference":"r"}`, 400, biwaysim.CodeMissingField},
		{"siret", "k", "/client/company", `{"nom":"x","siret":"1234567890123A"}`, 400, biwaysim.CodeInvalidSiret},
		{"secret", "k", "/system/callback", `{"url":"http://127.0.0.1:1/","secret":"plain"}`, 400, biwaysim.CodeInvalidSecret},
		{"unknown agent", "k", "/chatbot/token", `{"agent":"ag_x"}`, 400, biwaysim.CodeUnknownAgent},
		{"crowded conversation", "k", "/messenger/conversation",
			`{"destinataires":["+33612345678","+33612345678","+33612345678","+33612345678","+33612345678","+33612345678","+33612345678","+33612345678","+33612345678","+33612345678","+33612345678"],"canal":"sms","texte":"x","reference":"r"}`,
			400, biwaysim.CodeTooManyRecipient},
	}
	for _, tt := range tests {
		a := call(t, s, tt.key, tt.route, tt.body)
		require.Equal(t, tt.status, a.status, tt.name)
		require.Equal(t, true, a.body["error"], tt.name)
		require.Equal(t, tt.code, a.body["code"], tt.name)
		require.NotEmpty(t, a.body["message"], tt.name)
	}
	require.Empty(t, s.Submissions())
	require.Equal(t, len(tests), s.Requests())
}

func TestBroadcastLimit(t *testing.T) {
	t.Parallel()
	s := start(t, biwaysim.SimConfig{})
	var b strings.Builder
	b.WriteString(`{"modele":"t","canal":"sms","destinataires":[`)
	for i := range biwaysim.MaxBroadcast + 1 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"to":"+3361%07d","reference":"r%d"}`, i, i)
	}
	b.WriteString(`]}`)
	a := call(t, s, s.APIKey(), "/messenger/broadcast", b.String())
	require.Equal(t, 400, a.status)
	require.Equal(t, biwaysim.CodeTooManyRecipient, a.body["code"])
	require.Empty(t, s.Submissions())
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	s := start(t, biwaysim.SimConfig{})
	s.FailNext(2, http.StatusServiceUnavailable, "7")
	const body = `{"to":"+33612345678","canal":"sms","texte":"x","reference":"r"}`
	for range 2 {
		a := call(t, s, s.APIKey(), "/messenger/submit", body)
		require.Equal(t, http.StatusServiceUnavailable, a.status)
		require.Equal(t, "7", a.header.Get("Retry-After"))
		require.Equal(t, biwaysim.CodeInjected, a.body["code"])
	}
	a := call(t, s, s.APIKey(), "/messenger/submit", body)
	require.Equal(t, http.StatusAccepted, a.status)
	require.Equal(t, "accepte", a.body["statut"])
	require.Equal(t, 1, s.MessagesTo("+33612345678"))
}

// receiver records the callbacks it gets after verifying them.
type receiver struct {
	mu   sync.Mutex
	got  []map[string]any
	ids  []string
	errs []error
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := stdwebhook.Verify(secret, req.Header, body, time.Now()); err != nil {
		r.errs = append(r.errs, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		r.errs = append(r.errs, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.got = append(r.got, m)
	r.ids = append(r.ids, req.Header.Get(stdwebhook.HeaderID))
}

func TestCallbacksSignedAndDuplicated(t *testing.T) {
	t.Parallel()
	s := start(t, biwaysim.SimConfig{Duplicates: 2})
	rcv := &receiver{}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	a := call(t, s, s.APIKey(), "/system/callback", fmt.Sprintf(`{"url":%q,"secret":%q}`, srv.URL, secret))
	require.Equal(t, http.StatusOK, a.status)

	// +33612345677 ends odd: SMS under auto, so no "read".
	a = call(t, s, s.APIKey(), "/messenger/submit", `{"to":"+33612345677","canal":"auto","texte":"x","reference":"evt_1"}`)
	require.Equal(t, http.StatusAccepted, a.status)
	require.NoError(t, s.Flush(t.Context()))

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	require.Empty(t, rcv.errs)
	require.Len(t, rcv.got, 6)
	var states []string
	for i := 0; i < len(rcv.got); i += 2 {
		require.Equal(t, rcv.ids[i], rcv.ids[i+1], "a duplicate keeps its webhook-id")
		require.Equal(t, rcv.got[i], rcv.got[i+1])
		require.Equal(t, "MESSENGER_REPORT", rcv.got[i]["type"])
		require.Equal(t, a.body["message_id"], rcv.got[i]["message_id"])
		require.Equal(t, "evt_1", rcv.got[i]["reference"])
		states = append(states, rcv.got[i]["etat"].(string))
	}
	require.Equal(t, []string{"accepted", "sent", "delivered"}, states)
	require.NotEqual(t, rcv.ids[0], rcv.ids[2])
}

func TestCloseTwice(t *testing.T) {
	t.Parallel()
	s, err := biwaysim.Start(biwaysim.SimConfig{Interval: time.Millisecond})
	require.NoError(t, err)
	s.Close()
	s.Close()
}
