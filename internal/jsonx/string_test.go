package jsonx

import (
	"bytes"
	"encoding/json"
	"testing"
)

// reference is what encoding/json writes for s with HTML escaping off.
func reference(t testing.TB, s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
}

func TestAppendString(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"empty", "", `""`},
		{"plain", "Développement Web", `"Développement Web"`},
		{"quote and backslash", `a"b\c`, `"a\"b\\c"`},
		{"short escapes", "\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"other controls", "\x00\x1f", `"\u0000\u001f"`},
		{"html kept", "<a&b>", `"<a&b>"`},
		{"invalid utf-8", "a\xffb", `"a\ufffdb"`},
		{"line separators", "a\u2028b\u2029", `"a\u2028b\u2029"`},
		{"truncated rune", "é"[:1], `"\ufffd"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(AppendString([]byte("x"), tt.in))
			if got != "x"+tt.want {
				t.Errorf("AppendString(%q) = %s, want x%s", tt.in, got, tt.want)
			}
			if ref := reference(t, tt.in); ref != tt.want {
				t.Errorf("encoding/json writes %s, the table says %s", ref, tt.want)
			}
		})
	}
}

func TestAppendHTMLSafeString(t *testing.T) {
	got := string(AppendHTMLSafeString(nil, "<a&b>\"é"))
	if want := `"\u003ca\u0026b\u003e\"é"`; got != want {
		t.Errorf("AppendHTMLSafeString = %s, want %s", got, want)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "\"\\\x00\u2028", "a\xffé", "<&>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := string(AppendString(nil, s)), reference(t, s); got != want {
			t.Fatalf("AppendString(%q) = %s, encoding/json = %s", s, got, want)
		}
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := string(AppendHTMLSafeString(nil, s)); got != string(want) {
			t.Fatalf("AppendHTMLSafeString(%q) = %s, json.Marshal = %s", s, got, want)
		}
	})
}
