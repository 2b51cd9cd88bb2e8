package pipelines_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// A batch from the ingest batcher is normalised lead by lead: each comes out as its own message
// with its own metadata, and a duplicate inside the window is dropped.
func TestLeadNormalizerBatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	require.NoError(t, err)
	defer st.Close()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)

	// What the webhook publishes: the partner's object as received, and its metadata.
	received := func(email, formation string) (*message.Message, transforms.Lead) {
		raw, _ := json.Marshal(map[string]string{"email": email, "formation": formation, "id_client": "1234"})
		in := transforms.LeadInput{Source: pipelines.SourceIciFormation, Email: email, Course: formation, ClientID: "1234", Raw: raw}
		lead, err := transforms.NormalizeLead(in, now)
		require.NoError(t, err)
		m := message.NewMessage(watermill.NewUUID(), raw) // no event id: the stage derives it
		m.Metadata.Set(pipelines.MetaSource, pipelines.SourceIciFormation)
		m.Metadata.Set(pipelines.MetaReceivedAt, now.Format(time.RFC3339Nano))
		return m, lead
	}
	a, leadA := received("a@example.com", "Web")
	b, leadB := received("b@example.com", "Web")
	dup, _ := received("a@example.com", "web ") // same contact, formation and id_client as a
	key := []byte("test dedupe key")
	require.NoError(t, st.CommitKeys(ctx, "leads", []store.KeyClaim{{Key: transforms.LeadDedupeKey(leadA, key), EventID: leadA.EventID}}, now))
	msg := broker.NewBatch([]*message.Message{a, b, dup})

	n := &pipelines.LeadNormalizer{Sources: pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}, Store: st, Window: 24 * time.Hour,
		Key: key, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	batch, err := n.Handle(msg)
	require.NoError(t, err)
	require.Len(t, batch, 1, "a batch in, a batch out")
	require.Equal(t, msg.UUID, batch[0].UUID, "the output's id is the input's, so a redelivery makes a duplicate the broker drops")
	out, err := broker.Unbatch(batch[0])
	require.NoError(t, err)
	var ids []string
	for _, m := range out {
		ids = append(ids, m.UUID)
		require.Equal(t, m.UUID, m.Metadata.Get(pipelines.MetaEventID), "each lead carries its own event id")
		require.Equal(t, m.UUID, m.Metadata.Get(pipelines.MetaCorrelationID))
		require.Equal(t, pipelines.SourceIciFormation, m.Metadata.Get(pipelines.MetaSource), "and keeps its received metadata")
	}
	// a passes (same event as the committed key: a redelivery), b passes, dup is dropped.
	require.Equal(t, []string{leadA.EventID, leadB.EventID}, ids)
	var got transforms.Lead
	require.NoError(t, json.Unmarshal(out[1].Payload, &got))
	require.Equal(t, leadB, got, "the normalised lead as the CRM stage reads it")
}

// A lead whose key an earlier version stored unkeyed (the bare digest) is still a duplicate once
// the store's keys are rewritten with the hash key, as the leads module does at start.
func TestLeadDedupeSurvivesKeying(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	require.NoError(t, err)
	defer st.Close()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	raw := []byte(`{"email":"élodie@example.fr","formation":"Paie","id_client":"7"}`)
	in, err := pipelines.DecodeIciFormation(raw)
	require.NoError(t, err)
	lead, err := transforms.NormalizeLead(in, now)
	require.NoError(t, err)
	// Before the upgrade: the key committed is the unkeyed digest, by another delivery of the lead.
	require.NoError(t, st.CommitKeys(ctx, "leads", []store.KeyClaim{{Key: transforms.LeadDedupeDigest(lead), EventID: "iciformation_earlier"}}, now.Add(-time.Hour)))

	key := []byte("the daemon's dedupe key")
	n, err := st.RekeyDedupe(ctx, "key-id", func(d string) string { return transforms.KeyedDedupeKey(key, d) })
	require.NoError(t, err)
	require.Equal(t, int64(1), n)

	logs := &logRecorder{}
	norm := &pipelines.LeadNormalizer{Sources: pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}, Store: st,
		Window: 24 * time.Hour, Key: key, Log: slog.New(logs), Now: func() time.Time { return now }}
	m := message.NewMessage(watermill.NewUUID(), raw)
	m.Metadata.Set(pipelines.MetaSource, pipelines.SourceIciFormation)
	m.Metadata.Set(pipelines.MetaReceivedAt, now.Format(time.RFC3339Nano))
	out, err := norm.Handle(m)
	require.NoError(t, err)
	require.Empty(t, out, "still a duplicate after the upgrade")
	require.Equal(t, 1, logs.count("duplicate lead dropped"))

	// Without the rewrite, the keyed lookup would have missed the old key.
	st2, err := store.Open(ctx, filepath.Join(t.TempDir(), "s2.db"))
	require.NoError(t, err)
	defer st2.Close()
	require.NoError(t, st2.CommitKeys(ctx, "leads", []store.KeyClaim{{Key: transforms.LeadDedupeDigest(lead), EventID: "iciformation_earlier"}}, now.Add(-time.Hour)))
	norm.Store = st2
	out, err = norm.Handle(m)
	require.NoError(t, err)
	require.Len(t, out, 1)
}

// A received message the normalize stage cannot read is refused for good (it goes to the
// dead-letter topic), never retried forever.
func TestLeadNormalizerRefusesUnreadable(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	n := &pipelines.LeadNormalizer{Sources: pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	for name, edit := range map[string]func(*message.Message){
		"unknown source":   func(m *message.Message) { m.Metadata.Set(pipelines.MetaSource, "elsewhere") },
		"not json":         func(m *message.Message) { m.Payload = []byte("{oops") },
		"no received time": func(m *message.Message) { m.Metadata.Set(pipelines.MetaReceivedAt, "") },
		"no contact":       func(m *message.Message) { m.Payload = []byte(`{"nom":"Doe"}`) },
	} {
		t.Run(name, func(t *testing.T) {
			m := message.NewMessage("evt", []byte(`{"email":"a@example.com"}`))
			m.Metadata.Set(pipelines.MetaSource, pipelines.SourceIciFormation)
			m.Metadata.Set(pipelines.MetaReceivedAt, now.Format(time.RFC3339Nano))
			edit(m)
			_, err := n.Handle(m)
			require.Error(t, err)
			require.True(t, pipelines.IsPermanent(err), "%v should be permanent", err)
			require.Equal(t, transforms.EventID(m.Metadata.Get(pipelines.MetaSource), m.Payload), m.Metadata.Get(pipelines.MetaEventID),
				"the dead-letter topic names the lead by its event id")
		})
	}
}
