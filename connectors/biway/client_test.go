package biway_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/biway"
	"github.com/passerelle/passerelle/connectors/biway/biwaysim"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/transforms"
)

// Numbers under the simulator's default rules: an even last digit takes RCS, "99" fails.
const (
	rcsNumber  = "+33612345678"
	smsNumber  = "+33612345677"
	failNumber = "+33612345699"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func startSim(t *testing.T, cfg biwaysim.SimConfig) *biwaysim.Sim {
	t.Helper()
	sim, err := biwaysim.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	return sim
}

func newClient(t *testing.T, sim *biwaysim.Sim, mod ...func(*biway.Config)) *biway.Client {
	t.Helper()
	cfg := biway.Config{Mobile: transforms.MobileE164, BaseURL: sim.URL(), APIKey: sim.APIKey(), Timeout: 2 * time.Second, RetryWaitMax: 200 * time.Millisecond}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := biway.New(cfg, httpclient.NewMetrics(prometheus.NewRegistry()))
	require.NoError(t, err)
	return c
}

// apiErr asserts err is the connector's classified error and returns it.
func apiErr(t *testing.T, err error) *httpclient.Error {
	t.Helper()
	var he *httpclient.Error
	require.ErrorAs(t, err, &he)
	require.Equal(t, "biway", he.Connector)
	return he
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	m := transforms.MobileE164
	for _, cfg := range []biway.Config{
		{BaseURL: "", APIKey: "k", Mobile: m},
		{BaseURL: "ftp://example.com", APIKey: "k", Mobile: m},
		{BaseURL: "/relative", APIKey: "k", Mobile: m},
		{BaseURL: "http://127.0.0.1:1", APIKey: "", Mobile: m},
		{BaseURL: "http://127.0.0.1:1", APIKey: "k"}, // no Mobile check
	} {
		_, err := biway.New(cfg, nil)
		require.Error(t, err, "config %+v", cfg)
		require.NotContains(t, err.Error(), cfg.APIKey+"x", "error quotes the key")
	}
}

func TestPartnerAccountCalls(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{})
	c := newClient(t, sim)
	ctx := t.Context()

	id, err := c.RegisterCallback(ctx, "http://127.0.0.1:9/webhooks/biway", testSecret)
	require.NoError(t, err)
	require.NotEmpty(t, id)
	gotURL, gotSecret := sim.Callback()
	require.Equal(t, "http://127.0.0.1:9/webhooks/biway", gotURL)
	require.Equal(t, testSecret, gotSecret)

	co, err := c.CreateCompany(ctx, biway.Company{Nom: "Formations du Sud", Siret: "12345678901234", Ville: "Nîmes"})
	require.NoError(t, err)
	require.NotEmpty(t, co.ID)
	require.Equal(t, "pending", co.Etat)

	acc, err := c.CreateAccount(ctx, biway.Account{Etablissement: co.ID, Nom: "Durand", Email: "c.durand@example.com"})
	require.NoError(t, err)
	require.NotEmpty(t, acc.ID)
	require.Equal(t, "pending", acc.Etat)
}

func TestUserAccountCalls(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{})
	c := newClient(t, sim)
	ctx := t.Context()

	ag, err := c.CreateAgent(ctx, biway.Agent{Nom: "Accueil", Description: "Rappel des candidats"})
	require.NoError(t, err)
	require.NotEmpty(t, ag.ID)

	tst, err := c.CreateRCSTester(ctx, biway.RCSTester{Agent: ag.ID, Telephone: "06 12 34 56 78"})
	require.NoError(t, err)
	require.NotEmpty(t, tst.ID)

	tpl, err := c.CreateTemplate(ctx, biway.Template{Nom: "accuse", Canal: biway.ChannelAuto,
		Texte: "Bonjour {prenom}, nous vous rappelons {horaire}.", Variables: []string{"prenom", "horaire"}})
	require.NoError(t, err)
	require.NotEmpty(t, tpl.ID)

	tok, err := c.ChatbotToken(ctx, biway.ChatToken{Agent: ag.ID, Reference: "evt_tok"})
	require.NoError(t, err)
	require.NotEmpty(t, tok.Jeton)
	require.True(t, strings.HasPrefix(tok.URL, sim.URL()), "chat url %q", tok.URL)

	sub, err := c.Submit(ctx, biway.Submission{To: "06 12 34 56 77", Modele: tpl.ID,
		Variables: map[string]string{"prenom": "Camille"}, Reference: "evt_1"})
	require.NoError(t, err)
	require.NotEmpty(t, sub.MessageID)
	require.Equal(t, "accepte", sub.Statut)

	cv, err := c.Conversation(ctx, biway.Conversation{Destinataires: []string{rcsNumber, "+262692123456"},
		Texte: "Votre session commence lundi.", Reference: "evt_cv"})
	require.NoError(t, err)
	require.NotEmpty(t, cv.ConversationID)

	bc, err := c.Broadcast(ctx, biway.Broadcast{Modele: tpl.ID, Destinataires: []biway.Recipient{
		{To: "+33700000002", Reference: "evt_b1"},
		{To: "01 23 45 67 89", Reference: "evt_b2"}, // a landline: refused locally
		{To: "0690123456", Reference: "evt_b3"},
	}})
	require.NoError(t, err)
	require.NotEmpty(t, bc.BroadcastID)
	require.Equal(t, 2, bc.Acceptes)
	require.Equal(t, []biway.Refusal{{To: "01 23 45 67 89", Raison: biway.ErrNotMobile.Error()}}, bc.Refuses)

	// Numbers went out in E.164, the submission's channel defaulted to auto and resolved to SMS.
	require.Equal(t, 1, sim.MessagesTo(smsNumber))
	require.Equal(t, 1, sim.MessagesTo("+590690123456"))
	require.Equal(t, 1, sim.MessagesTo("+262692123456"))
	subs := sim.Submissions()
	require.Len(t, subs, 5)
	require.Equal(t, "sms", subs[0].Canal)
	require.Equal(t, "evt_1", subs[0].Reference)
	require.Equal(t, "Camille", subs[0].Variables["prenom"])
}

func TestSubmitIsIdempotentOnReference(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{})
	c := newClient(t, sim)
	s := biway.Submission{To: rcsNumber, Canal: biway.ChannelAuto, Texte: "Bonjour", Reference: "evt_same"}

	first, err := c.Submit(t.Context(), s)
	require.NoError(t, err)
	for range 3 {
		again, err := c.Submit(t.Context(), s)
		require.NoError(t, err)
		require.Equal(t, first.MessageID, again.MessageID)
	}
	// A broadcast carrying the same reference does not message the person again either.
	_, err = c.Broadcast(t.Context(), biway.Broadcast{Modele: "tpl", Destinataires: []biway.Recipient{{To: rcsNumber, Reference: "evt_same"}}})
	require.NoError(t, err)
	require.Equal(t, 1, sim.MessagesTo(rcsNumber))
	require.Len(t, sim.Submissions(), 1)
	require.Equal(t, "rcs", sim.Submissions()[0].Canal)
}

func TestRefusedLocally(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{})
	c := newClient(t, sim)
	ctx := t.Context()
	tests := []struct {
		name    string
		call    func() error
		wantErr error
	}{
		{"landline", func() error {
			_, err := c.Submit(ctx, biway.Submission{To: "01 23 45 67 89", Texte: "x", Reference: "r"})
			return err
		}, biway.ErrNotMobile},
		{"Réunion landline", func() error {
			_, err := c.Submit(ctx, biway.Submission{To: "+262262123456", Texte: "x", Reference: "r"})
			return err
		}, biway.ErrNotMobile},
		{"foreign mobile", func() error {
			_, err := c.Submit(ctx, biway.Submission{To: "+447700900123", Texte: "x", Reference: "r"})
			return err
		}, biway.ErrNotMobile},
		{"garbage", func() error {
			_, err := c.Submit(ctx, biway.Submission{To: "appelez-moi", Texte: "x", Reference: "r"})
			return err
		}, biway.ErrNotMobile},
		{"no reference", func() error {
			_, err := c.Submit(ctx, biway.Submission{To: rcsNumber, Texte: "x"})
			return err
		}, biway.ErrInvalidRequest},
		{"unknown channel", func() error {
			_, err := c.Submit(ctx, biway.Submission{To: rcsNumber, Canal: "whatsapp", Texte: "x", Reference: "r"})
			return err
		}, biway.ErrInvalidRequest},
		{"no text nor template", func() error {
			_, err := c.Submit(ctx, biway.Submission{To: rcsNumber, Reference: "r"})
			return err
		}, biway.ErrInvalidRequest},
		{"tester on a landline", func() error {
			_, err := c.CreateRCSTester(ctx, biway.RCSTester{Agent: "ag", Telephone: "0123456789"})
			return err
		}, biway.ErrNotMobile},
		{"conversation with a landline", func() error {
			_, err := c.Conversation(ctx, biway.Conversation{Destinataires: []string{rcsNumber, "0123456789"}, Texte: "x", Reference: "r"})
			return err
		}, biway.ErrNotMobile},
		{"callback secret that cannot sign", func() error {
			_, err := c.RegisterCallback(ctx, "https://passerelle.example/webhooks/biway", "not base64!")
			return err
		}, biway.ErrInvalidRequest},
		{"broadcast above the limit", func() error {
			_, err := c.Broadcast(ctx, biway.Broadcast{Modele: "t", Destinataires: make([]biway.Recipient, biway.MaxBroadcast+1)})
			return err
		}, biway.ErrInvalidRequest},
		{"broadcast without template", func() error {
			_, err := c.Broadcast(ctx, biway.Broadcast{Destinataires: []biway.Recipient{{To: rcsNumber, Reference: "r"}}})
			return err
		}, biway.ErrInvalidRequest},
		{"broadcast recipient without reference", func() error {
			_, err := c.Broadcast(ctx, biway.Broadcast{Modele: "t", Destinataires: []biway.Recipient{{To: rcsNumber}}})
			return err
		}, biway.ErrInvalidRequest},
	}
	for _, tt := range tests {
		err := tt.call()
		require.ErrorIs(t, err, tt.wantErr, tt.name)
		he := apiErr(t, err)
		require.Equal(t, httpclient.Permanent, he.Outcome, tt.name)
		require.Zero(t, he.Attempts, tt.name)
		for _, n := range []string{"0123456789", "01 23 45 67 89", "447700900123", "262262123456"} {
			require.NotContains(t, err.Error(), n, "%s: the error quotes the number", tt.name)
		}
	}
	// A broadcast with no mobile left answers the local refusals without a request.
	bc, err := c.Broadcast(ctx, biway.Broadcast{Modele: "t", Destinataires: []biway.Recipient{{To: "0123456789", Reference: "r"}}})
	require.NoError(t, err)
	require.Len(t, bc.Refuses, 1)
	require.Zero(t, sim.Requests(), "a refused call reached the partner")
}

func TestPartnerErrorCodeSurfaced(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{})
	c := newClient(t, sim)

	_, err := c.CreateCompany(t.Context(), biway.Company{Nom: "X", Siret: "123"})
	he := apiErr(t, err)
	require.Equal(t, http.StatusBadRequest, he.Status)
	require.Equal(t, httpclient.Permanent, he.Outcome)
	require.Equal(t, 1, he.Attempts, "a permanent error is not retried")
	code, ok := biway.CodeOf(err)
	require.True(t, ok)
	require.Equal(t, biwaysim.CodeInvalidSiret, code)
	require.Contains(t, err.Error(), biwaysim.CodeInvalidSiret)
	require.Contains(t, he.Message, "siret invalide")

	_, err = c.CreateAccount(t.Context(), biway.Account{Etablissement: "co_nope", Nom: "D", Email: "d@example.com"})
	code, _ = biway.CodeOf(err)
	require.Equal(t, biwaysim.CodeUnknownCompany, code)
}

func TestBadKey(t *testing.T) {
	t.Parallel()
	sim := startSim(t, biwaysim.SimConfig{})
	c := newClient(t, sim, func(cfg *biway.Config) { cfg.APIKey = "wrong-key-s3cret" })
	_, err := c.Submit(t.Context(), biway.Submission{To: rcsNumber, Texte: "x", Reference: "r"})
	he := apiErr(t, err)
	require.Equal(t, http.StatusUnauthorized, he.Status)
	require.Equal(t, httpclient.Permanent, he.Outcome)
	code, _ := biway.CodeOf(err)
	require.Equal(t, biwaysim.CodeUnauthorized, code)
	require.NotContains(t, err.Error(), "wrong-key-s3cret")
	require.Zero(t, sim.MessagesTo(rcsNumber))
}

func TestRetries(t *testing.T) {
	t.Parallel()
	s := biway.Submission{To: rcsNumber, Texte: "x", Reference: "evt_r"}

	t.Run("a short outage is retried within the call", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, biwaysim.SimConfig{})
		sim.FailNext(2, http.StatusServiceUnavailable, "0")
		ans, err := newClient(t, sim).Submit(t.Context(), s)
		require.NoError(t, err)
		require.NotEmpty(t, ans.MessageID)
		require.Equal(t, 3, sim.Requests())
		require.Equal(t, 1, sim.MessagesTo(rcsNumber))
	})
	t.Run("RetryMax is 2", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, biwaysim.SimConfig{})
		sim.FailNext(10, http.StatusBadGateway, "")
		_, err := newClient(t, sim).Submit(t.Context(), s)
		he := apiErr(t, err)
		require.Equal(t, httpclient.Retry, he.Outcome)
		require.Equal(t, 3, he.Attempts)
		require.Equal(t, 3, sim.Requests())
		code, _ := biway.CodeOf(err)
		require.Equal(t, biwaysim.CodeInjected, code)
	})
	t.Run("a long Retry-After is returned, not waited for", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, biwaysim.SimConfig{})
		sim.FailNext(1, http.StatusTooManyRequests, "120")
		start := time.Now()
		_, err := newClient(t, sim).Submit(t.Context(), s)
		he := apiErr(t, err)
		require.Less(t, time.Since(start), 5*time.Second)
		require.Equal(t, http.StatusTooManyRequests, he.Status)
		require.Equal(t, httpclient.Retry, he.Outcome)
		require.Equal(t, 120*time.Second, he.RetryAfter)
		d, ok := httpclient.RetryAfterOf(err)
		require.True(t, ok)
		require.Equal(t, 120*time.Second, d)
		require.Equal(t, 1, he.Attempts)
	})
	t.Run("410 is gone", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, biwaysim.SimConfig{})
		sim.FailNext(1, http.StatusGone, "")
		_, err := newClient(t, sim).Submit(t.Context(), s)
		require.True(t, httpclient.IsGone(err))
	})
	t.Run("a slow partner times out and is retryable", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, biwaysim.SimConfig{})
		sim.SetSlow(time.Minute)
		c := newClient(t, sim, func(cfg *biway.Config) { cfg.Timeout = 100 * time.Millisecond })
		_, err := c.Submit(t.Context(), s)
		he := apiErr(t, err)
		require.Equal(t, httpclient.Retry, he.Outcome)
		require.Zero(t, he.Status)
		require.NotContains(t, err.Error(), "/messenger/submit?") // no URL beyond the route
		require.NotContains(t, err.Error(), sim.URL())
	})
	t.Run("the caller's cancellation stops the call", func(t *testing.T) {
		t.Parallel()
		sim := startSim(t, biwaysim.SimConfig{})
		sim.SetSlow(time.Minute)
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		_, err := newClient(t, sim).Submit(ctx, s)
		require.True(t, errors.Is(err, context.DeadlineExceeded), "err = %v", err)
	})
}

func TestPartnerMessageIsScrubbed(t *testing.T) {
	t.Parallel()
	srv := startEcho(t, http.StatusBadRequest, `{"error":true,"code":"INVALID_NUMBER","message":"numero +33612345678 refuse pour jean.dupont@example.com"}`)
	c, err := biway.New(biway.Config{Mobile: transforms.MobileE164, BaseURL: srv, APIKey: "k"}, nil)
	require.NoError(t, err)
	_, err = c.Submit(t.Context(), biway.Submission{To: rcsNumber, Texte: "x", Reference: "r"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "612345678")
	require.NotContains(t, err.Error(), "jean.dupont")
	require.Contains(t, err.Error(), "INVALID_NUMBER")
}
