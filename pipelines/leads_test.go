package pipelines_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

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

	received := func(email, formation string) (pipelines.ReceivedLead, transforms.Lead) {
		raw, _ := json.Marshal(map[string]string{"email": email, "formation": formation, "id_client": "1234"})
		in := transforms.LeadInput{Source: "iciformation", Email: email, Course: formation, ClientID: "1234", Raw: raw}
		lead, err := transforms.NormalizeLead(in, now)
		require.NoError(t, err)
		return pipelines.ReceivedLead{EventID: lead.EventID, ReceivedAt: now, Input: in}, lead
	}
	a, leadA := received("a@example.com", "Web")
	b, leadB := received("b@example.com", "Web")
	dup, _ := received("a@example.com", "web ") // same contact, formation and id_client as a
	require.NoError(t, st.CommitKey(ctx, "leads", transforms.LeadDedupeKey(leadA), leadA.EventID, now))

	type item struct {
		UUID     string            `json:"uuid"`
		Metadata map[string]string `json:"metadata"`
		Payload  any               `json:"payload"`
	}
	var items []item
	for _, rl := range []pipelines.ReceivedLead{a, b, dup} {
		items = append(items, item{UUID: rl.EventID, Metadata: map[string]string{pipelines.MetaEventID: rl.EventID}, Payload: rl})
	}
	payload, err := json.Marshal(items)
	require.NoError(t, err)
	msg := message.NewMessage("batch-1", payload)
	msg.Metadata.Set(broker.MetaBatch, "3")

	n := &pipelines.LeadNormalizer{Store: st, Window: 24 * time.Hour, Log: slog.New(slog.DiscardHandler), Now: func() time.Time { return now }}
	out, err := n.Handle(msg)
	require.NoError(t, err)
	var ids []string
	for _, m := range out {
		ids = append(ids, m.UUID)
		require.Equal(t, m.UUID, m.Metadata.Get(pipelines.MetaEventID), "each lead keeps its own metadata")
	}
	// a passes (same event as the committed key: a redelivery), b passes, dup is dropped.
	require.Equal(t, []string{leadA.EventID, leadB.EventID}, ids)
}
