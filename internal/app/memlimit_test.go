package app

import (
	"io"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

func TestApplyMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOMEMLIMIT", "")
	for _, tc := range []struct {
		setting string
		want    int64
	}{
		{"150MiB", 150 << 20},
		{"1GB", 1e9},
		{"off", 0},
		{"OFF", 0},
	} {
		got := ApplyMemoryLimit(tc.setting, log)
		inForce := debug.SetMemoryLimit(-1)
		wantInForce := tc.want
		if tc.want == 0 {
			wantInForce = math.MaxInt64
		}
		if got != tc.want || inForce != wantInForce {
			t.Errorf("%s: returned %d, runtime limit %d; want %d and %d", tc.setting, got, inForce, tc.want, wantInForce)
		}
	}

	// GOMEMLIMIT wins: the runtime read it at start (here, set by hand as it would have been).
	t.Setenv("GOMEMLIMIT", "300MiB")
	debug.SetMemoryLimit(300 << 20)
	if got := ApplyMemoryLimit("150MiB", log); got != 300<<20 || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Errorf("with GOMEMLIMIT set: returned %d, runtime limit %d; want both 300MiB", got, debug.SetMemoryLimit(-1))
	}
}
