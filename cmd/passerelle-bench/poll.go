package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

const (
	pollInterfaces  = 5000
	pollRate        = 1000 // requests per second: the configured limit the poll must be bounded by
	pollConcurrency = 16
)

// benchPoll polls 5 000 interfaces from the Shop Application simulator through the real poller
// (client with its rate limit, SQLite snapshots, embedded JetStream for the events). The floor is
// calls ÷ rate: a poll bounded by the rate limit, not by passerelle, takes about that long.
func benchPoll(ctx context.Context, tmp string) (report, error) {
	var r report
	sim, err := shopappsim.Start(shopappsim.Config{})
	if err != nil {
		return r, err
	}
	defer sim.Close()
	sim.Seed(pollInterfaces, rand.New(rand.NewPCG(1, 2)))

	dir := filepath.Join(tmp, "poll")
	st, err := store.Open(ctx, filepath.Join(dir, "passerelle.db"))
	if err != nil {
		return r, err
	}
	defer st.Close()
	log := slog.New(slog.DiscardHandler)
	b, err := broker.Open(ctx, broker.Config{DataDir: dir}, log, nil)
	if err != nil {
		return r, err
	}
	defer b.Close()
	pub, err := b.NewPublisher()
	if err != nil {
		return r, err
	}
	defer pub.Close()
	reg := prometheus.NewRegistry()
	client, err := shopapp.New(shopapp.Config{BaseURL: sim.URL(), ClientID: sim.ClientID(), ClientSecret: sim.ClientSecret(), Rate: pollRate},
		httpclient.NewMetrics(reg), shopapp.NewMetrics(reg))
	if err != nil {
		return r, err
	}
	poller := &pipelines.ShopAppPoller{API: client, Store: st, Pub: pub, Concurrency: pollConcurrency, Log: log,
		Now: time.Now, Metrics: pipelines.NewShopAppMetrics(reg)}

	r.addf("%d interfaces, client rate limit %d req/s, %d in parallel", pollInterfaces, pollRate, pollConcurrency)
	r.addf("%-20s %10s %8s %9s %12s", "poll", "seconds", "calls", "events", "floor (s)")
	var worst float64
	for i, name := range []string{"first (all new)", "second (no change)"} {
		sim.ResetCalls()
		start := time.Now()
		res, err := poller.Poll(ctx)
		if err != nil {
			return r, fmt.Errorf("poll %d: %w", i+1, err)
		}
		secs := time.Since(start).Seconds()
		calls := 0
		for _, n := range sim.Calls() {
			calls += n
		}
		floor := float64(calls) / pollRate
		worst = max(worst, secs/floor)
		r.addf("%-20s %10.2f %8d %9d %12.2f", name, secs, calls, res.Events, floor)
	}
	r.check("poll time / rate-limit floor", fmt.Sprintf("%.2f", worst), "≤ 1.2: bounded by the rate limit", worst <= 1.2)
	return r, nil
}
