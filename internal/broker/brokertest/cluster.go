package brokertest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Cluster is a JetStream cluster of nats-server processes on loopback, as the scale-out mode runs
// against: each node has its own client port, route port and store directory. The test starts it,
// may kill and restart nodes, and it is stopped at cleanup.
type Cluster struct {
	t     testing.TB
	bin   string
	name  string
	nodes []*node
}

type node struct {
	name     string
	client   string // host:port of clients
	route    string // host:port of the cluster routes
	storeDir string
	logPath  string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
}

// NATSServer finds the nats-server binary: PASSERELLE_TEST_NATS_SERVER, then PATH, then
// /usr/sbin/nats-server. When there is none the test is skipped saying so, or fails when CI=true.
func NATSServer(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PASSERELLE_TEST_NATS_SERVER"); p != "" {
		return p
	}
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server"
	}
	msg := "missing: nats-server (apt-get install nats-server, or set PASSERELLE_TEST_NATS_SERVER)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// StartCluster starts n nats-server processes forming one JetStream cluster and waits until a
// stream of n replicas can be created on it.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: NATSServer(t), name: fmt.Sprintf("ptest%d", time.Now().UnixNano()%1e6)}
	dir := t.TempDir()
	for i := range n {
		c.nodes = append(c.nodes, &node{
			name: fmt.Sprintf("n%d", i+1), client: freeAddr(t), route: freeAddr(t),
			storeDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), logPath: filepath.Join(dir, fmt.Sprintf("n%d.log", i+1)),
		})
	}
	t.Cleanup(c.stopAll)
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitReady(60 * time.Second); err != nil {
		c.dumpLogs()
		t.Fatalf("nats cluster: %v", err)
	}
	return c
}

// URL lists every node, comma separated, as PASSERELLE_NATS_URL takes it.
func (c *Cluster) URL() string {
	urls := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		urls[i] = "nats://" + n.client
	}
	return strings.Join(urls, ",")
}

func (c *Cluster) start(i int) error {
	n := c.nodes[i]
	var routes []string
	for j, o := range c.nodes {
		if j != i {
			routes = append(routes, "nats://"+o.route)
		}
	}
	host, port, _ := net.SplitHostPort(n.client)
	rhost, rport, _ := net.SplitHostPort(n.route)
	f, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("nats %s log: %w", n.name, err)
	}
	defer f.Close()
	cmd := exec.Command(c.bin, "-a", host, "-p", port, "-n", n.name, "-js", "-sd", n.storeDir,
		"--cluster_name", c.name, "--cluster", "nats://"+rhost+":"+rport, "--routes", strings.Join(routes, ","))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start nats %s: %w", n.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	n.mu.Lock()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()
	return nil
}

// Kill ends node i with SIGKILL, as a crashed machine would, and waits for it to be gone. It does
// not fail the test itself, so that a test may call it from a goroutine of its own.
func (c *Cluster) Kill(i int) error {
	n := c.nodes[i]
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("nats %s still running 10s after SIGKILL", n.name)
	}
}

// Restart starts a killed node again on its ports and store, and waits for the cluster to take
// streams of every node again. Like Kill, it reports rather than fails.
func (c *Cluster) Restart(i int) error {
	if err := c.start(i); err != nil {
		return err
	}
	if err := c.WaitReady(60 * time.Second); err != nil {
		c.dumpLogs()
		return fmt.Errorf("nats cluster after restarting %s: %w", c.nodes[i].name, err)
	}
	return nil
}

// WaitReady waits until every node answers and the cluster can create, then delete, a stream of as
// many replicas as nodes: the meta leader is elected and every peer has joined.
func (c *Cluster) WaitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	probe := fmt.Sprintf("READY_%d", time.Now().UnixNano())
	var last error
	for time.Now().Before(deadline) {
		if last = c.tryProbe(probe); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %w", within, last)
}

func (c *Cluster) tryProbe(stream string) error {
	for _, n := range c.nodes {
		conn, err := net.DialTimeout("tcp", n.client, time.Second)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.name, err)
		}
		_ = conn.Close()
	}
	nc, err := nats.Connect(c.URL(), nats.Timeout(2*time.Second))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.MaxWait(5 * time.Second))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := js.AddStream(&nats.StreamConfig{Name: stream, Subjects: []string{"ready." + stream}, Replicas: len(c.nodes), Storage: nats.MemoryStorage}, nats.Context(ctx)); err != nil && !errors.Is(err, nats.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("probe stream: %w", err)
	}
	if err := js.DeleteStream(stream, nats.Context(ctx)); err != nil {
		return fmt.Errorf("delete probe stream: %w", err)
	}
	return nil
}

// StreamReplicas reports how many replicas stream has and how many of them are current (the
// leader plus current followers).
func (c *Cluster) StreamReplicas(stream string) (configured, current int, err error) {
	nc, err := nats.Connect(c.URL(), nats.Timeout(2*time.Second))
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return 0, 0, err
	}
	info, err := js.StreamInfo(stream)
	if err != nil {
		return 0, 0, err
	}
	configured = info.Config.Replicas
	if info.Cluster != nil && info.Cluster.Leader != "" {
		current = 1
		for _, p := range info.Cluster.Replicas {
			if p.Current {
				current++
			}
		}
	}
	return configured, current, nil
}

// StreamLeader is the index of the node leading stream, -1 when it has none.
func (c *Cluster) StreamLeader(stream string) (int, error) {
	nc, err := nats.Connect(c.URL(), nats.Timeout(2*time.Second))
	if err != nil {
		return -1, err
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		return -1, err
	}
	info, err := js.StreamInfo(stream)
	if err != nil {
		return -1, err
	}
	if info.Cluster != nil {
		for i, n := range c.nodes {
			if n.name == info.Cluster.Leader {
				return i, nil
			}
		}
	}
	return -1, nil
}

func (c *Cluster) stopAll() {
	for _, n := range c.nodes {
		n.mu.Lock()
		cmd, exited := n.cmd, n.exited
		n.cmd = nil
		n.mu.Unlock()
		if cmd == nil {
			continue
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	if c.t.Failed() {
		c.dumpLogs()
	}
}

func (c *Cluster) dumpLogs() {
	for _, n := range c.nodes {
		b, _ := os.ReadFile(n.logPath)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		c.t.Logf("nats %s log (tail):\n%s", n.name, b)
	}
}

// freeAddr is a loopback port that was free a moment ago: a subprocess cannot report the port it
// got for port 0.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}
