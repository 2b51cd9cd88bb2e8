package ecolix_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/ecolix/ecolixsim"
)

// BenchmarkPullAtTheBudgetFloor pulls 20,000 changed records (40 pages of 500) under a limit of
// 100 calls per 5 s window, scaled down from issue 15's 100,000 records at a per-minute limit so
// that it runs in seconds. The floor is what the contract allows: the first call at once, then one
// every window/limit. x_floor is the time taken over that floor (issue 15 asks ≤ 1.1).
func BenchmarkPullAtTheBudgetFloor(b *testing.B) {
	const (
		records   = 20_000
		limit     = 100
		window    = 5 * time.Second
		perPage   = ecolix.MaxPerPage
		pageCalls = (records + perPage - 1) / perPage
	)
	floor := time.Duration(pageCalls-1) * window / limit
	var total time.Duration
	for range b.N {
		b.StopTimer()
		sim := startSim(b, ecolixsim.SimConfig{PerMinute: limit, Window: window})
		generate(b, sim, "commandes", records, t0, 7)
		c := newClient(b, sim, ecolix.NewBudgetWindow(limit, window), nil)
		b.StartTimer()

		start := time.Now()
		recs, _, err := c.Pull(context.Background(), "commandes", ecolix.Cursor{})
		total += time.Since(start)
		require.NoError(b, err)
		require.Len(b, recs, records)
		require.Equal(b, pageCalls, sim.CallCount())
		require.Zero(b, sim.Breaches())
	}
	b.ReportMetric(float64(total)/float64(b.N)/float64(floor), "x_floor")
	b.ReportMetric(float64(floor)/float64(time.Millisecond), "floor_ms")
}
