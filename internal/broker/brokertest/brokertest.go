// Package brokertest finds the external NATS JetStream server the transport tests run against.
package brokertest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// ExternalURL returns the JetStream server at PASSERELLE_TEST_NATS_URL (default
// nats://127.0.0.1:4222). When none answers the test is skipped saying what is missing, or fails
// when CI=true, so CI cannot pass without having run it.
func ExternalURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("PASSERELLE_TEST_NATS_URL")
	if url == "" {
		url = "nats://127.0.0.1:4222"
	}
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second))
	if err == nil {
		var js nats.JetStreamContext
		if js, err = nc.JetStream(); err == nil {
			_, err = js.AccountInfo()
		}
		nc.Close()
	}
	if err != nil {
		msg := fmt.Sprintf("missing: a JetStream-enabled NATS server at %s (%v): start one with `nats-server -js -a 127.0.0.1 -p 4222` or set PASSERELLE_TEST_NATS_URL", url, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return url
}

// DeleteStream removes a test's stream from the external server.
func DeleteStream(t testing.TB, url, stream string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Errorf("delete stream %s: %v", stream, err)
		return
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err == nil {
		err = js.DeleteStream(stream)
	}
	if err != nil {
		t.Errorf("delete stream %s: %v", stream, err)
	}
}
