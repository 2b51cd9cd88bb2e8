package diskguard

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestParseFloor(t *testing.T) {
	for _, tc := range []struct {
		in    string
		total uint64
		want  uint64
		bad   bool
	}{
		{"", 100e9, 500e6, false}, // the smaller of 5% and 500 MB
		{"", 1e9, 50e6, false},    // 5% of a small disk
		{"auto", 1e9, 50e6, false},
		{"10%", 1e9, 100e6, false},
		{"500MB", 1e12, 500e6, false},
		{"64MiB", 1e12, 64 << 20, false},
		{"1048576", 1e12, 1 << 20, false},
		{"lots", 0, 0, true},
		{"150%", 0, 0, true},
		{"-5MB", 0, 0, true},
	} {
		f, err := ParseFloor(tc.in)
		if (err != nil) != tc.bad {
			t.Errorf("ParseFloor(%q): error %v, want bad=%v", tc.in, err, tc.bad)
			continue
		}
		if !tc.bad && f.of(tc.total) != tc.want {
			t.Errorf("ParseFloor(%q) of %d = %d, want %d", tc.in, tc.total, f.of(tc.total), tc.want)
		}
	}
}

// Low follows the free space and the store's writes; Wait returns once neither holds work back.
func TestGuard(t *testing.T) {
	free := uint64(900)
	g := New(t.TempDir(), Floor{Bytes: 100}, nil)
	g.SetStat(func(string) (uint64, uint64, error) { return free, 1000, nil })
	g.Check()
	if low, _ := g.Low(); low {
		t.Fatal("low with room to spare")
	}
	free = 50
	g.Check()
	if low, why := g.Low(); !low || why == "" {
		t.Fatalf("not low under the floor (%q)", why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := g.Wait(ctx); !errors.Is(err, ErrLow) {
		t.Fatalf("Wait while low = %v, want ErrLow", err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait(context.Background()) }()
	free = 900
	g.Check()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return once space came back")
	}
	g.StoreFailed(errors.New("database or disk is full"))
	if low, why := g.Low(); !low || why == "" {
		t.Fatal("not low while the store fails")
	}
	g.StoreOK()
	if low, _ := g.Low(); low {
		t.Fatal("still low after a store write succeeded")
	}
}
