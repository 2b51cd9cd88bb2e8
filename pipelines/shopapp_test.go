package pipelines_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

// nsSnapshots is where the poller keeps its snapshots (pipelines' nsShopAppSnapshot).
const nsSnapshots = "shopapp.snapshot"

// pollerEnv is one run of the poller: a store, a broker, a publisher that counts, and a collector
// reading shopapp.events. Close it and open another on the same dir to restart.
type pollerEnv struct {
	dir     string
	store   *store.Store
	broker  *broker.Broker
	pub     *broker.Publisher
	counted *countingPub
	poller  *pipelines.ShopAppPoller
	reg     *prometheus.Registry
	col     *collector
	detach  func()
	closed  bool
}

func openPollerEnv(t *testing.T, dir string, api pipelines.ShopAppReader, clk *testClock, col *collector, concurrency int) *pollerEnv {
	t.Helper()
	e := &pollerEnv{dir: dir, col: col, reg: prometheus.NewRegistry()}
	e.store = openTestStore(t, dir)
	e.broker, e.pub = openTestBroker(t, dir)
	e.counted = &countingPub{Inner: e.pub}
	e.poller = &pipelines.ShopAppPoller{
		API: api, Store: e.store, Pub: e.counted, Concurrency: concurrency,
		Log: slog.New(slog.DiscardHandler), Now: clk.Now, Metrics: pipelines.NewShopAppMetrics(e.reg),
	}
	if col != nil {
		e.detach = col.attach(t, e.broker)
	}
	t.Cleanup(func() { e.close(t) })
	return e
}

func (e *pollerEnv) close(t *testing.T) {
	if e.closed {
		return
	}
	e.closed = true
	if e.detach != nil {
		e.col.drain(t, e.broker) // every ack reached the server: nothing comes back after a restart
		e.detach()
	}
	require.NoError(t, e.pub.Close())
	require.NoError(t, e.broker.Close())
	require.NoError(t, e.store.Close())
}

// describe renders an event as a line naming what changed, for comparisons.
func describe(ev pipelines.ShopAppEvent) string {
	switch ev.Type {
	case pipelines.EventInterfaceStatusChanged:
		from := "?"
		if ev.FromStatus != nil {
			from = strconv.Itoa(*ev.FromStatus)
		}
		return fmt.Sprintf("%s %s %s->%d", ev.Type, ev.InterfaceKey, from, ev.Status)
	case pipelines.EventPrestationAdded, pipelines.EventPrestationCancelled:
		if ev.Prestation == nil {
			return ev.Type + " " + ev.InterfaceKey + " <no prestation>"
		}
		return fmt.Sprintf("%s %s %s %s", ev.Type, ev.InterfaceKey, ev.Prestation.Code, ev.Prestation.Ref)
	}
	return ev.Type + " " + ev.InterfaceKey
}

func describeAll(evs []pipelines.ShopAppEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = describe(ev)
	}
	return out
}

// poll runs one poll and requires it to publish exactly want (event descriptions), each once, and
// the collector to receive exactly those, once each.
func (e *pollerEnv) poll(t *testing.T, want ...string) []pipelines.ShopAppEvent {
	t.Helper()
	ctx := context.Background()
	before, seen := len(e.counted.Published()), e.col.count()
	res, err := e.poller.Poll(ctx)
	require.NoError(t, err)
	require.False(t, res.Skipped)
	require.Equal(t, len(want), res.Events, "events of the poll")
	published := e.counted.Published()[before:]
	require.Len(t, published, len(want), "messages published by the poll")
	// The consumer's pending count can lag the publish ack: wait for the messages themselves.
	require.Eventually(t, func() bool { return e.col.count() >= seen+len(want) }, 15*time.Second, 5*time.Millisecond,
		"the collector never got the %d events of the poll", len(want))
	e.col.drain(t, e.broker)
	got := shopAppEvents(t, e.col.since(seen))
	if want == nil {
		want = []string{}
	}
	require.ElementsMatch(t, want, describeAll(got))
	require.Empty(t, e.col.duplicates(), "events delivered twice")
	ids := map[string]bool{}
	for _, ev := range got {
		require.NotEmpty(t, ev.ID)
		require.False(t, ids[ev.ID], "id %s used twice in one poll", ev.ID)
		ids[ev.ID] = true
		require.Contains(t, published, pipelines.TopicShopAppEvents+"/"+ev.ID, "message UUID is the event id")
	}
	return got
}

// simPrestations lists the occurrences of an interface in the simulator as "code ref".
func simPrestations(t *testing.T, sim *shopappsim.Sim, key string) []shopapp.PrestationOccurrence {
	t.Helper()
	si, ok := sim.Interface(key)
	require.True(t, ok, "interface %s in the simulator", key)
	return si.Prestations
}

// createActive orders interfaces through the API and finishes their installation.
func createActive(t *testing.T, c *shopapp.Client, sim *shopappsim.Sim, orders ...[]string) []string {
	t.Helper()
	keys := make([]string, len(orders))
	for i, o := range orders {
		key, err := c.CreateInterface(context.Background(), shopapp.CreateRequest{
			GUID: fmt.Sprintf("crm-%d-%s", i, o[0]), Prestations: o,
			Client: shopapp.Customer{LastName: "Client" + strconv.Itoa(i), Company: "Société " + strconv.Itoa(i), Email: fmt.Sprintf("c%d@example.com", i)},
		})
		require.NoError(t, err)
		require.NoError(t, sim.AdvanceInstall(key))
		keys[i] = key
	}
	return keys
}

func createdEvents(t *testing.T, sim *shopappsim.Sim, keys ...string) []string {
	var want []string
	for _, k := range keys {
		want = append(want, pipelines.EventInterfaceCreated+" "+k)
		for _, o := range simPrestations(t, sim, k) {
			want = append(want, fmt.Sprintf("%s %s %s %s", pipelines.EventPrestationAdded, k, o.Code, o.Reference))
		}
	}
	return want
}

var testOrders = [][]string{
	{"IN-BTQST-S", "IN-BTQZ-AMM"},
	{"IN-VITRINE-S", "IN-VITZ-AMA", "MO-NDD-A"},
	{"IN-CAISSE-S", "IN-CAISSE-AMM"},
}

// TestShopAppPollerSequence scripts the simulator through creations, a deletion request, additions,
// a cancellation and a restart, and requires each poll to publish exactly the changes, once.
func TestShopAppPollerSequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newTestClock(parisTime(t, "2026-10-15 10:00"))
	sim := startSim(t, clk)
	client := newSimClient(t, sim, 1)
	keys := createActive(t, client, sim, testOrders...)
	dir := t.TempDir()
	col := newCollector(pipelines.TopicShopAppEvents, "test_collector")
	env := openPollerEnv(t, dir, client, clk, col, 4)

	// Poll 1: three interfaces and their seven prestations.
	first := env.poll(t, createdEvents(t, sim, keys...)...)
	for _, ev := range first {
		require.Equal(t, int(shopapp.StatusActive), ev.Status)
		require.True(t, ev.ObservedAt.Equal(clk.Now()), "observed at the poller's clock")
		require.Equal(t, parisTime(t, "2026-10-15 10:00").UTC(), ev.CreatedAt)
	}

	// Poll 2: nothing changed, nothing published.
	clk.Advance(5 * time.Minute)
	env.poll(t)

	// Deletion requested: 1 -> 2, with the deletion date 90 days later.
	clk.Advance(5 * time.Minute)
	del, err := client.DeleteInterface(ctx, keys[0])
	require.NoError(t, err)
	evs := env.poll(t, fmt.Sprintf("%s %s 1->2", pipelines.EventInterfaceStatusChanged, keys[0]))
	require.NotNil(t, evs[0].DeletionAt)
	require.True(t, evs[0].DeletionAt.Equal(del), "deletion date %s, API said %s", evs[0].DeletionAt, del)
	require.Equal(t, parisTime(t, "2027-01-13 10:10").UTC(), evs[0].DeletionAt.UTC())

	// Two occurrences of one code added, plus another code.
	clk.Advance(5 * time.Minute)
	added, err := client.AddPrestations(ctx, keys[1], []string{"MO-TRADUCTION-S", "MO-TRADUCTION-S", "MO-SEO-M"})
	require.NoError(t, err)
	require.Len(t, added, 3)
	var want []string
	for _, a := range added {
		want = append(want, fmt.Sprintf("%s %s %s %s", pipelines.EventPrestationAdded, keys[1], a.Code, a.Reference))
	}
	env.poll(t, want...)

	// One occurrence cancelled by its reference_unique: only that one.
	clk.Advance(5 * time.Minute)
	cancelled, err := client.CancelPrestation(ctx, keys[1], added[1].Reference)
	require.NoError(t, err)
	require.Len(t, cancelled, 1)
	evs = env.poll(t, fmt.Sprintf("%s %s MO-TRADUCTION-S %s", pipelines.EventPrestationCancelled, keys[1], added[1].Reference))
	require.NotNil(t, evs[0].Prestation.CancelledAt)
	require.True(t, evs[0].Prestation.CancelledAt.Equal(clk.Now()))

	// Restart: close everything, reopen on the same dirs. Nothing is published again.
	published := len(env.counted.Published())
	env.close(t)
	clk.Advance(5 * time.Minute)
	env = openPollerEnv(t, dir, client, clk, col, 4)
	env.poll(t)
	require.Equal(t, published, col.count(), "nothing redelivered after the restart")

	// A new change after the restart: exactly its event.
	clk.Advance(5 * time.Minute)
	_, err = client.ReactivateInterface(ctx, keys[0])
	require.NoError(t, err)
	evs = env.poll(t, fmt.Sprintf("%s %s 2->1", pipelines.EventInterfaceStatusChanged, keys[0]))
	require.Nil(t, evs[0].DeletionAt)
	clk.Advance(5 * time.Minute)
	env.poll(t)

	// A second deletion request gets a new id, though it is again 1 -> 2.
	_, err = client.DeleteInterface(ctx, keys[0])
	require.NoError(t, err)
	again := env.poll(t, fmt.Sprintf("%s %s 1->2", pipelines.EventInterfaceStatusChanged, keys[0]))
	all := shopAppEvents(t, col.since(0))
	ids := map[string]int{}
	for _, ev := range all {
		ids[ev.ID]++
	}
	require.Equal(t, 1, ids[again[0].ID], "the second deletion request has an id of its own")
	require.Len(t, ids, len(all), "every event has an id of its own")
}

// TestShopAppPollerPartialFailure: a poll whose detail calls fail after the list succeeded
// publishes and commits nothing; the next poll publishes the changes exactly once.
func TestShopAppPollerPartialFailure(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newTestClock(parisTime(t, "2026-10-15 10:00"))
	sim := startSim(t, clk)
	client := newSimClient(t, sim, 1) // two attempts per call
	keys := createActive(t, client, sim, testOrders...)
	col := newCollector(pipelines.TopicShopAppEvents, "test_collector")
	env := openPollerEnv(t, t.TempDir(), client, clk, col, 1)
	env.poll(t, createdEvents(t, sim, keys...)...)
	committed, err := env.store.ListState(ctx, nsSnapshots)
	require.NoError(t, err)
	require.Len(t, committed, 3)

	clk.Advance(5 * time.Minute)
	_, err = client.DeleteInterface(ctx, keys[2])
	require.NoError(t, err)
	added, err := client.AddPrestations(ctx, keys[0], []string{"MO-SEO-M"})
	require.NoError(t, err)

	// The list, the first interface's detail and its list of codes succeed; the detail of its
	// first code fails on both attempts.
	sim.ResetCalls()
	sim.SetFault(shopappsim.Fault{Status: 500, Route: shopapp.RouteInterfacePrestation, Remaining: 2})
	before, seen := len(env.counted.Published()), col.count()
	res, err := env.poller.Poll(ctx)
	require.Error(t, err)
	require.Zero(t, res.Events)
	calls := sim.Calls()
	require.Equal(t, 1, calls[shopapp.RouteInterfaces], "the list succeeded")
	require.Equal(t, 2, calls[shopapp.RouteInterfacePrestation], "one detail call, retried once")
	require.Len(t, env.counted.Published(), before, "a failed poll publishes nothing")
	after, err := env.store.ListState(ctx, nsSnapshots)
	require.NoError(t, err)
	require.Equal(t, committed, after, "a failed poll commits nothing")
	v, ok := gathered(t, env.reg, "passerelle_shopapp_polls_total", map[string]string{"outcome": "error"})
	require.True(t, ok)
	require.Equal(t, 1.0, v)

	clk.Advance(5 * time.Minute)
	env.poll(t,
		fmt.Sprintf("%s %s 1->2", pipelines.EventInterfaceStatusChanged, keys[2]),
		fmt.Sprintf("%s %s MO-SEO-M %s", pipelines.EventPrestationAdded, keys[0], added[0].Reference),
	)
	require.Equal(t, seen+2, col.count())
	clk.Advance(5 * time.Minute)
	env.poll(t)
}

// TestShopAppPollerStableIDs: two fresh pollers over the same state publish the same ids, and so
// do two pollers on copies of one committed state for the same change.
func TestShopAppPollerStableIDs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newTestClock(parisTime(t, "2026-10-15 10:00"))
	sim := startSim(t, clk)
	client := newSimClient(t, sim, 1)
	keys := createActive(t, client, sim, testOrders...)
	_, err := client.DeleteInterface(ctx, keys[1])
	require.NoError(t, err)

	a := openPollerEnv(t, t.TempDir(), client, clk, nil, 4)
	clk.Advance(time.Minute) // the second poller runs later: ids must not depend on the clock
	b := openPollerEnv(t, t.TempDir(), client, clk, nil, 2)
	ra, err := a.poller.Poll(ctx)
	require.NoError(t, err)
	rb, err := b.poller.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, 10, ra.Events)
	require.Equal(t, ra.Events, rb.Events)
	require.Equal(t, sorted(a.counted.Published()), sorted(b.counted.Published()))

	// c starts from a copy of a's committed snapshots.
	snaps, err := a.store.ListState(ctx, nsSnapshots)
	require.NoError(t, err)
	c := openPollerEnv(t, t.TempDir(), client, clk, nil, 1)
	require.NoError(t, c.store.PutStates(ctx, nsSnapshots, snaps, nil))

	clk.Advance(time.Hour)
	_, err = client.ReactivateInterface(ctx, keys[1])
	require.NoError(t, err)
	_, err = client.CancelPrestation(ctx, keys[0], "IN-BTQZ-AMM")
	require.NoError(t, err)
	na, nc := len(a.counted.Published()), len(c.counted.Published())
	_, err = a.poller.Poll(ctx)
	require.NoError(t, err)
	clk.Advance(time.Minute)
	_, err = c.poller.Poll(ctx)
	require.NoError(t, err)
	ida, idc := a.counted.Published()[na:], c.counted.Published()[nc:]
	require.Len(t, ida, 2)
	require.Equal(t, sorted(ida), sorted(idc))
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// TestShopAppPollerMetricsAndLock: the last-success gauge moves only on a committed poll, and a
// poll that finds the leader lock taken is skipped without touching anything.
func TestShopAppPollerMetricsAndLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newTestClock(parisTime(t, "2026-10-15 10:00"))
	sim := startSim(t, clk)
	client := newSimClient(t, sim, 0)
	createActive(t, client, sim, testOrders[0])
	env := openPollerEnv(t, t.TempDir(), client, clk, nil, 2)

	last := func() float64 {
		v, ok := gathered(t, env.reg, "passerelle_shopapp_last_successful_poll_timestamp_seconds", nil)
		require.True(t, ok)
		return v
	}
	require.Zero(t, last())

	sim.SetFault(shopappsim.Fault{Status: 500, Route: shopapp.RouteInterfaces})
	_, err := env.poller.Poll(ctx)
	require.Error(t, err)
	require.Zero(t, last(), "a failed poll is no success")
	sim.ClearFault()

	start := time.Now()
	res, err := env.poller.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, 3, res.Events)
	got := last()
	require.GreaterOrEqual(t, got, float64(start.Unix()))
	require.LessOrEqual(t, got, float64(time.Now().Unix()+1))
	v, _ := gathered(t, env.reg, "passerelle_shopapp_polls_total", map[string]string{"outcome": "ok"})
	require.Equal(t, 1.0, v)
	v, _ = gathered(t, env.reg, "passerelle_shopapp_changes_total", map[string]string{"kind": pipelines.EventPrestationAdded})
	require.Equal(t, 2.0, v)

	release, ok, err := env.store.TryLock(ctx, "shopapp.poller")
	require.NoError(t, err)
	require.True(t, ok)
	sim.ResetCalls()
	res, err = env.poller.Poll(ctx)
	release()
	require.NoError(t, err)
	require.True(t, res.Skipped)
	require.Empty(t, sim.Calls(), "a skipped poll calls nothing")
	v, _ = gathered(t, env.reg, "passerelle_shopapp_polls_total", map[string]string{"outcome": "skipped"})
	require.Equal(t, 1.0, v)
}

func TestDiffShopApp(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 10, 1, 8, 0, 0, 0, time.UTC)
	now := t0.Add(24 * time.Hour)
	del := time.Date(2027, 1, 13, 9, 0, 0, 0, time.UTC)
	ps := func(code, ref string, cancelled *time.Time) pipelines.PrestationSnapshot {
		return pipelines.PrestationSnapshot{Code: code, Ref: ref, OrderedAt: t0, CancelledAt: cancelled}
	}
	snap := func(key string, status int, prest ...pipelines.PrestationSnapshot) pipelines.InterfaceSnapshot {
		s := pipelines.InterfaceSnapshot{Key: key, Status: status, CreatedAt: t0, Prestations: map[string]pipelines.PrestationSnapshot{}}
		for _, p := range prest {
			s.Prestations[p.Ref] = p
		}
		return s
	}
	known := func(s pipelines.InterfaceSnapshot, seq int) pipelines.InterfaceSnapshot {
		s.StatusSeq, s.FirstSeenAt, s.LastChangeAt = seq, t0, t0
		return s
	}
	deactivated := snap("A", 2, ps("IN-BTQST-S", "r1", nil))
	deactivated.DeletionAt = &del

	tests := []struct {
		name      string
		prev, cur map[string]pipelines.InterfaceSnapshot
		want      []string // in order
		wantSeq   map[string]int
	}{
		{
			name: "first sight: created, then its prestations by reference",
			prev: nil,
			cur:  map[string]pipelines.InterfaceSnapshot{"B": snap("B", 3, ps("X", "r2", nil), ps("X", "r1", nil)), "A": snap("A", 1)},
			want: []string{"interface.created A", "interface.created B", "prestation.added B X r1", "prestation.added B X r2"},
		},
		{
			name: "no change",
			prev: map[string]pipelines.InterfaceSnapshot{"A": known(snap("A", 1, ps("X", "r1", nil)), 0)},
			cur:  map[string]pipelines.InterfaceSnapshot{"A": snap("A", 1, ps("X", "r1", nil))},
			want: nil,
		},
		{
			name:    "status change with its from status",
			prev:    map[string]pipelines.InterfaceSnapshot{"A": known(snap("A", 1, ps("IN-BTQST-S", "r1", nil)), 0)},
			cur:     map[string]pipelines.InterfaceSnapshot{"A": deactivated},
			want:    []string{"interface.status_changed A 1->2"},
			wantSeq: map[string]int{"A": 1},
		},
		{
			name: "added and cancelled",
			prev: map[string]pipelines.InterfaceSnapshot{"A": known(snap("A", 1, ps("X", "r1", nil)), 0)},
			cur:  map[string]pipelines.InterfaceSnapshot{"A": snap("A", 1, ps("X", "r1", &now), ps("Y", "r2", nil))},
			want: []string{"prestation.cancelled A X r1", "prestation.added A Y r2"},
		},
		{
			name: "added already cancelled between two polls",
			prev: map[string]pipelines.InterfaceSnapshot{"A": known(snap("A", 1), 0)},
			cur:  map[string]pipelines.InterfaceSnapshot{"A": snap("A", 1, ps("X", "r1", &now))},
			want: []string{"prestation.added A X r1", "prestation.cancelled A X r1"},
		},
		{
			name: "a cancellation is reported once",
			prev: map[string]pipelines.InterfaceSnapshot{"A": known(snap("A", 1, ps("X", "r1", &t0)), 0)},
			cur:  map[string]pipelines.InterfaceSnapshot{"A": snap("A", 1, ps("X", "r1", &now))},
			want: nil,
		},
		{
			name: "an interface gone from the list is dropped silently",
			prev: map[string]pipelines.InterfaceSnapshot{"A": known(snap("A", 1), 0), "B": known(snap("B", 1), 0)},
			cur:  map[string]pipelines.InterfaceSnapshot{"A": snap("A", 1)},
			want: nil,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			evs, next := pipelines.DiffShopApp(tc.prev, tc.cur, now)
			require.Equal(t, tc.want, nilIfEmpty(describeAll(evs)))
			require.Len(t, next, len(tc.cur))
			for k, s := range next {
				require.Equal(t, tc.wantSeq[k], s.StatusSeq, "status seq of %s", k)
				if _, ok := tc.prev[k]; ok {
					require.Equal(t, t0, s.FirstSeenAt, "first seen kept")
				} else {
					require.Equal(t, now, s.FirstSeenAt)
				}
			}
			for _, ev := range evs {
				require.Equal(t, now, ev.ObservedAt)
				require.Equal(t, tc.cur[ev.InterfaceKey].Status, ev.Status)
			}
			// Pure and clock-free ids: the same inputs a day later give the same ids.
			again, _ := pipelines.DiffShopApp(tc.prev, tc.cur, now.Add(24*time.Hour))
			require.Equal(t, ids(evs), ids(again))
		})
	}

	t.Run("each status change has its own id", func(t *testing.T) {
		t.Parallel()
		s := map[string]pipelines.InterfaceSnapshot{"A": known(snap("A", 1), 0)}
		var got []string
		for _, st := range []int{2, 1, 2} {
			evs, next := pipelines.DiffShopApp(s, map[string]pipelines.InterfaceSnapshot{"A": snap("A", st)}, now)
			require.Len(t, evs, 1)
			got = append(got, evs[0].ID)
			s = next
		}
		require.Equal(t, 3, s["A"].StatusSeq)
		require.Len(t, slices.Compact(sorted(got)), 3, "1->2, 2->1, 1->2: three ids")
	})
	t.Run("event JSON", func(t *testing.T) {
		t.Parallel()
		evs, _ := pipelines.DiffShopApp(
			map[string]pipelines.InterfaceSnapshot{"A": known(snap("A", 1), 0)},
			map[string]pipelines.InterfaceSnapshot{"A": deactivated}, now)
		b, err := json.Marshal(evs[0])
		require.NoError(t, err)
		var m map[string]any
		require.NoError(t, json.Unmarshal(b, &m))
		require.Equal(t, "interface.status_changed", m["type"])
		require.EqualValues(t, 1, m["from_status"])
		require.EqualValues(t, 2, m["status"])
		require.Equal(t, "2027-01-13T09:00:00Z", m["deletion_at"])
		require.NotContains(t, m, "prestation")
	})
}

func ids(evs []pipelines.ShopAppEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.ID
	}
	return out
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}
