package app_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A data directory on a small filesystem that fills up: /readyz says why, webhooks answer 503 at
// once without taking the lead, stages wait; once space returns everything resumes by itself, and
// every lead answered 200 reaches the CRM exactly once. As root the filesystem is a real 64 MB
// tmpfs; elsewhere the guard's reading of free space is injected.
func TestFullDiskPausesAndRecovers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := newFixture(t, "PASSERELLE_MIN_FREE_DISK=16MiB")
	var fill, unfill func()
	var injected bool
	var injectedFull atomic.Bool
	if dir, ok := mountTmpfs(t, "64m"); ok {
		f.DataDir = dir
		filler := filepath.Join(dir, "filler")
		fill = func() {
			// Leave about 8 MB: under the 16 MiB floor, yet room for what is already in flight.
			out, err := exec.Command("sh", "-c", "avail=$(df -k --output=avail "+dir+" | tail -1); dd if=/dev/zero of="+filler+" bs=1k count=$((avail-8192)) status=none").CombinedOutput()
			require.NoError(t, err, "%s", out)
		}
		unfill = func() { require.NoError(t, os.Remove(filler)) }
	} else {
		t.Log("not root: the guard's free space is injected instead of a real tmpfs")
		injected = true
		fill = func() { injectedFull.Store(true) }
		unfill = func() { injectedFull.Store(false) }
	}
	a := f.start()
	if injected {
		a.Guard.SetStat(func(string) (uint64, uint64, error) {
			if injectedFull.Load() {
				return 1 << 20, 1 << 30, nil
			}
			return 1 << 29, 1 << 30, nil
		})
	}

	var accepted [][]byte
	post := func(n int) int {
		body := leadBody(n, "disk")
		status, _ := f.post(t, body)
		if status == http.StatusOK {
			accepted = append(accepted, body)
		}
		return status
	}
	for i := range 5 {
		require.Equal(t, http.StatusOK, post(i))
	}
	require.NoError(t, f.Receiver.WaitForUnique(ctx, 5))

	fill()
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + a.AdminAddr() + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	require.Eventually(t, func() bool { s, _ := readyz(); return s == http.StatusServiceUnavailable }, 20*time.Second, 50*time.Millisecond, "/readyz notices the full disk")
	_, why := readyz()
	require.Contains(t, why, "PASSERELLE_MIN_FREE_DISK")
	low, ok := metric(f.scrape(t), "passerelle_disk_low", nil)
	require.True(t, ok)
	require.Equal(t, float64(1), low)

	start := time.Now()
	status, body := f.post(t, leadBody(100, "refused"))
	require.Equal(t, http.StatusServiceUnavailable, status, "%s", body)
	require.Less(t, time.Since(start), 2*time.Second, "the 503 comes at once, not after a publish timeout")
	require.Contains(t, string(body), "send it again later")

	unfill()
	require.Eventually(t, func() bool { s, _ := readyz(); return s == http.StatusOK }, 20*time.Second, 50*time.Millisecond, "ready again once space returns, with no restart")
	for i := 10; i < 15; i++ {
		require.Equal(t, http.StatusOK, post(i))
	}
	require.NoError(t, f.Receiver.WaitForUnique(ctx, len(accepted)))
	got := f.Receiver.UniqueIDs()
	delivered, repeats := 0, 0
	for _, b := range accepted {
		if n := got[eventIDOf(b)]; n > 0 {
			delivered, repeats = delivered+1, repeats+n-1
		}
	}
	// The fault suite's line (make test-faults): posted counts the lead refused with 503.
	t.Logf("FAULT %-40s posted %4d  answered 200 %4d  delivered %4d  repeats with the same id %3d  lost %d",
		"full disk, then space back", len(accepted)+1, len(accepted), delivered, repeats, len(accepted)-delivered)
	for _, b := range accepted {
		require.Equal(t, 1, got[eventIDOf(b)], "every lead answered 200 is delivered, once")
	}
	require.NotContains(t, got, eventIDOf(leadBody(100, "refused")), "the refused lead was not taken")
}

// mountTmpfs mounts a tmpfs of size for the test, when the process may (root, Linux).
func mountTmpfs(t *testing.T, size string) (string, bool) {
	t.Helper()
	if os.Geteuid() != 0 {
		return "", false
	}
	dir, err := os.MkdirTemp("", "passerelle-tmpfs")
	require.NoError(t, err)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Logf("mount tmpfs: %v: %s", err, out)
		_ = os.Remove(dir)
		return "", false
	}
	t.Cleanup(func() {
		_ = exec.Command("umount", "-l", dir).Run()
		_ = os.Remove(dir)
	})
	return dir, true
}
