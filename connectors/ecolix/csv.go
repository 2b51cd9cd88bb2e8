package ecolix

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/passerelle/passerelle/internal/frtime"
)

// LineError is a CSV export refused at a line (1 is the header row).
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ParseCSV reads a file-mode export: ";"-separated UTF-8 (a leading BOM is tolerated, Excel writes
// one), a header row with the API's field names, id and date_modification among them. Each row
// becomes a Record whose Raw is a JSON object of the header's fields, values as strings. The first
// bad line fails the whole file with a *LineError naming it.
func ParseCSV(data []byte) ([]Record, error) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = ';'
	r.ReuseRecord = true
	head, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, &LineError{Line: 1, Err: errors.New("empty file: no header row")}
	}
	if err != nil {
		return nil, csvError(err, 1)
	}
	header, err := parseHeader(head)
	if err != nil {
		return nil, &LineError{Line: 1, Err: err}
	}
	var out []Record
	line := 1
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			// encoding/csv's errors carry their line; FieldPos is only valid after a good read.
			return nil, csvError(err, line+1)
		}
		line, _ = r.FieldPos(0)
		rec, err := header.record(row)
		if err != nil {
			return nil, &LineError{Line: line, Err: err}
		}
		out = append(out, rec)
	}
}

// csvError turns encoding/csv's error into a LineError with its own line number.
func csvError(err error, line int) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &LineError{Line: pe.Line, Err: pe.Err}
	}
	return &LineError{Line: line, Err: err}
}

// header is a validated header row.
type header struct {
	names      []string
	keys       [][]byte // each name as a JSON string, encoded once
	id, modIdx int
}

func parseHeader(names []string) (header, error) {
	h := header{names: make([]string, len(names)), keys: make([][]byte, len(names)), id: -1, modIdx: -1}
	seen := make(map[string]bool, len(names))
	for i, n := range names {
		n = strings.TrimSpace(n)
		switch {
		case !utf8.ValidString(n):
			return header{}, fmt.Errorf("column %d: name is not UTF-8", i+1)
		case n == "":
			return header{}, fmt.Errorf("column %d has no name", i+1)
		case seen[n]:
			return header{}, fmt.Errorf("column %q appears twice", n)
		}
		seen[n] = true
		h.names[i] = n
		h.keys[i], _ = json.Marshal(n) // a string always encodes
		switch n {
		case "id":
			h.id = i
		case "date_modification":
			h.modIdx = i
		}
	}
	if h.id < 0 || h.modIdx < 0 {
		return header{}, errors.New("the header lacks id or date_modification")
	}
	return h, nil
}

// record converts one data row; encoding/csv has already checked its field count.
func (h header) record(row []string) (Record, error) {
	for i, v := range row {
		if !utf8.ValidString(v) {
			return Record{}, fmt.Errorf("column %s is not UTF-8", h.names[i])
		}
	}
	id := strings.TrimSpace(row[h.id])
	if id == "" {
		return Record{}, errors.New("empty id")
	}
	mod, err := frtime.Parse(strings.TrimSpace(row[h.modIdx]))
	if err != nil {
		return Record{}, fmt.Errorf("id %s: date_modification: %w", id, err)
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, v := range row {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(h.keys[i])
		b.WriteByte(':')
		val, _ := json.Marshal(v) // valid UTF-8, checked above
		b.Write(val)
	}
	b.WriteByte('}')
	return Record{ID: id, Modified: mod, Raw: b.Bytes()}, nil
}
