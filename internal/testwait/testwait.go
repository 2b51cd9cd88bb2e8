// Package testwait lets tests wait for a condition rather than for a while: a sleep is too long
// on a fast machine and too short on a slow one.
package testwait

import (
	"testing"
	"time"
)

// poll is how often a condition is looked at again.
const poll = 5 * time.Millisecond

// Eventually reports whether cond held within d, looking at it on the calling goroutine.
func Eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(poll)
	}
	return true
}

// For waits until cond holds, failing the test after within. cond runs on the test's goroutine,
// so it may use require.
func For(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Eventually(within, cond) {
		t.Fatalf("timed out after %s waiting for %s", within, what)
	}
}
