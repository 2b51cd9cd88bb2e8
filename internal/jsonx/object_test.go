package jsonx

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type kv struct{ key, value string }

func members(raw string) ([]kv, bool) {
	var got []kv
	ok := Object([]byte(raw), func(k, v []byte) { got = append(got, kv{string(k), string(v)}) })
	return got, ok
}

func TestObject(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []kv // nil with ok false
	}{
		{"empty", `{}`, []kv{}},
		{"members in order, values as written", ` {"b" : 1.5e3, "a":"x\n\u00e9","c":[{"d":null}],"e":true,"b":false} `,
			[]kv{{"b", "1.5e3"}, {"a", `"x\n\u00e9"`}, {"c", `[{"d":null}]`}, {"e", "true"}, {"b", "false"}}},
		{"invalid utf-8 in a string is accepted", "{\"a\":\"\xff\"}", []kv{{"a", "\"\xff\""}}},
		{"not an object", `[1]`, nil},
		{"escaped key", `{"n\u006fm":1}`, nil},
		{"trailing data", `{"a":1} x`, nil},
		{"leading zero", `{"a":01}`, nil},
		{"bad escape", `{"a":"\q"}`, nil},
		{"short unicode escape", `{"a":"\u12"}`, nil},
		{"control character", "{\"a\":\"\x01\"}", nil},
		{"missing colon", `{"a" 1}`, nil},
		{"trailing comma", `{"a":1,}`, nil},
		{"unterminated", `{"a":"x`, nil},
		{"bad literal", `{"a":tru}`, nil},
		{"fraction without digits", `{"a":1.}`, nil},
		{"exponent without digits", `{"a":1e+}`, nil},
		{"too deep for the fast path", `{"a":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := members(tt.in)
			if ok != (tt.want != nil) {
				t.Fatalf("Object(%s) ok = %v", tt.in, ok)
			}
			if ok && len(got)+len(tt.want) > 0 && !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Object(%s) members %q, want %q", tt.in, got, tt.want)
			}
			if !ok && got != nil {
				t.Errorf("fn was called on a refused document: %q", got)
			}
		})
	}
}

// Object accepts only what encoding/json accepts as an object, and the members it reports make
// up the same object.
func FuzzObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"b":[true,{"c":null}],"a":"x"}`, `{"a":"\u00e9\"\\"}`, `[]`, `{"a":-0.1E-2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var got []kv
		ok := Object(raw, func(k, v []byte) { got = append(got, kv{string(k), string(v)}) })
		if !ok {
			if got != nil {
				t.Fatal("fn called on a refused document")
			}
			return
		}
		var want map[string]any
		if err := decodeNumbers(raw, &want); err != nil {
			t.Fatalf("Object accepted %q, encoding/json says %v", raw, err)
		}
		rebuilt := map[string]any{}
		for _, m := range got {
			var v any
			if err := decodeNumbers([]byte(m.value), &v); err != nil {
				t.Fatalf("member %q value %q: %v", m.key, m.value, err)
			}
			var key string // as encoding/json reads it: invalid UTF-8 becomes U+FFFD
			if err := json.Unmarshal([]byte(`"`+m.key+`"`), &key); err != nil {
				t.Fatalf("key %q: %v", m.key, err)
			}
			rebuilt[key] = v
		}
		if !reflect.DeepEqual(rebuilt, want) {
			t.Fatalf("members %q make %v, encoding/json reads %v", got, rebuilt, want)
		}
	})
}

// decodeNumbers unmarshals raw keeping numbers as written: 1E700 is valid JSON that no float64 holds.
func decodeNumbers(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if len(bytes.TrimLeft(raw[dec.InputOffset():], " \t\r\n")) > 0 {
		return errors.New("data after the value")
	}
	return nil
}
