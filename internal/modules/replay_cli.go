package modules

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/term"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/journal"
	"github.com/passerelle/passerelle/pipelines"
)

type replayOptions struct {
	source, since, until, journalDir, stage, resume string
	fromJournal, dryRun                             bool
	rate                                            float64
	batch                                           int
}

// Outcomes a replay counts besides the Replayer's.
const (
	replayUnsupported = "unsupported" // a journal entry of a source replay has no path for
	replayToPublish   = "to_publish"  // a dry run's records that would be sent
)

func runReplay(ctx context.Context, cli *CLI, o replayOptions, args []string) error {
	sources, direct := replaySources(), replayDirectSources()
	supported := strings.Join(append(sortedKeys(sources), sortedKeys(direct)...), ", ")
	if o.source != "" {
		_, lead := sources[o.source]
		if _, other := direct[o.source]; !lead && !other {
			return UsageErrorf("--source %q: replay supports %s", o.source, supported)
		}
	}
	if o.stage != pipelines.StageReceived && o.stage != pipelines.StageNormalized {
		return UsageErrorf("--to-stage %q: want %s or %s", o.stage, pipelines.StageReceived, pipelines.StageNormalized)
	}
	if o.rate < 0 {
		return UsageErrorf("--rate %v: must not be negative", o.rate)
	}
	if o.batch < 1 || o.batch > 500 {
		return UsageErrorf("--batch %d: want 1 to 500", o.batch)
	}
	var resume *journal.Position
	if o.resume != "" {
		i := strings.LastIndexByte(o.resume, ':')
		line, err := strconv.Atoi(o.resume[i+1:])
		if i <= 0 || err != nil || line < 1 {
			return UsageErrorf("--resume %q: want FILE:LINE", o.resume)
		}
		resume = &journal.Position{File: o.resume[:i], Line: line}
	}
	var since, until time.Time
	if o.fromJournal {
		if len(args) > 0 {
			return UsageErrorf("--from-journal reads the journal: give no files")
		}
		var err error
		if since, err = parseReplayTime("--since", o.since); err != nil {
			return err
		}
		if until, err = parseReplayTime("--until", o.until); err != nil {
			return err
		}
		if since.IsZero() {
			return UsageErrorf("--from-journal needs --since (and --until, now by default)")
		}
		if until.IsZero() {
			until = time.Now()
		}
		if !until.After(since) {
			return UsageErrorf("--until must be after --since")
		}
	} else {
		if o.since != "" || o.until != "" {
			return UsageErrorf("--since and --until go with --from-journal")
		}
		if o.source == "" || len(args) == 0 {
			return UsageErrorf("usage: passerelle replay --source %s FILE… (or --from-journal --since T --until T)", supported)
		}
	}
	// The live dedupe's window, when the configuration reads; its default otherwise (file
	// replays need no configuration).
	window := 24 * time.Hour
	if cfg, err := cli.Config(ctx); err == nil {
		window = config.Get[*LeadsConfig](cfg, nameLeads).DedupeWindow
	}
	r := &replayRun{
		dedupe: pipelines.ReplayDedupe{Window: window}, sources: sources, direct: direct, dryRun: o.dryRun, stage: o.stage, rate: o.rate, batch: o.batch, resume: resume,
		out: cli.Err, now: time.Now,
	}
	var offline *offlineReplayer
	defer func() {
		if offline != nil {
			offline.close()
		}
	}()
	r.send = func(ctx context.Context, recs []pipelines.ReplayRecord, stage string) (pipelines.ReplayCounts, error) {
		if offline != nil {
			return offline.Replay(ctx, recs, stage)
		}
		var ans replayAnswer
		err := cli.Admin(ctx, http.MethodPost, "/admin/replay/records", replayRequest{Stage: stage, Records: recs}, &ans)
		var op *net.OpError
		if err == nil || r.sent > 0 || !errors.As(err, &op) || op.Op != "dial" {
			return ans.Counts, err
		}
		// No daemon answers: if none runs on the data directory, publish into its broker. Only
		// lead sources can: the others' ingest is their module's, in the daemon.
		for _, rec := range recs {
			if _, ok := sources[rec.Source]; !ok {
				return nil, fmt.Errorf("%w; %s records are replayed by the running daemon only (start it, or give --admin)", err, rec.Source)
			}
		}
		off, oerr := openOffline(ctx, cli)
		if oerr != nil {
			return nil, fmt.Errorf("%w; and the broker cannot be opened directly: %w", err, oerr)
		}
		offline = off
		r.report1("replay: no daemon at the admin address and none running on " + off.dataDir + ": publishing into its broker directly; the stages run when the daemon starts")
		return offline.Replay(ctx, recs, stage)
	}
	if f, ok := cli.Err.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		r.progress = true
	}
	var err error
	if o.fromJournal {
		dir := o.journalDir
		if dir == "" {
			cfg, cerr := cli.Config(ctx)
			if cerr != nil {
				return cerr
			}
			dir = journalDir(cfg)
		}
		err = r.journal(ctx, dir, o.source, since, until)
	} else {
		err = r.files(ctx, o.source, args)
	}
	r.clearProgress()
	if err == nil && r.skipping {
		return UsageErrorf("--resume %s: no such record among the files read (give the same files, or the same --since)", r.resume)
	}
	if cli.JSON() {
		if perr := cli.PrintJSON(r.report()); perr != nil {
			return perr
		}
	} else {
		fmt.Fprintln(cli.Out, r.summary())
	}
	if err != nil {
		if r.resumeAt != nil {
			fmt.Fprintf(cli.Err, "replay stopped; resume with: --resume %s\n", r.resumeAt)
		}
		if errors.Is(err, context.Canceled) {
			return errors.New("replay interrupted")
		}
		return err
	}
	return nil
}

func parseReplayTime(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, UsageErrorf("%s %q: want RFC 3339 (2026-11-20T08:00:00+01:00) or a date (2026-11-20, UTC)", flag, v)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// replayRun is one replay: records read, checked, deduped within the run and sent in batches.
type replayRun struct {
	sources  pipelines.LeadSources
	direct   map[string]func([]byte) (string, error) // replayDirectSources
	seen     map[string]struct{}                     // event ids of direct records sent this run
	dedupe   pipelines.ReplayDedupe
	dryRun   bool
	stage    string
	rate     float64 // records per second; 0 unbounded
	batch    int
	resume   *journal.Position
	send     func(ctx context.Context, recs []pipelines.ReplayRecord, stage string) (pipelines.ReplayCounts, error)
	out      io.Writer // reports of bad lines, the progress line
	progress bool
	now      func() time.Time

	counts   map[string]int
	read     int
	total    int
	started  time.Time
	sent     int
	chunk    []pipelines.ReplayRecord // read, not checked yet
	chunkPos []journal.Position
	pending  []pipelines.ReplayRecord // checked, to send
	first    journal.Position         // of pending[0]
	resumeAt *journal.Position        // the first record the daemon has not taken, when stopped
	skipping bool
	shown    time.Time
}

func (r *replayRun) init() {
	if r.counts == nil {
		r.counts = map[string]int{}
	}
	if r.batch <= 0 {
		r.batch = 500
	}
	if r.rate > 0 {
		// Small batches at a low rate, so that the pace is even and the progress moves.
		r.batch = max(1, min(r.batch, int(r.rate/4)))
	}
	r.started = r.now()
	r.skipping = r.resume != nil
}

func (r *replayRun) reader() *journal.Reader {
	return &journal.Reader{OnBad: func(pos journal.Position, err error) {
		if r.skip(pos) {
			return
		}
		r.counts[pipelines.ReplayMalformed]++
		r.report1(err.Error()) // a *journal.LineError: "file:line: reason"
	}}
}

// files replays raw record files of source.
func (r *replayRun) files(ctx context.Context, source string, paths []string) error {
	r.init()
	if r.progress {
		for _, p := range paths {
			_ = (&journal.Reader{}).ReadRaw(ctx, p, source, func(journal.Entry, journal.Position) error { r.total++; return nil })
		}
	}
	if source == nameEcolix {
		return r.stop(r.ecolixFiles(ctx, paths))
	}
	rd := r.reader()
	for _, p := range paths {
		if err := rd.ReadRaw(ctx, p, source, r.add(ctx)); err != nil {
			return r.stop(err)
		}
	}
	return r.stop(r.finish(ctx))
}

// journal replays the journal's entries received in [since, until).
func (r *replayRun) journal(ctx context.Context, dir, source string, since, until time.Time) error {
	r.init()
	if r.progress {
		_ = (&journal.Reader{}).ReadRange(ctx, dir, source, since, until, func(journal.Entry, journal.Position) error { r.total++; return nil })
	}
	if err := r.reader().ReadRange(ctx, dir, source, since, until, r.add(ctx)); err != nil {
		return r.stop(err)
	}
	return r.stop(r.finish(ctx))
}

// stop records where to resume when err stopped the run: the first record read and not taken
// by the daemon.
func (r *replayRun) stop(err error) error {
	switch {
	case err == nil:
	case len(r.pending) > 0:
		r.resumeAt = &r.first
	case len(r.chunkPos) > 0:
		r.resumeAt = &r.chunkPos[0]
	}
	return err
}

// finish checks and sends what is left.
func (r *replayRun) finish(ctx context.Context) error {
	if err := r.process(ctx); err != nil {
		return err
	}
	return r.flush(ctx)
}

// skip says whether pos comes before the --resume position.
func (r *replayRun) skip(pos journal.Position) bool {
	if !r.skipping {
		return false
	}
	if pos.File != r.resume.File || pos.Line < r.resume.Line {
		return true
	}
	r.skipping = false
	return false
}

func (r *replayRun) add(ctx context.Context) func(journal.Entry, journal.Position) error {
	return func(e journal.Entry, pos journal.Position) error {
		if r.skip(pos) {
			return nil
		}
		r.read++
		defer r.showProgress(false)
		if check, ok := r.direct[e.Source]; ok {
			return r.addDirect(ctx, pipelines.ReplayRecord{Source: e.Source, ReceivedAt: e.ReceivedAt, Body: e.RawBody()}, pos, check)
		}
		if _, ok := r.sources[e.Source]; !ok {
			r.counts[replayUnsupported]++
			return nil
		}
		r.chunk = append(r.chunk, pipelines.ReplayRecord{Source: e.Source, ReceivedAt: e.ReceivedAt, Body: e.RawBody()})
		r.chunkPos = append(r.chunkPos, pos)
		if len(r.chunk) >= replayChunk {
			return r.process(ctx)
		}
		return nil
	}
}

// addDirect checks a record of a direct source and queues it, unless an earlier record of the
// run had its event id.
func (r *replayRun) addDirect(ctx context.Context, rec pipelines.ReplayRecord, pos journal.Position, check func([]byte) (string, error)) error {
	id, err := check(rec.Body)
	if err != nil {
		r.counts[pipelines.ReplayRejected]++
		r.report1(fmt.Sprintf("%s: rejected: %v", pos, err))
		return nil
	}
	if id != "" {
		if r.seen == nil {
			r.seen = map[string]struct{}{}
		}
		if _, ok := r.seen[id]; ok {
			r.counts[pipelines.ReplayDuplicate]++
			return nil
		}
		r.seen[id] = struct{}{}
	}
	if r.dryRun {
		r.counts[replayToPublish]++
		return nil
	}
	if len(r.pending) == 0 {
		r.first = pos
	}
	r.pending = append(r.pending, rec)
	if len(r.pending) >= r.batch {
		return r.flush(ctx)
	}
	return nil
}

// ecolixFiles replays Ecolix exports: API export pages ({"donnees": […]}, one per line) or
// file-mode CSV files, the resource named by the file's name (clients…, devis…). Each file's
// records go as pages of at most ecolixReplayPage records, one replay record each.
func (r *replayRun) ecolixFiles(ctx context.Context, paths []string) error {
	check := r.direct[nameEcolix]
	for _, path := range paths {
		resource := ecolixResourceOf(path)
		if resource == "" {
			return UsageErrorf("%s: the file name must start with an Ecolix resource (%s)", path, strings.Join(ecolix.Resources(), ", "))
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("replay: %w", err)
		}
		var pages [][]json.RawMessage
		if strings.HasSuffix(strings.ToLower(path), ".csv") {
			recs, err := ecolix.ParseCSV(data)
			if err != nil {
				r.read++
				r.counts[pipelines.ReplayMalformed]++
				r.report1(fmt.Sprintf("%s: %v", path, err))
				continue
			}
			raws := make([]json.RawMessage, len(recs))
			for i, rec := range recs {
				raws[i] = rec.Raw
			}
			pages = append(pages, raws)
		} else {
			for i, line := range bytes.Split(data, []byte("\n")) {
				if len(bytes.TrimSpace(line)) == 0 {
					continue
				}
				var p struct {
					Donnees []json.RawMessage `json:"donnees"`
				}
				if err := json.Unmarshal(line, &p); err != nil {
					r.read++
					r.counts[pipelines.ReplayMalformed]++
					r.report1(fmt.Sprintf("%s:%d: not an export page: %v", path, i+1, err))
					continue
				}
				pages = append(pages, p.Donnees)
			}
		}
		for _, recs := range pages {
			for lo := 0; lo < len(recs); lo += ecolixReplayPage {
				body, err := json.Marshal(pipelines.EcolixReplayPage{Resource: resource, Donnees: recs[lo:min(lo+ecolixReplayPage, len(recs))]})
				if err != nil {
					return err
				}
				r.read++
				if err := r.addDirect(ctx, pipelines.ReplayRecord{Source: nameEcolix, Body: body}, journal.Position{File: path, Line: 1}, check); err != nil {
					return err
				}
			}
		}
	}
	return r.finish(ctx)
}

// ecolixReplayPage is the records per replayed page: the API's largest page.
const ecolixReplayPage = 500

// ecolixResourceOf is the resource a file's name starts with, "" when none.
func ecolixResourceOf(path string) string {
	base := strings.ToLower(filepath.Base(path))
	for _, r := range ecolix.Resources() {
		if strings.HasPrefix(base, r) {
			return r
		}
	}
	return ""
}

// replayChunk is how many records are checked at once, on every core.
const replayChunk = 1024

// process checks the records read so far in parallel, then dedupes them in order and queues
// those to send.
func (r *replayRun) process(ctx context.Context) error {
	leads, errs := r.sources.CheckReplayAll(r.chunk, r.now(), runtime.GOMAXPROCS(0))
	for i, rec := range r.chunk {
		pos := r.chunkPos[i]
		if errs[i] != nil {
			r.counts[pipelines.ReplayRejected]++
			r.report1(fmt.Sprintf("%s: rejected: %v", pos, errs[i]))
			continue
		}
		if dup := r.dedupe.Check(leads[i]); dup != "" {
			r.counts[dup]++
			continue
		}
		if r.dryRun {
			r.counts[replayToPublish]++
			continue
		}
		if len(r.pending) == 0 {
			r.first = pos
		}
		r.pending = append(r.pending, rec)
		if len(r.pending) >= r.batch {
			if err := r.flush(ctx); err != nil {
				r.chunk, r.chunkPos = r.chunk[:0], r.chunkPos[:0]
				return err
			}
		}
	}
	r.chunk, r.chunkPos = r.chunk[:0], r.chunkPos[:0]
	return nil
}

// flush sends the pending batch, at the rate asked.
func (r *replayRun) flush(ctx context.Context) error {
	if len(r.pending) == 0 {
		return nil
	}
	if r.rate > 0 {
		due := r.started.Add(time.Duration(float64(r.sent+len(r.pending)) / r.rate * float64(time.Second)))
		if d := due.Sub(r.now()); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	counts, err := r.send(ctx, r.pending, r.stage)
	if err != nil {
		return fmt.Errorf("replay batch from %s: %w", r.first, err)
	}
	for k, v := range counts {
		r.counts[k] += v
	}
	r.sent += len(r.pending)
	r.pending = r.pending[:0]
	r.showProgress(true)
	return nil
}

// report1 prints one line about a record, above the progress line.
func (r *replayRun) report1(line string) {
	r.clearProgress()
	fmt.Fprintln(r.out, line)
	r.showProgress(true)
}

func (r *replayRun) clearProgress() {
	if r.progress {
		fmt.Fprint(r.out, "\r\033[K")
	}
}

func (r *replayRun) showProgress(force bool) {
	if !r.progress {
		return
	}
	now := r.now()
	if !force && now.Sub(r.shown) < 200*time.Millisecond {
		return
	}
	r.shown = now
	elapsed := now.Sub(r.started).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(r.read) / elapsed
	}
	eta := "?"
	if rate > 0 && r.total >= r.read {
		eta = (time.Duration(float64(r.total-r.read)/rate) * time.Second).Round(time.Second).String()
	}
	errs := r.counts[pipelines.ReplayMalformed] + r.counts[pipelines.ReplayRejected]
	fmt.Fprintf(r.out, "\r\033[Kreplay: %d/%d records · %.0f/s · ETA %s · errors %d", r.read, r.total, rate, eta, errs)
}

// replayReport is the summary for --output json.
type replayReport struct {
	Read     int            `json:"read"`
	DryRun   bool           `json:"dry_run"`
	Counts   map[string]int `json:"counts"`
	Seconds  float64        `json:"seconds"`
	ResumeAt string         `json:"resume_at,omitempty"`
}

func (r *replayRun) report() replayReport {
	rep := replayReport{Read: r.read, DryRun: r.dryRun, Counts: r.counts, Seconds: r.now().Sub(r.started).Seconds()}
	if r.resumeAt != nil {
		rep.ResumeAt = r.resumeAt.String()
	}
	return rep
}

// summary is one line: records read, then the count of each outcome.
func (r *replayRun) summary() string {
	var b strings.Builder
	elapsed := r.now().Sub(r.started)
	what := "replay"
	if r.dryRun {
		what = "replay (dry run, nothing published)"
	}
	fmt.Fprintf(&b, "%s: %d records in %s", what, r.read, elapsed.Round(time.Millisecond))
	if s := elapsed.Seconds(); s > 0 {
		fmt.Fprintf(&b, " (%.0f/s)", float64(r.read)/s)
	}
	for _, k := range sortedKeys(r.counts) {
		fmt.Fprintf(&b, ", %s %d", k, r.counts[k])
	}
	return b.String()
}

// waitReady waits for the daemon's readiness at adminAddr, or ctx.
func waitReady(ctx context.Context, adminAddr string) error {
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+adminAddr+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := c.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// adminPost posts body as JSON to the admin API at addr and decodes the answer into out.
func adminPost(ctx context.Context, addr, path string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e httpapi.ErrorBody
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("admin API %s: HTTP %d: %s", path, resp.StatusCode, e.Message)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// offlineReplayer publishes into the broker of a stopped daemon.
type offlineReplayer struct {
	pipelines.Replayer
	dataDir string
	close   func()
}

// openOffline opens the configured broker, for a replay while the daemon is stopped. The embedded
// broker's files are only opened under the data directory's lock, which a running daemon holds:
// two servers on one store would damage it.
func openOffline(ctx context.Context, cli *CLI) (*offlineReplayer, error) {
	cfg, err := cli.Config(ctx)
	if err != nil {
		return nil, err
	}
	release := func() error { return nil }
	if cfg.NATS.URL == "" {
		if release, err = lockDataDir(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	b, err := broker.Open(ctx, broker.Config{
		URL: cfg.NATS.URL, DataDir: cfg.DataDir, SyncInterval: cfg.NATS.SyncInterval, Stream: cfg.NATS.Stream,
		Prefix: cfg.NATS.SubjectPrefix, MaxAge: cfg.NATS.MaxAge, MaxBytes: cfg.NATS.MaxBytes, DuplicateWindow: cfg.NATS.DuplicateWindow,
	}, slog.New(slog.DiscardHandler), broker.NewMetrics(prometheus.NewRegistry()))
	if err != nil {
		_ = release()
		return nil, fmt.Errorf("open the broker under %s: %w", cfg.DataDir, err)
	}
	pub, err := b.NewPublisher()
	if err != nil {
		b.Close()
		_ = release()
		return nil, err
	}
	return &offlineReplayer{
		Replayer: pipelines.Replayer{Sources: replaySources(), Pub: pub, Now: time.Now},
		dataDir:  cfg.DataDir,
		close: func() {
			_ = pub.Close()
			b.Close()
			_ = release()
		},
	}, nil
}
