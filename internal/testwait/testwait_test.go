package testwait

import (
	"testing"
	"time"
)

func TestEventually(t *testing.T) {
	n := 0
	if !Eventually(time.Second, func() bool { n++; return n == 3 }) {
		t.Fatal("a condition that comes true was not waited for")
	}
	if Eventually(20*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition that never holds was reported true")
	}
}
