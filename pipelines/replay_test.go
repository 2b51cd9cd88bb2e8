package pipelines_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
