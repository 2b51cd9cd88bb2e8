package pipelines_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/pipelines"
)

func TestReplayDedupe(t *testing.T) {
	t.Parallel()
	sources := pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}
	t0 := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	first := `{"nom":"Doe","email":"jane@exemple.com","formation":"CAP","id_client":"1"}`
	// The same contact, formation and account, worded otherwise: another event id, the same key.
	near := `{"nom":"DOE","email":" Jane@exemple.com","formation":"CAP","id_client":"1","horaire_rappel":"matin"}`
	other := `{"nom":"Roe","email":"john@exemple.com","formation":"CAP","id_client":"1"}`
	tests := []struct {
		name   string
		window time.Duration
		recs   []string
		at     []time.Duration // received, after t0
		want   []string
	}{
		{"exact resend", 24 * time.Hour, []string{first, first}, []time.Duration{0, time.Hour}, []string{"", pipelines.ReplayDuplicate}},
		{"near duplicate inside the window", 24 * time.Hour, []string{first, near, other}, []time.Duration{0, time.Hour, time.Hour}, []string{"", pipelines.ReplayNearDuplicate, ""}},
		{"near duplicate past the window", 24 * time.Hour, []string{first, near}, []time.Duration{0, 25 * time.Hour}, []string{"", ""}},
		{"no window: ids only, as the live dedupe is off", 0, []string{first, near, first}, []time.Duration{0, 0, 0}, []string{"", "", pipelines.ReplayDuplicate}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := pipelines.ReplayDedupe{Window: tt.window}
			var got []string
			for i, r := range tt.recs {
				lead, err := sources.CheckReplay(pipelines.ReplayRecord{Source: pipelines.SourceIciFormation, ReceivedAt: t0.Add(tt.at[i]), Body: json.RawMessage(r)}, time.Now())
				require.NoError(t, err)
				got = append(got, d.Check(lead))
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestCheckReplayAll(t *testing.T) {
	t.Parallel()
	sources := pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}
	recs := make([]pipelines.ReplayRecord, 1000)
	for i := range recs {
		body := `{"nom":"A","tel":"0612345678","id_client":"` + string(rune('a'+i%26)) + `"}`
		if i%7 == 0 {
			body = `{"nom":"no contact"}`
		}
		recs[i] = pipelines.ReplayRecord{Source: pipelines.SourceIciFormation, Body: json.RawMessage(body)}
	}
	recs[3].Source = "elsewhere"
	now := time.Now()
	leads, errs := sources.CheckReplayAll(recs, now, 4)
	for i, r := range recs {
		lead, err := sources.CheckReplay(r, now)
		require.Equal(t, err == nil, errs[i] == nil, "record %d", i)
		require.Equal(t, lead.EventID, leads[i].EventID, "record %d", i)
	}
	require.True(t, errors.Is(errs[3], pipelines.ErrUnknownSource))
}

// publishedTo records what a replay publishes.
type publishedTo struct {
	topic string
	msgs  []*message.Message
}

func (p *publishedTo) PublishContext(_ context.Context, topic string, msgs ...*message.Message) error {
	p.topic = topic
	p.msgs = append(p.msgs, msgs...)
	return nil
}

// Replayed records reach leads.received in batches of 32, as the webhook's do, each record
// unchanged inside; at leads.normalized each lead is its own message, its event id as message id.
func TestReplayPublishesBatches(t *testing.T) {
	t.Parallel()
	const n = 70 // 32 + 32 + 6
	recs := make([]pipelines.ReplayRecord, n+1)
	for i := range n {
		recs[i] = pipelines.ReplayRecord{Source: pipelines.SourceIciFormation,
			Body: json.RawMessage(fmt.Sprintf(`{"nom":"A","email":"a%d@example.fr","id_client":"c%d"}`, i, i))}
	}
	recs[n] = pipelines.ReplayRecord{Source: pipelines.SourceIciFormation, Body: json.RawMessage(`{"nom":"no contact"}`)}
	sources := pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}
	now := func() time.Time { return time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC) }

	var pub publishedTo
	r := pipelines.Replayer{Sources: sources, Pub: &pub, Now: now}
	counts, err := r.Replay(context.Background(), recs, pipelines.StageReceived)
	require.NoError(t, err)
	require.Equal(t, pipelines.ReplayCounts{pipelines.ReplayPublished: n, pipelines.ReplayRejected: 1}, counts)
	require.Equal(t, pipelines.TopicLeadsReceived, pub.topic)
	var sizes []int
	var bodies []string
	for _, m := range pub.msgs {
		items, err := broker.Unbatch(m)
		require.NoError(t, err)
		sizes = append(sizes, len(items))
		for _, it := range items {
			require.Equal(t, "1", it.Metadata.Get(pipelines.MetaReplay))
			require.Equal(t, pipelines.SourceIciFormation, it.Metadata.Get(pipelines.MetaSource))
			bodies = append(bodies, string(it.Payload))
		}
	}
	require.Equal(t, []int{32, 32, 6}, sizes)
	for i := range n {
		require.Equal(t, string(recs[i].Body), bodies[i], "record %d, in order", i)
	}

	pub = publishedTo{}
	_, err = r.Replay(context.Background(), recs, pipelines.StageNormalized)
	require.NoError(t, err)
	require.Equal(t, pipelines.TopicLeadsNormalized, pub.topic)
	require.Len(t, pub.msgs, n)
	lead, err := sources.CheckReplay(recs[0], now())
	require.NoError(t, err)
	require.Equal(t, lead.EventID, pub.msgs[0].UUID)
	require.False(t, broker.IsBatch(pub.msgs[0]))
}
