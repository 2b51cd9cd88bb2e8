package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

// Goals of the ingest issue.
const (
	goalIngestRatio = 0.68
	goalIngestP99   = 15 * time.Millisecond
	goalIdleRSS     = 40_000_000  // bytes
	goalPeakRSS     = 200_000_000 // bytes, VmHWM at the end of the measured burst
	idleWait        = 3 * time.Second
	verifyLeads     = 2000
)

const (
	seriesIngestOut  = `passerelle_stage_messages_total{outcome="out",pipeline="leads",stage="ingest"}`
	seriesCRMOut     = `passerelle_stage_messages_total{outcome="out",pipeline="leads",stage="crm"}`
	seriesBehind     = `passerelle_stage_backlog_oldest_seconds{pipeline="leads",stage="%s"}`
	seriesPublishes  = `passerelle_transport_publish_duration_seconds_count{outcome="ok",topic="leads.received"}`
	seriesPublishSum = `passerelle_transport_publish_duration_seconds_sum{outcome="ok",topic="leads.received"}`
)

// ingestRound is what one round measured.
type ingestRound struct {
	bare, daemon loadResult
	// Durability check: the daemon's count of leads it published against the 200s seen.
	published, answered    int64
	verifyOK, verifyFailed int64
	verifyPublished        int64
	delivered              float64       // leads the router delivered to the CRM receiver meanwhile
	perPublish             float64       // leads per broker message the webhook published (its batches)
	publishWait            time.Duration // mean time from a batch's publish to its acknowledgement
	// How long the oldest lead waiting for each stage had waited when the measured run ended.
	behindNormalize, behindCRM float64
	peakRSS                    int64
	// The Go heap at the end of the burst: what the runtime holds from the OS, and what is in use.
	heapSys, heapInuse float64
}

func benchIngest(ctx context.Context, o options, tmp string, daemon func() (string, error)) (report, error) {
	var rep report
	gen, err := pickLoadGen(o.loadgen, tmp)
	if err != nil {
		return rep, err
	}
	bin, err := daemon()
	if err != nil {
		return rep, err
	}
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return rep, err
	}
	token := "bench-" + nonce()
	rep.addf("load generator: %s; %d connections, %s warm-up then %s measured, %d round(s), bare and daemon alternating",
		gen.name(), o.connections, o.warmup, o.duration, o.rounds)
	rep.addf("daemon: passerelle serve (make build flags), embedded JetStream, fresh data dir per round, log level warn,")
	rep.addf("        router consuming and delivering every lead to a CRM receiver (connectors/crm) in the bench process")

	var rounds []ingestRound
	var idleRSS int64
	for i := range o.rounds {
		var r ingestRound
		bareFirst := i%2 == 0
		if bareFirst {
			if r.bare, err = runBare(ctx, gen, o); err != nil {
				return rep, err
			}
		}
		rss, err := runDaemonRound(ctx, gen, o, &r, daemonConfig{bin: bin, dataDir: filepath.Join(tmp, fmt.Sprintf("data-%d", i)), token: token, crmSecret: secret}, i == 0)
		if err != nil {
			return rep, err
		}
		if i == 0 {
			idleRSS = rss
		}
		if !bareFirst {
			if r.bare, err = runBare(ctx, gen, o); err != nil {
				return rep, err
			}
		}
		rounds = append(rounds, r)
		fmt.Printf("  round %d: bare %.0f req/s p99 %s %.1f µs CPU/req | passerelle %.0f req/s p99 %s %.1f µs CPU/req | ratio %.2f\n", i+1,
			r.bare.rps(), ms(r.bare.p99), us(r.bare.cpuPerOK()), r.daemon.rps(), ms(r.daemon.p99), us(r.daemon.cpuPerOK()), r.daemon.rps()/r.bare.rps())
	}

	pick := func(f func(ingestRound) float64) float64 {
		xs := make([]float64, len(rounds))
		for i, r := range rounds {
			xs[i] = f(r)
		}
		return median(xs)
	}
	pickD := func(f func(ingestRound) time.Duration) time.Duration {
		xs := make([]time.Duration, len(rounds))
		for i, r := range rounds {
			xs[i] = f(r)
		}
		return median(xs)
	}
	bareRPS, daemonRPS := pick(func(r ingestRound) float64 { return r.bare.rps() }), pick(func(r ingestRound) float64 { return r.daemon.rps() })
	daemonP99 := pickD(func(r ingestRound) time.Duration { return r.daemon.p99 })
	ratio := daemonRPS / bareRPS
	var failed int64
	for _, r := range rounds {
		failed += r.bare.failed + r.daemon.failed + r.verifyFailed
	}

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "median of %d\treq/s (200)\tp50\tp99\tnon-200\tserver CPU/req\tcores used\t\n", len(rounds))
	row := func(name string, rps float64, f func(ingestRound) loadResult) {
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%d\t%.0f µs\t%.2f\t\n", name, rps,
			ms(pickD(func(r ingestRound) time.Duration { return f(r).p50 })), ms(pickD(func(r ingestRound) time.Duration { return f(r).p99 })),
			sum(rounds, func(r ingestRound) int64 { return f(r).failed }),
			float64(pickD(func(r ingestRound) time.Duration { return f(r).cpuPerOK() }))/1e3,
			pick(func(r ingestRound) float64 { return f(r).cpu.Seconds() / f(r).elapsed.Seconds() }))
	}
	row("bare net/http", bareRPS, func(r ingestRound) loadResult { return r.bare })
	row("passerelle durable ingest", daemonRPS, func(r ingestRound) loadResult { return r.daemon })
	tw.Flush()
	rep.addf("")
	rep.lines = append(rep.lines, strings.Split(strings.TrimRight(sb.String(), "\n"), "\n")...)
	rep.addf("ratio passerelle/bare: %.2f (server CPU per request: %.1f× the bare handler's, the router's share included)", ratio,
		float64(pickD(func(r ingestRound) time.Duration { return r.daemon.cpuPerOK() }))/float64(pickD(func(r ingestRound) time.Duration { return r.bare.cpuPerOK() })))
	rep.addf("idle RSS (fresh daemon, %s after /readyz): %s; peak RSS under load (VmHWM, median): %s", idleWait, mb(idleRSS),
		mb(int64(pick(func(r ingestRound) float64 { return float64(r.peakRSS) }))))
	rep.addf("Go heap at the end of the burst (median): %s held from the OS, %s in use (go_memstats_heap_sys_bytes, _inuse_bytes)",
		mb(int64(pick(func(r ingestRound) float64 { return r.heapSys }))), mb(int64(pick(func(r ingestRound) float64 { return r.heapInuse }))))
	rep.addf("webhook batches: %.1f leads per broker message on average, acknowledged %s after their publish (broker.Batcher; medians)",
		pick(func(r ingestRound) float64 { return r.perPublish }), ms(pickD(func(r ingestRound) time.Duration { return r.publishWait })))
	rep.addf("router meanwhile: %.0f leads/s delivered to the CRM receiver during the measured run (median): the stages",
		pick(func(r ingestRound) float64 { return r.delivered }))
	rep.addf("        hold their messages while the webhooks are busy (PASSERELLE_STAGE_YIELD, default); at its end the")
	rep.addf("        oldest lead waiting for normalize had waited %.1f s, for the CRM stage %.1f s (passerelle_stage_backlog_oldest_seconds)",
		pick(func(r ingestRound) float64 { return r.behindNormalize }), pick(func(r ingestRound) float64 { return r.behindCRM }))
	rep.addf("")
	rep.addf("durability (every round): the daemon's %s", seriesIngestOut)
	durable := true
	for i, r := range rounds {
		// A timed run is cut at its deadline: the requests then in flight (at most one per
		// connection per run) are published but never counted as answered.
		inFlight := r.published - r.answered
		okCut := inFlight >= 0 && inFlight <= int64(2*o.connections)
		okExact := r.verifyPublished == r.verifyOK && r.verifyFailed == 0
		durable = durable && okCut && okExact
		rep.addf("  round %d: %d published vs %d answered 200 by the load generator (+%d in flight at its cut-offs, ≤ %d);"+
			" exact check: %d leads sent, %d answered 200, %d published", i+1, r.published, r.answered, inFlight, 2*o.connections,
			verifyLeads, r.verifyOK, r.verifyPublished)
	}

	rep.check("ingest ratio passerelle/bare", fmt.Sprintf("%.2f", ratio), fmt.Sprintf("≥ %.2f", goalIngestRatio), ratio >= goalIngestRatio)
	rep.check(fmt.Sprintf("ingest p99 at %d connections", o.connections), ms(daemonP99), "≤ "+ms(goalIngestP99), daemonP99 <= goalIngestP99)
	rep.check("idle RSS", mb(idleRSS), "≤ "+mb(goalIdleRSS), idleRSS <= goalIdleRSS)
	peakRSS := int64(pick(func(r ingestRound) float64 { return float64(r.peakRSS) }))
	rep.check("peak RSS during the burst", mb(peakRSS), "≤ "+mb(goalPeakRSS), peakRSS > 0 && peakRSS <= goalPeakRSS)
	rep.check("non-200 answers", fmt.Sprint(failed), "0", failed == 0)
	rep.check("published = answered 200", fmt.Sprint(durable), "true", durable)
	return rep, nil
}

func sum[T any](xs []T, f func(T) int64) int64 {
	var n int64
	for _, x := range xs {
		n += f(x)
	}
	return n
}

func runBare(ctx context.Context, gen loadGen, o options) (loadResult, error) {
	p, err := startBare(ctx)
	if err != nil {
		return loadResult{}, err
	}
	defer p.stop()
	t := target{url: "http://" + p.addr + "/webhooks/iciformation", token: "unused"}
	if _, err := gen.run(ctx, t, o.connections, o.warmup); err != nil {
		return loadResult{}, err
	}
	return measure(ctx, p, gen, t, o)
}

// measure runs the measured load and records the server's CPU meanwhile.
func measure(ctx context.Context, p *proc, gen loadGen, t target, o options) (loadResult, error) {
	cpu0, err := p.cpuTime()
	if err != nil {
		return loadResult{}, err
	}
	r, err := gen.run(ctx, t, o.connections, o.duration)
	if err != nil {
		return r, err
	}
	cpu1, err := p.cpuTime()
	r.cpu = cpu1 - cpu0
	return r, err
}

// runDaemonRound loads a fresh daemon and checks its count of published leads; with idle set it
// first measures the idle daemon's RSS, which it returns.
func runDaemonRound(ctx context.Context, gen loadGen, o options, r *ingestRound, c daemonConfig, idle bool) (int64, error) {
	if err := os.MkdirAll(c.dataDir, 0o750); err != nil {
		return 0, err
	}
	defer os.RemoveAll(c.dataDir)
	recv, err := crmsim.Start(c.crmSecret)
	if err != nil {
		return 0, err
	}
	defer recv.Close()
	c.crmURL = recv.URL() + "/leads"
	p, err := startDaemon(ctx, c)
	if err != nil {
		return 0, err
	}
	defer p.stop()

	var rss int64
	if idle {
		time.Sleep(idleWait)
		if rss, err = p.memory("VmRSS"); err != nil {
			return 0, err
		}
	}
	t := target{url: "http://" + p.addr + "/webhooks/iciformation", token: c.token}
	warm, err := gen.run(ctx, t, o.connections, o.warmup)
	if err != nil {
		return 0, err
	}
	series := []string{seriesCRMOut, seriesIngestOut, seriesPublishes, seriesPublishSum}
	before, err := p.metrics(series...)
	if err != nil {
		return 0, err
	}
	if r.daemon, err = measure(ctx, p, gen, t, o); err != nil {
		return 0, err
	}
	after, err := p.metrics(series...)
	if err != nil {
		return 0, err
	}
	r.delivered = (after[0] - before[0]) / r.daemon.elapsed.Seconds()
	r.perPublish = (after[1] - before[1]) / max(1, after[2]-before[2])
	r.publishWait = time.Duration((after[3] - before[3]) / max(1, after[2]-before[2]) * float64(time.Second))
	if r.behindNormalize, err = p.metric(fmt.Sprintf(seriesBehind, "normalize")); err != nil {
		return 0, err
	}
	if r.behindCRM, err = p.metric(fmt.Sprintf(seriesBehind, "crm")); err != nil {
		return 0, err
	}
	// The kernel's high-water mark of the daemon's resident set: the burst's peak, warm-up included.
	if r.peakRSS, err = p.memory("VmHWM"); err != nil {
		return 0, err
	}
	if heap, err := p.metrics("go_memstats_heap_sys_bytes", "go_memstats_heap_inuse_bytes"); err == nil {
		r.heapSys, r.heapInuse = heap[0], heap[1]
	}
	r.daemon.failed += warm.failed
	r.answered = warm.ok + r.daemon.ok

	// Requests cut at the deadline may still be completing: let the counter settle.
	time.Sleep(200 * time.Millisecond)
	pub, err := p.metric(seriesIngestOut)
	if err != nil {
		return 0, err
	}
	r.published = int64(pub)
	r.verifyOK, r.verifyFailed, err = sendExactly(ctx, t, o.connections, verifyLeads)
	if err != nil {
		return 0, err
	}
	pub2, err := p.metric(seriesIngestOut)
	if err != nil {
		return 0, err
	}
	r.verifyPublished = int64(pub2) - r.published
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if strings.Contains(p.stderr.String(), `"level":"ERROR"`) {
		fmt.Printf("  daemon logged errors:\n%s\n", p.stderr)
	}
	return rss, nil
}
