// Package broker is passerelle's message transport: Watermill over NATS JetStream, either an
// in-process server storing under the data dir (the default) or an external JetStream server, through
// the same code. It owns the settings that keep acknowledged messages from being lost or replayed
// (see the project's docs/architecture.md and the NATS notes it cites): one stream with limits,
// durable consumers created here and bound to, manual acks, a nack delay, and stable message ids.
package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
)

// Config says where the transport runs and how much it may keep.
type Config struct {
	URL     string // external JetStream server; empty runs one in-process
	DataDir string // embedded server's store lives in DataDir/nats
	// Listen opens a TCP port on the embedded server (for the nats CLI); empty opens none.
	Listen string
	// SyncInterval is how often the embedded server fsyncs; a power loss can lose up to this much.
	SyncInterval time.Duration
	MaxStore     int64         // embedded server's JetStream disk limit, bytes
	Stream       string        // stream name; default PASSERELLE
	Prefix       string        // subject prefix, so several installs share one server; default passerelle
	MaxAge       time.Duration // how long messages stay for replay; default 7 days
	MaxBytes     int64         // stream size limit; default 1 GiB
	// DuplicateWindow is how long JetStream remembers message ids to drop re-publishes. Its id table
	// costs memory under load, so it stays short; longer-lived dedupe is the store's job.
	DuplicateWindow time.Duration
	PublishTimeout  time.Duration // longest wait for a broker ack; default 10s
	// Replicas is how many servers of an external JetStream cluster keep the stream (and, by
	// inheritance, its consumers): 3 survives the loss of one node. Default 1; the embedded server
	// is a single node, so it takes only 1.
	Replicas int
}

func (c Config) withDefaults() Config {
	if c.Stream == "" {
		c.Stream = "PASSERELLE"
	}
	if c.Prefix == "" {
		c.Prefix = "passerelle"
	}
	if c.SyncInterval <= 0 {
		c.SyncInterval = time.Second
	}
	if c.MaxStore <= 0 {
		c.MaxStore = 4 << 30
	}
	if c.MaxAge <= 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = 1 << 30
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = 10 * time.Second
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	return c
}

// validate refuses what JetStream would refuse later with a less helpful error.
func (c Config) validate() error {
	switch {
	case c.Replicas > 5:
		return fmt.Errorf("broker: %d replicas: JetStream allows at most 5", c.Replicas)
	case c.Replicas > 1 && c.URL == "":
		return fmt.Errorf("broker: %d replicas need an external JetStream cluster: the embedded server is one node", c.Replicas)
	}
	return nil
}

// Broker holds the server (when embedded) and the connections of its publishers and subscribers.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	srv     *server.Server // nil when external
	admin   *nats.Conn
	js      nats.JetStreamContext
	metrics *Metrics

	mu    sync.Mutex
	conns []*nats.Conn
	subs  []*gatedSubscriber
}

// Open starts or connects to the server and makes sure the stream exists with the configured limits.
func Open(ctx context.Context, cfg Config, log *slog.Logger, m *Metrics) (*Broker, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b := &Broker{cfg: cfg, log: log, metrics: m}
	if cfg.URL == "" {
		if err := b.startEmbedded(); err != nil {
			return nil, err
		}
	}
	admin, err := b.connect("admin")
	if err != nil {
		b.Close()
		return nil, err
	}
	b.admin = admin
	if b.js, err = admin.JetStream(); err != nil {
		b.Close()
		return nil, fmt.Errorf("broker: jetstream context: %w", err)
	}
	if err := b.ensureStream(ctx); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

func (b *Broker) startEmbedded() error {
	dir := filepath.Join(b.cfg.DataDir, "nats")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("broker: create store dir: %w", err)
	}
	opts := &server.Options{
		ServerName:         "passerelle",
		JetStream:          true,
		StoreDir:           dir,
		SyncInterval:       b.cfg.SyncInterval,
		JetStreamMaxStore:  b.cfg.MaxStore,
		JetStreamMaxMemory: 64 << 20,
		DontListen:         b.cfg.Listen == "",
		NoSigs:             true, // otherwise SIGTERM becomes os.Exit(0) before our own graceful shutdown
		NoLog:              true,
	}
	if b.cfg.Listen != "" {
		host, port, err := splitHostPort(b.cfg.Listen)
		if err != nil {
			return err
		}
		opts.Host, opts.Port = host, port
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("broker: embedded server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("broker: embedded server not ready after 30s")
	}
	b.srv = srv
	return nil
}

// connect opens a connection of its own: watermill's publisher and subscriber close or drain the
// connection they are given, so sharing one would let one close the other's.
func (b *Broker) connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("passerelle-" + name), nats.MaxReconnects(-1)}
	url := b.cfg.URL
	if b.srv != nil {
		opts = append(opts, nats.InProcessServer(b.srv))
		url = ""
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("broker: connect %s: %w", name, err)
	}
	b.mu.Lock()
	b.conns = append(b.conns, nc)
	b.mu.Unlock()
	return nc, nil
}

func (b *Broker) ensureStream(ctx context.Context) error {
	sc := &nats.StreamConfig{
		Name:       b.cfg.Stream,
		Subjects:   []string{b.cfg.Prefix + ".>"},
		Retention:  nats.LimitsPolicy, // keep history for replays; consumers track their own position
		Storage:    nats.FileStorage,
		MaxAge:     b.cfg.MaxAge,
		MaxBytes:   b.cfg.MaxBytes,
		Discard:    nats.DiscardOld,
		Duplicates: b.cfg.DuplicateWindow,
		// Consumers created with Replicas 0 inherit this; an existing stream is scaled up or down
		// by the UpdateStream below.
		Replicas: b.cfg.Replicas,
	}
	var scaled bool
	err := retrySettling(ctx, func(ctx context.Context) error {
		info, err := b.js.StreamInfo(sc.Name, nats.Context(ctx))
		if errors.Is(err, nats.ErrStreamNotFound) {
			if _, err = b.js.AddStream(sc, nats.Context(ctx)); err == nil {
				return nil
			}
			// Another replica starting at the same time may have created it: then update it.
			var ierr error
			if info, ierr = b.js.StreamInfo(sc.Name, nats.Context(ctx)); ierr != nil {
				return fmt.Errorf("create stream %s: %w", sc.Name, err)
			}
		} else if err != nil {
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		}
		if sameStream(info.Config, *sc) {
			return nil // an update would only be one more proposal for the cluster to agree on
		}
		scaled = info.Config.Replicas != sc.Replicas
		if _, err := b.js.UpdateStream(sc, nats.Context(ctx)); err != nil {
			return fmt.Errorf("update stream %s: %w", sc.Name, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	if scaled {
		// Until the new peers catch up and a leader is elected, consumer requests time out. Wait
		// for that here rather than fail the first subscriber.
		return b.waitStreamSettled(ctx, sc.Name, sc.Replicas)
	}
	return nil
}

// sameStream is whether the settings passerelle sets already hold.
func sameStream(have, want nats.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Retention == want.Retention && have.Storage == want.Storage &&
		have.MaxAge == want.MaxAge && have.MaxBytes == want.MaxBytes && have.Discard == want.Discard &&
		have.Duplicates == want.Duplicates && max(have.Replicas, 1) == max(want.Replicas, 1)
}

// settleFor bounds how long Open and NewSubscriber retry JetStream requests that a cluster answers
// late or refuses while it settles: replicas starting together race to create the same stream and
// consumers, and a stream just created, scaled or whose leader died has no leader for a moment.
const settleFor = 60 * time.Second

// retrySettling runs f, each time with 5 s to answer, until it succeeds, fails with an error that
// is not a settling cluster's, or settleFor passes.
func retrySettling(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, settleFor)
	defer cancel()
	wait := 100 * time.Millisecond
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		err := f(actx)
		acancel()
		if err == nil || !settling(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (still failing after %s)", err, settleFor)
		case <-time.After(wait + rand.N(wait)):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// settling is whether err is what a JetStream cluster answers while it elects a leader or applies
// another replica's change: a timeout, no responder, or a 503 from the API.
func settling(err error) bool {
	var apiErr *nats.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrStreamNameAlreadyInUse) ||
		errors.Is(err, nats.ErrConsumerNameAlreadyInUse) || (errors.As(err, &apiErr) && apiErr.Code == 503)
}

// waitStreamSettled waits (30s at most) until the stream has a leader and replicas-1 current followers.
func (b *Broker) waitStreamSettled(ctx context.Context, name string, replicas int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		info, err := b.js.StreamInfo(name, nats.Context(ctx))
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" {
			current := 1
			for _, p := range info.Cluster.Replicas {
				if p.Current {
					current++
				}
			}
			if current == replicas && len(info.Cluster.Replicas)+1 == replicas {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("broker: stream %s not settled at %d replicas: %w", name, replicas, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Subject is the NATS subject of a topic.
func (b *Broker) Subject(topic string) string { return b.cfg.Prefix + "." + topic }

// Ping checks that the server answers, for /readyz.
func (b *Broker) Ping(ctx context.Context) error {
	if b.admin == nil || !b.admin.IsConnected() {
		return errors.New("broker: not connected")
	}
	_, err := b.js.AccountInfo(nats.Context(ctx))
	return err
}

// Backlog is what a durable consumer has not acknowledged yet.
type Backlog struct {
	// Messages waiting for the consumer or handed to it and not yet acked. A batch counts once.
	Messages uint64
	// Oldest is when the oldest of them was stored; zero when there is none.
	Oldest time.Time
}

// Backlog reports what a durable consumer has not acknowledged: its pending counts, and the
// stored time of the first message after its ack floor, which is the oldest one not acked.
func (b *Broker) Backlog(ctx context.Context, durable string) (Backlog, error) {
	info, err := b.js.ConsumerInfo(b.cfg.Stream, durable, nats.Context(ctx))
	if err != nil {
		return Backlog{}, fmt.Errorf("broker: consumer %s: %w", durable, err)
	}
	bl := Backlog{Messages: info.NumPending + uint64(info.NumAckPending)}
	if bl.Messages == 0 {
		return bl, nil
	}
	oldest, err := b.firstAfter(ctx, info.AckFloor.Stream, info.Config.FilterSubject)
	if errors.Is(err, nats.ErrMsgNotFound) {
		return bl, nil // acked or aged out since the consumer info was read
	}
	if err != nil {
		return Backlog{}, fmt.Errorf("broker: consumer %s: oldest pending: %w", durable, err)
	}
	bl.Oldest = oldest
	return bl, nil
}

// firstAfter is the stored time of the first message after seq on subject. The stream API's
// next_by_subj lookup does it in one request, with or without direct gets on the stream.
func (b *Broker) firstAfter(ctx context.Context, seq uint64, subject string) (time.Time, error) {
	req, err := json.Marshal(struct {
		Seq     uint64 `json:"seq"`
		NextFor string `json:"next_by_subj,omitempty"`
	}{seq + 1, subject})
	if err != nil {
		return time.Time{}, err
	}
	resp, err := b.admin.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+b.cfg.Stream, req)
	if err != nil {
		return time.Time{}, err
	}
	var r struct {
		Message *struct {
			Time time.Time `json:"time"`
		} `json:"message"`
		Error *struct {
			Code    int    `json:"code"`
			ErrCode int    `json:"err_code"`
			Desc    string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return time.Time{}, fmt.Errorf("stream message get: %w", err)
	}
	switch {
	case r.Error != nil && r.Error.Code == 404:
		return time.Time{}, nats.ErrMsgNotFound
	case r.Error != nil:
		return time.Time{}, fmt.Errorf("stream message get: %s (%d)", r.Error.Desc, r.Error.ErrCode)
	case r.Message == nil:
		return time.Time{}, errors.New("stream message get: empty answer")
	}
	return r.Message.Time, nil
}

// Close closes every connection and stops the embedded server. Publishers and subscribers must be
// closed first (the router does it) so in-flight acks reach the server.
func (b *Broker) Close() error {
	b.mu.Lock()
	conns, subs := b.conns, b.subs
	b.conns, b.subs = nil, nil
	b.mu.Unlock()
	// Subscribers first (a no-op for those already closed, a wait for those closing), so each
	// drains its own connection and none finds it closed under it.
	for _, s := range subs {
		if err := s.Close(); err != nil {
			b.log.Warn("broker: close subscriber", "error", err)
		}
	}
	for _, c := range conns {
		// A closed subscriber drains its connection in the background: let it finish (its last
		// acks go out) rather than cut it short.
		for deadline := time.Now().Add(5 * time.Second); c.IsDraining() && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
		c.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
		b.srv = nil
	}
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("broker: listen address %q: want host:port", addr)
	}
	var port int
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		return "", 0, fmt.Errorf("broker: listen address %q: bad port", addr)
	}
	return addr[:i], port, nil
}

// Metrics measures the transport.
type Metrics struct {
	publish *prometheus.HistogramVec
}

// NewMetrics registers the transport metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{publish: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "passerelle", Subsystem: "transport", Name: "publish_duration_seconds",
		Help:    "Time from publish to the broker's acknowledgement, by topic and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
	}, []string{"topic", "outcome"})}
	reg.MustRegister(m.publish)
	return m
}

func (m *Metrics) observePublish(topic string, start time.Time, err error) {
	if m == nil {
		return
	}
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.publish.WithLabelValues(topic, outcome).Observe(time.Since(start).Seconds())
}
