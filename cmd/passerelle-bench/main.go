// Command passerelle-bench measures passerelle against baselines run in the same process, on the
// same machine, at the same time (make bench):
//
//   - ingest: durable Ici Formation webhook ingest (200 only once the lead is in JetStream, the
//     router consuming and delivering to a simulated CRM meanwhile) against a bare net/http
//     handler reading the same bodies; requests/s, p50, p99, and the idle daemon's RSS.
//   - billing: a 100 000-row billing file uploaded over SFTP by the connectors/sftp Uploader
//     (temporary name, fsync, size check, rename) against OpenSSH's sftp client, both to a local
//     OpenSSH sshd.
//   - poll: a poll of 5 000 Shop Application interfaces from the simulator; seconds and calls
//     against the floor the client's rate limit sets.
//
// The goals come from the issues; each figure is printed with PASS or MISS.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
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
	flag.StringVar(&o.only, "only", "", "run only one benchmark: ingest, billing or poll")
	flag.StringVar(&o.loadgen, "loadgen", "auto", "load generator: auto (wrk when on PATH), wrk or go")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (binaries, data, logs)")
	flag.StringVar(&o.daemonBin, "passerelle", "", "passerelle binary to measure; empty builds ./cmd/passerelle as make build does")
	flag.Parse()
	if o.rounds < 1 || o.connections < 1 || o.duration <= 0 {
		fmt.Fprintln(os.Stderr, "passerelle-bench: -rounds, -connections and -duration must be positive")
		os.Exit(2)
	}
	switch o.only {
	case "", "ingest", "billing", "poll":
	default:
		fmt.Fprintf(os.Stderr, "passerelle-bench: -only %q: want ingest, billing or poll\n", o.only)
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

	failed := false
	run := func(name string, f func() (report, error)) {
		if o.only != "" && o.only != name {
			return
		}
		fmt.Printf("\n== %s ==\n", name)
		r, err := f()
		if err != nil {
			fmt.Printf("%s: error: %v\n", name, err)
			failed = true
			return
		}
		r.print()
		if ctx.Err() != nil {
			failed = true
		}
	}
	run("ingest", func() (report, error) { return benchIngest(ctx, o, tmp) })
	run("billing", func() (report, error) { return benchBilling(ctx, o, tmp) })
	run("poll", func() (report, error) { return benchPoll(ctx, tmp) })
	if failed {
		os.Exit(1)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "passerelle-bench:", err)
	os.Exit(1)
}
