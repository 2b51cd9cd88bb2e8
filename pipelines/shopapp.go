package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/passerelle/passerelle/connectors/shopapp"
)

// Topics and event types of the Shop Application pipeline.
const (
	PipelineShopApp       = "shopapp"
	TopicShopAppEvents    = "shopapp.events"
	TopicShopAppProvision = "shopapp.provision"

	EventInterfaceCreated       = "interface.created"
	EventInterfaceStatusChanged = "interface.status_changed"
	EventPrestationAdded        = "prestation.added"
	EventPrestationCancelled    = "prestation.cancelled"

	nsShopAppSnapshot = "shopapp.snapshot"
	// nsShopAppReplayed holds the digests of the snapshots a replay applied: a second replay of
	// the same history applies none of them again.
	nsShopAppReplayed = "shopapp.replayed"
)

// ShopAppReader is what the poller needs from the Shop Application API.
type ShopAppReader interface {
	Interfaces(ctx context.Context) ([]string, error)
	Interface(ctx context.Context, key string) (shopapp.InterfaceDetail, error)
	InterfacePrestations(ctx context.Context, key string) ([]string, error)
	InterfacePrestation(ctx context.Context, key, codeOrRef string) ([]shopapp.PrestationOccurrence, error)
}

// SnapshotStore keeps the last snapshot of each interface; a poll replaces them in one transaction.
type SnapshotStore interface {
	ListState(ctx context.Context, ns string) (map[string][]byte, error)
	PutStates(ctx context.Context, ns string, kv map[string][]byte, deleted []string) error
	TryLock(ctx context.Context, name string) (release func(), ok bool, err error)
}

// InterfaceSnapshot is what the poller last saw of an interface.
type InterfaceSnapshot struct {
	Key          string                        `json:"key"`
	Status       int                           `json:"status"`
	CreatedAt    time.Time                     `json:"created_at"`
	DeletionAt   *time.Time                    `json:"deletion_at,omitempty"`
	StatusSeq    int                           `json:"status_seq"`  // bumps on each status change: part of the event id
	Prestations  map[string]PrestationSnapshot `json:"prestations"` // by reference_unique
	FirstSeenAt  time.Time                     `json:"first_seen_at"`
	LastChangeAt time.Time                     `json:"last_change_at"`
}

// PrestationSnapshot is one occurrence of a prestation.
type PrestationSnapshot struct {
	Code        string     `json:"code"`
	Ref         string     `json:"ref"`
	OrderedAt   time.Time  `json:"ordered_at"`
	CancelledAt *time.Time `json:"cancelled_at,omitempty"`
}

// ShopAppEvent is the payload of shopapp.events.
type ShopAppEvent struct {
	Type         string              `json:"type"`
	ID           string              `json:"id"`
	InterfaceKey string              `json:"interface_key"`
	ObservedAt   time.Time           `json:"observed_at"`
	Status       int                 `json:"status"`
	FromStatus   *int                `json:"from_status,omitempty"`
	CreatedAt    time.Time           `json:"created_at"`
	DeletionAt   *time.Time          `json:"deletion_at,omitempty"`
	Prestation   *PrestationSnapshot `json:"prestation,omitempty"`
}

// ShopAppPoller lists interfaces, compares them with the last snapshot and publishes the changes.
type ShopAppPoller struct {
	API         ShopAppReader
	Store       SnapshotStore
	Pub         ContextPublisher
	Concurrency int
	Log         *slog.Logger
	Now         func() time.Time
	Metrics     *ShopAppMetrics
}

// ShopAppMetrics measures polls.
type ShopAppMetrics struct {
	polls       *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	duration    prometheus.Histogram
	changes     *prometheus.CounterVec
}

// NewShopAppMetrics registers the poller's metrics.
func NewShopAppMetrics(reg prometheus.Registerer) *ShopAppMetrics {
	m := &ShopAppMetrics{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "shopapp",
			Name: "polls_total", Help: "Polls of Shop Application by outcome (ok, error, skipped when another replica holds the lock)."}, []string{"outcome"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "passerelle", Subsystem: "shopapp",
			Name: "last_successful_poll_timestamp_seconds", Help: "Unix time of the last poll that completed and was committed."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "passerelle", Subsystem: "shopapp",
			Name: "poll_duration_seconds", Help: "Duration of a whole poll.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "passerelle", Subsystem: "shopapp",
			Name: "changes_total", Help: "Changes found by the poller, by kind (event type)."}, []string{"kind"}),
	}
	for _, o := range []string{"ok", "error", "skipped"} {
		m.polls.WithLabelValues(o)
	}
	for _, k := range []string{EventInterfaceCreated, EventInterfaceStatusChanged, EventPrestationAdded, EventPrestationCancelled} {
		m.changes.WithLabelValues(k)
	}
	reg.MustRegister(m.polls, m.lastSuccess, m.duration, m.changes)
	return m
}

// PollResult says what one poll did.
type PollResult struct {
	Interfaces int
	Events     int
	Skipped    bool
}

// Poll runs one poll. Nothing is committed unless every call succeeded and every event is
// published: a poll that fails part-way is simply run again, and since events are derived from
// the committed snapshot with stable ids, a re-run publishes the same ids (which the broker and the
// receivers drop) and never an old change after a restart.
func (p *ShopAppPoller) Poll(ctx context.Context) (res PollResult, err error) {
	start := time.Now()
	defer func() {
		observePoll(p.Metrics.polls, p.Metrics.lastSuccess, p.Metrics.duration, start, err, res.Skipped)
	}()
	release, ok, err := p.Store.TryLock(ctx, "shopapp.poller")
	if err != nil {
		return res, fmt.Errorf("poller lock: %w", err)
	}
	if !ok {
		return PollResult{Skipped: true}, nil
	}
	defer release()

	prevRaw, err := p.Store.ListState(ctx, nsShopAppSnapshot)
	if err != nil {
		return res, fmt.Errorf("load snapshots: %w", err)
	}
	prev := make(map[string]InterfaceSnapshot, len(prevRaw))
	for k, v := range prevRaw {
		var s InterfaceSnapshot
		if err := json.Unmarshal(v, &s); err != nil {
			return res, fmt.Errorf("decode snapshot %s: %w", k, err)
		}
		prev[k] = s
	}
	current, err := p.fetchAll(ctx)
	if err != nil {
		return res, err
	}
	var gone []string
	for k := range prev {
		if _, ok := current[k]; !ok {
			gone = append(gone, k)
		}
	}
	n, _, err := p.apply(ctx, prevRaw, prev, current, gone, nil)
	if err != nil {
		return res, err
	}
	return PollResult{Interfaces: len(current), Events: n}, nil
}

// apply publishes the changes from prev to current and then commits current's snapshots (and
// deletes gone, and puts extra in the replay namespace) in one transaction: the step polls and
// replays share. It returns the number of events and the snapshots committed.
func (p *ShopAppPoller) apply(ctx context.Context, prevRaw map[string][]byte, prev, current map[string]InterfaceSnapshot, gone []string, extra map[string][]byte) (int, map[string]InterfaceSnapshot, error) {
	res := 0
	now := p.Now().UTC()
	events, next := DiffShopApp(prev, current, now)
	msgs := make([]*message.Message, 0, len(events))
	for _, ev := range events {
		payload, err := json.Marshal(ev)
		if err != nil {
			return res, nil, fmt.Errorf("encode event: %w", err)
		}
		m := message.NewMessage(ev.ID, payload)
		setMeta(m, ev.ID, PipelineShopApp, "shopapp", now)
		m.Metadata.Set(MetaOrderingKey, ev.InterfaceKey)
		msgs = append(msgs, m)
		p.Metrics.changes.WithLabelValues(ev.Type).Inc()
	}
	for i := 0; i < len(msgs); i += 256 {
		if err := p.Pub.PublishContext(ctx, TopicShopAppEvents, msgs[i:min(i+256, len(msgs))]...); err != nil {
			return res, nil, fmt.Errorf("publish changes: %w", err)
		}
	}
	kv := make(map[string][]byte, len(next))
	for k, s := range next {
		if old, ok := prevRaw[k]; ok && sameSnapshot(old, s) {
			continue
		}
		b, err := json.Marshal(s)
		if err != nil {
			return res, nil, err
		}
		kv[k] = b
	}
	if err := p.Store.PutStates(ctx, nsShopAppSnapshot, kv, gone); err != nil {
		return res, nil, fmt.Errorf("commit snapshots: %w", err)
	}
	if len(extra) > 0 {
		if err := p.Store.PutStates(ctx, nsShopAppReplayed, extra, nil); err != nil {
			return res, nil, fmt.Errorf("commit replayed snapshots: %w", err)
		}
	}
	return len(events), next, nil
}

func sameSnapshot(old []byte, s InterfaceSnapshot) bool {
	b, err := json.Marshal(s)
	return err == nil && string(b) == string(old)
}

// fetchAll reads every interface with bounded concurrency; the first error cancels the rest.
func (p *ShopAppPoller) fetchAll(ctx context.Context) (map[string]InterfaceSnapshot, error) {
	keys, err := p.API.Interfaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(p.Concurrency, 1))
	var mu sync.Mutex
	out := make(map[string]InterfaceSnapshot, len(keys))
	for _, key := range keys {
		g.Go(func() error {
			s, err := p.fetchOne(gctx, key)
			if err != nil {
				return fmt.Errorf("interface %s: %w", key, err)
			}
			mu.Lock()
			out[key] = s
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return out, nil
}

func (p *ShopAppPoller) fetchOne(ctx context.Context, key string) (InterfaceSnapshot, error) {
	d, err := p.API.Interface(ctx, key)
	if err != nil {
		return InterfaceSnapshot{}, err
	}
	codes, err := p.API.InterfacePrestations(ctx, key)
	if err != nil {
		return InterfaceSnapshot{}, err
	}
	seen := map[string]bool{}
	var all []shopapp.PrestationOccurrence
	for _, code := range codes {
		if seen[code] {
			continue // a code listed once per occurrence: its detail already lists them all
		}
		seen[code] = true
		occs, err := p.API.InterfacePrestation(ctx, key, code)
		if err != nil {
			return InterfaceSnapshot{}, err
		}
		all = append(all, occs...)
	}
	return interfaceSnapshotOf(key, d, all, p.Now()), nil
}

// interfaceSnapshotOf is what the poller keeps of an interface, from its detail and its prestations'
// occurrences; a cancellation without a date is dated now.
func interfaceSnapshotOf(key string, d shopapp.InterfaceDetail, occs []shopapp.PrestationOccurrence, now time.Time) InterfaceSnapshot {
	s := InterfaceSnapshot{Key: key, Status: int(d.Status), CreatedAt: d.Created.Time.UTC(), Prestations: map[string]PrestationSnapshot{}}
	if !d.DeletionDate.IsZero() {
		t := d.DeletionDate.Time.UTC()
		s.DeletionAt = &t
	}
	for _, o := range occs {
		ps := PrestationSnapshot{Code: o.Code, Ref: o.Reference, OrderedAt: o.Created.Time.UTC()}
		if o.Cancelled {
			t := o.CancelledAt.Time.UTC()
			if o.CancelledAt.IsZero() {
				t = now.UTC()
			}
			ps.CancelledAt = &t
		}
		ref := o.Reference
		if ref == "" {
			ref = o.Code
		}
		s.Prestations[ref] = ps
	}
	return s
}

// DiffShopApp compares the last snapshots with what the API shows now and returns the events, in a
// stable order, and the snapshots to keep. It is pure: ids derive from the interface, the kind and
// what changed, never from the clock, so the same change found twice has the same id.
func DiffShopApp(prev, current map[string]InterfaceSnapshot, now time.Time) ([]ShopAppEvent, map[string]InterfaceSnapshot) {
	keys := make([]string, 0, len(current))
	for k := range current {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var events []ShopAppEvent
	next := make(map[string]InterfaceSnapshot, len(current))
	for _, k := range keys {
		cur := current[k]
		old, known := prev[k]
		base := ShopAppEvent{InterfaceKey: k, ObservedAt: now, Status: cur.Status, CreatedAt: cur.CreatedAt, DeletionAt: cur.DeletionAt}
		if !known {
			cur.FirstSeenAt, cur.LastChangeAt = now, now
			ev := base
			ev.Type, ev.ID = EventInterfaceCreated, shopAppEventID(EventInterfaceCreated, k)
			events = append(events, ev)
		} else {
			cur.FirstSeenAt, cur.LastChangeAt, cur.StatusSeq = old.FirstSeenAt, old.LastChangeAt, old.StatusSeq
			if cur.Status != old.Status {
				cur.StatusSeq++
				cur.LastChangeAt = now
				from := old.Status
				ev := base
				ev.Type, ev.FromStatus = EventInterfaceStatusChanged, &from
				ev.ID = shopAppEventID(EventInterfaceStatusChanged, k, strconv.Itoa(cur.StatusSeq), strconv.Itoa(from), strconv.Itoa(cur.Status))
				events = append(events, ev)
			}
		}
		refs := make([]string, 0, len(cur.Prestations))
		for r := range cur.Prestations {
			refs = append(refs, r)
		}
		sort.Strings(refs)
		for _, r := range refs {
			ps := cur.Prestations[r]
			was, had := old.Prestations[r]
			if !had {
				ev := base
				ev.Type, ev.ID, ev.Prestation = EventPrestationAdded, shopAppEventID(EventPrestationAdded, k, r), &ps
				events = append(events, ev)
			}
			if ps.CancelledAt != nil && (!had || was.CancelledAt == nil) {
				ev := base
				ev.Type, ev.ID, ev.Prestation = EventPrestationCancelled, shopAppEventID(EventPrestationCancelled, k, r), &ps
				events = append(events, ev)
			}
		}
		next[k] = cur
	}
	return events, next
}

func shopAppEventID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "shopapp_" + hex.EncodeToString(h.Sum(nil)[:13])
}

// RunPoller polls every interval until ctx is done; a failed poll is retried sooner, with backoff.
//
// Of several replicas one polls: Run first takes the leader lock (a PostgreSQL advisory lock held
// for as long as this replica runs; in-process on SQLite) and the others try again every interval,
// so the poller moves within one interval of its replica's death. Each poll also takes its own lock,
// so that polls never overlap even if two replicas believed they led.
func (p *ShopAppPoller) Run(ctx context.Context, interval time.Duration) {
	for {
		release, ok, err := p.Store.TryLock(ctx, shopAppLeaderLock)
		switch {
		case err != nil && ctx.Err() == nil:
			p.Log.Warn("shopapp poller: leader lock", "error", err)
		case ok:
			p.Log.Info("this replica polls Shop Application")
			p.pollLoop(ctx, interval)
			release()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

// shopAppLeaderLock elects the replica that polls.
const shopAppLeaderLock = "shopapp.poller.leader"

// pollLoop polls every interval, sooner after a failure, until ctx is done.
func (p *ShopAppPoller) pollLoop(ctx context.Context, interval time.Duration) {
	wait := time.Duration(0)
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		res, err := p.Poll(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			failures++
			wait = min(interval, time.Duration(1<<min(failures, 8))*time.Second)
			p.Log.Warn("shopapp poll failed, nothing committed", "error", err, "retry_in", wait)
		default:
			failures = 0
			wait = interval
			if res.Events > 0 {
				p.Log.Info("shopapp poll", "interfaces", res.Interfaces, "changes", res.Events)
			}
		}
	}
}

// observePoll counts a poll by outcome (ok, error, skipped), times it unless it was skipped, and
// marks a success: what every poller reports.
func observePoll(polls *prometheus.CounterVec, lastSuccess prometheus.Gauge, duration prometheus.Observer, start time.Time, err error, skipped bool) {
	outcome := "ok"
	switch {
	case err != nil:
		outcome = "error"
	case skipped:
		outcome = "skipped"
	default:
		lastSuccess.SetToCurrentTime()
	}
	polls.WithLabelValues(outcome).Inc()
	if !skipped {
		duration.Observe(time.Since(start).Seconds())
	}
}

// ShopAppCRMEvent turns a shopapp.events payload into the CRM event of its type.
func ShopAppCRMEvent(payload []byte) (Event, error) {
	var ev ShopAppEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return Event{}, fmt.Errorf("decode shopapp event: %w", err)
	}
	return Event{Type: ev.Type, ID: ev.ID, Source: "shopapp", OccurredAt: ev.ObservedAt, Data: payload}, nil
}
