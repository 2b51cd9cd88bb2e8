package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/pipelines"
)

// Goals and settings of the delivery issue (issue 11).
const (
	goalDeliveryShare = 0.8 // delivered leads/s over the ceiling concurrency / latency
	deliveryLatency   = 50 * time.Millisecond
	deliveryConns     = 32 // connections posting the leads
	ceilingPerWorker  = 25 // requests per goroutine of the ceiling client
	// The build before the engine sends one request at a time (about 19 leads/s at 50 ms): it
	// gets fewer leads with the slow receiver, or the run would take minutes.
	baselineSlowLeads = 200
)

const (
	seriesCRMIn    = `passerelle_stage_messages_total{outcome="in",pipeline="leads",stage="crm"}`
	seriesYield    = `passerelle_stage_yield_seconds_total{pipeline="leads",stage="normalize"}`
	seriesCRMCalls = `passerelle_stage_duration_seconds_count{pipeline="leads",stage="crm"}`
	seriesCRMTime  = `passerelle_stage_duration_seconds_sum{pipeline="leads",stage="crm"}`
	seriesNormTime = `passerelle_stage_duration_seconds_sum{pipeline="leads",stage="normalize"}`
	seriesNormCall = `passerelle_stage_duration_seconds_count{pipeline="leads",stage="normalize"}`
	// The engine's time per send (slot taken to answer read), for the endpoint id in %s.
	seriesSendTime  = `passerelle_delivery_duration_seconds_sum{endpoint="%s",outcome="delivered"}`
	seriesSendCount = `passerelle_delivery_duration_seconds_count{endpoint="%s",outcome="delivered"}`
)

// deliveryRun is one daemon's run: leads posted, then delivered to the receiver.
type deliveryRun struct {
	build       string
	concurrency int // PASSERELLE_CRM_CONCURRENCY; 0 for a build without it
	delay       time.Duration
	leads       int   // posted
	answered    int64 // answered 200 by the webhook
	receiverStats
	posting    time.Duration // from the first post to the last answer of the webhook
	duringPost int           // distinct leads delivered while the leads were being posted
	overlap    time.Duration // the part of the delivery span before the last post was answered
	afterPost  time.Duration // from the last post to the last delivery
	timedOut   bool
	// From the daemon's /metrics (NaN when the build does not export them).
	yielded float64 // seconds the normalize stage spent held by the yield middleware
	perCall float64 // leads per call of the CRM stage (the batches it handled)
	// Where the time went: each stage's handler time summed over its calls, and its calls.
	crmTime, normTime   float64
	crmCalls, normCalls float64
	sendTime, sends     float64       // the engine's summed send time, and its sends
	cpu                 time.Duration // the daemon's CPU from the first post to the last delivery
	peakRSS             int64
}

// cpuPerLead is the daemon's CPU per lead, ingest and delivery: unlike leads/s, it hardly moves
// when other work takes the cores.
func (r deliveryRun) cpuPerLead() time.Duration {
	if r.distinct == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.distinct)
}

// rate is delivered leads/s at the receiver, from the first to the last distinct delivery.
func (r deliveryRun) rate() float64 { return float64(r.distinct) / r.span().Seconds() }

// afterRate is the rate once every lead was posted: the stages are no longer held for the
// webhooks then.
func (r deliveryRun) afterRate() float64 {
	return float64(r.distinct-r.duringPost) / r.afterPost.Seconds()
}

// ceiling is concurrency / latency, the latency being the receiver's own mean time per request in
// this run.
func (r deliveryRun) ceiling() float64 { return float64(r.concurrency) / r.meanLatency().Seconds() }

func benchDelivery(ctx context.Context, o options, tmp string, daemon func() (string, error)) (report, error) {
	var rep report
	bin, err := daemon()
	if err != nil {
		return rep, err
	}
	base, baseLabel, baseNote, err := baseline(ctx, o)
	if err != nil {
		return rep, err
	}
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		return rep, err
	}
	conc := o.crmConcurrency
	rep.addf("daemon: passerelle serve (make build flags), embedded JetStream, fresh data dir per run, PASSERELLE_CRM_CONCURRENCY=%d%s;",
		conc, strings.Join(append([]string{""}, o.env...), ", "))
	rep.addf("        %d distinct leads posted from %d connections, delivered to a CRM receiver in the bench process that answers", o.leads, deliveryConns)
	rep.addf("        200 after %s, then at once; delivered/s from its first to its last distinct webhook-id; %d round(s)", deliveryLatency, o.rounds)
	if baseNote != "" {
		rep.addf("%s", baseNote)
	}

	type round struct {
		slow, fast, baseFast deliveryRun
		client               clientRun
	}
	var rounds []round
	var baseSlow deliveryRun
	c := daemonConfig{token: "bench-" + nonce(), crmSecret: secret}
	one := func(name, bin string, delay time.Duration, leads int, env ...string) (deliveryRun, error) {
		c := c
		c.bin, c.env = bin, env
		c.dataDir = filepath.Join(tmp, "delivery-"+nonce())
		r, err := runDelivery(ctx, c, delay, leads, conc)
		r.build = name
		if len(env) > 0 { // the build measured; the baseline is given no setting and has no such limit
			r.concurrency = conc
		}
		return r, err
	}
	env := append([]string{"PASSERELLE_CRM_CONCURRENCY=" + strconv.Itoa(conc)}, o.env...)
	for i := range o.rounds {
		var r round
		if r.client, err = runCeilingClient(ctx, deliveryLatency, conc); err != nil {
			return rep, err
		}
		if r.slow, err = one("this build", bin, deliveryLatency, o.leads, env...); err != nil {
			return rep, err
		}
		// The two builds alternate with the fast receiver, so neither always runs on a warmer machine.
		runs := []struct {
			dst  *deliveryRun
			name string
			bin  string
			env  []string
		}{{&r.fast, "this build", bin, env}, {&r.baseFast, baseLabel, base, nil}}
		if i%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, x := range runs {
			if x.bin == "" {
				continue
			}
			if *x.dst, err = one(x.name, x.bin, 0, o.leads, x.env...); err != nil {
				return rep, err
			}
		}
		if i == 0 && base != "" {
			if baseSlow, err = one(baseLabel, base, deliveryLatency, baselineSlowLeads); err != nil {
				return rep, err
			}
		}
		rounds = append(rounds, r)
		line := fmt.Sprintf("  round %d: at %s %.0f leads/s (ceiling %.0f/s, %.2f; %.2f after the burst; %.2f s of the span during the burst; a plain client %.2f of its own) | at once %.0f leads/s",
			i+1, deliveryLatency, r.slow.rate(), r.slow.ceiling(), r.slow.rate()/r.slow.ceiling(), r.slow.afterRate()/r.slow.ceiling(), r.slow.overlap.Seconds(),
			r.client.share, r.fast.rate())
		if base != "" {
			line += fmt.Sprintf(", %s %.0f leads/s", baseLabel, r.baseFast.rate())
		}
		fmt.Println(line)
	}

	pick := func(f func(round) deliveryRun) deliveryRun {
		// The run of median rate, so that its other figures are of the same run.
		xs := make([]float64, len(rounds))
		for i, r := range rounds {
			xs[i] = f(r).rate()
		}
		m := median(xs)
		best := f(rounds[0])
		for _, r := range rounds {
			if math.Abs(f(r).rate()-m) < math.Abs(best.rate()-m) {
				best = f(r)
			}
		}
		return best
	}
	slow, fast := pick(func(r round) deliveryRun { return r.slow }), pick(func(r round) deliveryRun { return r.fast })
	clientRates := make([]float64, len(rounds))
	clientShares := make([]float64, len(rounds))
	shares := make([]float64, len(rounds))
	for i, r := range rounds {
		clientRates[i], clientShares[i] = r.client.rate, r.client.share
		shares[i] = r.slow.rate() / r.slow.ceiling()
	}
	share := median(shares)
	table := []deliveryRun{slow}
	if base != "" {
		table = append(table, baseSlow)
	}
	table = append(table, fast)
	var baseFast deliveryRun
	if base != "" {
		baseFast = pick(func(r round) deliveryRun { return r.baseFast })
		table = append(table, baseFast)
	}

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "receiver\tbuild\tleads\tdelivered/s\tspan\tposting\tspan while posting\tdelivered then\tthen/s\tat full\tmax in flight\tduplicates\tnormalize held\tleads/call\tCPU/lead\tpeak RSS\t\n")
	for _, r := range table {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.0f\t%.2f s\t%.2f s\t%.2f s\t%d\t%.0f\t%.0f%%\t%d\t%d\t%s\t%s\t%.0f µs\t%s\t\n", answering(r.delay), r.build, r.distinct, r.rate(),
			r.span().Seconds(), r.posting.Seconds(), r.overlap.Seconds(), r.duringPost, r.afterRate(), 100*r.full.Seconds()/r.span().Seconds(),
			r.maxInFlight, r.duplicates, orNA(r.yielded, "%.1f s"), orNA(r.perCall, "%.1f"), us(r.cpuPerLead()), mb(r.peakRSS))
	}
	tw.Flush()
	rep.addf("")
	if base != "" {
		rep.addf("median of %d (the run of median delivered/s; %s at %s: %d leads, once)", len(rounds), baseLabel, deliveryLatency, baselineSlowLeads)
	} else {
		rep.addf("median of %d (the run of median delivered/s)", len(rounds))
	}
	rep.lines = append(rep.lines, strings.Split(strings.TrimRight(sb.String(), "\n"), "\n")...)
	rep.addf("ceiling at %s: %d in flight / %s (the receiver's mean time per request in that run) = %.0f/s; a plain Go client", deliveryLatency,
		conc, ms(slow.meanLatency()), slow.ceiling())
	rep.addf("        with %d goroutines against a receiver of the same latency got %.0f/s, %.2f of its own ceiling (medians): what this", conc,
		median(clientRates), median(clientShares))
	rep.addf("        machine loses to scheduling whoever sends")
	for _, r := range []deliveryRun{slow, fast} {
		if r.normCalls == 0 {
			continue
		}
		rep.addf("where the time went, %s, receiver %s: normalize %.0f calls of %s (busy %.0f%% of the delivery span, one at a time),",
			r.build, answering(r.delay), r.normCalls, ms(secs(r.normTime/r.normCalls)),
			100*r.normTime/r.span().Seconds())
		rep.addf("        CRM stage %.0f calls of %s (%.1f in progress on average over the span); the engine's sends %s each (%.1f in",
			r.crmCalls, ms(secs(r.crmTime/r.crmCalls)), r.crmTime/r.span().Seconds(), ms(secs(r.sendTime/max(1, r.sends))), r.sendTime/r.span().Seconds())
		rep.addf("        progress on average), of which the receiver's own time %s: the rest is the client, loopback and scheduling",
			ms(r.meanLatency()))
	}
	rep.addf("span: first to last distinct delivery; span while posting: its part before the last lead was posted, when the stages")
	rep.addf("        yield to the webhook burst (PASSERELLE_STAGE_YIELD); delivered then: distinct leads delivered in that part; then/s:")
	rep.addf("        the rate from the last post to the last delivery; at full: share of the span with %d requests in flight at the", conc)
	rep.addf("        receiver; normalize held: seconds the yield middleware held the normalize stage (passerelle_stage_yield_seconds_total);")
	rep.addf("        CPU/lead: the daemon's CPU (all threads) from the first post to the last delivery, per lead")

	var timedOut bool
	var maxInFlight, dups int
	var answered, posted int64
	for _, r := range rounds {
		for _, x := range []deliveryRun{r.slow, r.fast, r.baseFast} {
			timedOut = timedOut || x.timedOut
			dups += x.duplicates
			answered += x.answered
			posted += int64(x.leads)
			if x.build == "this build" {
				maxInFlight = max(maxInFlight, x.maxInFlight)
			}
		}
	}
	timedOut = timedOut || baseSlow.timedOut
	answered += baseSlow.answered
	posted += int64(baseSlow.leads)
	afterShares := make([]float64, len(rounds))
	for i, r := range rounds {
		afterShares[i] = r.slow.afterRate() / r.slow.ceiling()
	}
	rep.addf("at %s, once every lead was posted (then/s): %.2f of the ceiling (median); the goal below is from the first delivery,",
		deliveryLatency, median(afterShares))
	rep.addf("        which drops by the burst's length in a round where a lead slips out before the stages start yielding to it")
	rep.check(fmt.Sprintf("delivered at %s / ceiling", deliveryLatency), fmt.Sprintf("%.2f (%.0f of %.0f/s)", share, slow.rate(), slow.ceiling()),
		fmt.Sprintf("≥ %.2f", goalDeliveryShare), share >= goalDeliveryShare)
	rep.check("max requests in flight at the CRM", strconv.Itoa(maxInFlight), fmt.Sprintf("≤ %d", conc), maxInFlight <= conc)
	rep.check("duplicate deliveries", strconv.Itoa(dups), "0", dups == 0)
	rep.check("every lead answered 200, delivered", fmt.Sprint(answered == posted && !timedOut), "true", answered == posted && !timedOut)
	if base != "" {
		// With a receiver that answers at once the delivery lasts about as long as the posting
		// burst, and a lead that slips out before the stages start yielding to the burst starts
		// the first-to-last span early, in either build, by up to the whole burst: so the two
		// builds are compared on their rate once every lead was posted (medians), the
		// first-to-last figures printed beside.
		after := func(f func(round) deliveryRun) float64 {
			xs := make([]float64, len(rounds))
			for i, r := range rounds {
				xs[i] = f(r).afterRate()
			}
			return median(xs)
		}
		now, before := after(func(r round) deliveryRun { return r.fast }), after(func(r round) deliveryRun { return r.baseFast })
		rep.addf("at once, this build against %s (medians): %.0f against %.0f leads/s once every lead was posted, %.0f against %.0f",
			baseLabel, now, before, fast.rate(), baseFast.rate())
		rep.addf("        from the first delivery, %.0f µs against %.0f µs of daemon CPU per lead", us(fast.cpuPerLead()), us(baseFast.cpuPerLead()))
		rep.check("delivered at once vs "+baseLabel, fmt.Sprintf("%.2f× (%.0f/s)", now/before, now), "≥ 1.00×", now >= before)
	}
	return rep, nil
}

// answering names a receiver by its delay.
func answering(delay time.Duration) string {
	if delay == 0 {
		return "at once"
	}
	return delay.String()
}

func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func orNA(v float64, format string) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf(format, v)
}

// runDelivery starts a daemon delivering to a fresh receiver, posts leads distinct leads and waits
// for the receiver to have them all.
func runDelivery(ctx context.Context, c daemonConfig, delay time.Duration, leads, conc int) (deliveryRun, error) {
	r := deliveryRun{delay: delay, leads: leads, yielded: math.NaN(), perCall: math.NaN()}
	if err := os.MkdirAll(c.dataDir, 0o750); err != nil {
		return r, err
	}
	defer os.RemoveAll(c.dataDir)
	recv, err := startReceiver(delay, leads, conc)
	if err != nil {
		return r, err
	}
	defer recv.close()
	c.crmURL = recv.url + "/leads"
	p, err := startDaemon(ctx, c)
	if err != nil {
		return r, err
	}
	defer p.stop()

	t := target{url: "http://" + p.addr + "/webhooks/iciformation", token: c.token}
	cpu0, err := p.cpuTime()
	if err != nil {
		return r, err
	}
	start := time.Now()
	ok, _, err := sendExactly(ctx, t, deliveryConns, leads)
	if err != nil {
		return r, err
	}
	r.posting = time.Since(start)
	r.answered = ok
	r.duringPost = recv.stats().distinct
	posted := time.Now()

	// Generous: the build before the engine delivers one lead at a time.
	within := 90*time.Second + time.Duration(leads)*delay/8
	select {
	case <-recv.all:
	case <-time.After(within):
		r.timedOut = true
	case <-ctx.Done():
		return r, ctx.Err()
	case <-p.exited:
		return r, fmt.Errorf("passerelle exited: %s", p.stderr)
	}
	cpu1, err := p.cpuTime()
	if err != nil {
		return r, err
	}
	r.cpu = cpu1 - cpu0
	r.receiverStats = recv.stats()
	r.afterPost = r.last.Sub(posted)
	r.overlap = max(0, posted.Sub(r.first))
	if r.timedOut {
		fmt.Printf("  %d of %d leads delivered after %s\n", r.distinct, leads, within)
	}

	// The sink counts a lead out once its delivery is logged: then nothing is left to re-send.
	// Builds without these series skip the wait and their figures.
	deadline := time.Now().Add(10 * time.Second)
	id := pipelines.EndpointID(c.crmURL)
	for {
		vs, err := p.metrics(seriesCRMOut, seriesYield, seriesCRMIn, seriesCRMCalls, seriesCRMTime, seriesNormTime, seriesNormCall,
			fmt.Sprintf(seriesSendTime, id), fmt.Sprintf(seriesSendCount, id))
		if err != nil {
			break
		}
		if vs[0] >= float64(r.distinct) || time.Now().After(deadline) {
			r.yielded, r.perCall = vs[1], vs[2]/max(1, vs[3])
			r.crmCalls, r.crmTime, r.normTime, r.normCalls = vs[3], vs[4], vs[5], vs[6]
			r.sendTime, r.sends = vs[7], vs[8]
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r.peakRSS, err = p.memory("VmHWM"); err != nil {
		return r, err
	}
	// A re-send after the last first delivery counts as a duplicate too.
	r.duplicates = recv.stats().duplicates
	if strings.Contains(p.stderr.String(), `"level":"ERROR"`) {
		fmt.Printf("  daemon logged errors:\n%s\n", p.stderr)
	}
	return r, nil
}

// receiverStats is what the receiver saw.
type receiverStats struct {
	requests    int
	distinct    int // webhook-ids answered at least once
	duplicates  int // requests with a webhook-id already answered
	maxInFlight int
	busy        time.Duration // summed time from each request's arrival to its answer
	first, last time.Time     // the first arrival, the last answer of a webhook-id not seen before
	full        time.Duration // time with fullAt requests or more in flight
}

func (s receiverStats) span() time.Duration { return s.last.Sub(s.first) }

// meanLatency is the receiver's mean time per request.
func (s receiverStats) meanLatency() time.Duration {
	if s.requests == 0 {
		return 0
	}
	return s.busy / time.Duration(s.requests)
}

// crmReceiver is the CRM of the delivery benchmark: it answers every POST with 200 after delay and
// counts requests in flight and webhook-ids. It checks no signature: it measures the sender, and
// connectors/crm/crmsim verifies them in the tests.
type crmReceiver struct {
	delay  time.Duration
	srv    *http.Server
	url    string
	want   int
	fullAt int           // the sender's concurrency: time at it or above is counted
	all    chan struct{} // closed once want distinct webhook-ids were answered

	mu       sync.Mutex
	s        receiverStats
	inFlight int
	changed  time.Time // when inFlight last changed
	seen     map[string]int
}

func startReceiver(delay time.Duration, want, fullAt int) (*crmReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	c := &crmReceiver{delay: delay, url: "http://" + ln.Addr().String(), want: want, fullAt: fullAt, all: make(chan struct{}), seen: make(map[string]int, want)}
	c.srv = &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

func (c *crmReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	c.mu.Lock()
	c.moved(start, +1)
	c.s.requests++
	c.s.maxInFlight = max(c.s.maxInFlight, c.inFlight)
	c.mu.Unlock()
	_, _ = io.Copy(io.Discard, r.Body)
	if c.delay > 0 {
		t := time.NewTimer(c.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
		}
	}
	id := r.Header.Get(stdwebhook.HeaderID)
	end := time.Now()
	c.mu.Lock()
	c.moved(end, -1)
	c.s.busy += end.Sub(start)
	c.seen[id]++
	if c.seen[id] > 1 {
		c.s.duplicates++
	} else {
		if c.s.first.IsZero() || start.Before(c.s.first) {
			c.s.first = start
		}
		c.s.last = end
		c.s.distinct++
		if c.s.distinct == c.want {
			close(c.all)
		}
	}
	c.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// moved adds d to the requests in flight at now, counting the time spent at full concurrency.
func (c *crmReceiver) moved(now time.Time, d int) {
	if c.inFlight >= c.fullAt && !c.changed.IsZero() {
		c.s.full += now.Sub(c.changed)
	}
	c.inFlight += d
	c.s.maxInFlight = max(c.s.maxInFlight, c.inFlight)
	c.changed = now
}

func (c *crmReceiver) stats() receiverStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s
}

func (c *crmReceiver) close() { _ = c.srv.Close() }

// clientRun is what a plain client got from a receiver.
type clientRun struct {
	rate  float64
	share float64 // rate over conc / the receiver's mean time per request
}

// runCeilingClient measures what a plain net/http client with conc goroutines gets from a receiver
// answering after delay: no sender with as many requests in flight does better on this machine.
func runCeilingClient(ctx context.Context, delay time.Duration, conc int) (clientRun, error) {
	total := ceilingPerWorker * conc
	recv, err := startReceiver(delay, total, conc)
	if err != nil {
		return clientRun{}, err
	}
	defer recv.close()
	tr := &http.Transport{MaxConnsPerHost: conc, MaxIdleConnsPerHost: conc}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	next := make(chan int, total)
	for i := range total {
		next <- i
	}
	close(next)
	errs := make([]error, conc)
	start := time.Now()
	var wg sync.WaitGroup
	for g := range conc {
		wg.Go(func() {
			for i := range next {
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, recv.url, strings.NewReader(`{"type":"lead.received"}`))
				if err != nil {
					errs[g] = err
					return
				}
				req.Header.Set(stdwebhook.HeaderID, "ceiling-"+strconv.Itoa(i))
				resp, err := client.Do(req)
				if err != nil {
					errs[g] = err
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return clientRun{}, fmt.Errorf("ceiling client: %w", err)
	}
	rate := float64(total) / elapsed.Seconds()
	return clientRun{rate: rate, share: rate * recv.stats().meanLatency().Seconds() / float64(conc)}, nil
}

// baseline returns the passerelle binary to compare with (empty for none), its label, and a note
// saying where it comes from or why there is none.
func baseline(ctx context.Context, o options) (bin, label, note string, err error) {
	switch {
	case o.baselineBin != "":
		return o.baselineBin, "baseline", "baseline: " + o.baselineBin + " (-baseline)", nil
	case o.baselineRev == "":
		return "", "", "baseline: none (-baseline-rev empty): the comparison with the build before the engine is not measured", nil
	}
	bin, hash, err := buildRev(ctx, o.baselineRev)
	if err != nil {
		// A clone without that commit (shallow, or a fork) still runs the rest.
		return "", "", fmt.Sprintf("baseline: none: %v", err), nil
	}
	label = hash[:7]
	return bin, label, fmt.Sprintf("baseline: %s (-baseline-rev %s), the build before the delivery engine, built as make build does: %s", label, o.baselineRev, bin), nil
}

// buildRev builds cmd/passerelle of a git revision, from a `git archive` of it, once: the binary is
// kept in the user's cache directory under the commit's hash.
func buildRev(ctx context.Context, rev string) (bin, hash string, err error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", "", err
	}
	out, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--verify", "--quiet", rev+"^{commit}").Output()
	if err != nil {
		return "", "", fmt.Errorf("git revision %q not found in %s", rev, root)
	}
	hash = strings.TrimSpace(string(out))
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", "", err
	}
	dir := filepath.Join(cache, "passerelle-bench")
	bin = filepath.Join(dir, "passerelle-"+hash[:12])
	if _, err := os.Stat(bin); err == nil {
		return bin, hash, nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", "", err
	}
	src, err := os.MkdirTemp("", "passerelle-bench-src-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(src)
	fmt.Printf("building %s once (git archive, go build), kept in %s\n", hash[:7], bin)
	tarball := filepath.Join(src, "src.tar")
	steps := []*exec.Cmd{
		exec.CommandContext(ctx, "git", "-C", root, "archive", "--format=tar", "-o", tarball, hash),
		exec.CommandContext(ctx, "tar", "-xf", tarball, "-C", src),
		exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin+".tmp", "./cmd/passerelle"),
	}
	steps[2].Dir = src
	for _, cmd := range steps {
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out)
		}
	}
	if err := os.Rename(bin+".tmp", bin); err != nil {
		return "", "", err
	}
	return bin, hash, nil
}
