package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// base is a millisecond-exact instant: the store keeps milliseconds, so times compare equal.
var base = time.Date(2025, 3, 14, 9, 26, 53, 589_000_000, time.UTC)

// runContract checks every Store method against s. Both dialects must pass it unchanged; s must be
// freshly opened on an empty database.
func runContract(t *testing.T, s *Store) {
	t.Run("Ping", func(t *testing.T) {
		require.NoError(t, s.Ping(t.Context()))
	})
	t.Run("DedupeKeys", func(t *testing.T) { testDedupeKeys(t, s) })
	t.Run("DeliveryLog", func(t *testing.T) { testDeliveryLog(t, s) })
	t.Run("Endpoints", func(t *testing.T) { testEndpoints(t, s) })
	t.Run("DeadLetters", func(t *testing.T) { testDeadLetters(t, s) })
	t.Run("State", func(t *testing.T) { testState(t, s) })
	t.Run("Billing", func(t *testing.T) { testBilling(t, s) })
	t.Run("TryLock", func(t *testing.T) { testTryLock(t, s) })
	t.Run("Clients", func(t *testing.T) { testClients(t, s) })
}

func testDedupeKeys(t *testing.T, s *Store) {
	ctx := t.Context()
	require.NoError(t, s.CommitKeys(ctx, "leads", []KeyClaim{{"email:a@example.com", "ev-1"}}, base))
	require.NoError(t, s.CommitKeys(ctx, "leads", []KeyClaim{{"email:old@example.com", "ev-0"}}, base.Add(-48*time.Hour)))

	check := func(t *testing.T, scope, key string, since time.Time, wantID string, wantSeen bool) {
		t.Helper()
		many, err := s.SeenKeys(ctx, scope, []string{key, "email:never@example.com"}, since)
		require.NoError(t, err)
		id, seen := many[key]
		assert.Equal(t, wantSeen, seen, "seen")
		assert.Equal(t, wantID, id, "event id")
		assert.Len(t, many, map[bool]int{true: 1, false: 0}[wantSeen], "only committed keys answer")
	}
	for _, tc := range []struct {
		name     string
		scope    string
		key      string
		since    time.Time
		wantID   string
		wantSeen bool
	}{
		{"inside window", "leads", "email:a@example.com", base.Add(-time.Hour), "ev-1", true},
		{"window starts at commit", "leads", "email:a@example.com", base, "ev-1", true},
		{"committed before window", "leads", "email:a@example.com", base.Add(time.Millisecond), "", false},
		{"other scope", "clients", "email:a@example.com", base.Add(-time.Hour), "", false},
		{"unknown key", "leads", "email:b@example.com", time.Time{}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) { check(t, tc.scope, tc.key, tc.since, tc.wantID, tc.wantSeen) })
	}

	t.Run("batch lookup of more keys than one query holds", func(t *testing.T) {
		keys := make([]string, 1200)
		for i := range keys {
			keys[i] = fmt.Sprintf("bulk:%d", i)
			if i%100 == 0 {
				require.NoError(t, s.CommitKeys(ctx, "bulk", []KeyClaim{{keys[i], fmt.Sprintf("ev-bulk-%d", i)}}, base))
			}
		}
		many, err := s.SeenKeys(ctx, "bulk", keys, base.Add(-time.Hour))
		require.NoError(t, err)
		assert.Len(t, many, 12)
		assert.Equal(t, "ev-bulk-1100", many["bulk:1100"])
		none, err := s.SeenKeys(ctx, "bulk", nil, time.Time{})
		require.NoError(t, err)
		assert.Empty(t, none)
	})
	t.Run("claims committed together", func(t *testing.T) {
		require.NoError(t, s.CommitKeys(ctx, "batch", []KeyClaim{{"k1", "ev-k1"}, {"k2", "ev-k2"}}, base))
		require.NoError(t, s.CommitKeys(ctx, "batch", nil, base))
		got, err := s.SeenKeys(ctx, "batch", []string{"k1", "k2", "k3"}, base.Add(-time.Hour))
		require.NoError(t, err)
		assert.Equal(t, map[string]string{"k1": "ev-k1", "k2": "ev-k2"}, got)
	})
	t.Run("later commit refreshes", func(t *testing.T) {
		require.NoError(t, s.CommitKeys(ctx, "leads", []KeyClaim{{"email:a@example.com", "ev-2"}}, base.Add(2*time.Hour)))
		check(t, "leads", "email:a@example.com", base.Add(time.Hour), "ev-2", true)
	})
	t.Run("earlier commit does not move back", func(t *testing.T) {
		require.NoError(t, s.CommitKeys(ctx, "leads", []KeyClaim{{"email:a@example.com", "ev-3"}}, base))
		check(t, "leads", "email:a@example.com", base.Add(time.Hour), "ev-2", true)
	})
	t.Run("prune", func(t *testing.T) {
		n, err := s.PruneKeys(ctx, base.Add(-time.Hour))
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "pruned keys")
		check(t, "leads", "email:old@example.com", time.Time{}, "", false)
		check(t, "leads", "email:a@example.com", time.Time{}, "ev-2", true)

		n, err = s.PruneKeys(ctx, base.Add(-time.Hour))
		require.NoError(t, err)
		assert.Equal(t, int64(0), n, "pruned keys on second run")
	})
}

func testDeliveryLog(t *testing.T, s *Store) {
	ctx := t.Context()
	const (
		ev  = "ev-deliv"
		crm = "https://crm.example.com/hooks/leads?token=s3cret"
		hub = "https://hub.example.com/webhook"
	)
	delivery := func(t *testing.T, ev, endpoint string) (Delivery, bool) {
		t.Helper()
		got, err := s.DeliveriesTo(ctx, endpoint, []string{ev})
		require.NoError(t, err)
		d, ok := got[ev]
		return d, ok
	}
	record := func(t *testing.T, ev, endpoint string, attempts, status int, lastErr string, delivered bool, at time.Time) {
		t.Helper()
		require.NoError(t, s.RecordAttempts(ctx, []Attempt{{EventID: ev, Endpoint: endpoint, Attempts: attempts,
			Status: status, LastError: lastErr, Delivered: delivered, At: at}}))
	}
	_, ok := delivery(t, ev, crm)
	assert.False(t, ok, "delivery before any attempt")

	steps := []struct {
		name      string
		attempts  int
		status    int
		lastErr   string
		delivered bool
		at        time.Time
		want      Delivery
	}{
		{"first failure", 1, 503, "service unavailable", false, base,
			Delivery{ev, crm, 1, 503, "service unavailable", false, base, base}},
		{"retries then success", 2, 200, "", true, base.Add(time.Minute),
			Delivery{ev, crm, 3, 200, "", true, base, base.Add(time.Minute)}},
		{"late failure stays delivered", 1, 500, "boom", false, base.Add(2 * time.Minute),
			Delivery{ev, crm, 4, 500, "boom", true, base, base.Add(2 * time.Minute)}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			record(t, ev, crm, st.attempts, st.status, st.lastErr, st.delivered, st.at)
			got, ok := delivery(t, ev, crm)
			require.True(t, ok)
			assert.Equal(t, st.want, got)
		})
	}

	t.Run("per event listing", func(t *testing.T) {
		record(t, ev, hub, 1, 0, "dial tcp: refused", false, base)
		record(t, "ev-other", hub, 1, 200, "", true, base)
		got, err := s.Deliveries(ctx, ev)
		require.NoError(t, err)
		require.Len(t, got, 2)
		assert.Equal(t, crm, got[0].Endpoint, "ordered by endpoint")
		assert.Equal(t, Delivery{ev, hub, 1, 0, "dial tcp: refused", false, base, base}, got[1])

		got, err = s.Deliveries(ctx, "ev-none")
		require.NoError(t, err)
		assert.Empty(t, got)
	})

	t.Run("a batch of attempts in one call, looked up by endpoint", func(t *testing.T) {
		const ep = "https://batch.example.com/hook"
		require.NoError(t, s.RecordAttempts(ctx, []Attempt{
			{EventID: "ev-b1", Endpoint: ep, Attempts: 1, Status: 200, Delivered: true, At: base},
			{EventID: "ev-b2", Endpoint: ep, Attempts: 2, Status: 503, LastError: "unavailable", At: base},
			{EventID: "ev-b2", Endpoint: ep, Attempts: 1, Status: 200, Delivered: true, At: base.Add(time.Second)},
			{EventID: "ev-b3", Endpoint: hub, Attempts: 1, Status: 200, Delivered: true, At: base},
		}))
		require.NoError(t, s.RecordAttempts(ctx, nil))
		got, err := s.DeliveriesTo(ctx, ep, []string{"ev-b1", "ev-b2", "ev-b3", "ev-never"})
		require.NoError(t, err)
		assert.Equal(t, map[string]Delivery{
			"ev-b1": {"ev-b1", ep, 1, 200, "", true, base, base},
			"ev-b2": {"ev-b2", ep, 3, 200, "", true, base, base.Add(time.Second)},
		}, got, "summed within the call; other endpoints and unknown events absent")
		none, err := s.DeliveriesTo(ctx, ep, nil)
		require.NoError(t, err)
		assert.Empty(t, none)
	})
}

func testEndpoints(t *testing.T, s *Store) {
	ctx := t.Context()
	const a, b = "https://a.example.com/hook", "https://b.example.com/hook"
	assertDisabled := func(t *testing.T, endpoint, wantReason string, want bool) {
		t.Helper()
		reason, disabled, err := s.EndpointDisabled(ctx, endpoint)
		require.NoError(t, err)
		assert.Equal(t, want, disabled, "disabled")
		assert.Equal(t, wantReason, reason, "reason")
	}

	assertDisabled(t, a, "", false)
	require.NoError(t, s.DisableEndpoint(ctx, a, "410 Gone", base))
	require.NoError(t, s.DisableEndpoint(ctx, b, "410 Gone", base))
	assertDisabled(t, a, "410 Gone", true)

	require.NoError(t, s.DisableEndpoint(ctx, a, "410 Gone again", base.Add(time.Hour)), "disable twice")
	assertDisabled(t, a, "410 Gone again", true)

	all, err := s.DisabledEndpoints(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{a: "410 Gone again", b: "410 Gone"}, all)

	require.NoError(t, s.EnableEndpoint(ctx, a))
	require.NoError(t, s.EnableEndpoint(ctx, a), "enable twice")
	assertDisabled(t, a, "", false)

	all, err = s.DisabledEndpoints(ctx)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{b: "410 Gone"}, all)
}

func testDeadLetters(t *testing.T, s *Store) {
	ctx := t.Context()
	letters := []DeadLetter{
		{Pipeline: "leads", Topic: "leads.normalized", EventID: "ev-a", Payload: []byte(`{"email":"a@example.com"}`),
			Metadata: map[string]string{"source": "iciformation", "correlation_id": "c-1"}, Error: "crm: 422", CreatedAt: base},
		// Bytes that are not valid UTF-8 and a NUL: the payload column must be binary, not text.
		{Pipeline: "billing", Topic: "billing.rows", EventID: "ev-b", Payload: []byte{0x00, 0xff, 0xfe, 'x'},
			Error: "sftp: permission denied", CreatedAt: base.Add(time.Second)},
		{Pipeline: "leads", Topic: "leads.normalized", EventID: "ev-c", Payload: nil,
			Metadata: map[string]string{}, Error: "timeout", CreatedAt: base.Add(2 * time.Second)},
	}
	var ids []int64
	for _, d := range letters {
		d.ID = 999 // ignored
		id, err := s.AddDeadLetter(ctx, d)
		require.NoError(t, err)
		if len(ids) > 0 {
			require.Greater(t, id, ids[len(ids)-1], "ids increase")
		}
		ids = append(ids, id)
	}
	// What a read returns: the assigned ID, nil Payload as empty, empty Metadata as nil.
	want := make([]DeadLetter, len(letters))
	for i, d := range letters {
		d.ID = ids[i]
		d.Payload = nonNil(d.Payload)
		if len(d.Metadata) == 0 {
			d.Metadata = nil
		}
		want[i] = d
	}

	t.Run("get", func(t *testing.T) {
		for i, id := range ids {
			got, ok, err := s.DeadLetter(ctx, id)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, want[i], got)
		}
		_, ok, err := s.DeadLetter(ctx, ids[len(ids)-1]+100)
		require.NoError(t, err)
		assert.False(t, ok, "unknown id")
	})

	retriedAt := base.Add(time.Hour)
	require.NoError(t, s.MarkRetried(ctx, ids[0], retriedAt))
	want[0].RetriedAt = &retriedAt
	err := s.MarkRetried(ctx, ids[len(ids)-1]+100, retriedAt)
	require.ErrorIs(t, err, ErrNotFound, "mark an unknown id")

	for _, tc := range []struct {
		name     string
		pipeline string
		pending  bool
		want     []DeadLetter
	}{
		{"all", "", false, want},
		{"all pending", "", true, []DeadLetter{want[1], want[2]}},
		{"leads", "leads", false, []DeadLetter{want[0], want[2]}},
		{"leads pending", "leads", true, []DeadLetter{want[2]}},
		{"billing pending", "billing", true, []DeadLetter{want[1]}},
		{"unknown pipeline", "unknown", false, nil},
	} {
		t.Run("list "+tc.name, func(t *testing.T) {
			got, err := s.DeadLetters(ctx, tc.pipeline, tc.pending)
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}

	t.Run("pending depth", func(t *testing.T) {
		got, err := s.PendingDeadLetters(ctx)
		require.NoError(t, err)
		assert.Equal(t, map[string]int{"leads": 1, "billing": 1}, got)
	})
}

func testState(t *testing.T, s *Store) {
	ctx := t.Context()
	const ns = "shopapp.snapshot"

	_, ok, err := s.GetState(ctx, ns, "cursor")
	require.NoError(t, err)
	assert.False(t, ok, "unset key")

	for _, tc := range []struct {
		name string
		v    []byte
		want []byte
	}{
		{"text", []byte("2025-03-14T09:00:00Z"), []byte("2025-03-14T09:00:00Z")},
		{"overwrite with binary", []byte{0x00, 0xc3, 0x28, 0xff}, []byte{0x00, 0xc3, 0x28, 0xff}},
		{"empty", []byte{}, []byte{}},
		{"nil stored as empty", nil, []byte{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, s.PutState(ctx, ns, "cursor", tc.v))
			got, ok, err := s.GetState(ctx, ns, "cursor")
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, tc.want, got)
		})
	}

	require.NoError(t, s.PutState(ctx, ns, "p-1", []byte("a")))
	require.NoError(t, s.PutState(ctx, "other", "p-1", []byte("other ns")))
	require.NoError(t, s.PutStates(ctx, ns, nil, []string{"cursor"}))
	require.NoError(t, s.PutStates(ctx, ns, nil, []string{"cursor"}), "delete twice")
	got, err := s.ListState(ctx, ns)
	require.NoError(t, err)
	assert.Equal(t, map[string][]byte{"p-1": []byte("a")}, got)

	t.Run("PutStates applies all", func(t *testing.T) {
		require.NoError(t, s.PutStates(ctx, ns, map[string][]byte{
			"p-2": []byte("b"), "p-3": []byte("c"), "cursor": []byte("42"),
		}, []string{"p-1", "never-set"}))
		got, err := s.ListState(ctx, ns)
		require.NoError(t, err)
		assert.Equal(t, map[string][]byte{"p-2": []byte("b"), "p-3": []byte("c"), "cursor": []byte("42")}, got)
	})
	t.Run("PutStates refuses a key set and deleted", func(t *testing.T) {
		err := s.PutStates(ctx, ns, map[string][]byte{"p-4": []byte("d"), "p-2": []byte("x")}, []string{"p-2"})
		require.Error(t, err)
		got, err := s.ListState(ctx, ns)
		require.NoError(t, err)
		assert.Equal(t, map[string][]byte{"p-2": []byte("b"), "p-3": []byte("c"), "cursor": []byte("42")}, got,
			"nothing written")
	})
	t.Run("PutStates rolls back on failure", func(t *testing.T) {
		poisonStateKey(t, s, "poison")
		// Deletes run first, so if p-2 is still there the failing put undid them.
		err := s.PutStates(ctx, ns, map[string][]byte{"p-5": []byte("e"), "poison": []byte("x")}, []string{"p-2"})
		require.ErrorContains(t, err, "poisoned key")
		got, err := s.ListState(ctx, ns)
		require.NoError(t, err)
		assert.Equal(t, map[string][]byte{"p-2": []byte("b"), "p-3": []byte("c"), "cursor": []byte("42")}, got,
			"previous snapshot whole")
	})
	t.Run("empty namespace", func(t *testing.T) {
		got, err := s.ListState(ctx, "nobody")
		require.NoError(t, err)
		assert.Empty(t, got)
	})
}

// poisonStateKey installs a trigger that makes writing key to state fail, to break a transaction
// half-way. Trigger syntax is the one thing here that differs per dialect.
func poisonStateKey(t *testing.T, s *Store, key string) {
	t.Helper()
	stmts := []string{`CREATE TRIGGER poison_state BEFORE INSERT ON state
		WHEN NEW.name = '` + key + `' BEGIN SELECT RAISE(ABORT, 'poisoned key'); END`}
	if s.Dialect() == DialectPostgres {
		stmts = []string{
			`CREATE FUNCTION poison_state() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF NEW.name = '` + key + `' THEN RAISE EXCEPTION 'poisoned key'; END IF;
				RETURN NEW;
			END $$`,
			`CREATE TRIGGER poison_state BEFORE INSERT ON state FOR EACH ROW EXECUTE FUNCTION poison_state()`,
		}
	}
	for _, q := range stmts {
		_, err := s.db.ExecContext(t.Context(), q)
		require.NoError(t, err, "install trigger")
	}
}

func testBilling(t *testing.T, s *Store) {
	ctx := t.Context()
	_, ok, err := s.UploadFor(ctx, "2025-02")
	require.NoError(t, err)
	assert.False(t, ok, "no upload yet")

	feb := Upload{Period: "2025-02", RemotePath: "/in/simplebo-2025-02.csv", SHA256: "aa11", Rows: 120, Bytes: 9_876, UploadedAt: base}
	jan := Upload{Period: "2025-01", RemotePath: "/in/simplebo-2025-01.csv", SHA256: "bb22", Rows: 98, Bytes: 8_001, UploadedAt: base.Add(-720 * time.Hour)}
	forced := feb
	forced.SHA256, forced.Rows, forced.Bytes, forced.UploadedAt = "cc33", 121, 9_950, base.Add(24*time.Hour)

	for _, u := range []Upload{feb, jan, forced} {
		require.NoError(t, s.RecordUpload(ctx, u))
	}
	got, ok, err := s.UploadFor(ctx, "2025-02")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, forced, got, "a forced upload replaces the period's")

	all, err := s.Uploads(ctx)
	require.NoError(t, err)
	assert.Equal(t, []Upload{jan, forced}, all)

	var history int
	require.NoError(t, s.rdb.QueryRowContext(ctx,
		s.rebind(`SELECT COUNT(*) FROM billing_upload_history WHERE period = ?`), "2025-02").Scan(&history))
	assert.Equal(t, 2, history, "both February uploads kept in history")

	t.Run("pending runs", func(t *testing.T) {
		require.NoError(t, s.SetBillingPending(ctx, "2025-03", "sftp: connection refused", 1, base))
		require.NoError(t, s.SetBillingPending(ctx, "2025-02", "sftp: timeout", 1, base))
		require.NoError(t, s.SetBillingPending(ctx, "2025-03", "sftp: permission denied", 2, base.Add(time.Hour)))

		got, err := s.BillingPending(ctx)
		require.NoError(t, err)
		assert.Equal(t, []PendingRun{
			{Period: "2025-02", LastError: "sftp: timeout", Attempts: 1, Since: base},
			{Period: "2025-03", LastError: "sftp: permission denied", Attempts: 2, Since: base},
		}, got)

		require.NoError(t, s.ClearBillingPending(ctx, "2025-02"))
		require.NoError(t, s.ClearBillingPending(ctx, "2025-02"), "clear twice")
		got, err = s.BillingPending(ctx)
		require.NoError(t, err)
		require.Len(t, got, 1)
		assert.Equal(t, "2025-03", got[0].Period)
	})

	t.Run("frozen rules", func(t *testing.T) {
		_, _, ok, err := s.BillingRulesFor(ctx, "2025-04")
		require.NoError(t, err)
		assert.False(t, ok, "nothing frozen yet")

		first := "rules:\n  - match: \"*-S\"\n    bill: once\n"
		got, err := s.FreezeBillingRules(ctx, "2025-04", first, base)
		require.NoError(t, err)
		assert.Equal(t, first, got)
		got, err = s.FreezeBillingRules(ctx, "2025-04", "rules:\n  - match: \"*\"\n    bill: never\n", base.Add(time.Hour))
		require.NoError(t, err)
		assert.Equal(t, first, got, "the first table frozen stays")
		rules, at, ok, err := s.BillingRulesFor(ctx, "2025-04")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, first, rules)
		assert.Equal(t, base, at)

		// Writers racing on a new period all get the one table that won.
		const n = 6
		results := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = s.FreezeBillingRules(ctx, "2025-05", fmt.Sprintf("table %d", i), base)
			}()
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			assert.Equal(t, results[0], results[i])
		}
		rules, _, ok, err = s.BillingRulesFor(ctx, "2025-05")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, results[0], rules)
	})
}

func testTryLock(t *testing.T, s *Store) {
	ctx := t.Context()
	release, ok, err := s.TryLock(ctx, "poller.shopapp")
	require.NoError(t, err)
	require.True(t, ok, "first lock")

	again, ok, err := s.TryLock(ctx, "poller.shopapp")
	require.NoError(t, err)
	assert.False(t, ok, "lock already held")
	require.NotNil(t, again)
	again() // a no-op; must not release the holder's lock

	_, ok, err = s.TryLock(ctx, "poller.shopapp")
	require.NoError(t, err)
	assert.False(t, ok, "still held after the loser's release")

	other, ok, err := s.TryLock(ctx, "schedule.billing")
	require.NoError(t, err)
	assert.True(t, ok, "another name is independent")
	other()

	release()
	release() // twice is fine
	release2, ok, err := s.TryLock(ctx, "poller.shopapp")
	require.NoError(t, err)
	assert.True(t, ok, "lock after release")
	release2()

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, ok, err = s.TryLock(cctx, "poller.cancelled")
	require.Error(t, err, "cancelled context")
	assert.False(t, ok)
}
