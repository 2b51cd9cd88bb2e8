package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/biway/biwaysim"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/redact/redacttest"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
)

// startBiway runs the daemon with lead acknowledgements on (window open all day) against a Bi-way
// simulator, and registers the callback through the admin API as register-callback does.
func startBiway(t *testing.T, simCfg biwaysim.SimConfig) (*fixture, *biwaysim.Sim) {
	t.Helper()
	return startBiwayWith(t, simCfg, nil, "PASSERELLE_BIWAY_MAX_PER_NUMBER_PER_DAY=5")
}

// startBiwayWith is startBiway with a logger (nil: the test log) and more variables.
func startBiwayWith(t *testing.T, simCfg biwaysim.SimConfig, log *slog.Logger, env ...string) (*fixture, *biwaysim.Sim) {
	t.Helper()
	sim, err := biwaysim.Start(simCfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	f := newFixture(t, append([]string{
		"PASSERELLE_BIWAY_URL=" + sim.URL(), "PASSERELLE_BIWAY_API_KEY=" + sim.APIKey(), "PASSERELLE_BIWAY_LEAD_ACK=on",
		"PASSERELLE_BIWAY_TEMPLATE=tpl_ack", "PASSERELLE_BIWAY_SEND_WINDOW=00:00-24:00 Europe/Paris",
	}, env...)...)
	f.Log = log
	f.start()
	var ans struct {
		ID     string `json:"id"`
		URL    string `json:"url"`
		Secret string `json:"secret_source"`
	}
	hook := f.biwayHook()
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodPost, "/admin/biway/callback", map[string]string{"url": hook}, &ans))
	require.Equal(t, "generated", ans.Secret)
	u, secret := sim.Callback()
	require.Equal(t, hook, u)
	require.NoError(t, stdwebhook.CheckSecret(secret))
	return f, sim
}

func (f *fixture) biwayHook() string { return "http://" + f.run.App.HTTPAddr() + "/webhooks/biway" }

func (f *fixture) biwayStatus(t testing.TB) pipelines.BiwayStatus {
	t.Helper()
	var st pipelines.BiwayStatus
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodGet, "/admin/biway", nil, &st))
	return st
}

// statusEvents are the message.status_changed events the CRM received, by id.
func statusEvents(t testing.TB, f *fixture) map[string]pipelines.MessageStatusChanged {
	t.Helper()
	out := map[string]pipelines.MessageStatusChanged{}
	for _, d := range f.Receiver.Deliveries() {
		var env struct {
			Type string          `json:"type"`
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		require.NoError(t, json.Unmarshal(d.Body, &env))
		if env.Type != pipelines.EventMessageStatusChanged {
			continue
		}
		var ev pipelines.MessageStatusChanged
		require.NoError(t, json.Unmarshal(env.Data, &ev))
		out[env.ID] = ev
	}
	return out
}

// A lead in: one submission with the lead's variables and its event id as reference; the
// reports come back signed and reach the CRM as message.status_changed correlated to the lead;
// the lead itself still reaches the CRM once; a replay of the lead sends nothing.
func TestBiwayLeadAckEndToEnd(t *testing.T) {
	t.Parallel()
	f, sim := startBiway(t, biwaysim.SimConfig{})
	body := leadBody(1, "biway")
	status, _ := f.post(t, body)
	require.Equal(t, http.StatusOK, status)
	testwait.For(t, 30*time.Second, "the submission", func() bool { return len(sim.Submissions()) == 1 })
	sub := sim.Submissions()[0]
	eventID := eventIDOf(body)
	require.Equal(t, eventID, sub.Reference)
	require.Equal(t, "+33600000001", sub.To)
	require.Equal(t, "tpl_ack", sub.Modele)
	require.Equal(t, map[string]string{"prenom": "Lead1", "formation": "Comptabilité", "horaire_rappel": "matin"}, sub.Variables)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, sim.Flush(ctx), "every report answered 200")
	require.NoError(t, f.Receiver.WaitForUnique(ctx, 4)) // lead.created and three changes
	evs := statusEvents(t, f)
	states := map[string]bool{}
	for _, ev := range evs {
		require.Equal(t, eventID, ev.CorrelationID)
		require.Equal(t, sub.ID, ev.MessageID)
		require.Equal(t, "auto", ev.Channel)
		states[string(ev.State)] = true
	}
	require.Equal(t, map[string]bool{"accepted": true, "sent": true, "delivered": true}, states)
	f.waitStage(t, "crm", "out", 1)
	require.Equal(t, 1, f.Receiver.UniqueIDs()[eventID], "the lead reached the CRM once")

	// The normalised lead again (a replay): the record stops it before the partner.
	var lead json.RawMessage
	for _, d := range f.Receiver.Deliveries() {
		var env struct {
			ID   string          `json:"id"`
			Data json.RawMessage `json:"data"`
		}
		require.NoError(t, json.Unmarshal(d.Body, &env))
		if env.ID == eventID {
			lead = env.Data
		}
	}
	require.NotEmpty(t, lead)
	requests := sim.Requests()
	require.NoError(t, f.run.App.Pub.Publish(pipelines.TopicLeadsNormalized, message.NewMessage("replay-"+eventID, message.Payload(lead))))
	testwait.For(t, 30*time.Second, "the replay to be seen", func() bool {
		v, _ := metric(f.scrape(t), "passerelle_biway_acks_total", map[string]string{"outcome": pipelines.AckDuplicate})
		return v == 1
	})
	require.Equal(t, requests, sim.Requests(), "no call for a lead already acknowledged")
	require.Equal(t, 1, sim.MessagesTo("+33600000001"))

	st := f.biwayStatus(t)
	require.Equal(t, 1, st.Messages["delivered"])
	require.Equal(t, 1, st.Acks[pipelines.AckSubmitted])
	v, ok := metric(f.scrape(t), "passerelle_biway_messages_total", map[string]string{"state": "delivered", "channel": "auto"})
	require.True(t, ok)
	require.Equal(t, 1.0, v)
}

// Reports posted three times each and shuffled leave every message in its final state, each
// change published once; entity states and an unknown message id are recorded.
func TestBiwayReportsDuplicatedAndShuffled(t *testing.T) {
	t.Parallel()
	f, sim := startBiway(t, biwaysim.SimConfig{Duplicates: 3, Shuffle: true, Seed: 7})
	// 11: SMS (odd), delivered; 12 and 24: RCS, read; 99: fails.
	want := map[string]string{"+33600000011": "delivered", "+33600000012": "read", "+33600000024": "read", "+33600000099": "failed"}
	for _, n := range []int{11, 12, 24, 99} {
		status, _ := f.post(t, leadBody(n, "shuffle"))
		require.Equal(t, http.StatusOK, status)
	}
	testwait.For(t, 30*time.Second, "four submissions", func() bool { return len(sim.Submissions()) == 4 })
	sim.SetEntityState("ACCOUNT_STATE", "acc_1", "active")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, sim.Flush(ctx))

	testwait.For(t, 30*time.Second, "final states", func() bool {
		st := f.biwayStatus(t)
		return st.Messages["delivered"] == 1 && st.Messages["read"] == 2 && st.Messages["failed"] == 1 && len(st.Entities) == 1
	})
	st := f.biwayStatus(t)
	require.Equal(t, "acc_1", st.Entities[0].ID)
	require.Equal(t, "active", string(st.Entities[0].Etat))
	require.Zero(t, st.Unknown)

	byMessage := map[string]string{}
	for _, s := range sim.Submissions() {
		byMessage[s.ID] = s.To
	}
	// Every applied change reaches the CRM once: the counter and the events agree, and each
	// message's last event is its final state.
	finalStates := func() (map[string]string, bool) {
		applied := 0.0
		scrape := f.scrape(t)
		for _, s := range []string{"accepted", "sent", "delivered", "read", "failed"} {
			v, _ := metric(scrape, "passerelle_biway_messages_total", map[string]string{"state": s, "channel": "auto"})
			applied += v
		}
		evs := statusEvents(t, f)
		final := map[string]string{}
		for _, ev := range evs {
			to := byMessage[ev.MessageID]
			if cur, ok := final[to]; !ok || rank(string(ev.State)) > rank(cur) {
				final[to] = string(ev.State)
			}
		}
		return final, float64(len(evs)) == applied
	}
	testwait.For(t, 30*time.Second, "the changes at the CRM", func() bool {
		final, agree := finalStates()
		return agree && maps.Equal(final, want)
	})
	// Nothing more comes once every stage is idle: what the CRM has is what was applied, each once.
	f.waitIdle(t)
	final, agree := finalStates()
	require.True(t, agree, "events and applied changes differ")
	require.Equal(t, want, final)
	for id, n := range f.Receiver.UniqueIDs() {
		require.Equal(t, 1, n, "event %s delivered more than once", id)
	}

	// A report for a message we never sent: recorded, answered 200 each time, no loop.
	_, secret := sim.Callback()
	body := []byte(fmt.Sprintf(`{"type":"MESSENGER_REPORT","message_id":"m_inconnu","reference":"","etat":"delivered","raison":"","date":%q}`,
		frtime.Format(time.Now())))
	for range 2 {
		h, err := stdwebhook.Headers(secret, "msg_unknown_1", time.Now(), body)
		require.NoError(t, err)
		h.Set("Content-Type", "application/json")
		code, answer := postRaw(t, f.biwayHook(), h, body)
		require.Equal(t, http.StatusOK, code, "%s", answer)
	}
	testwait.For(t, 30*time.Second, "the unknown message recorded", func() bool { return f.biwayStatus(t).Unknown == 1 })

	// A report of a broadcast's message (its reference says so) is not unknown.
	body = []byte(fmt.Sprintf(`{"type":"MESSENGER_REPORT","message_id":"m_bc","reference":"bc_0123","etat":"delivered","raison":"","date":%q}`,
		frtime.Format(time.Now())))
	h, err := stdwebhook.Headers(secret, "msg_bc_1", time.Now(), body)
	require.NoError(t, err)
	code, _ := postRaw(t, f.biwayHook(), h, body)
	require.Equal(t, http.StatusOK, code)
	testwait.For(t, 30*time.Second, "the broadcast's report", func() bool {
		v, _ := metric(f.scrape(t), "passerelle_biway_messages_total", map[string]string{"state": "delivered", "channel": "broadcast"})
		return v == 1
	})
	require.Equal(t, 1, f.biwayStatus(t).Unknown)
}

func rank(s string) int {
	return strings.Index("accepted sent delivered read failed", s)
}

// Reports with a bad, stale or missing signature, or a tampered body, are refused with 401 and
// change nothing.
func TestBiwayReportSignatures(t *testing.T) {
	t.Parallel()
	f, sim := startBiway(t, biwaysim.SimConfig{})
	_, secret := sim.Callback()
	other, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	body := []byte(fmt.Sprintf(`{"type":"MESSENGER_REPORT","message_id":"m_1","reference":"r","etat":"sent","raison":"","date":%q}`, frtime.Format(time.Now())))
	sign := func(secret string, at time.Time, b []byte) http.Header {
		h, err := stdwebhook.Headers(secret, "msg_sig", at, b)
		require.NoError(t, err)
		h.Set("Content-Type", "application/json")
		return h
	}
	for name, h := range map[string]http.Header{
		"other secret": sign(other, time.Now(), body),
		"stale":        sign(secret, time.Now().Add(-10*time.Minute), body),
		"tampered":     sign(secret, time.Now(), []byte(strings.Replace(string(body), "sent", "read", 1))),
		"missing":      {"Content-Type": {"application/json"}},
	} {
		code, answer := postRaw(t, f.biwayHook(), h, body)
		require.Equal(t, http.StatusUnauthorized, code, "%s: %s", name, answer)
	}
	code, _ := postRaw(t, f.biwayHook(), sign(secret, time.Now(), body), body)
	require.Equal(t, http.StatusOK, code)
	v, _ := metric(f.scrape(t), "passerelle_biway_callbacks_total", map[string]string{"type": "unknown", "result": "bad_signature"})
	require.Equal(t, 4.0, v)
}

// With debug logging on, a lead acknowledged, one skipped by the daily limit, one refused by the
// partner and their reports leave no personal data, API key nor callback secret in the log.
func TestBiwayLogsLeakNothing(t *testing.T) {
	t.Parallel()
	var buf redacttest.Buffer
	f, sim := startBiwayWith(t, biwaysim.SimConfig{}, app.NewLogger(&buf, "json", "debug"))
	lead := func(prenom, nom, tel, email string) []byte {
		b, _ := json.Marshal(map[string]string{"nom": nom, "prenom": prenom, "civilite": "Mme", "tel": tel, "email": email,
			"ville": "paris", "code_postal": "75011", "formation": "Comptabilité", "horaire_rappel": "soir", "id_client": "1234"})
		return b
	}
	status, _ := f.post(t, lead("Zephyrine", "Quatremains", "06 71 82 93 04", "zq@example.org"))
	require.Equal(t, http.StatusOK, status)
	testwait.For(t, 30*time.Second, "the submission", func() bool { return len(sim.Submissions()) == 1 })
	status, _ = f.post(t, lead("Zephyrine", "Quatremains-Bis", "06 71 82 93 04", "zq2@example.org")) // same number, same day
	require.Equal(t, http.StatusOK, status)
	sim.FailNext(1, http.StatusBadRequest, "")
	status, _ = f.post(t, lead("Gaspardine", "Oberkampfova", "07 85 96 15 24", "go@example.net"))
	require.Equal(t, http.StatusOK, status)
	testwait.For(t, 30*time.Second, "the limit and the refusal", func() bool {
		st := f.biwayStatus(t)
		return st.Acks[pipelines.AckDailyCap] == 1 && st.Acks[pipelines.AckRefused] == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, sim.Flush(ctx))
	testwait.For(t, 30*time.Second, "the reports", func() bool { return f.biwayStatus(t).Messages["read"] == 1 }) // an even number: RCS
	f.stop()

	logs := buf.String()
	require.Contains(t, logs, "biway ack refused", "the log was written")
	_, secret := sim.Callback()
	redacttest.RequireNoLeak(t, logs, sim.APIKey(), secret, strings.TrimPrefix(secret, "whsec_"),
		"Zephyrine", "Quatremains", "Gaspardine", "Oberkampfova", "zq@example.org", "go@example.net",
		"+33671829304", "33671829304", "0671829304", "+33785961524", "33785961524", "0785961524")
}

// Outside the send window a lead is kept for the opening, not sent and not dropped.
func TestBiwayLeadOutsideWindowWaits(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	// A ten-minute window twelve hours from now: closed for the whole test.
	open := time.Now().In(paris).Add(12 * time.Hour)
	window := fmt.Sprintf("%02d:%02d-%02d:%02d Europe/Paris", open.Hour(), open.Minute(), open.Add(10*time.Minute).Hour(), open.Add(10*time.Minute).Minute())
	f, sim := startBiwayWith(t, biwaysim.SimConfig{}, nil, "PASSERELLE_BIWAY_SEND_WINDOW="+window)
	status, _ := f.post(t, leadBody(7, "night"))
	require.Equal(t, http.StatusOK, status)
	testwait.For(t, 30*time.Second, "the acknowledgement scheduled", func() bool {
		st := f.biwayStatus(t)
		return st.Scheduled == 1 && st.Acks[pipelines.AckScheduled] == 1
	})
	f.waitStage(t, "crm", "out", 1) // the lead itself is not held back
	require.Empty(t, sim.Submissions(), "nothing sent outside the window")
}
