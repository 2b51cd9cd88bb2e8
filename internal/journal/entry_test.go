package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"maps"
	"testing"
	"time"
)

func TestDecodeLine(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)
	tests := []struct {
		name    string
		line    string
		want    Entry
		wantErr bool
	}{
		{name: "full", line: `{"source":"iciformation","received_at":"2026-11-20T09:30:00Z","metadata":{"content_type":"application/json"},"body":{"nom":"Durand"}}`,
			want: Entry{Source: "iciformation", ReceivedAt: at, Metadata: map[string]string{"content_type": "application/json"}, Body: json.RawMessage(`{"nom":"Durand"}`)}},
		{name: "form body as a string, unknown field", line: `{"source":"simplebo","received_at":"2026-11-20T10:30:00+01:00","body":"event_type=1","v":2}`,
			want: Entry{Source: "simplebo", ReceivedAt: at, Body: json.RawMessage(`"event_type=1"`)}},
		{name: "null body", line: `{"source":"s","received_at":"2026-11-20T09:30:00Z","body":null}`,
			want: Entry{Source: "s", ReceivedAt: at, Body: json.RawMessage(`null`)}},
		{name: "not JSON", line: `{"source":`, wantErr: true},
		{name: "not an object", line: `["iciformation"]`, wantErr: true},
		{name: "null", line: `null`, wantErr: true},
		{name: "no source", line: `{"received_at":"2026-11-20T09:30:00Z","body":{}}`, wantErr: true},
		{name: "empty source", line: `{"source":"","received_at":"2026-11-20T09:30:00Z","body":{}}`, wantErr: true},
		{name: "no received_at", line: `{"source":"s","body":{}}`, wantErr: true},
		{name: "bad received_at", line: `{"source":"s","received_at":"20/11/2026","body":{}}`, wantErr: true},
		{name: "no body", line: `{"source":"s","received_at":"2026-11-20T09:30:00Z"}`, wantErr: true},
		{name: "metadata not strings", line: `{"source":"s","received_at":"2026-11-20T09:30:00Z","metadata":{"n":1},"body":{}}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeLine([]byte(tt.line))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("DecodeLine(%s) error = %v, want ErrMalformed", tt.line, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeLine(%s): %v", tt.line, err)
			}
			assertEntry(t, got, tt.want)
		})
	}
}

func TestLineBody(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{`{"a": 1}`, `{"a": 1}`}, // kept as received
		{"{\"a\":\r\n 1}\n", `{"a":1}`},
		{`nom=Durand&tel=0102030405`, `"nom=Durand\u0026tel=0102030405"`},
		{``, `""`},
		{`123`, `123`},
	}
	for _, tt := range tests {
		if got := lineBody([]byte(tt.in)); string(got) != tt.want {
			t.Errorf("lineBody(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
	form := []byte("event_type=1&email=a%40b.fr\n")
	if got := (Entry{Body: StringBody(form)}).RawBody(); !bytes.Equal(got, form) {
		t.Errorf("RawBody of StringBody(%q) = %q", form, got)
	}
	if got := (Entry{Body: json.RawMessage(`{"a":1}`)}).RawBody(); string(got) != `{"a":1}` {
		t.Errorf("RawBody of a JSON body = %s", got)
	}
}

// FuzzDecodeLine: no input makes DecodeLine panic, and what it accepts writes back to a single
// line that decodes to the same entry.
func FuzzDecodeLine(f *testing.F) {
	for _, s := range []string{
		`{"source":"iciformation","received_at":"2026-11-20T09:30:00Z","metadata":{"content_type":"application/json"},"body":{"nom":"Durand"}}`,
		`{"source":"simplebo","received_at":"2026-11-20T10:30:00.123+01:00","body":"event_type=1"}`,
		`{"source":"s","received_at":"2026-11-20T09:30:00Z","body":[1, 2,` + "\n" + `3]}`,
		`{"source":"s","body":{}}`, `null`, `[]`, `{`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := DecodeLine(line)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("DecodeLine error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if !validSource(e.Source) {
			return // the Writer refuses it: nothing to write back
		}
		if y := e.ReceivedAt.UTC().Year(); y < 0 || y > 9999 {
			return // RFC 3339 has no room for it in UTC
		}
		out := appendLine(nil, e, e.ReceivedAt)
		if i := bytes.IndexByte(out, '\n'); i != len(out)-1 {
			t.Fatalf("encoded line has a line break at %d of %d: %q", i, len(out), out)
		}
		back, err := DecodeLine(out[:len(out)-1])
		if err != nil {
			t.Fatalf("DecodeLine(appendLine(%q)) = %v; line %q", line, err, out)
		}
		assertEntry(t, back, e)
	})
}

// assertEntry compares entries, bodies by their compact form (the Writer removes line breaks).
func assertEntry(t *testing.T, got, want Entry) {
	t.Helper()
	if got.Source != want.Source || !got.ReceivedAt.Equal(want.ReceivedAt) || !maps.Equal(got.Metadata, want.Metadata) {
		t.Fatalf("entry = %+v, want %+v", got, want)
	}
	var g, w bytes.Buffer
	if err := json.Compact(&g, got.Body); err != nil {
		t.Fatalf("body %q: %v", got.Body, err)
	}
	if err := json.Compact(&w, want.Body); err != nil {
		t.Fatalf("want body %q: %v", want.Body, err)
	}
	if g.String() != w.String() {
		t.Fatalf("body = %s, want %s", g.String(), w.String())
	}
}
