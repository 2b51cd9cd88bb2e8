package ecolix_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/ecolix/ecolixsim"
)

// t0 is a Paris afternoon: dates round-trip through "aaaa-mm-jj hh:mm:ss".
var t0 = time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)

func startSim(t testing.TB, cfg ecolixsim.SimConfig) *ecolixsim.Sim {
	t.Helper()
	s, err := ecolixsim.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// newClient builds a client on sim with fast in-call retries; budget nil means a generous one.
func newClient(t testing.TB, sim *ecolixsim.Sim, budget *ecolix.Budget, mod func(*ecolix.Config)) *ecolix.Client {
	t.Helper()
	if budget == nil {
		budget = ecolix.NewBudgetWindow(1000, time.Second)
	}
	cfg := ecolix.Config{
		BaseURL: sim.URL(), APIKey: sim.APIKey(),
		RetryWaitMin: 5 * time.Millisecond, RetryWaitMax: 2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := ecolix.New(cfg, budget, nil)
	require.NoError(t, err)
	return c
}

func generate(t testing.TB, sim *ecolixsim.Sim, resource string, n int, from time.Time, perInstant int) []string {
	t.Helper()
	ids, err := sim.Generate(resource, n, from, perInstant)
	require.NoError(t, err)
	return ids
}

// counter reads a counter of reg by its label values, in the order declared.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			// Gather sorts labels by name; callers pass them in that order.
			for i, l := range m.GetLabel() {
				if l.GetValue() != labels[i] {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}
