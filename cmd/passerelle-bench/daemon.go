package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// buildDaemon builds cmd/passerelle as make build does (stripped) into dir.
func buildDaemon(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "passerelle")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./cmd/passerelle")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/passerelle: %w\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run passerelle-bench from inside the passerelle module (make bench)")
	}
	return filepath.Dir(gomod), nil
}

// proc is a benchmarked subprocess listening on HTTP.
type proc struct {
	name   string
	cmd    *exec.Cmd
	addr   string // the address under load
	admin  string // passerelle's admin address; empty for the bare server
	stderr *logBuf
	exited chan struct{}
}

// daemonConfig is what one passerelle serve run is given.
type daemonConfig struct {
	bin, dataDir, token, crmURL, crmSecret string
	env                                    []string // more PASSERELLE_* settings
}

// startDaemon runs passerelle serve on the embedded broker, a fresh data dir and free loopback
// ports, and waits for /readyz.
func startDaemon(ctx context.Context, c daemonConfig) (*proc, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(c.bin, "serve")
	cmd.Env = append(cleanEnv(),
		"PASSERELLE_HTTP_ADDR="+httpAddr,
		"PASSERELLE_ADMIN_ADDR="+adminAddr,
		"PASSERELLE_DATA_DIR="+c.dataDir,
		"PASSERELLE_ICIFORMATION_TOKEN="+c.token,
		"PASSERELLE_CRM_URL="+c.crmURL,
		"PASSERELLE_CRM_SECRET="+c.crmSecret,
		"PASSERELLE_LOG_LEVEL=warn",
		"PASSERELLE_LOG_FORMAT=json",
		"PASSERELLE_SHUTDOWN_TIMEOUT=5s",
	)
	cmd.Env = append(cmd.Env, c.env...)
	p := &proc{name: "passerelle", cmd: cmd, addr: httpAddr, admin: adminAddr, stderr: &logBuf{n: 64 << 10}, exited: make(chan struct{})}
	cmd.Stdout = io.Discard
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start passerelle: %w", err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	if err := p.waitReady(ctx, "http://"+adminAddr+"/readyz", 60*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// cleanEnv is the environment without PASSERELLE_* variables, so the operator's own settings do
// not leak into the daemon under test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PASSERELLE_") {
			env = append(env, kv)
		}
	}
	return env
}

// startBare re-executes this binary as the bare net/http server.
func startBare(ctx context.Context) (*proc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, bareServerArg, addr)
	p := &proc{name: "bare net/http", cmd: cmd, addr: addr, stderr: &logBuf{n: 64 << 10}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bare server: %w", err)
	}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	if err := p.waitReady(ctx, "http://"+addr+"/ready", 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

func (p *proc) waitReady(ctx context.Context, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited before it was ready: %s", p.name, p.stderr)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := http.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %s", p.name, within, p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM, then SIGKILL if the process lingers.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// memory reads a field of /proc/<pid>/status given in kB (VmRSS, VmHWM), in bytes.
func (p *proc) memory(field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse %s %q: %w", field, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/<pid>/status", field)
}

// cpuTime is the CPU the process has used so far, all threads, user and system (from
// /proc/<pid>/stat, in clock ticks of 10 ms: USER_HZ is 100 on Linux).
func (p *proc) cpuTime() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields after it.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("cannot read %q", b)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// metric reads one sample of the daemon's /metrics, the series named exactly as written there
// (labels in the sorted order Prometheus prints them).
func (p *proc) metric(series string) (float64, error) {
	vs, err := p.metrics(series)
	if err != nil {
		return 0, err
	}
	return vs[0], nil
}

// metrics reads several series from one scrape of the daemon's /metrics, in order.
func (p *proc) metrics(series ...string) ([]float64, error) {
	resp, err := http.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	vs := make([]float64, len(series))
	found := make([]bool, len(series))
	s := bufio.NewScanner(resp.Body)
	s.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for s.Scan() {
		for i, name := range series {
			if v, ok := strings.CutPrefix(s.Text(), name+" "); ok {
				if vs[i], err = strconv.ParseFloat(strings.TrimSpace(v), 64); err != nil {
					return nil, fmt.Errorf("%s: %w", name, err)
				}
				found[i] = true
			}
		}
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	for i, ok := range found {
		if !ok {
			return nil, fmt.Errorf("no series %s in /metrics", series[i])
		}
	}
	return vs, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// logBuf keeps the first n bytes of a subprocess's stderr, for error messages.
type logBuf struct {
	mu  sync.Mutex
	buf bytes.Buffer
	n   int
}

func (l *logBuf) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.n - l.buf.Len(); room > 0 {
		l.buf.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
