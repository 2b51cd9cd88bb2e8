// Package redacttest helps tests prove that logs leak no personal data or secret: a log buffer safe
// for concurrent writers, and an assertion over everything written to it.
package redacttest

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"
)

// Buffer collects log output from concurrent goroutines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// RequireNoLeak fails the test if logs contain any of secrets, as written or JSON-escaped (a JSON
// log handler escapes accents and quotes, which would hide a leak from a plain search).
func RequireNoLeak(t testing.TB, logs string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s == "" {
			continue
		}
		if strings.Contains(logs, s) {
			t.Fatalf("the logs leak %q", s)
		}
		if esc, _ := json.Marshal(s); len(esc) > 2 && strings.Contains(logs, string(esc[1:len(esc)-1])) {
			t.Fatalf("the logs leak %q (JSON-escaped)", s)
		}
	}
}
