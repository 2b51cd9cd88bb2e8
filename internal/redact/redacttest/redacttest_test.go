package redacttest

import (
	"fmt"
	"testing"
)

// recorder captures Fatalf so the assertion itself can be tested.
type recorder struct {
	testing.TB
	failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestRequireNoLeak(t *testing.T) {
	tests := []struct {
		logs, secret string
		leak         bool
	}{
		{`{"msg":"ok","email":"j***@example.com"}`, "john@example.com", false},
		{`{"msg":"ok","email":"john@example.com"}`, "john@example.com", true},
		{`{"name":"Ren\u00e9"}`, "René", false},
		{`{"name":"Ren\"e"}`, `Ren"e`, true},
		{"anything", "", false},
	}
	for _, tc := range tests {
		r := &recorder{TB: t}
		RequireNoLeak(r, tc.logs, tc.secret)
		if got := r.failed != ""; got != tc.leak {
			t.Errorf("RequireNoLeak(%q, %q) failed=%v, want %v", tc.logs, tc.secret, got, tc.leak)
		}
	}
	var b Buffer
	fmt.Fprint(&b, "abc")
	if b.String() != "abc" {
		t.Errorf("Buffer = %q", b.String())
	}
}
