package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
)

// loadResult is one measured run of a load generator.
type loadResult struct {
	ok       int64 // answered 200 (wrk: 2xx/3xx; nothing but 200 is 2xx/3xx here)
	failed   int64 // other statuses, socket errors and timeouts: must be 0
	elapsed  time.Duration
	p50, p99 time.Duration
	cpu      time.Duration // CPU the server used during the run (all its threads)
}

func (r loadResult) rps() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// cpuPerOK is the server's CPU per request answered 200: unlike requests/s, it hardly moves
// when other work on the machine takes cores away.
func (r loadResult) cpuPerOK() time.Duration {
	if r.ok == 0 {
		return 0
	}
	return r.cpu / time.Duration(r.ok)
}

// target is what is loaded: a URL and the token to present.
type target struct {
	url, token string
}

// loadGen drives closed-loop load: each connection sends its next request when the previous
// one is answered. Every request carries a lead no other request carries (the email holds a
// per-run nonce, the connection and a counter), so neither JetStream's duplicate window nor the
// dedupe stage can drop work.
type loadGen interface {
	name() string
	run(ctx context.Context, t target, conns int, d time.Duration) (loadResult, error)
}

const emailPlaceholder = "john.doe@example.com"

// leadTemplate is Ici Formation's example payload (SeedExample, ~330 bytes) with its email made
// unique: the first %s is the run nonce, then the connection and the request number.
func leadTemplate() (prefix, suffix string) {
	ex := string(iciformationsim.SeedExample())
	i := strings.Index(ex, emailPlaceholder)
	if i < 0 {
		panic("SeedExample has no " + emailPlaceholder)
	}
	return ex[:i], ex[i+len(emailPlaceholder):]
}

func nonce() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func pickLoadGen(choice, dir string) (loadGen, error) {
	wrkPath, err := exec.LookPath("wrk")
	switch {
	case choice == "go":
		return goGen{}, nil
	case err == nil && (choice == "auto" || choice == "wrk"):
		return wrkGen{path: wrkPath, dir: dir}, nil
	case choice == "wrk":
		return nil, errors.New("wrk not on PATH: apt-get install -y wrk, or -loadgen go")
	case choice == "auto":
		return goGen{}, nil
	}
	return nil, fmt.Errorf("-loadgen %q: want auto, wrk or go", choice)
}

// wrkGen runs wrk (2 threads, like the figures of the NATS notes) with a Lua script building each
// POST.
type wrkGen struct{ path, dir string }

func (w wrkGen) name() string { return "wrk (" + w.path + ", 2 threads)" }

const wrkScript = `wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
local prefix = [==[%s]==]
local suffix = [==[%s]==]
local run = "%s"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
function request()
  n = n + 1
  return wrk.format(nil, nil, nil, prefix .. "bench-" .. run .. "-" .. tid .. "-" .. n .. "@example.com" .. suffix)
end
`

func (w wrkGen) run(ctx context.Context, t target, conns int, d time.Duration) (loadResult, error) {
	prefix, suffix := leadTemplate()
	script := filepath.Join(w.dir, "post-"+nonce()+".lua")
	if err := os.WriteFile(script, fmt.Appendf(nil, wrkScript, t.token, prefix, suffix, nonce()), 0o600); err != nil {
		return loadResult{}, err
	}
	defer os.Remove(script)
	threads := min(2, conns)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cmd := exec.CommandContext(ctx, w.path, "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs)+"s",
		"--timeout", "5s", "--latency", "-s", script, t.url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return parseWrk(string(out))
}

var (
	wrkTotal   = regexp.MustCompile(`(\d+) requests in ([\d.]+)(us|ms|s|m)`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSockErr = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$`)
)

func parseWrk(out string) (loadResult, error) {
	var r loadResult
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output not understood:\n%s", out)
	}
	total, _ := strconv.ParseInt(m[1], 10, 64)
	r.elapsed = wrkDuration(m[2], m[3])
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		r.failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	r.ok = total - r.failed
	if m := wrkSockErr.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.failed += n
		}
	}
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v := wrkDuration(m[2], m[3])
		if m[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if r.p50 == 0 || r.p99 == 0 || r.elapsed == 0 {
		return r, fmt.Errorf("wrk output without latency distribution:\n%s", out)
	}
	return r, nil
}

func wrkDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	scale := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second, "m": time.Minute}[unit]
	return time.Duration(f * float64(scale))
}

// goGen is the built-in generator: conns goroutines on a keep-alive net/http client, each
// recording every latency; percentiles come from the sorted samples.
type goGen struct{}

func (goGen) name() string { return "built-in Go closed loop (net/http client)" }

func (goGen) run(ctx context.Context, t target, conns int, d time.Duration) (loadResult, error) {
	tr := &http.Transport{MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	prefix, suffix := leadTemplate()
	run := nonce()
	deadline := time.Now().Add(d)
	start := time.Now()

	type worker struct {
		ok, failed int64
		lat        []time.Duration
		err        error
	}
	ws := make([]worker, conns)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Go(func() {
			w := &ws[i]
			w.lat = make([]time.Duration, 0, 1<<14)
			var body bytes.Buffer
			for n := 1; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
				body.Reset()
				fmt.Fprintf(&body, "%sbench-%s-%d-%d@example.com%s", prefix, run, i, n, suffix)
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body.Bytes()))
				if err != nil {
					w.err = err
					return
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+t.token)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					w.failed++
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				w.lat = append(w.lat, time.Since(t0))
				if resp.StatusCode == http.StatusOK {
					w.ok++
				} else {
					w.failed++
				}
			}
		})
	}
	wg.Wait()
	r := loadResult{elapsed: time.Since(start)}
	var lat []time.Duration
	for _, w := range ws {
		if w.err != nil {
			return r, w.err
		}
		r.ok += w.ok
		r.failed += w.failed
		lat = append(lat, w.lat...)
	}
	if len(lat) == 0 {
		return r, errors.New("no request answered")
	}
	slices.Sort(lat)
	r.p50 = lat[len(lat)*50/100]
	r.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	return r, nil
}

// sendExactly posts n leads over conns connections and waits for every answer: the count of 200s
// is then exact, which a timed run cut at its deadline cannot give.
func sendExactly(ctx context.Context, t target, conns, n int) (ok, failed int64, err error) {
	tr := &http.Transport{MaxConnsPerHost: conns, MaxIdleConnsPerHost: conns}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	prefix, suffix := leadTemplate()
	run := nonce()
	next := make(chan int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for i := range next {
				body := fmt.Sprintf("%sverify-%s-%d@example.com%s", prefix, run, i, suffix)
				req, e := http.NewRequestWithContext(ctx, http.MethodPost, t.url, strings.NewReader(body))
				if e != nil {
					mu.Lock()
					err = e
					mu.Unlock()
					continue
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+t.token)
				resp, e := client.Do(req)
				mu.Lock()
				if e == nil && resp.StatusCode == http.StatusOK {
					ok++
				} else {
					failed++
				}
				mu.Unlock()
				if e == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return ok, failed, err
}
