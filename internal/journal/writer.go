package journal

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultRetention is how long day files are kept when Options.Retention is zero.
const DefaultRetention = 30 * 24 * time.Hour

const (
	dayLayout = "2006-01-02"
	gzExt     = ".jsonl.gz"
	plainExt  = ".jsonl"
)

// Errors returned by the Writer.
var (
	ErrClosed    = errors.New("journal: writer closed")
	ErrBadSource = errors.New("journal: source must be 1 to 64 of a-z, 0-9, '-', '_'")
	// ErrCorrupt reports a day file damaged somewhere else than in a cut-short last member: the
	// Writer will not append behind damage it cannot explain, an operator must move the file.
	ErrCorrupt = errors.New("journal: day file damaged")
)

// Options configure a Writer. The zero value is usable.
type Options struct {
	// Retention is how long a day file is kept after its day ends (DefaultRetention when zero).
	Retention time.Duration
	// Now is the clock: entries without ReceivedAt, pruning, closing past days' files.
	Now func() time.Time
	// Location sets day boundaries (UTC when nil).
	Location *time.Location
	// Metrics may be nil.
	Metrics *Metrics
}

// Writer appends entries to day files. It is safe for concurrent use.
type Writer struct {
	dir  string
	opts Options

	// prune is held shared by appends and exclusively by Prune while it deletes a file, so that
	// an append for a day being pruned cannot recreate the file just before its deletion.
	prune sync.RWMutex

	mu       sync.Mutex
	files    map[string]*dayFile // by "<source>/<day>"
	closed   bool
	sweptDay string // the day past days' files were last closed

	gz sync.Pool // *gzip.Writer: each holds about 1 MB of compressor state
}

// dayFile is the one handle to a day file; mu serializes appends to it.
type dayFile struct {
	mu     sync.Mutex
	source string
	day    string
	f      *os.File
	size   int64       // bytes known good, where the next member starts
	closed atomic.Bool // read by Writer.file without mu
}

// Open returns a Writer appending under dir, created if missing.
func Open(dir string, opts Options) (*Writer, error) {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: creating %s: %w", dir, err)
	}
	return &Writer{dir: dir, opts: opts, files: make(map[string]*dayFile)}, nil
}

// Append writes entries to their day files (by source and ReceivedAt, Now when zero) and syncs
// them before returning: one gzip member per day file touched. Entries are all checked before
// anything is written; when a call touching several files fails part-way, the files written
// before the failure keep their entries, so a retried call journals those twice (a replay
// dedupes them by event id, as it does live deliveries).
func (w *Writer) Append(ctx context.Context, entries ...Entry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("journal: append: %w", err)
	}
	if len(entries) == 0 {
		return nil
	}
	now := w.opts.Now()
	type group struct {
		source, day string
		lines       []byte
		n           int
	}
	var groups []*group
	byKey := make(map[string]*group, 1)
	for i, e := range entries {
		if !validSource(e.Source) {
			return fmt.Errorf("journal: entry %d: %w", i, ErrBadSource)
		}
		t := e.ReceivedAt
		if t.IsZero() {
			t = now
		}
		if y := t.UTC().Year(); y < 1 || y > 9999 {
			return fmt.Errorf("journal: entry %d: received_at %s cannot be written in RFC 3339", i, t)
		}
		day := t.In(w.opts.Location).Format(dayLayout)
		key := e.Source + "/" + day
		g := byKey[key]
		if g == nil {
			g = &group{source: e.Source, day: day}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.lines = appendLine(g.lines, e, t)
		g.n++
	}
	w.prune.RLock()
	defer w.prune.RUnlock()
	for _, g := range groups {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("journal: append: %w", err)
		}
		member := w.compress(g.lines)
		if err := w.write(g.source, g.day, member); err != nil {
			w.opts.Metrics.appendFailed(g.source)
			return fmt.Errorf("journal: appending to %s/%s%s: %w", g.source, g.day, gzExt, err)
		}
		w.opts.Metrics.appended(g.source, g.n, len(member))
	}
	w.closePastDays(now)
	return nil
}

func (w *Writer) compress(lines []byte) []byte {
	var buf bytes.Buffer
	buf.Grow(len(lines)/4 + 64)
	zw, _ := w.gz.Get().(*gzip.Writer)
	if zw == nil {
		zw = gzip.NewWriter(&buf)
	} else {
		zw.Reset(&buf)
	}
	// Writes to a bytes.Buffer cannot fail.
	_, _ = zw.Write(lines)
	_ = zw.Close()
	w.gz.Put(zw)
	return buf.Bytes()
}

func (w *Writer) write(source, day string, member []byte) error {
	for {
		df, err := w.file(source, day)
		if err != nil {
			return err
		}
		df.mu.Lock()
		if df.closed.Load() {
			// Closed between lookup and lock (Close, a past day's sweep, Prune, a failed append):
			// the next lookup opens it again, or reports the Writer closed.
			df.mu.Unlock()
			continue
		}
		err = df.append(member)
		df.mu.Unlock()
		return err
	}
}

// append writes one member and syncs it. On failure it cuts the file back to its last good
// member and closes it: the next append reopens it, and checks it again.
func (df *dayFile) append(member []byte) error {
	_, err := df.f.Write(member)
	if err == nil {
		err = df.f.Sync()
	}
	if err == nil {
		df.size += int64(len(member))
		return nil
	}
	_ = df.f.Truncate(df.size) // best effort: the reopening check repairs what this cannot
	_ = df.f.Close()
	df.closed.Store(true)
	return err
}

func (w *Writer) file(source, day string) (*dayFile, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, ErrClosed
	}
	key := source + "/" + day
	if df := w.files[key]; df != nil && !df.closed.Load() {
		return df, nil
	}
	df, err := w.openDay(source, day)
	if err != nil {
		return nil, err
	}
	w.files[key] = df
	return df, nil
}

// openDay opens a day file for appending. An existing file is checked first, since the last
// process may have died in the middle of an append: a cut-short last member is removed (it was
// never acknowledged), any other damage is refused.
func (w *Writer) openDay(source, day string) (*dayFile, error) {
	dir := filepath.Join(w.dir, source)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, day+gzExt), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*dayFile, error) {
		_ = f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return fail(err)
	}
	size := st.Size()
	if size == 0 {
		// The file, and its source directory, may be new: make their entries durable too.
		if err := syncDir(dir); err != nil {
			return fail(err)
		}
		if err := syncDir(w.dir); err != nil {
			return fail(err)
		}
	} else {
		end, err := validEnd(f, size)
		if err != nil {
			return fail(err)
		}
		if end < size {
			if err := f.Truncate(end); err != nil {
				return fail(fmt.Errorf("removing a cut-short last member: %w", err))
			}
			if err := f.Sync(); err != nil {
				return fail(err)
			}
			w.opts.Metrics.tailRepaired()
			size = end
		}
	}
	return &dayFile{source: source, day: day, f: f, size: size}, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// validEnd returns the offset where the last complete gzip member of r ends. A member cut short,
// or zero bytes after the last member (what some file systems leave after a crash), end the good
// part; anything else is ErrCorrupt.
func validEnd(r io.ReaderAt, size int64) (int64, error) {
	cr := &countingReader{r: io.NewSectionReader(r, 0, size)}
	br := bufio.NewReaderSize(cr, 64<<10)
	var zr gzip.Reader
	end := int64(0)
	for end < size {
		err := zr.Reset(br)
		if err == nil {
			zr.Multistream(false)
			_, err = io.Copy(io.Discard, &zr)
		}
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return end, nil
			}
			if zero, zerr := allZero(r, end, size); zerr != nil {
				return end, zerr
			} else if zero {
				return end, nil
			}
			return end, fmt.Errorf("%w at byte %d: %w", ErrCorrupt, end, err)
		}
		// The decompressor reads from br byte by byte, so it stopped exactly at the member's end.
		end = cr.n - int64(br.Buffered())
	}
	return end, nil
}

func allZero(r io.ReaderAt, from, to int64) (bool, error) {
	buf := make([]byte, 32<<10)
	for off := from; off < to; {
		n, err := r.ReadAt(buf[:min(int64(len(buf)), to-off)], off)
		for _, b := range buf[:n] {
			if b != 0 {
				return false, nil
			}
		}
		off += int64(n)
		if err != nil && !(errors.Is(err, io.EOF) && off >= to) {
			return false, err
		}
	}
	return true, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// closePastDays closes, once a day, the handles of days before yesterday: late entries for them
// reopen the file.
func (w *Writer) closePastDays(now time.Time) {
	today := now.In(w.opts.Location)
	yesterday := time.Date(today.Year(), today.Month(), today.Day()-1, 0, 0, 0, 0, w.opts.Location).Format(dayLayout)
	w.mu.Lock()
	if w.sweptDay == today.Format(dayLayout) || w.closed {
		w.mu.Unlock()
		return
	}
	w.sweptDay = today.Format(dayLayout)
	var past []*dayFile
	for key, df := range w.files {
		if df.day < yesterday {
			past = append(past, df)
			delete(w.files, key)
		}
	}
	w.mu.Unlock()
	for _, df := range past {
		_ = df.close() // synced at every append: nothing is lost
	}
}

func (df *dayFile) close() error {
	df.mu.Lock()
	defer df.mu.Unlock()
	if df.closed.Swap(true) {
		return nil
	}
	return df.f.Close()
}

// Prune deletes the day files whose whole day ended more than Retention ago, and returns how
// many it deleted.
func (w *Writer) Prune(ctx context.Context) (removed int, err error) {
	cutoff := w.opts.Now().Add(-w.opts.Retention)
	sources, err := os.ReadDir(w.dir)
	if err != nil {
		return 0, fmt.Errorf("journal: prune: %w", err)
	}
	for _, s := range sources {
		if !s.IsDir() || !validSource(s.Name()) {
			continue
		}
		files, err := os.ReadDir(filepath.Join(w.dir, s.Name()))
		if err != nil {
			return removed, fmt.Errorf("journal: prune: %w", err)
		}
		for _, f := range files {
			if err := ctx.Err(); err != nil {
				return removed, fmt.Errorf("journal: prune: %w", err)
			}
			day, ok := fileDay(f.Name(), w.opts.Location)
			if !ok || f.IsDir() || day.AddDate(0, 0, 1).After(cutoff) {
				continue
			}
			if err := w.remove(s.Name(), day.Format(dayLayout), f.Name()); err != nil {
				return removed, fmt.Errorf("journal: prune: %w", err)
			}
			removed++
			w.opts.Metrics.filePruned()
		}
	}
	return removed, nil
}

// remove closes a day file's handle and deletes it, appends held off meanwhile.
func (w *Writer) remove(source, day, name string) error {
	w.prune.Lock()
	defer w.prune.Unlock()
	w.mu.Lock()
	df := w.files[source+"/"+day]
	delete(w.files, source+"/"+day)
	w.mu.Unlock()
	if df != nil {
		_ = df.close()
	}
	if err := os.Remove(filepath.Join(w.dir, source, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// fileDay reads the day of a journal file name, midnight in loc.
func fileDay(name string, loc *time.Location) (time.Time, bool) {
	base, ok := strings.CutSuffix(name, gzExt)
	if !ok {
		if base, ok = strings.CutSuffix(name, plainExt); !ok {
			return time.Time{}, false
		}
	}
	t, err := time.ParseInLocation(dayLayout, base, loc)
	return t, err == nil
}

// Close closes the day files. Appends after it fail with ErrClosed.
func (w *Writer) Close() error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	files := w.files
	w.files = nil
	w.mu.Unlock()
	var errs []error
	for _, df := range files {
		if err := df.close(); err != nil {
			errs = append(errs, fmt.Errorf("journal: closing %s/%s: %w", df.source, df.day, err))
		}
	}
	return errors.Join(errs...)
}
