package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Entry is one inbound record as received.
type Entry struct {
	// Source names the system the record came from ("iciformation", "simplebo", …). It is a
	// directory name in the journal: lower-case letters, digits, '-' and '_' only.
	Source string `json:"source"`
	// ReceivedAt is when passerelle accepted the record; it picks the day file.
	ReceivedAt time.Time `json:"received_at"`
	// Metadata holds what came with the body and the stages may need again (content type, the
	// path's route, a poll's page): never credentials.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Body is the body as received when it is JSON. Any other body (a form, text) is stored as a
	// JSON string of its bytes: see StringBody and Entry.RawBody.
	Body json.RawMessage `json:"body"`
}

// Position locates a line: File as given to the reader, Line counted from 1 in the decompressed
// text.
type Position struct {
	File string
	Line int
}

func (p Position) String() string { return p.File + ":" + strconv.Itoa(p.Line) }

// Errors reported for bad lines, wrapped in a *LineError.
var (
	ErrMalformed = errors.New("malformed line")
	ErrTooLong   = errors.New("line too long")
	// ErrTruncated reports a file whose compressed stream stops short or is damaged (a crash in
	// the middle of an append): the lines before it were read, nothing after it can be.
	ErrTruncated = errors.New("truncated or damaged compressed stream")
)

// LineError is what a reader's OnBad hook receives: a line skipped, and why.
type LineError struct {
	Pos Position
	Err error
}

func (e *LineError) Error() string { return e.Pos.String() + ": " + e.Err.Error() }
func (e *LineError) Unwrap() error { return e.Err }

// StringBody returns raw as a JSON string, for bodies that are not JSON (forms, text). Bytes that
// are not valid UTF-8 are replaced by U+FFFD, as encoding/json does.
func StringBody(raw []byte) json.RawMessage {
	b, _ := json.Marshal(string(raw)) // a string always marshals
	return b
}

// RawBody returns the body's bytes as received: the string's contents for a body stored as a
// JSON string (see StringBody), the JSON itself otherwise.
func (e Entry) RawBody() []byte {
	if len(e.Body) > 0 && e.Body[0] == '"' {
		var s string
		if json.Unmarshal(e.Body, &s) == nil {
			return []byte(s)
		}
	}
	return e.Body
}

// validSource reports whether s can name a journal directory.
func validSource(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// lineBody returns the bytes to write as the line's body: the body itself when it is JSON (with
// its line breaks, which JSON only allows as whitespace, removed so that it stays one line), a
// JSON string of it otherwise. Event ids hash the canonical form, so compacting changes none.
func lineBody(b []byte) []byte {
	if len(b) == 0 || !json.Valid(b) {
		return StringBody(b)
	}
	if bytes.IndexByte(b, '\n') < 0 && bytes.IndexByte(b, '\r') < 0 {
		return b
	}
	var buf bytes.Buffer
	_ = json.Compact(&buf, b) // valid, checked above
	return buf.Bytes()
}

// appendLine appends e's line, newline included, to dst. received is e.ReceivedAt or its stand-in.
func appendLine(dst []byte, e Entry, received time.Time) []byte {
	dst = append(dst, `{"source":`...)
	dst = strconv.AppendQuote(dst, e.Source) // validSource: plain ASCII, same as JSON
	dst = append(dst, `,"received_at":"`...)
	dst = received.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if len(e.Metadata) > 0 {
		m, _ := json.Marshal(e.Metadata) // map[string]string always marshals, keys sorted
		dst = append(dst, `,"metadata":`...)
		dst = append(dst, m...)
	}
	dst = append(dst, `,"body":`...)
	dst = append(dst, lineBody(e.Body)...)
	return append(dst, '}', '\n')
}

type wireEntry struct {
	Source     *string           `json:"source"`
	ReceivedAt *time.Time        `json:"received_at"`
	Metadata   map[string]string `json:"metadata"`
	Body       json.RawMessage   `json:"body"`
}

// DecodeLine reads one journal line (without its line break). It requires an object with a
// non-empty "source", an RFC 3339 "received_at" and a "body"; "metadata" is optional and unknown
// fields are ignored. Errors wrap ErrMalformed.
func DecodeLine(line []byte) (Entry, error) {
	var w wireEntry
	if err := json.Unmarshal(line, &w); err != nil {
		return Entry{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch {
	case w.Source == nil || *w.Source == "":
		return Entry{}, fmt.Errorf("%w: no source", ErrMalformed)
	case w.ReceivedAt == nil:
		return Entry{}, fmt.Errorf("%w: no received_at", ErrMalformed)
	case len(w.Body) == 0:
		return Entry{}, fmt.Errorf("%w: no body", ErrMalformed)
	}
	return Entry{Source: *w.Source, ReceivedAt: *w.ReceivedAt, Metadata: w.Metadata, Body: w.Body}, nil
}
