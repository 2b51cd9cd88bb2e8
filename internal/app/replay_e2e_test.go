package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/cli"
	"github.com/passerelle/passerelle/internal/journal"
	"github.com/passerelle/passerelle/internal/modules"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
)

// replaySample is the backfill set the replay tests feed: 300 lines, 262 distinct leads.
const replaySample = "../../testdata/replay/iciformation/2026-11-20.jsonl"

// runCLI runs the passerelle command line in-process and returns its exit code, stdout and
// stderr.
func runCLI(ctx context.Context, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := cli.Run(ctx, args, &out, &errOut, "test")
	return code, out.String(), errOut.String()
}

// sampleExpectation is what a replay of replaySample must deliver: the event id of each distinct
// lead, checked with the pipeline's own decoder and normaliser (the first of each dedupe key).
func sampleExpectation(t *testing.T) map[string]int {
	t.Helper()
	want := map[string]int{}
	d := pipelines.ReplayDedupe{Window: 24 * time.Hour}
	sources := pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}
	now := time.Now()
	require.NoError(t, (&journal.Reader{}).ReadRaw(context.Background(), replaySample, "iciformation", func(e journal.Entry, _ journal.Position) error {
		lead, err := sources.CheckReplay(pipelines.ReplayRecord{Source: e.Source, Body: e.Body}, now)
		if err == nil && d.Check(lead) == "" {
			want[lead.EventID] = 1
		}
		return nil
	}))
	require.Len(t, want, 262, "the README's count of distinct leads")
	return want
}

// malformedLines are the line numbers of replaySample that are not JSON.
func malformedLines(t *testing.T) []int {
	t.Helper()
	raw, err := os.ReadFile(replaySample)
	require.NoError(t, err)
	var bad []int
	for i, l := range bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")) {
		if !json.Valid(l) {
			bad = append(bad, i+1)
		}
	}
	require.Len(t, bad, 3)
	return bad
}

// waitSettled waits until the normalize stage has taken in records and neither it nor the CRM
// stage holds a message: what was published is delivered, dropped or dead-lettered.
func (f *fixture) waitSettled(t *testing.T, normalizedIn float64) {
	t.Helper()
	f.waitStage(t, "normalize", "in", normalizedIn)
	for _, stage := range []string{"normalize", "crm"} {
		require.True(t, testwait.Eventually(30*time.Second, func() bool {
			msgs, _ := f.backlog(t, stage)
			return msgs == 0
		}), "the %s backlog empties", stage)
	}
}

func TestJournalStageWritesWhatTheWebhookReceived(t *testing.T) {
	t.Parallel()
	a, rcv, f := startApp(t)
	// Odd layout and an unknown field: the journal keeps the bytes as received.
	body := []byte(`{ "nom":"Journal", "prenom":"Jeanne", "tel":"0692 12 34 56", "email":"jeanne.journal@exemple.com", "formation":"CAP", "id_client":1234, "extra":{"a":[1,2]} }`)
	before := time.Now().UTC()
	status, _ := f.post(t, body)
	require.Equal(t, 200, status)
	require.NoError(t, rcv.WaitForUnique(context.Background(), 1))

	dir := app.Module[*modules.Replay](a).JournalDir
	require.Equal(t, filepath.Join(f.DataDir, "journal"), dir)
	var got []journal.Entry
	require.True(t, testwait.Eventually(10*time.Second, func() bool {
		got = got[:0]
		err := (&journal.Reader{}).ReadRange(context.Background(), dir, "iciformation", time.Time{}, time.Time{}, func(e journal.Entry, _ journal.Position) error {
			got = append(got, e)
			return nil
		})
		return err == nil && len(got) == 1
	}), "one journal entry, got %d", len(got))
	require.Equal(t, "iciformation", got[0].Source)
	require.Equal(t, string(body), string(got[0].RawBody()), "the body as received")
	require.False(t, got[0].ReceivedAt.Before(before.Add(-time.Second)), "received_at %s", got[0].ReceivedAt)
	day := got[0].ReceivedAt.UTC().Format(time.DateOnly)
	st, err := os.Stat(filepath.Join(dir, "iciformation", day+".jsonl.gz"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "personal data: readable by its owner only")
	v, ok := metric(f.scrape(t), "passerelle_journal_entries_appended_total", map[string]string{"source": "iciformation"})
	require.True(t, ok)
	require.Equal(t, 1.0, v)
}

func TestReplayTestdataDeliversEachLeadOnce(t *testing.T) {
	t.Parallel()
	want := sampleExpectation(t)
	a, rcv, f := startApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := a.AdminAddr()

	code, out, errOut := runCLI(ctx, "replay", "--admin", admin, "--source", "iciformation", replaySample)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, out, "published 262", out)
	require.Contains(t, out, "duplicate 18", out)
	require.Contains(t, out, "near_duplicate 8", out)
	require.Contains(t, out, "rejected 9", out)
	require.Contains(t, out, "malformed 3", out)
	for _, n := range malformedLines(t) {
		require.Contains(t, errOut, "2026-11-20.jsonl:"+strconv.Itoa(n)+": malformed line", "malformed lines reported with file and line")
	}
	require.NoError(t, rcv.WaitForUnique(ctx, len(want)))
	f.waitSettled(t, 262)
	require.Equal(t, want, rcv.UniqueIDs(), "each distinct lead once")

	// Again: every record reaches the stages, none reaches the CRM twice.
	code, out, errOut = runCLI(ctx, "replay", "--admin", admin, "--source", "iciformation", replaySample)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, out, "published 262", out)
	f.waitSettled(t, 2*262)
	require.Equal(t, want, rcv.UniqueIDs(), "a second replay delivers nothing new")

	// Replayed records are not journaled again: the journal holds what was received.
	_, err := os.Stat(filepath.Join(f.DataDir, "journal", "iciformation"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.Zero(t, rcv.Rejected())
}

func TestReplayDryRunCountsAndPublishesNothing(t *testing.T) {
	t.Parallel()
	_, _, f := startApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// No --admin: a dry run does not need the daemon.
	code, out, errOut := runCLI(ctx, "replay", "--dry-run", "--output", "json", "--source", "iciformation", replaySample)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	var rep struct {
		Read   int            `json:"read"`
		DryRun bool           `json:"dry_run"`
		Counts map[string]int `json:"counts"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.True(t, rep.DryRun)
	require.Equal(t, 297, rep.Read, "300 lines less 3 malformed")
	require.Equal(t, map[string]int{"to_publish": 262, "duplicate": 18, "near_duplicate": 8, "rejected": 9, "malformed": 3}, rep.Counts)
	for _, n := range malformedLines(t) {
		require.Regexp(t, regexp.MustCompile(regexp.QuoteMeta("2026-11-20.jsonl:"+strconv.Itoa(n)+": malformed line")), errOut)
	}
	require.Zero(t, f.stageCount(t, "normalize", "in"), "a dry run publishes nothing")

	code, _, errOut = runCLI(ctx, "replay", "--source", "bogus", replaySample)
	require.Equal(t, cli.ExitUsage, code)
	require.Contains(t, errOut, "replay supports iciformation")
}

func TestReplayFromJournalAndToNormalized(t *testing.T) {
	t.Parallel()
	a, rcv, f := startApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := a.AdminAddr()
	for i := range 3 {
		status, _ := f.post(t, leadBody(i, "journal"))
		require.Equal(t, 200, status)
	}
	require.NoError(t, rcv.WaitForUnique(ctx, 3))
	dir := filepath.Join(f.DataDir, "journal")
	require.True(t, testwait.Eventually(10*time.Second, func() bool {
		v, _ := metric(f.scrape(t), "passerelle_journal_entries_appended_total", map[string]string{"source": "iciformation"})
		return v == 3
	}))
	since := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	code, out, errOut := runCLI(ctx, "replay", "--admin", admin, "--from-journal", "--journal-dir", dir, "--since", since, "--until", until)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, out, "3 records", out)
	require.Contains(t, out, "published 3", out)
	f.waitSettled(t, 6)
	require.Len(t, rcv.UniqueIDs(), 3, "the journal's leads were delivered already")

	// Past the normalize stage: a lead never seen is delivered once, under the webhook's id.
	file := filepath.Join(t.TempDir(), "one.jsonl")
	body := leadBody(99, "normalized")
	require.NoError(t, os.WriteFile(file, append(body, '\n'), 0o600))
	code, out, errOut = runCLI(ctx, "replay", "--admin", admin, "--to-stage", "normalized", "--source", "iciformation", file)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.NoError(t, rcv.WaitForUnique(ctx, 4))
	require.Equal(t, 1, rcv.UniqueIDs()[eventIDOf(body)])
}

func TestReplayInterruptedPrintsWhereToResume(t *testing.T) {
	t.Parallel()
	want := sampleExpectation(t)
	a, rcv, f := startApp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := a.AdminAddr()

	// 40 records a second, 10 a batch: stop once the daemon took some.
	runCtx, stop := context.WithCancel(ctx)
	type result struct {
		code        int
		out, errOut string
	}
	done := make(chan result, 1)
	go func() {
		code, out, errOut := runCLI(runCtx, "replay", "--admin", admin, "--rate", "40", "--source", "iciformation", replaySample)
		done <- result{code, out, errOut}
	}()
	f.waitStage(t, "normalize", "in", 20)
	stop()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		t.Fatal("replay did not stop")
	}
	require.Equal(t, cli.ExitFailed, r.code, "stdout %s\nstderr %s", r.out, r.errOut)
	m := regexp.MustCompile(`resume with: --resume (\S+:\d+)`).FindStringSubmatch(r.errOut)
	require.NotNil(t, m, "no resume position in %s", r.errOut)

	code, out, errOut := runCLI(ctx, "replay", "--admin", admin, "--resume", m[1], "--source", "iciformation", replaySample)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.NoError(t, rcv.WaitForUnique(ctx, len(want)))
	f.waitSettled(t, 262)
	got := rcv.UniqueIDs()
	for id := range want {
		require.Equal(t, 1, got[id], "lead %s once", id)
	}
}

func TestReconciliationFeedsMissedLeadsOnce(t *testing.T) {
	t.Parallel()
	api, err := iciformationsim.StartAPI("api-key")
	require.NoError(t, err)
	t.Cleanup(api.Close)
	a, rcv, f := startApp(t, "PASSERELLE_ICIFORMATION_API_URL="+api.URL(), "PASSERELLE_ICIFORMATION_API_KEY=api-key")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rec := app.Module[*modules.Replay](a).Reconciler
	require.NotNil(t, rec)

	// The daemon's first run, at start, found an empty API.
	require.True(t, testwait.Eventually(10*time.Second, func() bool {
		v, _ := metric(f.scrape(t), "passerelle_iciformation_reconcile_runs_total", map[string]string{"outcome": "ok"})
		return v >= 1
	}))
	received, missed := leadBody(1, "received"), leadBody(2, "missed")
	status, _ := f.post(t, received)
	require.Equal(t, 200, status)
	require.NoError(t, rcv.WaitForUnique(ctx, 1))
	require.True(t, testwait.Eventually(10*time.Second, func() bool {
		v, _ := metric(f.scrape(t), "passerelle_journal_entries_appended_total", map[string]string{"source": "iciformation"})
		return v == 1
	}))
	now := time.Now()
	api.Add(received, now.Add(-time.Minute))
	api.Add(missed, now.Add(-time.Minute))
	api.Add([]byte(`{"nom":"Sans","prenom":"Contact","formation":"CAP"}`), now.Add(-time.Minute))

	res, err := rec.Once(ctx)
	require.NoError(t, err)
	require.Equal(t, pipelines.ReconcileResult{Known: 1, Missed: 1, Invalid: 1}, res)
	require.NoError(t, rcv.WaitForUnique(ctx, 2))
	// The fed lead is journaled as received: the next run knows it.
	require.True(t, testwait.Eventually(10*time.Second, func() bool {
		v, _ := metric(f.scrape(t), "passerelle_journal_entries_appended_total", map[string]string{"source": "iciformation"})
		return v == 2
	}))
	res, err = rec.Once(ctx)
	require.NoError(t, err)
	require.Equal(t, pipelines.ReconcileResult{Known: 2, Invalid: 1}, res)
	f.waitSettled(t, 2)
	require.Equal(t, map[string]int{eventIDOf(received): 1, eventIDOf(missed): 1}, rcv.UniqueIDs())

	// A revoked key is an error for an operator, not a loop.
	api.Forbid(true)
	calls := api.Calls()
	_, err = rec.Once(ctx)
	require.Error(t, err)
	require.Equal(t, calls+1, api.Calls(), "a 403 is not retried")
	require.NotContains(t, err.Error(), "api-key")
}

// TestReplayWithTheDaemonStopped: with no daemon at the admin address, replay publishes into the
// broker under the data directory, unless a daemon runs there (its lock); the stages run once the
// daemon starts. Not parallel: the CLI reads its configuration from the environment.
func TestReplayWithTheDaemonStopped(t *testing.T) {
	want := sampleExpectation(t)
	f := newFixture(t)
	f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	t.Setenv("PASSERELLE_DATA_DIR", f.DataDir)
	const nobody = "127.0.0.1:1" // nothing listens there

	code, out, errOut := runCLI(ctx, "replay", "--admin", nobody, "--source", "iciformation", replaySample)
	require.Equal(t, cli.ExitFailed, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, errOut, "locked by a running daemon", "the running daemon's broker is never opened twice")
	require.Contains(t, errOut, "resume with: --resume")

	f.stop()
	code, out, errOut = runCLI(ctx, "replay", "--admin", nobody, "--source", "iciformation", replaySample)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, errOut, "publishing into its broker directly")
	require.Contains(t, out, "published 262", out)
	require.Zero(t, len(f.Receiver.UniqueIDs()), "nothing runs the stages while the daemon is stopped")

	f.start()
	require.NoError(t, f.Receiver.WaitForUnique(ctx, len(want)))
	f.waitSettled(t, 262)
	require.Equal(t, want, f.Receiver.UniqueIDs())
}

func TestJournalPrunedPastItsRetention(t *testing.T) {
	t.Parallel()
	f := newFixture(t, "PASSERELLE_JOURNAL_RETENTION=48h")
	dir := filepath.Join(f.DataDir, "journal", "iciformation")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	old := filepath.Join(dir, time.Now().UTC().AddDate(0, 0, -5).Format(time.DateOnly)+".jsonl.gz")
	recent := filepath.Join(dir, time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)+".jsonl.gz")
	for _, p := range []string{old, recent} {
		require.NoError(t, os.WriteFile(p, nil, 0o600))
	}
	f.start()
	require.True(t, testwait.Eventually(10*time.Second, func() bool {
		_, err := os.Stat(old)
		return errors.Is(err, os.ErrNotExist)
	}), "a day file past the retention is deleted at start")
	_, err := os.Stat(recent)
	require.NoError(t, err, "a day file inside the retention stays")
	v, ok := metric(f.scrape(t), "passerelle_journal_files_pruned_total", nil)
	require.True(t, ok)
	require.Equal(t, 1.0, v)
}
