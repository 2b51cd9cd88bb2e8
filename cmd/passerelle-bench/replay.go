package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/ecolix/ecolixsim"
	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/pipelines"
)

const (
	replayRecords = 1_000_000
	replayGoal    = 150_000 // records per second
	replayChunk   = 1 << 16
)

// benchReplay runs the replay's two goals: a file through the replay path, a replay through the
// daemon to a slow CRM.
//
// benchReplayFile writes a JSONL file of Ici Formation leads in tmp, then reads it twice in one run:
// through the replay's own path (pipelines.LeadSources.CheckReplayAll: decode, normalise, event
// id) to a null sink, and through encoding/json into the webhook's wire type only, the ceiling
// of any decoder of that file. Both read the file and use every core the same way.
func benchReplay(ctx context.Context, o options, tmp string, daemon func() (string, error)) (report, error) {
	r, err := benchReplayFile(ctx, tmp)
	if err != nil {
		return r, err
	}
	r.addf("")
	crm, err := benchReplayCRM(ctx, o, tmp, daemon)
	r.lines, r.goals = append(r.lines, crm.lines...), append(r.goals, crm.goals...)
	return r, err
}

func benchReplayFile(ctx context.Context, tmp string) (report, error) {
	var r report
	path := filepath.Join(tmp, "replay", "leads.jsonl")
	size, err := writeLeads(path, replayRecords)
	if err != nil {
		return r, err
	}
	workers := runtime.GOMAXPROCS(0)
	sources := pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}
	now := time.Now()
	var rejected int
	replayPass := func(recs []pipelines.ReplayRecord) {
		_, errs := sources.CheckReplayAll(recs, now, workers)
		for _, e := range errs {
			if e != nil {
				rejected++
			}
		}
	}
	ceilingPass := func(recs []pipelines.ReplayRecord) {
		parallel(len(recs), workers, func(i int) {
			var l iciformation.Lead
			_ = json.Unmarshal(recs[i].Body, &l)
		})
	}
	r.addf("%d Ici Formation leads (%s JSONL, generated in a temp dir), %d cores", replayRecords, mb(size), workers)
	r.addf("%-44s %10s %14s", "pass", "seconds", "records/s")
	var rates [2]float64
	for i, p := range []struct {
		name string
		f    func([]pipelines.ReplayRecord)
	}{{"encoding/json decode only (ceiling)", ceilingPass}, {"replay: decode, normalise, event id → null", replayPass}} {
		start := time.Now()
		n, err := readChunks(ctx, path, p.f)
		if err != nil {
			return r, err
		}
		secs := time.Since(start).Seconds()
		rates[i] = float64(n) / secs
		r.addf("%-44s %10.2f %14.0f", p.name, secs, rates[i])
	}
	r.addf("replay at %.0f%% of the decode-only ceiling; %d records rejected (no usable contact)", 100*rates[1]/rates[0], rejected)
	r.check("replay records/s", fmt.Sprintf("%.0f", rates[1]), fmt.Sprintf("≥ %d", replayGoal), rates[1] >= replayGoal)
	return r, nil
}

// writeLeads writes n random leads, one JSON object a line, and returns the file's size.
func writeLeads(path string, n int) (int64, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return 0, err
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(15, 2026))
	for range n {
		b, err := json.Marshal(iciformationsim.RandomLead(rng))
		if err != nil {
			return 0, err
		}
		w.Write(b)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), f.Close()
}

// readChunks reads path's lines as replay records and hands them to f in chunks.
func readChunks(ctx context.Context, path string, f func([]pipelines.ReplayRecord)) (int, error) {
	file, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	recs := make([]pipelines.ReplayRecord, 0, replayChunk)
	n := 0
	for sc.Scan() {
		recs = append(recs, pipelines.ReplayRecord{Source: pipelines.SourceIciFormation, Body: append([]byte(nil), sc.Bytes()...)})
		if len(recs) == replayChunk {
			f(recs)
			n += len(recs)
			recs = recs[:0]
			if err := ctx.Err(); err != nil {
				return n, err
			}
		}
	}
	f(recs)
	return n + len(recs), sc.Err()
}

// parallel runs f(0..n-1) on workers goroutines, in contiguous ranges.
func parallel(n, workers int, f func(i int)) {
	per := (n + workers - 1) / max(workers, 1)
	var wg sync.WaitGroup
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				f(i)
			}
		})
	}
	wg.Wait()
}

const (
	ecolixRecords = 100_000
	// ecolixLimit calls per ecolixWindow: the contract's per-minute budget scaled to seconds so
	// that the 200 page calls take about 15 s, the sliding-window check of the simulator intact.
	ecolixLimit  = 65
	ecolixWindow = 5 * time.Second
)

// benchEcolix pulls 100 000 changed records from the Ecolix simulator through the real client
// under a call budget; the floor is the calls the budget lets through, (pages - 1) ÷ rate (the
// first call is free: the bucket starts full).
func benchEcolix(ctx context.Context) (report, error) {
	var r report
	sim, err := ecolixsim.Start(ecolixsim.SimConfig{PerMinute: ecolixLimit, Window: ecolixWindow})
	if err != nil {
		return r, err
	}
	defer sim.Close()
	from := time.Now().Add(-24 * time.Hour).Truncate(time.Second)
	if _, err := sim.Generate("commandes", ecolixRecords, from, 7); err != nil {
		return r, err
	}
	client, err := ecolix.New(ecolix.Config{BaseURL: sim.URL(), APIKey: sim.APIKey()},
		ecolix.NewBudgetWindow(ecolixLimit, ecolixWindow), httpclient.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		return r, err
	}
	pages := (ecolixRecords + ecolix.MaxPerPage - 1) / ecolix.MaxPerPage
	floor := time.Duration(pages-1) * ecolixWindow / ecolixLimit
	start := time.Now()
	recs, _, err := client.Pull(ctx, "commandes", ecolix.Cursor{})
	if err != nil {
		return r, err
	}
	took := time.Since(start)
	ratio := float64(took) / float64(floor)
	r.addf("%d changed records, par_page %d, budget %d calls per %s (%.0f/min)", ecolixRecords, ecolix.MaxPerPage, ecolixLimit, ecolixWindow, float64(ecolixLimit)*float64(time.Minute)/float64(ecolixWindow))
	r.addf("%-10s %10s %8s %9s %12s %10s", "pull", "seconds", "calls", "records", "floor (s)", "breaches")
	r.addf("%-10s %10.2f %8d %9d %12.2f %10d", "first", took.Seconds(), sim.CallCount(), len(recs), floor.Seconds(), sim.Breaches())
	if len(recs) != ecolixRecords || sim.Breaches() != 0 {
		return r, fmt.Errorf("pulled %d of %d records, %d budget breaches", len(recs), ecolixRecords, sim.Breaches())
	}
	r.check("ecolix pull time / budget floor", fmt.Sprintf("%.3f", ratio), "≤ 1.1", ratio <= 1.1)
	return r, nil
}

// benchReplayCRM replays o.leads distinct leads into a running daemon through its admin API (the
// path `passerelle replay` takes), to the delivery scenario's receiver answering in 50 ms: the
// replay goes as fast as the delivery engine allows when distinct leads/s reach
// goalDeliveryShare × concurrency ÷ the receiver's mean latency.
func benchReplayCRM(ctx context.Context, o options, tmp string, daemon func() (string, error)) (report, error) {
	var r report
	bin, err := daemon()
	if err != nil {
		return r, err
	}
	// The records the replay sends: distinct leads, as the CLI's own dedupe keeps them.
	rng := rand.New(rand.NewPCG(11, 2026))
	sources := pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}
	dedupe := pipelines.ReplayDedupe{Window: 24 * time.Hour}
	var recs []pipelines.ReplayRecord
	for len(recs) < o.leads {
		b, err := json.Marshal(iciformationsim.RandomLead(rng))
		if err != nil {
			return r, err
		}
		rec := pipelines.ReplayRecord{Source: pipelines.SourceIciFormation, Body: b}
		if lead, err := sources.CheckReplay(rec, time.Now()); err == nil && dedupe.Check(lead) == "" {
			recs = append(recs, rec)
		}
	}
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return r, err
	}
	conc := o.crmConcurrency
	recv, err := startReceiver(deliveryLatency, len(recs), conc)
	if err != nil {
		return r, err
	}
	defer recv.close()
	c := daemonConfig{bin: bin, dataDir: filepath.Join(tmp, "replay-crm-"+nonce()), token: "bench-" + nonce(), crmSecret: secret,
		crmURL: recv.url + "/leads", env: append([]string{"PASSERELLE_CRM_CONCURRENCY=" + strconv.Itoa(conc)}, o.env...)}
	if err := os.MkdirAll(c.dataDir, 0o750); err != nil {
		return r, err
	}
	defer os.RemoveAll(c.dataDir)
	p, err := startDaemon(ctx, c)
	if err != nil {
		return r, err
	}
	defer p.stop()

	start := time.Now()
	published := 0
	for lo := 0; lo < len(recs); lo += 500 {
		n, err := postReplay(ctx, p.admin, recs[lo:min(lo+500, len(recs))])
		if err != nil {
			return r, err
		}
		published += n
	}
	posting := time.Since(start)
	within := 60*time.Second + time.Duration(len(recs))*deliveryLatency/time.Duration(conc)*4
	select {
	case <-recv.all:
	case <-time.After(within):
		return r, fmt.Errorf("%d of %d replayed leads delivered after %s", recv.stats().distinct, len(recs), within)
	case <-ctx.Done():
		return r, ctx.Err()
	case <-p.exited:
		return r, fmt.Errorf("passerelle exited: %s", p.stderr)
	}
	s := recv.stats()
	rate := float64(s.distinct) / s.span().Seconds()
	ceiling := float64(conc) / s.meanLatency().Seconds()
	r.addf("%d distinct leads replayed through the daemon's admin API (POST /admin/replay/records, 500 a call, %s to publish %d),", len(recs), posting.Round(time.Millisecond), published)
	r.addf("delivered to a CRM receiver answering in %s; PASSERELLE_CRM_CONCURRENCY=%d", deliveryLatency, conc)
	r.addf("%-34s %12s %14s %10s %11s", "run", "delivered/s", "ceiling (c/l)", "share", "duplicates")
	r.addf("%-34s %12.0f %14.0f %10.2f %11d", "replay → CRM (50 ms)", rate, ceiling, rate/ceiling, s.duplicates)
	r.check("replay → CRM share of concurrency/latency", fmt.Sprintf("%.2f", rate/ceiling), fmt.Sprintf("≥ %.1f", goalDeliveryShare), rate/ceiling >= goalDeliveryShare)
	return r, nil
}

// postReplay posts records to the admin API's replay route and returns how many it published.
func postReplay(ctx context.Context, admin string, recs []pipelines.ReplayRecord) (int, error) {
	body, err := json.Marshal(map[string]any{"stage": pipelines.StageReceived, "records": recs})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+admin+"/admin/replay/records", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("admin replay: %w", err)
	}
	defer resp.Body.Close()
	var ans struct {
		Counts map[string]int `json:"counts"`
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("admin replay: HTTP %d", resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		return 0, fmt.Errorf("admin replay answer: %w", err)
	}
	return ans.Counts[pipelines.ReplayPublished], nil
}
