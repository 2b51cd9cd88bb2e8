// Package apptest runs the daemon in-process for the tests of other packages (the CLI, the
// modules): built as main builds it, on loopback ports of its own, stopped at cleanup.
package apptest

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/passerelle/passerelle/internal/app"
)

// Start loads environ (PASSERELLE_* lines; it should set PASSERELLE_DATA_DIR and loopback
// addresses), builds and runs the daemon, and returns once /readyz answers 200. At cleanup the
// daemon stops, and Run must return nil within 30 s.
func Start(t testing.TB, environ []string) *app.App {
	t.Helper()
	// The tests' data is small: a machine short of disk must not make the daemon refuse work.
	environ = append([]string{"PASSERELLE_MIN_FREE_DISK=1MB"}, environ...)
	cfg, err := app.LoadConfig(context.Background(), environ)
	if err != nil {
		t.Fatalf("configuration: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatalf("build the daemon: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run after a graceful stop: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the daemon did not stop")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + a.AdminAddr() + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon was not ready within 30 s")
		}
		time.Sleep(20 * time.Millisecond) // polling /readyz
	}
}
