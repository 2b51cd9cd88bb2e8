// Package diskguard watches the free space of the data directory and the store's writes, and says
// when the daemon must stop taking work: below the floor, a lead answered 200 might not be
// storable, and a delivery whose log cannot be written would be sent again and again. The webhook
// answers 503 at once, /readyz says why, and the stages wait; all resume by themselves when space
// returns.
package diskguard

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/internal/bytesize"
)

// Floor is the least free space to keep: a share of the filesystem, a size, or (the default) the
// smaller of 5% and 500 MB.
type Floor struct {
	Percent float64 // of the filesystem's size; used when Bytes is 0
	Bytes   uint64
	// Default is min(5%, 500 MB).
	Default bool
}

// ParseFloor reads PASSERELLE_MIN_FREE_DISK: "" (the default), "5%", "500MB", "64MiB", or a byte
// count.
func ParseFloor(s string) (Floor, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "auto" {
		return Floor{Default: true}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v >= 100 {
			return Floor{}, fmt.Errorf("%q: want a percentage from 0 to 99", s)
		}
		return Floor{Percent: v}, nil
	}
	v, err := bytesize.Parse(s)
	if err != nil {
		return Floor{}, fmt.Errorf("%q: want a size such as 500MB or 64MiB, or a percentage such as 5%%", s)
	}
	return Floor{Bytes: v}, nil
}

// of is the floor for a filesystem of total bytes.
func (f Floor) of(total uint64) uint64 {
	switch {
	case f.Default:
		return min(total/20, 500e6)
	case f.Bytes > 0:
		return f.Bytes
	}
	return uint64(float64(total) * f.Percent / 100)
}

// Guard is the verdict every part reads: Low says whether to stop taking work, and why.
type Guard struct {
	dir   string
	floor Floor
	stat  func(dir string) (free, total uint64, err error)
	probe func(ctx context.Context) error

	// isLow mirrors the state below for the hot path: every webhook request reads it.
	isLow atomic.Bool

	mu         sync.Mutex
	diskLow    string // why the disk is below the floor; "" when not
	storeErr   string // the last store write error, until a write succeeds
	changed    chan struct{}
	freeBytes  prometheus.Gauge
	low        prometheus.Gauge
	lowSeconds prometheus.Counter
	lowSince   time.Time
}

// New watches dir; reg (may be nil) gets passerelle_disk_free_bytes, passerelle_disk_low and
// passerelle_disk_low_seconds_total.
func New(dir string, floor Floor, reg prometheus.Registerer) *Guard {
	g := &Guard{
		dir: dir, floor: floor, stat: statfs, changed: make(chan struct{}),
		freeBytes: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "disk", Name: "free_bytes",
			Help: "Free bytes on the filesystem of the data directory."}),
		low: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "disk", Name: "low",
			Help: "1 while the daemon takes no work: free space under PASSERELLE_MIN_FREE_DISK, or the store refusing writes."}),
		lowSeconds: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "disk", Name: "low_seconds_total",
			Help: "Time spent refusing work for lack of disk or a failing store."}),
	}
	if reg != nil {
		reg.MustRegister(g.freeBytes, g.low, g.lowSeconds)
	}
	return g
}

// SetProbe sets a write to try while the store is failing: its success clears the failure, so
// the daemon recovers even when every stage waits.
func (g *Guard) SetProbe(f func(ctx context.Context) error) { g.probe = f }

// SetStat replaces how free space is read, for tests that cannot fill a filesystem.
func (g *Guard) SetStat(f func(dir string) (free, total uint64, err error)) { g.stat = f }

func statfs(dir string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}

// Check reads the free space now.
func (g *Guard) Check() {
	free, total, err := g.stat(g.dir)
	reason := ""
	switch {
	case err != nil:
		reason = "cannot read free space of the data directory: " + err.Error()
	case free < g.floor.of(total):
		reason = fmt.Sprintf("data directory has %d MB free, under the floor of %d MB (PASSERELLE_MIN_FREE_DISK)", free/1e6, g.floor.of(total)/1e6)
	}
	if err == nil {
		g.freeBytes.Set(float64(free))
	}
	g.mu.Lock()
	g.diskLow = reason
	g.updateLocked()
	g.mu.Unlock()
}

// StoreFailed records that the store refused a write: the daemon takes no work until a write
// succeeds (StoreOK).
func (g *Guard) StoreFailed(err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.storeErr = "the store refuses writes: " + err.Error()
	g.updateLocked()
}

// StoreOK records a successful store write.
func (g *Guard) StoreOK() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.storeErr != "" {
		g.storeErr = ""
		g.updateLocked()
	}
}

func (g *Guard) updateLocked() {
	now := time.Now()
	if !g.lowSince.IsZero() {
		g.lowSeconds.Add(now.Sub(g.lowSince).Seconds())
		g.lowSince = time.Time{}
	}
	if g.diskLow != "" || g.storeErr != "" {
		g.isLow.Store(true)
		g.low.Set(1)
		g.lowSince = now
		return
	}
	g.isLow.Store(false)
	g.low.Set(0)
	close(g.changed)
	g.changed = make(chan struct{})
}

// Low says whether to take no work, and why.
func (g *Guard) Low() (bool, string) {
	if g == nil || !g.isLow.Load() {
		return false, ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.diskLow != "":
		return true, g.diskLow
	case g.storeErr != "":
		return true, g.storeErr
	}
	return false, ""
}

// ErrLow is what a stage returns when it waited for space in vain: its message is redelivered
// later, nothing was sent.
var ErrLow = errors.New("disk or store unavailable: work paused")

// Wait returns nil once the guard is not low, or ErrLow when ctx ends first.
func (g *Guard) Wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		low := g.diskLow != "" || g.storeErr != ""
		ch := g.changed
		g.mu.Unlock()
		if !low {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrLow, ctx.Err())
		case <-time.After(time.Second): // a store failure clears on a write some other part makes
		}
	}
}

// Run checks the free space (and, while the store fails, probes it) every interval until ctx is
// done.
func (g *Guard) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		g.Check()
		g.mu.Lock()
		failing := g.storeErr != ""
		g.mu.Unlock()
		if failing && g.probe != nil {
			pctx, cancel := context.WithTimeout(ctx, interval)
			if err := g.probe(pctx); err == nil {
				g.StoreOK()
			}
			cancel()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
