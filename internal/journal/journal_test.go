package journal

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/frtime"
)

// clock is a settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }

func lead(i int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"nom":"Durand","prenom":"Léa","tel":"06%08d","n":%d}`, i, i))
}

// readAll reads everything under dir, failing on any bad line.
func readAll(t *testing.T, dir string, loc *time.Location) []Entry {
	t.Helper()
	var got []Entry
	r := Reader{Location: loc, OnBad: func(p Position, err error) { t.Errorf("bad line %s: %v", p, err) }}
	require.NoError(t, r.ReadRange(context.Background(), dir, "", time.Time{}, time.Time{}, func(e Entry, _ Position) error {
		got = append(got, e)
		return nil
	}))
	return got
}

// gunzipLines reads a file as `gzip -dc` does: every member, one stream.
func gunzipLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// members counts the gzip members of a file.
func members(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	br := bufio.NewReader(bytes.NewReader(b))
	var zr gzip.Reader
	n := 0
	for {
		if err := zr.Reset(br); errors.Is(err, io.EOF) {
			return n
		} else {
			require.NoError(t, err)
		}
		zr.Multistream(false)
		_, err := io.Copy(io.Discard, &zr)
		require.NoError(t, err)
		n++
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	at := time.Date(2026, 11, 20, 9, 30, 0, 123456789, time.UTC)
	w, err := Open(dir, Options{})
	require.NoError(t, err)
	in := []Entry{
		{Source: "iciformation", ReceivedAt: at, Metadata: map[string]string{"content_type": "application/json"}, Body: lead(1)},
		{Source: "simplebo", ReceivedAt: at.Add(time.Second), Metadata: map[string]string{"content_type": "application/x-www-form-urlencoded"},
			Body: StringBody([]byte("event_type=1&email=l%C3%A9a%40exemple.fr"))},
		{Source: "iciformation", ReceivedAt: at.Add(2 * time.Second), Body: json.RawMessage("{\n  \"nom\": \"Martin\"\n}\n")},
		{Source: "shopapp", ReceivedAt: at.Add(3 * time.Second), Body: json.RawMessage(`not json`)}, // stored as a string
	}
	require.NoError(t, w.Append(context.Background(), in...))
	require.NoError(t, w.Close())
	require.ErrorIs(t, w.Append(context.Background(), in[0]), ErrClosed)

	got := readAll(t, dir, nil)
	require.Len(t, got, len(in))
	// Day by day, sources in name order, append order within a file.
	want := []Entry{in[0], in[2], in[3], in[1]}
	want[2].Body = StringBody([]byte("not json"))
	for i := range want {
		assertEntry(t, got[i], want[i])
	}
	require.Equal(t, "event_type=1&email=l%C3%A9a%40exemple.fr", string(got[3].RawBody()))

	path := filepath.Join(dir, "iciformation", "2026-11-20.jsonl.gz")
	lines := gunzipLines(t, path)
	require.Len(t, lines, 2)
	require.Equal(t, `{"source":"iciformation","received_at":"2026-11-20T09:30:00.123456789Z","metadata":{"content_type":"application/json"},"body":{"nom":"Durand","prenom":"Léa","tel":"0600000001","n":1}}`, lines[0])
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the journal holds personal data")
}

func TestAppendRejectsBadSource(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := Open(dir, Options{})
	require.NoError(t, err)
	defer w.Close()
	for _, s := range []string{"", "../etc", "Ici", "a/b", strings.Repeat("a", 65)} {
		err := w.Append(context.Background(), Entry{Source: "ok"}, Entry{Source: s, Body: lead(1)})
		require.ErrorIs(t, err, ErrBadSource, "source %q", s)
	}
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, des, "a call with a bad entry writes nothing")
}

func TestDailyRotationParis(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	paris := frtime.Paris()
	w, err := Open(dir, Options{Location: paris})
	require.NoError(t, err)
	utc := func(s string) time.Time { t, _ := time.Parse(time.RFC3339, s); return t }
	cases := []struct {
		at   time.Time
		file string
	}{
		{utc("2026-11-20T22:59:59Z"), "2026-11-20"}, // 23:59:59 CET
		{utc("2026-11-20T23:00:00Z"), "2026-11-21"}, // midnight in Paris, still the 20th in UTC
		{utc("2026-03-28T22:59:59Z"), "2026-03-28"},
		{utc("2026-03-28T23:00:00Z"), "2026-03-29"}, // the spring-forward day is 23 hours long
		{utc("2026-03-29T21:59:59Z"), "2026-03-29"}, // 23:59:59 CEST
		{utc("2026-03-29T22:00:00Z"), "2026-03-30"},
		{utc("2026-10-25T22:59:59Z"), "2026-10-25"}, // the fall-back day is 25 hours long
		{utc("2026-10-25T23:00:00Z"), "2026-10-26"},
	}
	for i, c := range cases {
		require.NoError(t, w.Append(context.Background(), Entry{Source: "iciformation", ReceivedAt: c.at, Body: lead(i)}))
	}
	require.NoError(t, w.Close())
	for i, c := range cases {
		var found bool
		for _, l := range gunzipLines(t, filepath.Join(dir, "iciformation", c.file+".jsonl.gz")) {
			e, err := DecodeLine([]byte(l))
			require.NoError(t, err)
			found = found || e.ReceivedAt.Equal(c.at)
		}
		require.True(t, found, "case %d: %s not in %s", i, c.at, c.file)
	}
	des, err := os.ReadDir(filepath.Join(dir, "iciformation"))
	require.NoError(t, err)
	require.Len(t, des, 7)

	// ReadRange picks the Paris day exactly.
	var got []time.Time
	r := Reader{Location: paris}
	since := time.Date(2026, 11, 21, 0, 0, 0, 0, paris)
	require.NoError(t, r.ReadRange(context.Background(), dir, "iciformation", since, since.AddDate(0, 0, 1), func(e Entry, _ Position) error {
		got = append(got, e.ReceivedAt)
		return nil
	}))
	require.Len(t, got, 1)
	require.True(t, got[0].Equal(cases[1].at))
}

func TestAppendAcrossWriterLifetimes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	n := 0
	for life := range 3 {
		w, err := Open(dir, Options{})
		require.NoError(t, err)
		for range 2 {
			batch := make([]Entry, 0, 5)
			for range 5 {
				batch = append(batch, Entry{Source: "shopapp", ReceivedAt: at.Add(time.Duration(n) * time.Second), Body: lead(n)})
				n++
			}
			require.NoError(t, w.Append(context.Background(), batch...), "lifetime %d", life)
		}
		require.NoError(t, w.Close())
	}
	path := filepath.Join(dir, "shopapp", "2026-11-20.jsonl.gz")
	require.Equal(t, 6, members(t, path), "one member per append")
	require.Len(t, gunzipLines(t, path), n)
	got := readAll(t, dir, nil)
	require.Len(t, got, n)
	for i, e := range got {
		assertEntry(t, e, Entry{Source: "shopapp", ReceivedAt: at.Add(time.Duration(i) * time.Second), Body: lead(i)})
	}
}

func TestConcurrentAppends(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	// The day turns during the run: a second file, and a sweep of past days, race the appends.
	c := &clock{t: time.Date(2026, 11, 20, 23, 59, 59, 0, time.UTC)}
	w, err := Open(dir, Options{Now: c.Now, Metrics: m})
	require.NoError(t, err)
	const workers, perWorker = 8, 40
	errs := make(chan error, workers*perWorker)
	var wg sync.WaitGroup
	for g := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				if g == 0 && i == perWorker/2 {
					c.Set(time.Date(2026, 11, 23, 0, 0, 1, 0, time.UTC))
				}
				id := g*perWorker + i
				errs <- w.Append(context.Background(),
					Entry{Source: "iciformation", Body: lead(id)},
					Entry{Source: "simplebo", Body: lead(id)})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())

	seen := map[string]map[int]bool{"iciformation": {}, "simplebo": {}}
	for _, e := range readAll(t, dir, nil) {
		var b struct{ N int }
		require.NoError(t, json.Unmarshal(e.Body, &b))
		require.False(t, seen[e.Source][b.N], "%s %d twice", e.Source, b.N)
		seen[e.Source][b.N] = true
	}
	for s, ids := range seen {
		require.Len(t, ids, workers*perWorker, s)
		require.Equal(t, float64(workers*perWorker), testutil.ToFloat64(m.entries.WithLabelValues(s)))
	}
	require.Positive(t, testutil.ToFloat64(m.bytes.WithLabelValues("simplebo")))
	require.Zero(t, testutil.ToFloat64(m.errors.WithLabelValues("simplebo")))
}

func TestTruncatedLastMember(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		cut  func(path string, lastStart, size int64) error
	}{
		{"header cut", func(p string, start, _ int64) error { return os.Truncate(p, start+4) }},
		{"deflate cut", func(p string, start, size int64) error { return os.Truncate(p, start+(size-start)/2) }},
		{"trailer cut", func(p string, _, size int64) error { return os.Truncate(p, size-3) }},
		{"zeros after the last member", func(p string, start, _ int64) error {
			if err := os.Truncate(p, start); err != nil {
				return err
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			_, err = f.Write(make([]byte, 4096))
			return errors.Join(err, f.Close())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "iciformation", "2026-11-20.jsonl.gz")
			appendN := func(w *Writer, from, n int) {
				for i := from; i < from+n; i++ {
					require.NoError(t, w.Append(context.Background(), Entry{Source: "iciformation", ReceivedAt: at, Body: lead(i)}))
				}
			}
			w, err := Open(dir, Options{})
			require.NoError(t, err)
			appendN(w, 0, 3)
			st, err := os.Stat(path)
			require.NoError(t, err)
			// The last append carries many lines, so a cut in its middle leaves some readable.
			batch := make([]Entry, 200)
			for i := range batch {
				batch[i] = Entry{Source: "iciformation", ReceivedAt: at, Body: lead(100 + i)}
			}
			require.NoError(t, w.Append(context.Background(), batch...))
			require.NoError(t, w.Close())
			st2, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, tt.cut(path, st.Size(), st2.Size()))

			var got []int
			var bad []*LineError
			r := Reader{OnBad: func(_ Position, err error) {
				var le *LineError
				require.ErrorAs(t, err, &le)
				bad = append(bad, le)
			}}
			require.NoError(t, r.ReadFiles(context.Background(), []string{path}, func(e Entry, _ Position) error {
				var b struct{ N int }
				require.NoError(t, json.Unmarshal(e.Body, &b))
				got = append(got, b.N)
				return nil
			}))
			require.GreaterOrEqual(t, len(got), 3)
			require.Equal(t, []int{0, 1, 2}, got[:3], "lines before the cut member are kept")
			require.LessOrEqual(t, len(got), 203) // a cut trailer leaves every line, unchecked
			require.Len(t, bad, 1)
			require.ErrorIs(t, bad[0], ErrTruncated)
			require.Equal(t, len(got)+1, bad[0].Pos.Line)

			// The next Writer removes the unacknowledged tail before appending.
			reg := prometheus.NewRegistry()
			m := NewMetrics(reg)
			w, err = Open(dir, Options{Metrics: m})
			require.NoError(t, err)
			appendN(w, 3, 1)
			require.NoError(t, w.Close())
			require.Equal(t, 1.0, testutil.ToFloat64(m.repaired))
			got = got[:0]
			for _, e := range readAll(t, dir, nil) {
				var b struct{ N int }
				require.NoError(t, json.Unmarshal(e.Body, &b))
				got = append(got, b.N)
			}
			require.Equal(t, []int{0, 1, 2, 3}, got)
		})
	}
}

func TestAppendRefusesDamagedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := Open(dir, Options{})
	require.NoError(t, err)
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	for i := range 2 {
		require.NoError(t, w.Append(context.Background(), Entry{Source: "ecolix", ReceivedAt: at, Body: lead(i)}))
	}
	require.NoError(t, w.Close())
	path := filepath.Join(dir, "ecolix", "2026-11-20.jsonl.gz")
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	b[len(b)/4] ^= 0xff // inside the first member: not a crash's doing
	require.NoError(t, os.WriteFile(path, b, 0o600))

	w, err = Open(dir, Options{})
	require.NoError(t, err)
	defer w.Close()
	err = w.Append(context.Background(), Entry{Source: "ecolix", ReceivedAt: at, Body: lead(9)})
	require.ErrorIs(t, err, ErrCorrupt)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, b, after, "a damaged file is left as it is")
}

func TestMalformedLinesReported(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := `{"source":"iciformation","received_at":"2026-11-20T09:30:00Z","body":{"nom":"Durand"}}`
	content := strings.Join([]string{
		good,                       // 1
		`{"source":"iciformation"`, // 2 cut
		`["not","an","object"]`,    // 3
		``,                         // 4 blank: skipped quietly
		`{"received_at":"2026-11-20T09:30:00Z","body":{}}`, // 5 no source
		good + "\r", // 6 CRLF
		`{"body":"` + strings.Repeat("x", 300) + `"}`, // 7 too long
		good, // 8, no final line break
	}, "\n")
	plain := filepath.Join(dir, "2026-11-20.jsonl")
	require.NoError(t, os.WriteFile(plain, []byte(content), 0o600))
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	_, _ = zw.Write([]byte(content))
	require.NoError(t, zw.Close())
	compressed := filepath.Join(dir, "other-name.dat")
	require.NoError(t, os.WriteFile(compressed, zbuf.Bytes(), 0o600))

	for _, path := range []string{plain, compressed} {
		var lines []int
		var bad []Position
		r := Reader{MaxLineBytes: 200, OnBad: func(p Position, err error) {
			var le *LineError
			if errors.As(err, &le) && le.Pos == p {
				bad = append(bad, p)
			}
		}}
		require.NoError(t, r.ReadFiles(context.Background(), []string{path}, func(e Entry, p Position) error {
			lines = append(lines, p.Line)
			return nil
		}))
		require.Equal(t, []int{1, 6, 8}, lines, path)
		require.Equal(t, []Position{{path, 2}, {path, 3}, {path, 5}, {path, 7}}, bad, path)
	}

	// fn's error stops the read and comes back with its position.
	stop := errors.New("stop")
	err := (&Reader{}).ReadFiles(context.Background(), []string{plain}, func(Entry, Position) error { return stop })
	require.ErrorIs(t, err, stop)
	require.Contains(t, err.Error(), plain+":1")
}

func TestReadRaw(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "leads.jsonl")
	raw := "\xef\xbb\xbf{\"nom\":\"Durand\",\"tel\":102030405}\n[1]\n{\"nom\":\n\n{\"nom\":\"Martin\"}\r\n"
	require.NoError(t, os.WriteFile(path, []byte(raw), 0o600))
	var got []string
	var bad []int
	r := Reader{OnBad: func(p Position, _ error) { bad = append(bad, p.Line) }}
	require.NoError(t, r.ReadRaw(context.Background(), path, "iciformation", func(e Entry, p Position) error {
		require.Equal(t, "iciformation", e.Source)
		require.True(t, e.ReceivedAt.IsZero())
		got = append(got, fmt.Sprintf("%d %s", p.Line, e.Body))
		return nil
	}))
	require.Equal(t, []string{`1 {"nom":"Durand","tel":102030405}`, `2 [1]`, `5 {"nom":"Martin"}`}, got)
	require.Equal(t, []int{3}, bad)
}

func TestReadRangeBounds(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w, err := Open(dir, Options{})
	require.NoError(t, err)
	start := time.Date(2026, 11, 18, 12, 0, 0, 0, time.UTC)
	for i := range 4 * 24 {
		at := start.Add(time.Duration(i) * time.Hour)
		require.NoError(t, w.Append(context.Background(),
			Entry{Source: "iciformation", ReceivedAt: at, Body: lead(i)},
			Entry{Source: "ecolix", ReceivedAt: at, Body: lead(i)}))
	}
	require.NoError(t, w.Close())
	count := func(source string, since, until time.Time) int {
		n := 0
		require.NoError(t, (&Reader{}).ReadRange(context.Background(), dir, source, since, until, func(e Entry, _ Position) error {
			require.False(t, !since.IsZero() && e.ReceivedAt.Before(since) || !until.IsZero() && !e.ReceivedAt.Before(until))
			n++
			return nil
		}))
		return n
	}
	since, until := start.Add(30*time.Hour), start.Add(40*time.Hour)
	require.Equal(t, 10, count("iciformation", since, until))
	require.Equal(t, 20, count("", since, until))
	require.Equal(t, 4*24-30, count("ecolix", since, time.Time{}))
	require.Equal(t, 40, count("ecolix", time.Time{}, until))
	require.Equal(t, 0, count("shopapp", time.Time{}, time.Time{}))
}

func TestPrune(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	paris := frtime.Paris()
	c := &clock{}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	w, err := Open(dir, Options{Location: paris, Now: c.Now, Metrics: m}) // 30 days by default
	require.NoError(t, err)
	defer w.Close()
	for _, day := range []string{"2026-10-29", "2026-10-30", "2026-10-31", "2026-11-01", "2026-11-30"} {
		at, err := time.ParseInLocation("2006-01-02 15:04", day+" 23:30", paris)
		require.NoError(t, err)
		c.Set(at)
		require.NoError(t, w.Append(context.Background(), Entry{Source: "simplebo", Body: lead(1)}, Entry{Source: "shopapp", Body: lead(2)}))
	}
	stray := filepath.Join(dir, "simplebo", "notes.txt")
	require.NoError(t, os.WriteFile(stray, nil, 0o600))

	// 30 days before 2026-11-30 12:00 is 2026-10-31 12:00: the 30th ended before it, the 31st has not.
	c.Set(time.Date(2026, 11, 30, 12, 0, 0, 0, paris))
	removed, err := w.Prune(context.Background())
	require.NoError(t, err)
	require.Equal(t, 4, removed)
	require.Equal(t, 4.0, testutil.ToFloat64(m.pruned))
	for _, s := range []string{"simplebo", "shopapp"} {
		des, err := os.ReadDir(filepath.Join(dir, s))
		require.NoError(t, err)
		var names []string
		for _, de := range des {
			names = append(names, de.Name())
		}
		want := []string{"2026-10-31.jsonl.gz", "2026-11-01.jsonl.gz", "2026-11-30.jsonl.gz"}
		if s == "simplebo" {
			want = append(want, "notes.txt")
		}
		require.Equal(t, want, names, s)
	}
	removed, err = w.Prune(context.Background())
	require.NoError(t, err)
	require.Zero(t, removed)
	// The open handle of today's file survived the prune.
	require.NoError(t, w.Append(context.Background(), Entry{Source: "simplebo", Body: lead(3)}))
}

func TestAppendErrorCounted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg, "iciformation", "simplebo")
	w, err := Open(dir, Options{Metrics: m})
	require.NoError(t, err)
	defer w.Close()
	// A directory where the day file should be: the open fails, as on a full or broken disk.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "iciformation", "2026-11-20.jsonl.gz"), 0o700))
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	err = w.Append(context.Background(), Entry{Source: "iciformation", ReceivedAt: at, Body: lead(1)})
	require.Error(t, err)
	require.Contains(t, err.Error(), "iciformation/2026-11-20.jsonl.gz")
	require.Equal(t, 1.0, testutil.ToFloat64(m.errors.WithLabelValues("iciformation")))
	require.Zero(t, testutil.ToFloat64(m.entries.WithLabelValues("iciformation")))
	n, err := testutil.GatherAndCount(reg, "passerelle_journal_entries_appended_total")
	require.NoError(t, err)
	require.Equal(t, 2, n, "series pre-created for each source")
}
