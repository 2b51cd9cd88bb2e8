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
	"slices"
	"strings"
	"time"
)

// DefaultMaxLineBytes bounds a line when Reader.MaxLineBytes is zero.
const DefaultMaxLineBytes = 16 << 20

// Reader reads journal files and raw record files, gzip-compressed or not (told by their first
// bytes, not their names). A bad line never stops it: it is reported to OnBad and skipped. The
// zero value is usable.
type Reader struct {
	// OnBad hears about each line skipped, with a *LineError (file and line). Nil ignores them.
	OnBad func(Position, error)
	// Location sets the day boundaries of the journal's file names for ReadRange (UTC when nil);
	// it should be the Writer's.
	Location *time.Location
	// MaxLineBytes bounds a line (DefaultMaxLineBytes when zero); longer lines are skipped.
	MaxLineBytes int
}

// ReadFiles calls fn with each entry of the journal files at paths, in order. It returns fn's
// first error (wrapped with the entry's position), the context's, or a file that cannot be
// opened; bad lines go to OnBad.
func (r *Reader) ReadFiles(ctx context.Context, paths []string, fn func(Entry, Position) error) error {
	for _, p := range paths {
		if err := r.readFile(ctx, p, func(line []byte, pos Position) error {
			e, err := DecodeLine(line)
			if err != nil {
				r.bad(pos, err)
				return nil
			}
			return fn(e, pos)
		}); err != nil {
			return err
		}
	}
	return nil
}

// ReadRange calls fn with the entries of the journal under dir received in [since, until), of
// source or of every source when source is empty. A zero since or until leaves that end open.
// Files are read day by day, sources in name order within a day; entries come in the order they
// were appended.
func (r *Reader) ReadRange(ctx context.Context, dir, source string, since, until time.Time, fn func(Entry, Position) error) error {
	paths, err := r.rangeFiles(dir, source, since, until)
	if err != nil {
		return err
	}
	return r.ReadFiles(ctx, paths, func(e Entry, pos Position) error {
		if (!since.IsZero() && e.ReceivedAt.Before(since)) || (!until.IsZero() && !e.ReceivedAt.Before(until)) {
			return nil
		}
		return fn(e, pos)
	})
}

func (r *Reader) rangeFiles(dir, source string, since, until time.Time) ([]string, error) {
	loc := r.Location
	if loc == nil {
		loc = time.UTC
	}
	var sources []string
	if source != "" {
		if !validSource(source) {
			return nil, ErrBadSource
		}
		sources = []string{source}
	} else {
		des, err := os.ReadDir(dir)
		if err != nil {
			return nil, fmt.Errorf("journal: listing %s: %w", dir, err)
		}
		for _, de := range des {
			if de.IsDir() && validSource(de.Name()) {
				sources = append(sources, de.Name())
			}
		}
	}
	type file struct {
		day    time.Time
		source string
		path   string
	}
	var files []file
	for _, s := range sources {
		des, err := os.ReadDir(filepath.Join(dir, s))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("journal: listing %s: %w", dir, err)
		}
		for _, de := range des {
			day, ok := fileDay(de.Name(), loc)
			if !ok || de.IsDir() {
				continue
			}
			// A day of margin each side: the entries' own times are filtered exactly, so a
			// Writer in another location costs a file read, never an entry.
			if (!since.IsZero() && day.AddDate(0, 0, 2).Before(since)) || (!until.IsZero() && day.AddDate(0, 0, -1).After(until)) {
				continue
			}
			files = append(files, file{day: day, source: s, path: filepath.Join(dir, s, de.Name())})
		}
	}
	slices.SortFunc(files, func(a, b file) int {
		if c := a.day.Compare(b.day); c != 0 {
			return c
		}
		if c := strings.Compare(a.source, b.source); c != 0 {
			return c
		}
		return strings.Compare(a.path, b.path)
	})
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.path
	}
	return paths, nil
}

// ReadRaw calls fn with each line of a file of raw records (each line is one record's body, as
// in testdata/replay), wrapped as an Entry of source with no ReceivedAt: the caller stamps it.
// A line that is not JSON is reported to OnBad; a line that is JSON but not what the source's
// decoder accepts (not an object, no contact) is passed on, for the stages to reject as live.
func (r *Reader) ReadRaw(ctx context.Context, path, source string, fn func(Entry, Position) error) error {
	return r.readFile(ctx, path, func(line []byte, pos Position) error {
		if !json.Valid(line) {
			r.bad(pos, fmt.Errorf("%w: not JSON", ErrMalformed))
			return nil
		}
		return fn(Entry{Source: source, Body: bytes.Clone(line)}, pos)
	})
}

func (r *Reader) bad(pos Position, err error) {
	if r.OnBad != nil {
		r.OnBad(pos, &LineError{Pos: pos, Err: err})
	}
}

// readFile calls fn with each non-blank line of path, its line break removed; line is only valid
// during the call.
func (r *Reader) readFile(ctx context.Context, path string, fn func(line []byte, pos Position) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var src io.Reader
	// Only the compressed stream can fail mid-file; its errors make the rest unreadable.
	var zerr func(error) bool
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			r.bad(Position{File: path, Line: 1}, fmt.Errorf("%w: %w", ErrTruncated, err))
			return nil
		}
		defer zr.Close()
		src = zr
		zerr = func(err error) bool { return err != nil && !errors.Is(err, io.EOF) }
	}
	lr := lineReader{br: br, max: r.MaxLineBytes}
	if zerr != nil {
		lr.br = bufio.NewReaderSize(src, 64<<10)
	}
	if lr.max <= 0 {
		lr.max = DefaultMaxLineBytes
	}
	pos := Position{File: path}
	for {
		if pos.Line%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("journal: reading %s: %w", pos, err)
			}
		}
		line, complete, err := lr.next()
		if len(line) == 0 && err != nil {
			if zerr != nil && zerr(err) {
				pos.Line++
				r.bad(pos, fmt.Errorf("%w: %w", ErrTruncated, err))
				return nil
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("journal: reading %s: %w", path, err)
		}
		pos.Line++
		switch {
		case err != nil && !errors.Is(err, io.EOF):
			// A line cut by a damaged stream: its start alone is not the record.
			if zerr != nil {
				r.bad(pos, fmt.Errorf("%w: %w", ErrTruncated, err))
				return nil
			}
			return fmt.Errorf("journal: reading %s: %w", path, err)
		case !complete:
			r.bad(pos, fmt.Errorf("%w: over %d bytes", ErrTooLong, lr.max))
			continue
		}
		if pos.Line == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf")) // a BOM from a spreadsheet's export
		}
		line = bytes.TrimRight(line, "\r")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if ferr := fn(line, pos); ferr != nil {
			return fmt.Errorf("journal: %s: %w", pos, ferr)
		}
	}
}

// lineReader returns lines of at most max bytes, skipping the rest of longer ones.
type lineReader struct {
	br  *bufio.Reader
	max int
	buf []byte
}

// next returns the next line without its '\n'. complete is false when the line was longer than
// max (line then holds its start). At the end of the input, a last line without '\n' comes with
// io.EOF; a read error comes with whatever was read of the line.
func (lr *lineReader) next() (line []byte, complete bool, err error) {
	frag, err := lr.br.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		if err == nil {
			frag = frag[:len(frag)-1]
		}
		if len(frag) > lr.max && (err == nil || errors.Is(err, io.EOF)) {
			return frag[:lr.max], false, nil
		}
		return frag, true, err
	}
	lr.buf = append(lr.buf[:0], frag...)
	for {
		frag, err = lr.br.ReadSlice('\n')
		if err == nil {
			frag = frag[:len(frag)-1]
		}
		if len(lr.buf) <= lr.max { // past max, the rest is only skipped
			lr.buf = append(lr.buf, frag...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		switch {
		case len(lr.buf) <= lr.max:
			return lr.buf, true, err
		case err != nil && !errors.Is(err, io.EOF):
			return lr.buf, true, err
		default:
			return lr.buf[:lr.max], false, nil
		}
	}
}
