// Command passerelle-bench measures passerelle against baselines run in the same process, on the
// same machine, at the same time (make bench):
//
//   - ingest: durable Ici Formation webhook ingest (200 only once the lead is in JetStream, the
//     router consuming and delivering to a simulated CRM meanwhile) against a bare net/http
//     handler reading the same bodies; requests/s, p50, p99, the idle daemon's RSS and its peak
//     RSS during the burst.
//   - delivery: leads posted to passerelle serve and delivered through the delivery engine to a
//     CRM receiver in the bench that answers after 50 ms, then at once; delivered leads/s against
//     the ceiling concurrency / latency measured in the same run, and against an earlier build
//     (before the engine) with the receiver that answers at once.
//   - billing: a 100 000-row billing file uploaded over SFTP by the connectors/sftp Uploader
//     (temporary name, fsync, size check, rename) against OpenSSH's sftp client, both to a local
//     OpenSSH sshd.
//   - poll: a poll of 5 000 Shop Application interfaces from the simulator; seconds and calls
//     against the floor the client's rate limit sets.
//
// The goals come from the issues; each figure is printed with PASS or MISS, and the exit status
// is 1 when a goal is missed or a benchmark could not run (-report-only: 0 on a MISS).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	duration    time.Duration
	warmup      time.Duration
	connections int
	rounds      int
	only        string
	loadgen     string
	keep        bool
	daemonBin   string
	reportOnly  bool
	leads       int
	baselineRev string
	baselineBin string
	// delivery: the measured daemon's PASSERELLE_CRM_CONCURRENCY and other settings.
	crmConcurrency int
	env            []string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == bareServerArg {
		runBareServer()
		return
	}
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured load per run (after the warm-up)")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each measured run, not counted")
	flag.IntVar(&o.connections, "connections", 64, "concurrent keep-alive connections of the load generator")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds; each figure is the median of the rounds")
	flag.StringVar(&o.only, "only", "", "run only one benchmark: ingest, delivery, billing, poll, replay or ecolix")
	flag.StringVar(&o.loadgen, "loadgen", "auto", "load generator: auto (wrk when on PATH), wrk or go")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, data, logs)")
	flag.StringVar(&o.daemonBin, "passerelle", "", "passerelle binary to measure; empty builds ./cmd/passerelle as make build does")
	flag.BoolVar(&o.reportOnly, "report-only", false, "print the figures and exit 0 even when a goal is missed (a benchmark that cannot run still exits 1)")
	flag.IntVar(&o.leads, "leads", 4000, "delivery: leads posted per run")
	flag.StringVar(&o.baselineRev, "baseline-rev", "a91a9e0", "delivery: git revision of the build to compare with (before the delivery engine), built once and cached; empty skips it")
	flag.StringVar(&o.baselineBin, "baseline", "", "delivery: passerelle binary of the earlier build (instead of building -baseline-rev)")
	flag.IntVar(&o.crmConcurrency, "crm-concurrency", 64, "delivery: PASSERELLE_CRM_CONCURRENCY of the measured daemon, and the ceiling client's goroutines")
	flag.Func("env", "delivery: `PASSERELLE_NAME=value` given to the measured daemon (repeatable), to measure what a setting buys", func(s string) error {
		if !strings.HasPrefix(s, "PASSERELLE_") || !strings.Contains(s, "=") {
			return fmt.Errorf("want PASSERELLE_NAME=value")
		}
		o.env = append(o.env, s)
		return nil
	})
	flag.Parse()
	if o.rounds < 1 || o.connections < 1 || o.duration <= 0 || o.leads < 1 || o.crmConcurrency < 1 {
		fmt.Fprintln(os.Stderr, "passerelle-bench: -rounds, -connections, -duration, -leads and -crm-concurrency must be positive")
		os.Exit(2)
	}
	switch o.only {
	case "", "ingest", "delivery", "billing", "poll", "replay", "ecolix":
	default:
		fmt.Fprintf(os.Stderr, "passerelle-bench: -only %q: want ingest, delivery, billing, poll, replay or ecolix\n", o.only)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	tmp, err := os.MkdirTemp("", "passerelle-bench-")
	if err != nil {
		fatal(err)
	}
	if o.keep {
		fmt.Println("temporary files kept in", tmp)
	} else {
		defer os.RemoveAll(tmp)
	}
	printMachine()

	// The daemon is built once, by the first benchmark that needs it.
	bin := o.daemonBin
	daemon := func() (string, error) {
		if bin != "" {
			return bin, nil
		}
		b, err := buildDaemon(ctx, tmp)
		if err == nil {
			bin = b
		}
		return b, err
	}

	var errored []string
	var missed []goal
	run := func(name string, f func() (report, error)) {
		if o.only != "" && o.only != name {
			return
		}
		fmt.Printf("\n== %s ==\n", name)
		r, err := f()
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			fmt.Printf("%s: error: %v\n", name, err)
			errored = append(errored, name)
			return
		}
		r.print()
		missed = append(missed, r.missed()...)
	}
	run("ingest", func() (report, error) { return benchIngest(ctx, o, tmp, daemon) })
	run("delivery", func() (report, error) { return benchDelivery(ctx, o, tmp, daemon) })
	run("billing", func() (report, error) { return benchBilling(ctx, o, tmp) })
	run("poll", func() (report, error) { return benchPoll(ctx, tmp) })
	run("replay", func() (report, error) { return benchReplay(ctx, o, tmp, daemon) })
	run("ecolix", func() (report, error) { return benchEcolix(ctx) })
	os.Exit(verdict(os.Stdout, errored, missed, o.reportOnly))
}

// verdict prints the run's outcome and returns the exit status: 1 when a benchmark could not run
// or, unless reportOnly, when a goal was missed.
func verdict(w io.Writer, errored []string, missed []goal, reportOnly bool) int {
	fmt.Fprintln(w)
	for _, g := range missed {
		fmt.Fprintf(w, "MISS: %s: %s (goal %s)\n", g.what, g.got, g.want)
	}
	switch {
	case len(errored) > 0:
		fmt.Fprintf(w, "could not run: %s: exit 1\n", strings.Join(errored, ", "))
		return 1
	case len(missed) == 0:
		fmt.Fprintln(w, "every goal met")
		return 0
	case reportOnly:
		fmt.Fprintf(w, "%d goal(s) missed: exit 0 (-report-only)\n", len(missed))
		return 0
	default:
		fmt.Fprintf(w, "%d goal(s) missed: exit 1 (-report-only to only report)\n", len(missed))
		return 1
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "passerelle-bench:", err)
	os.Exit(1)
}
