package iciformation_test

import (
	"encoding/json"
	"testing"

	"github.com/passerelle/passerelle/connectors/iciformation"
)

// FuzzDecodePolled: any answer decodes or fails without panicking, and every lead it gives is a
// JSON object without date_creation.
func FuzzDecodePolled(f *testing.F) {
	f.Add([]byte(`[{"nom":"A","tel":"0612345678","date_creation":"2026-11-20T10:00:00+01:00"}]`))
	f.Add([]byte(`[{"date_creation":1},{"a":{"date_creation":"x"}},[],"s",null]`))
	f.Add([]byte(`[{"nom":"\u00e9\u003c","date_creation":"2026-11-20 10:00:00+01:00","date_creation":"dup"}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		leads, err := iciformation.DecodePolled(body)
		if err != nil {
			return
		}
		for _, l := range leads {
			var obj map[string]json.RawMessage
			if err := json.Unmarshal(l.Body, &obj); err != nil || obj == nil {
				t.Fatalf("body %q is not an object: %v", l.Body, err)
			}
			if _, ok := obj["date_creation"]; ok {
				t.Fatalf("body %q kept date_creation", l.Body)
			}
		}
	})
}
