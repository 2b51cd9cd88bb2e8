package journal

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzLineReader: lines come back exactly as split on '\n', those over max cut to max and marked
// incomplete, whatever the buffer size.
func FuzzLineReader(f *testing.F) {
	f.Add([]byte("a\nbb\n\nccc"), 2)
	f.Add([]byte("{\"x\":1}\r\n{\"y\":2}\n"), 64)
	f.Add(bytes.Repeat([]byte("x"), 100), 10)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max < 1 || max > 1<<10 {
			return
		}
		lr := lineReader{br: bufio.NewReaderSize(bytes.NewReader(in), 16), max: max}
		var want [][]byte
		if len(in) > 0 {
			want = bytes.Split(bytes.TrimSuffix(in, []byte("\n")), []byte("\n"))
		}
		for i := 0; ; i++ {
			line, complete, err := lr.next()
			if len(line) == 0 && errors.Is(err, io.EOF) {
				if i != len(want) {
					t.Fatalf("%d lines, want %d", i, len(want))
				}
				return
			}
			if err != nil && !errors.Is(err, io.EOF) {
				t.Fatalf("line %d: %v", i+1, err)
			}
			if i >= len(want) {
				t.Fatalf("extra line %q", line)
			}
			w := want[i]
			if len(w) > max {
				if complete || !bytes.Equal(line, w[:max]) {
					t.Fatalf("line %d = %q complete=%v, want the first %d bytes of %q, incomplete", i+1, line, complete, max, w)
				}
				continue
			}
			if !complete || !bytes.Equal(line, w) {
				t.Fatalf("line %d = %q complete=%v, want %q", i+1, line, complete, w)
			}
		}
	})
}
