package pipelines_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// TestBillingRunRefusesPeriodNotOver: a month not over (Europe/Paris) is refused, dry or not,
// unless forced, and the refusal freezes nothing.
func TestBillingRunRefusesPeriodNotOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBillingEnv(t, startInProcessDepot(t).cfg, false)
	b := e.billing
	// 31 October 23:30 in Paris is 22:30 UTC: still October.
	b.Now = func() time.Time { return parisTime(t, "2026-10-31 23:30") }
	for _, opt := range []pipelines.RunOptions{{}, {DryRun: true}} {
		_, err := b.Run(ctx, october, opt)
		require.ErrorIs(t, err, pipelines.ErrPeriodNotOver, "%+v", opt)
		require.ErrorContains(t, err, "2026-10 ends on 2026-11-01 00:00 (Europe/Paris); --force builds it now")
	}
	_, _, frozen, err := e.st.BillingRulesFor(ctx, "2026-10")
	require.NoError(t, err)
	require.False(t, frozen, "a refused run freezes no rules")
	_, err = b.Run(ctx, transforms.Period{Year: 2027, Month: time.January}, pipelines.RunOptions{})
	require.ErrorIs(t, err, pipelines.ErrPeriodNotOver, "a typo for a future month")

	rep, err := b.Run(ctx, october, pipelines.RunOptions{Force: true})
	require.NoError(t, err)
	require.Equal(t, "uploaded", rep.Outcome)

	b.Now = func() time.Time { return parisTime(t, "2026-11-01 00:00") }
	rep, err = b.Run(ctx, october, pipelines.RunOptions{})
	require.NoError(t, err)
	require.Equal(t, "already_uploaded", rep.Outcome, "over at midnight, and uploaded already")
}

// TestBillingRunStrict: rows whose client the directory does not name are reported in every run
// and in the period's summary; --strict refuses to upload them until the directory names them.
func TestBillingRunStrict(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBillingEnv(t, startInProcessDepot(t).cfg, false)
	b := e.billing

	rep, err := b.Run(ctx, october, pipelines.RunOptions{DryRun: true, Strict: true})
	require.NoError(t, err, "a dry run reports, it does not refuse")
	require.Equal(t, []string{"sa-1005"}, rep.ClientsWithoutIdentity)
	v, ok := gathered(t, e.reg, "passerelle_billing_clients_without_identity", nil)
	require.True(t, ok)
	require.Equal(t, 1.0, v)
	v, _ = gathered(t, e.reg, "passerelle_billing_unknown_codes", nil)
	require.Equal(t, 2.0, v)

	rep, err = b.Run(ctx, october, pipelines.RunOptions{Strict: true})
	require.ErrorIs(t, err, pipelines.ErrWithoutIdentity)
	require.ErrorContains(t, err, "1 client(s) (sa-1005)")
	require.Equal(t, "refused", rep.Outcome)
	v, _ = gathered(t, e.reg, "passerelle_billing_runs_total", map[string]string{"outcome": "refused"})
	require.Equal(t, 1.0, v)
	_, uploaded, err := e.st.UploadFor(ctx, "2026-10")
	require.NoError(t, err)
	require.False(t, uploaded)
	sums, err := pipelines.BillingSummaries(ctx, e.st)
	require.NoError(t, err)
	require.Equal(t, pipelines.RunSummary{Period: "2026-10", BuiltAt: billingNow(t)().UTC(), Outcome: "refused", Rows: goldenPipelineRows,
		Clients: 6, TotalHTCents: 137589, PerKind: map[transforms.BillingKind]int{transforms.BillingOnce: 2, transforms.BillingMonthly: 8, transforms.BillingAnnual: 1},
		UnknownCodes: []string{"MO-NDD-A", "MO-SEO-M"}, ClientsWithoutIdentity: []string{"sa-1005"}}, sums["2026-10"])

	// The directory learns the client (by its sa_key, as an import would): the run goes.
	_, err = e.st.RecordIdentity(ctx, store.Identity{Keys: map[string]string{store.KeySAKey: "sa-1005"},
		Fields: map[string]string{store.FieldCompany: "Caisse & Co"}, Source: "import clients.csv", At: billingNow(t)()})
	require.NoError(t, err)
	rep, err = b.Run(ctx, october, pipelines.RunOptions{Strict: true})
	require.NoError(t, err)
	require.Equal(t, "uploaded", rep.Outcome)
	require.Empty(t, rep.ClientsWithoutIdentity)
	v, _ = gathered(t, e.reg, "passerelle_billing_clients_without_identity", nil)
	require.Equal(t, 0.0, v)
	sums, err = pipelines.BillingSummaries(ctx, e.st)
	require.NoError(t, err)
	require.Equal(t, "uploaded", sums["2026-10"].Outcome)
	require.Empty(t, sums["2026-10"].ClientsWithoutIdentity)
}

// TestBillingRunWaitsForTheLock: a run that finds another replica holding the upload lock waits
// for it, then finds the period as that replica left it; past LockWait it gives up, uploading nothing.
func TestBillingRunWaitsForTheLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newBillingEnv(t, startInProcessDepot(t).cfg, false)
	b := e.billing
	b.LockWait = 200 * time.Millisecond
	release, ok, err := e.st.TryLock(ctx, "passerelle.billing.upload")
	require.NoError(t, err)
	require.True(t, ok)
	_, err = b.Run(ctx, october, pipelines.RunOptions{})
	require.ErrorIs(t, err, pipelines.ErrBusy)
	_, uploaded, err := e.st.UploadFor(ctx, "2026-10")
	require.NoError(t, err)
	require.False(t, uploaded)

	b.LockWait = time.Minute
	type result struct {
		rep pipelines.Report
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := b.Run(ctx, october, pipelines.RunOptions{})
		done <- result{rep, err}
	}()
	// The other replica is still uploading: ours waits.
	require.Eventually(t, func() bool {
		v, _ := gathered(t, e.reg, "passerelle_billing_lock_waits_total", nil)
		return v >= 2
	}, 10*time.Second, 10*time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("the run did not wait for the lock: %+v %v", r.rep, r.err)
	default:
	}
	// It uploads and lets go.
	require.NoError(t, e.st.RecordUpload(ctx, store.Upload{Period: "2026-10", RemotePath: "/depot/" + octoberFile, SHA256: "other", Rows: 1, UploadedAt: billingNow(t)()}))
	release()
	select {
	case r := <-done:
		require.NoError(t, r.err)
		require.Equal(t, "already_uploaded", r.rep.Outcome)
		require.Equal(t, "other", r.rep.SHA256)
	case <-time.After(10 * time.Second):
		t.Fatal("the run never took the lock")
	}
}

// TestBillingLedgerRecordsItsLastPoll: the ledger keeps the poll time of the latest change it
// applied (never going back for a late redelivery), in the store and as a metric.
func TestBillingLedgerRecordsItsLastPoll(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	reg := prometheus.NewRegistry()
	_, ok, err := pipelines.LedgerLastPoll(ctx, st)
	require.NoError(t, err)
	require.False(t, ok)

	m := pipelines.NewBillingMetrics(reg)
	l := ledgerEvent{t}
	c := "2026-09-01 10:00"
	applyEventsWith(t, &pipelines.BillingLedger{Store: st, Metrics: m}, []pipelines.ShopAppEvent{
		l.ev(pipelines.EventInterfaceCreated, "sa-1", 1, c, "2026-10-02 10:05", "", nil),
		l.ev(pipelines.EventInterfaceStatusChanged, "sa-1", 1, c, "2026-10-03 10:05", "", nil),
		l.ev(pipelines.EventInterfaceStatusChanged, "sa-1", 1, c, "2026-10-02 12:05", "", nil), // late
	})
	want := parisTime(t, "2026-10-03 10:05")
	got, ok, err := pipelines.LedgerLastPoll(ctx, st)
	require.NoError(t, err)
	require.True(t, ok)
	require.True(t, want.Equal(got), "%v", got)
	v, _ := gathered(t, reg, "passerelle_billing_ledger_last_poll_timestamp_seconds", nil)
	require.Equal(t, float64(want.Unix()), v)

	// A restarted daemon shows it at once.
	reg2 := prometheus.NewRegistry()
	require.NoError(t, (&pipelines.BillingLedger{Store: st, Metrics: pipelines.NewBillingMetrics(reg2)}).Restore(ctx))
	v, _ = gathered(t, reg2, "passerelle_billing_ledger_last_poll_timestamp_seconds", nil)
	require.Equal(t, float64(want.Unix()), v)
}

// TestBillingLegacyClientRecords: client details recorded before the directory existed still
// name their rows, and the directory wins once it knows the client.
func TestBillingLegacyClientRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	applyEvents(t, st, goldenLedgerEvents(t))
	raw := mustJSON(t, shopapp.Customer{Company: "Ancienne Caisse", LastName: "Petit"})
	require.NoError(t, st.PutState(ctx, "shopapp.clients", "sa-1005", raw))
	b := newBilling(t, st, newSimClient(t, startSim(t, nil), 1), prometheus.NewRegistry())
	data, _, err := b.Build(ctx, october)
	require.NoError(t, err)
	require.Contains(t, string(data), "2026-10;sa-1005;Ancienne Caisse;Petit;;;")
	_, err = st.RecordIdentity(ctx, store.Identity{Keys: map[string]string{store.KeySAKey: "sa-1005"},
		Fields: map[string]string{store.FieldCompany: "Caisse & Co"}, Source: "import", At: billingNow(t)()})
	require.NoError(t, err)
	data, _, err = b.Build(ctx, october)
	require.NoError(t, err)
	require.Contains(t, string(data), "2026-10;sa-1005;Caisse & Co;;;;")
}

func applyEventsWith(t testing.TB, ledger *pipelines.BillingLedger, evs []pipelines.ShopAppEvent) {
	t.Helper()
	for _, ev := range evs {
		out, err := ledger.Handle(message.NewMessage(ev.ID, mustJSON(t, ev)))
		require.NoError(t, err)
		require.Empty(t, out)
	}
}
