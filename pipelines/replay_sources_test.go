package pipelines_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/pipelines"
)

func TestShopAppReplayAppliesInOrderSkipsOlderAndApplied(t *testing.T) {
	t.Parallel()
	e := openPollerEnv(t, t.TempDir(), nil, newTestClock(time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)), nil, 1)
	replay := pipelines.ShopAppReplay(e.poller)
	const (
		installing = `{"cle":"k1","date_creation":"2026-11-02 10:00:00","statut":3,"date_suppression":"","prestations":[{"code":"IN-A","date_creation":"2026-11-02 10:00:00","resilie":false,"date_resiliation":"","reference_unique":"r1"}]}`
		active     = `{"cle":"k1","date_creation":"2026-11-02 10:00:00","statut":"1","date_suppression":"0000-00-00 00:00:00","prestations":[{"code":"IN-A","date_creation":"2026-11-02 10:00:00","resilie":false,"date_resiliation":"","reference_unique":"r1"},{"code":"IN-B","date_creation":"2026-11-05 10:00:00","resilie":false,"date_resiliation":"","reference_unique":"r2"}]}`
		cancelled  = `{"cle":"k1","date_creation":"2026-11-02 10:00:00","statut":1,"date_suppression":"","prestations":[{"code":"IN-A","date_creation":"2026-11-02 10:00:00","resilie":false,"date_resiliation":"","reference_unique":"r1"},{"code":"IN-B","date_creation":"2026-11-05 10:00:00","resilie":true,"date_resiliation":"2026-11-09 10:00:00","reference_unique":"r2"}]}`
		older      = `{"cle":"k1","date_creation":"2026-11-02 10:00:00","statut":2,"date_suppression":"","prestations":[{"code":"IN-A","date_creation":"2026-11-02 10:00:00","resilie":false,"date_resiliation":"","reference_unique":"r1"}]}`
		olderStill = `{"cle":"k1","date_creation":"2026-11-02 10:00:00","statut":2,"date_suppression":"","prestations":[{"code":"IN-A","date_creation":"2026-11-02 10:00:00","resilie":false,"date_resiliation":"","reference_unique":"r1"},{"code":"IN-B","date_creation":"2026-11-05 10:00:00","resilie":false,"date_resiliation":"","reference_unique":"r2"}]}`
	)
	recs := func(bodies ...string) []pipelines.ReplayRecord {
		out := make([]pipelines.ReplayRecord, len(bodies))
		for i, b := range bodies {
			out[i] = pipelines.ReplayRecord{Source: "shopapp", Body: []byte(b)}
		}
		return out
	}
	tests := []struct {
		name   string
		bodies []string
		want   pipelines.ReplayCounts
	}{
		// created + r1; status 3→1 + r2 added; the same again (unchanged); r2 cancelled.
		{"history in order", []string{installing, active, active, cancelled},
			pipelines.ReplayCounts{"published": 3, "unchanged": 1, "events": 5}},
		// Never seen, but older than the stored one (no r2; r2 not cancelled): never applied
		// backwards. Snapshots a replay applied already change nothing.
		{"older snapshots", []string{older, olderStill, installing, active}, pipelines.ReplayCounts{"older": 2, "unchanged": 2}},
		{"the same history again", []string{cancelled, `{"cle":""}`, `not json`}, pipelines.ReplayCounts{"unchanged": 1, "rejected": 2}},
	}
	for _, tc := range tests {
		got, err := replay(context.Background(), recs(tc.bodies...))
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, got, tc.name)
	}
	require.Len(t, e.counted.Published(), 5, "each change published once")
}

func FuzzDecodeShopAppSnapshot(f *testing.F) {
	f.Add([]byte(`{"cle":"k1","date_creation":"2026-10-25 02:30:00","statut":"1","date_suppression":"0000-00-00 00:00:00","prestations":[{"code":"IN-A","date_creation":"2026-11-02 10:00:00","resilie":true,"date_resiliation":"","reference_unique":""}]}`))
	f.Add([]byte(`{"cle":""}`))
	f.Add([]byte(`[1]`))
	now := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := pipelines.DecodeShopAppSnapshot(b, now)
		if err != nil {
			return
		}
		require.NotEmpty(t, s.Key)
		require.NotNil(t, s.Prestations)
	})
}
