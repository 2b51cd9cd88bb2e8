package pipelines_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/connectors/sftp/sftptest"
	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

var october = transforms.Period{Year: 2026, Month: time.October}

const (
	goldenPipelineFile = "golden_pipeline_2026-10.csv"
	goldenPipelineRows = 11
	octoberFile        = "clients_a_facturer_2026-10.csv"
)

func goldenPipelinePath() string {
	return filepath.Join("..", "testdata", "billing", goldenPipelineFile)
}

func readGolden(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(goldenPipelinePath())
	require.NoError(t, err, "run go test ./pipelines -run TestBillingBuildGolden -update to create it")
	return b
}

// ledgerEvent builds the event the poller would publish.
type ledgerEvent struct {
	t testing.TB
}

func (l ledgerEvent) ev(typ, key string, status int, created, observed string, deletion string, p *pipelines.PrestationSnapshot, from ...int) pipelines.ShopAppEvent {
	ev := pipelines.ShopAppEvent{
		Type: typ, ID: typ + "/" + key + "/" + observed, InterfaceKey: key, Status: status,
		CreatedAt: parisTime(l.t, created).UTC(), ObservedAt: parisTime(l.t, observed).UTC(), Prestation: p,
	}
	if deletion != "" {
		ev.DeletionAt = ptrTo(parisTime(l.t, deletion).UTC())
	}
	if len(from) > 0 {
		ev.FromStatus = &from[0]
	}
	if p != nil {
		ev.ID += "/" + p.Ref
	}
	return ev
}

func (l ledgerEvent) prest(code, ref, ordered, cancelled string) *pipelines.PrestationSnapshot {
	p := &pipelines.PrestationSnapshot{Code: code, Ref: ref, OrderedAt: parisTime(l.t, ordered).UTC()}
	if cancelled != "" {
		p.CancelledAt = ptrTo(parisTime(l.t, cancelled).UTC())
	}
	return p
}

// goldenLedgerEvents is what the poller would have published over the life of eight interfaces,
// billed under the default rules (setups *-S once, *-AMM monthly, *-AMA annual):
//   - sa-1001, active since 2025: its setup not billed again, an option of no known kind (MO-SEO-M,
//     billed monthly and reported) cancelled on 20 October, a one-time module ordered twice, in
//     September (not billed again) and in October (billed);
//   - sa-1002, deletion requested on 15 October: access until 1 November, the whole month billed;
//     its annual subscription, ordered in June, is off its anniversary;
//   - sa-1002, deletion requested on 15 October: access until 1 November, the whole month billed;
//   - sa-1003, deletion requested in September: access cut on 1 October, not billed;
//   - sa-1004, still installing: not billed;
//   - sa-1005, new on 15 October, installed the next day: billed from the 15th;
//   - sa-1006, deletion requested in August, reactivated in September: billed;
//   - sa-1007, deletion requested on 5 October and done early, at noon on the 20th: billed to the 20th;
//   - sa-1008, since 7 October 2025: its annual subscription on its anniversary, two exemplaires of a
//     monthly subscription, one cancelled on 12 October.
func goldenLedgerEvents(t testing.TB) []pipelines.ShopAppEvent {
	l := ledgerEvent{t}
	const (
		created    = pipelines.EventInterfaceCreated
		status     = pipelines.EventInterfaceStatusChanged
		added      = pipelines.EventPrestationAdded
		cancelledE = pipelines.EventPrestationCancelled
	)
	c1, c2, c3, c4, c5, c6, c7, c8 := "2025-03-12 10:00", "2024-06-01 08:00", "2023-01-01 00:00", "2026-10-28 09:00", "2026-10-15 09:00", "2025-01-10 12:00", "2025-05-05 15:00", "2025-10-07 11:00"
	return []pipelines.ShopAppEvent{
		l.ev(created, "sa-1001", 1, c1, "2025-03-12 10:05", "", nil),
		l.ev(added, "sa-1001", 1, c1, "2025-03-12 10:05", "", l.prest("IN-BTQST-S", "r1001a", c1, "")),
		l.ev(added, "sa-1001", 1, c1, "2025-03-12 10:05", "", l.prest("IN-BTQZ-AMM", "r1001b", c1, "")),
		l.ev(added, "sa-1001", 1, c1, "2026-01-05 14:05", "", l.prest("MO-SEO-M", "r1001c", "2026-01-05 14:00", "")),
		l.ev(added, "sa-1001", 1, c1, "2026-09-02 08:05", "", l.prest("MO-TRADUCTION-S", "r1001d", "2026-09-02 08:00", "")),
		l.ev(added, "sa-1001", 1, c1, "2026-10-14 10:35", "", l.prest("MO-TRADUCTION-S", "r1001e", "2026-10-14 10:30", "")),
		l.ev(cancelledE, "sa-1001", 1, c1, "2026-10-20 15:05", "", l.prest("MO-SEO-M", "r1001c", "2026-01-05 14:00", "2026-10-20 15:00")),

		l.ev(created, "sa-1002", 1, c2, "2024-06-01 08:05", "", nil),
		l.ev(added, "sa-1002", 1, c2, "2024-06-01 08:05", "", l.prest("IN-VITRINE-S", "r1002a", c2, "")),
		l.ev(added, "sa-1002", 1, c2, "2024-06-01 08:05", "", l.prest("IN-VITZ-AMA", "r1002b", c2, "")),
		l.ev(added, "sa-1002", 1, c2, "2024-06-01 08:05", "", l.prest("MO-NDD-A", "r1002c", c2, "")),
		l.ev(status, "sa-1002", 2, c2, "2026-10-15 11:05", "2027-01-13 11:00", nil, 1),

		l.ev(created, "sa-1003", 1, c3, "2023-01-01 00:05", "", nil),
		l.ev(added, "sa-1003", 1, c3, "2023-01-01 00:05", "", l.prest("IN-BTQST-S", "r1003a", c3, "")),
		l.ev(added, "sa-1003", 1, c3, "2023-01-01 00:05", "", l.prest("IN-BTQZ-AMA", "r1003b", c3, "")),
		l.ev(status, "sa-1003", 2, c3, "2026-09-10 10:05", "2026-12-09 10:00", nil, 1),

		l.ev(created, "sa-1004", 3, c4, "2026-10-28 09:05", "", nil),
		l.ev(added, "sa-1004", 3, c4, "2026-10-28 09:05", "", l.prest("IN-BTQST-S", "r1004a", c4, "")),
		l.ev(added, "sa-1004", 3, c4, "2026-10-28 09:05", "", l.prest("IN-BTQZ-AMM", "r1004b", c4, "")),

		l.ev(created, "sa-1005", 3, c5, "2026-10-15 09:05", "", nil),
		l.ev(added, "sa-1005", 3, c5, "2026-10-15 09:05", "", l.prest("IN-CAISSE-S", "r1005a", c5, "")),
		l.ev(added, "sa-1005", 3, c5, "2026-10-15 09:05", "", l.prest("IN-CAISSE-AMM", "r1005b", c5, "")),
		l.ev(status, "sa-1005", 1, c5, "2026-10-16 09:05", "", nil, 3),

		l.ev(created, "sa-1006", 1, c6, "2025-01-10 12:05", "", nil),
		l.ev(added, "sa-1006", 1, c6, "2025-01-10 12:05", "", l.prest("IN-VITRINE-S", "r1006a", c6, "")),
		l.ev(added, "sa-1006", 1, c6, "2025-01-10 12:05", "", l.prest("IN-VITZ-AMM", "r1006b", c6, "")),
		l.ev(status, "sa-1006", 2, c6, "2026-08-20 10:05", "2026-11-18 10:00", nil, 1),
		l.ev(status, "sa-1006", 1, c6, "2026-09-03 10:05", "", nil, 2),

		l.ev(created, "sa-1007", 1, c7, "2025-05-05 15:05", "", nil),
		l.ev(added, "sa-1007", 1, c7, "2025-05-05 15:05", "", l.prest("IN-BTQST-S", "r1007a", c7, "")),
		l.ev(added, "sa-1007", 1, c7, "2025-05-05 15:05", "", l.prest("IN-BTQZ-AMM", "r1007b", c7, "")),
		l.ev(status, "sa-1007", 2, c7, "2026-10-05 09:05", "2027-01-03 09:00", nil, 1),
		l.ev(status, "sa-1007", 0, c7, "2026-10-20 12:05", "2026-10-20 12:00", nil, 2),

		l.ev(created, "sa-1008", 1, c8, "2025-10-07 11:05", "", nil),
		l.ev(added, "sa-1008", 1, c8, "2025-10-07 11:05", "", l.prest("IN-BTQZ-AMA", "r1008a", c8, "")),
		l.ev(added, "sa-1008", 1, c8, "2025-10-07 11:05", "", l.prest("IN-CAISSE-AMM", "r1008b", c8, "")),
		l.ev(added, "sa-1008", 1, c8, "2026-03-02 10:05", "", l.prest("IN-CAISSE-AMM", "r1008c", "2026-03-02 10:00", "")),
		l.ev(cancelledE, "sa-1008", 1, c8, "2026-10-12 16:05", "", l.prest("IN-CAISSE-AMM", "r1008c", "2026-03-02 10:00", "2026-10-12 16:00")),
	}
}

// applyEvents feeds the events to the billing.ledger stage, as the broker would.
func applyEvents(t testing.TB, st pipelines.StateStore, evs []pipelines.ShopAppEvent) {
	t.Helper()
	ledger := &pipelines.BillingLedger{Store: st}
	for _, ev := range evs {
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		out, err := ledger.Handle(message.NewMessage(ev.ID, b))
		require.NoError(t, err)
		require.Empty(t, out)
	}
}

// recordGoldenClients stores the client details of the interfaces passerelle provisioned, one
// with a company name a spreadsheet would run as a formula.
func recordGoldenClients(t testing.TB, st pipelines.ClientRecorder) {
	t.Helper()
	ctx := context.Background()
	for key, c := range map[string]shopapp.Customer{
		"sa-1001": {Company: "=cmd|' /C calc'!A0", LastName: "Dupont", FirstName: "Marie", Email: "marie.dupont@example.fr"},
		"sa-1002": {Company: "Boulangerie Lefèvre; Fils", LastName: "Lefèvre", FirstName: "Jérôme", Email: "contact@boulangerie-lefevre.example"},
		"sa-1003": {Company: "Ancien Client", LastName: "Bernard"},
		"sa-1006": {Company: "-50% Déco", LastName: "Martin", FirstName: "Léa", Email: "lea@50deco.example"},
		"sa-1007": {Company: "@Pressing", LastName: "Moreau", FirstName: "Hugo", Email: "hugo@pressing.example"},
		"sa-1008": {Company: "Fleurs & Co", LastName: "Garnier", FirstName: "Inès", Email: "ines@fleurs.example"},
	} {
		require.NoError(t, pipelines.RecordClient(ctx, st, "guid-"+key, key, c, "test", time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)))
	}
}

// newGoldenStore is a store holding the golden ledger and client records.
func newGoldenStore(t testing.TB) *store.Store {
	t.Helper()
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	applyEvents(t, st, goldenLedgerEvents(t))
	recordGoldenClients(t, st)
	return st
}

func billingNow(t testing.TB) func() time.Time {
	now := parisTime(t, "2026-11-01 06:00")
	return func() time.Time { return now }
}

func newBilling(t testing.TB, st pipelines.BillingStore, cat pipelines.CatalogueReader, reg prometheus.Registerer) *pipelines.Billing {
	return &pipelines.Billing{
		Store: st, Catalogue: cat, Metrics: pipelines.NewBillingMetrics(reg), Log: slogDiscard(), Now: billingNow(t),
		UploadAttempts: 3, UploadBackoff: 10 * time.Millisecond,
	}
}

func TestBillingBuildGolden(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := startSim(t, nil)
	st := newGoldenStore(t)
	b := newBilling(t, st, newSimClient(t, sim, 1), prometheus.NewRegistry())

	got, rep, err := b.Build(ctx, october)
	require.NoError(t, err)
	if updateGolden() {
		require.NoError(t, os.WriteFile(goldenPipelinePath(), got, 0o644))
	}
	require.Equal(t, string(readGolden(t)), string(got))
	require.Len(t, rep.Rows, goldenPipelineRows)
	requireGoldenReport(t, rep)
	require.True(t, strings.HasPrefix(string(got), "periode;reference_client;societe;nom;prenom;email;source;code_prestation;libelle;"+
		"quantite;prix_unitaire_ht;montant_ht;date_debut;date_fin\r\n"))
	// CSV injection: the company is written with a leading quote, the row otherwise intact.
	require.Contains(t, string(got), "\r\n2026-10;sa-1001;'=cmd|' /C calc'!A0;Dupont;Marie;")
	require.NotContains(t, string(got), ";=cmd")
	require.Contains(t, string(got), ";'-50% Déco;")
	require.Contains(t, string(got), ";'@Pressing;")
	// The interface deleted early (at noon on the 20th) is billed to the day of its deletion, not to
	// the 1st of November, nor left out as a cut computed 90 days before the deletion would.
	require.Contains(t, string(got), "2026-10;sa-1007;'@Pressing;Moreau;Hugo;hugo@pressing.example;shopapp;IN-BTQZ-AMM;Abonnement boutique mensuel;1;59.90;59.90;2026-10-01;2026-10-20\r\n")

	// The same period always gives the same bytes: built again, and after every event came again.
	again, rep, err := b.Build(ctx, october)
	require.NoError(t, err)
	require.Equal(t, string(got), string(again))
	requireGoldenReport(t, rep)
	applyEvents(t, st, goldenLedgerEvents(t))
	again, _, err = b.Build(ctx, october)
	require.NoError(t, err)
	require.Equal(t, string(got), string(again), "redelivered events change nothing")

	// The partner changes a price: the period already built keeps its frozen prices, without
	// asking; the next period gets the new one.
	changed := shopappsim.DefaultCatalogue()
	for i := range changed {
		if changed[i].Code == "IN-BTQZ-AMM" {
			changed[i].Price, changed[i].PriceCents = 69.9, 6990
		}
	}
	sim2 := startSim(t, nil, changed...)
	b.Catalogue = newSimClient(t, sim2, 1)
	again, _, err = b.Build(ctx, october)
	require.NoError(t, err)
	require.Equal(t, string(got), string(again), "prices are frozen per period")
	require.Zero(t, sim2.Calls()[shopapp.RoutePrestation], "a frozen period asks no price")
	nov, _, err := b.Build(ctx, transforms.Period{Year: 2026, Month: time.November})
	require.NoError(t, err)
	require.Contains(t, string(nov), ";IN-BTQZ-AMM;Abonnement boutique mensuel;1;69.90;69.90;2026-11-01;2026-11-30\r\n")
	require.NotContains(t, string(nov), "sa-1002", "access cut on 1 November: not billed in November")
}

// requireGoldenReport checks what the golden October file bills, row by row as the default rules
// decide (see goldenLedgerEvents).
func requireGoldenReport(t testing.TB, rep transforms.BillingReport) {
	t.Helper()
	type row struct{ client, code, from, to string }
	var got []row
	for _, r := range rep.Rows {
		got = append(got, row{r.ClientRef, r.Code, r.StartDate, r.EndDate})
	}
	require.Equal(t, []row{
		{"sa-1001", "IN-BTQZ-AMM", "2026-10-01", "2026-10-31"},     // monthly
		{"sa-1001", "MO-SEO-M", "2026-10-01", "2026-10-20"},        // unknown: monthly, to its cancellation
		{"sa-1001", "MO-TRADUCTION-S", "2026-10-14", "2026-10-14"}, // once: October's exemplaire only
		{"sa-1002", "MO-NDD-A", "2026-10-01", "2026-10-31"},        // unknown: monthly
		{"sa-1005", "IN-CAISSE-AMM", "2026-10-15", "2026-10-31"},   // monthly, from its order
		{"sa-1005", "IN-CAISSE-S", "2026-10-15", "2026-10-15"},     // once: ordered in October
		{"sa-1006", "IN-VITZ-AMM", "2026-10-01", "2026-10-31"},
		{"sa-1007", "IN-BTQZ-AMM", "2026-10-01", "2026-10-20"},   // to the early deletion
		{"sa-1008", "IN-BTQZ-AMA", "2026-10-01", "2026-10-31"},   // annual: its anniversary
		{"sa-1008", "IN-CAISSE-AMM", "2026-10-01", "2026-10-31"}, // two exemplaires, by unique reference:
		{"sa-1008", "IN-CAISSE-AMM", "2026-10-01", "2026-10-12"}, // r1008c, cancelled on the 12th
	}, got)
	require.Equal(t, map[transforms.BillingKind]int{transforms.BillingOnce: 2, transforms.BillingMonthly: 8, transforms.BillingAnnual: 1}, rep.PerKind)
	require.Equal(t, []string{"MO-NDD-A", "MO-SEO-M"}, rep.Unknown)
	require.Equal(t, 6, rep.Clients)
	require.Equal(t, 1, rep.WithoutIdentity, "sa-1005, ordered outside passerelle")
	// 59.90 + 24.99 + 80 + 12.50 + 39.90 + 390 + 29.90 + 59.90 + 599 + 2 × 39.90
	require.Equal(t, transforms.Cents(137589), rep.TotalHT)
}

// TestBillingRulesFrozen: the rule table in force when a period is first built stays its table, as
// its prices do; the next period takes the configured one. A table that no longer parses or an
// invalid configured one is an error, never a silent default.
func TestBillingRulesFrozen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := startSim(t, nil)
	st := newGoldenStore(t)
	reg := prometheus.NewRegistry()
	b := newBilling(t, st, newSimClient(t, sim, 1), reg)
	golden := readGolden(t)

	got, _, err := b.Build(ctx, october)
	require.NoError(t, err)
	require.Equal(t, string(golden), string(got))
	frozen, _, ok, err := st.BillingRulesFor(ctx, october.String())
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, transforms.DefaultBillingRules().String(), frozen, "a nil Rules is the default table")
	unknown, ok := gathered(t, reg, "passerelle_billing_unknown_codes", nil)
	require.True(t, ok)
	require.Equal(t, 2.0, unknown)

	// Finance now names every code: site subscriptions free, everything else monthly.
	b.Rules, err = transforms.ParseBillingRules([]byte(`rules:
  - match: "IN-VITZ-*"
    bill: never
  - match: "*"
    bill: monthly
`))
	require.NoError(t, err)
	again, rep, err := b.Build(ctx, october)
	require.NoError(t, err)
	require.Equal(t, string(golden), string(again), "October keeps the rules it was first built with")
	require.Equal(t, []string{"MO-NDD-A", "MO-SEO-M"}, rep.Unknown)

	nov, rep, err := b.Build(ctx, transforms.Period{Year: 2026, Month: time.November})
	require.NoError(t, err)
	require.NotContains(t, string(nov), ";IN-VITZ-AMM;", "November follows the new table")
	require.Contains(t, string(nov), ";sa-1008;Fleurs & Co;Garnier;Inès;ines@fleurs.example;shopapp;IN-BTQZ-AMA;Abonnement boutique annuel;1;599.00;599.00;2026-11-01;2026-11-30\r\n",
		"an annual code billed monthly by the new table")
	require.Empty(t, rep.Unknown)
	unknown, _ = gathered(t, reg, "passerelle_billing_unknown_codes", nil)
	require.Zero(t, unknown, "the gauge follows the last file built")
	frozen, _, _, err = st.BillingRulesFor(ctx, "2026-11")
	require.NoError(t, err)
	require.Equal(t, b.Rules.String(), frozen)

	// The dry run's report carries what the file bills.
	b.Rules = nil
	dry, err := b.Run(ctx, october, pipelines.RunOptions{DryRun: true})
	require.NoError(t, err)
	require.Equal(t, map[transforms.BillingKind]int{transforms.BillingOnce: 2, transforms.BillingMonthly: 8, transforms.BillingAnnual: 1}, dry.PerKind)
	require.Equal(t, []string{"MO-NDD-A", "MO-SEO-M"}, dry.UnknownCodes)
	require.Equal(t, 6, dry.Clients)
	require.Equal(t, 1, dry.WithoutIdentity)
	require.Equal(t, transforms.Cents(137589), dry.TotalHTCents)

	b.Rules = transforms.BillingRules{{Pattern: "*-S", Kind: "weekly"}}
	_, _, err = b.Build(ctx, transforms.Period{Year: 2026, Month: time.December})
	require.ErrorContains(t, err, `unknown bill "weekly"`)
	_, _, ok, err = st.BillingRulesFor(ctx, "2026-12")
	require.NoError(t, err)
	require.False(t, ok, "an invalid table is not frozen")

	b.Rules = nil
	_, err = st.FreezeBillingRules(ctx, "2027-01", "rules: [", time.Now())
	require.NoError(t, err)
	_, _, err = b.Build(ctx, transforms.Period{Year: 2027, Month: time.January})
	require.ErrorContains(t, err, "billing rules frozen for 2027-01")
}

func TestAccessCut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name              string
		deletion          string // "" for none
		observed, wantCut string
	}{
		{"deletion requested on 15 October", "2027-01-13 11:00", "2026-10-15 11:05", "2026-11-01 00:00"},
		{"no deletion date: the observation is the request", "", "2026-10-15 11:05", "2026-11-01 00:00"},
		{"the last day of the month, late: the month's own cut", "2027-01-29 23:30", "2026-11-02 00:00", "2026-11-01 00:00"},
		{"request at 23:30 on 30 September (summer), deleted in winter", "2026-12-29 23:30", "2026-10-01 00:00", "2026-10-01 00:00"},
		{"request at 00:30 on 1 October", "2026-12-30 00:30", "2026-10-01 00:35", "2026-11-01 00:00"},
		{"request on 31 March, summer time", "2026-06-29 23:30", "2026-03-31 23:35", "2026-04-01 00:00"},
		{"request in December: next year", "2027-03-15 10:00", "2026-12-15 10:05", "2027-01-01 00:00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var del *time.Time
			if tc.deletion != "" {
				del = ptrTo(parisTime(t, tc.deletion).UTC())
			}
			got := pipelines.AccessCut(del, parisTime(t, tc.observed).UTC())
			require.Equal(t, parisTime(t, tc.wantCut).UTC(), got)
		})
	}

	// The simulator applies the partner's rule: for requests at awkward times, the cut derived
	// from its date_suppression is the one it applies.
	t.Run("agrees with the simulator", func(t *testing.T) {
		t.Parallel()
		clk := newTestClock(time.Now())
		sim := startSim(t, clk)
		c := newSimClient(t, sim, 1)
		for i, req := range []string{"2026-10-15 11:00", "2026-09-30 23:30", "2026-10-31 23:59", "2026-03-31 23:30", "2026-01-31 23:30", "2026-12-31 23:59", "2026-10-25 02:30"} {
			clk.mu.Lock()
			clk.now = parisTime(t, req)
			clk.mu.Unlock()
			key, err := c.CreateInterface(context.Background(), shopapp.CreateRequest{GUID: "g" + string(rune('a'+i)), Prestations: []string{"MO-TRADUCTION-S", "IN-VITRINE-S", "IN-VITZ-AMM"}})
			require.NoError(t, err)
			require.NoError(t, sim.AdvanceInstall(key))
			del, err := c.DeleteInterface(context.Background(), key)
			require.NoError(t, err)
			si, _ := sim.Interface(key)
			// As the poller hands it over: in UTC, through JSON.
			require.Equal(t, si.AccessCut.UTC(), pipelines.AccessCut(ptrTo(del.UTC()), time.Time{}).UTC(), "request %s, deletion %s", req, del)
		}
	})
}

func TestApplyShopAppEvent(t *testing.T) {
	t.Parallel()
	l := ledgerEvent{t}
	c := "2025-03-12 10:00"
	cut := parisTime(t, "2026-11-01 00:00").UTC()
	const (
		created = pipelines.EventInterfaceCreated
		status  = pipelines.EventInterfaceStatusChanged
		added   = pipelines.EventPrestationAdded
		cancel  = pipelines.EventPrestationCancelled
	)
	createdEv := l.ev(created, "K", 1, c, "2026-10-01 10:00", "", nil)
	deactivated := l.ev(status, "K", 2, c, "2026-10-15 11:05", "2027-01-13 11:00", nil, 1)
	reactivated := l.ev(status, "K", 1, c, "2026-10-20 11:05", "", nil, 2)
	deletedOnTime := l.ev(status, "K", 0, c, "2027-01-13 11:05", "2027-01-13 11:00", nil, 2)
	deletedEarly := l.ev(status, "K", 0, c, "2026-10-20 12:05", "2026-10-20 12:00", nil, 2)
	addedEv := l.ev(added, "K", 1, c, "2026-10-02 10:00", "", l.prest("OPT", "r1", "2026-10-02 09:00", ""))
	cancelledEv := l.ev(cancel, "K", 1, c, "2026-10-03 10:00", "", l.prest("OPT", "r1", "2026-10-02 09:00", "2026-10-03 09:00"))
	noRef := l.ev(added, "K", 1, c, "2026-10-02 10:00", "", l.prest("OPT2", "", "2026-10-02 09:00", ""))
	installing := l.ev(created, "K", 3, c, "2026-10-01 10:00", "", nil)

	tests := []struct {
		name       string
		events     []pipelines.ShopAppEvent
		wantStatus int
		wantCut    *time.Time
		wantPrest  map[string]bool // ref -> cancelled
	}{
		{"created", []pipelines.ShopAppEvent{createdEv}, 1, nil, map[string]bool{}},
		{"installing", []pipelines.ShopAppEvent{installing}, 3, nil, map[string]bool{}},
		{"deletion requested 2026-10-15: cut 1 November", []pipelines.ShopAppEvent{createdEv, deactivated}, 2, &cut, map[string]bool{}},
		{"reactivated: no cut", []pipelines.ShopAppEvent{createdEv, deactivated, reactivated}, 1, nil, map[string]bool{}},
		{"deleted after 90 days: the cut stays", []pipelines.ShopAppEvent{createdEv, deactivated, deletedOnTime}, 0, &cut, map[string]bool{}},
		{"deleted early: cut at the deletion", []pipelines.ShopAppEvent{createdEv, deactivated, deletedEarly}, 0, ptrTo(parisTime(t, "2026-10-20 12:00").UTC()), map[string]bool{}},
		{"deleted, never seen deactivated", []pipelines.ShopAppEvent{createdEv, deletedOnTime}, 0, &cut, map[string]bool{}},
		{"added then cancelled", []pipelines.ShopAppEvent{createdEv, addedEv, cancelledEv}, 1, nil, map[string]bool{"r1": true}},
		{"without reference: keyed by code", []pipelines.ShopAppEvent{createdEv, noRef}, 1, nil, map[string]bool{"OPT2": false}},
		{"every event twice", []pipelines.ShopAppEvent{createdEv, createdEv, addedEv, addedEv, deactivated, deactivated}, 2, &cut, map[string]bool{"r1": false}},
		// Redelivered late, after a nack: an older event takes nothing back.
		{"stale status event after a newer one", []pipelines.ShopAppEvent{createdEv, deactivated, reactivated, deactivated}, 1, nil, map[string]bool{}},
		{"stale addition after the cancellation", []pipelines.ShopAppEvent{createdEv, addedEv, cancelledEv, addedEv}, 1, nil, map[string]bool{"r1": true}},
		{"created delivered after the deletion request", []pipelines.ShopAppEvent{deactivated, createdEv}, 2, &cut, map[string]bool{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var e pipelines.LedgerEntry
			for _, ev := range tc.events {
				pipelines.ApplyShopAppEvent(&e, ev)
			}
			require.Equal(t, "K", e.Key)
			require.Equal(t, parisTime(t, c).UTC(), e.CreatedAt)
			require.Equal(t, tc.wantStatus, e.Status)
			if tc.wantCut == nil {
				require.Nil(t, e.AccessEndsAt)
			} else {
				require.NotNil(t, e.AccessEndsAt)
				require.Equal(t, *tc.wantCut, e.AccessEndsAt.UTC())
			}
			got := map[string]bool{}
			for ref, p := range e.Prestations {
				got[ref] = p.CancelledAt != nil
			}
			require.Equal(t, tc.wantPrest, got)
		})
	}
}

// depot is an SFTP server the billing run uploads to, and the local folder behind its Dir.
type depot struct {
	cfg      sftp.Config
	localDir string
	server   *sftp.Server // in-process only
	srvCfg   sftp.ServerConfig
}

func startInProcessDepot(t testing.TB) *depot {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "depot"), 0o755))
	d := &depot{srvCfg: sftp.ServerConfig{Root: root, User: "facturation", Password: "pw-" + rand.Text(), HostKey: signer}}
	d.start(t, "")
	kh := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, d.server.WriteKnownHosts(kh))
	d.cfg = sftp.Config{Addr: d.server.Addr(), User: d.srvCfg.User, Password: d.srvCfg.Password, KnownHostsFile: kh, Dir: "/depot/", Timeout: 20 * time.Second}
	d.localDir = filepath.Join(root, "depot")
	return d
}

// start (re)starts the in-process server, on addr if given.
func (d *depot) start(t testing.TB, addr string) {
	t.Helper()
	cfg := d.srvCfg
	cfg.Addr = addr
	srv, err := sftp.StartServer(context.Background(), cfg)
	require.NoError(t, err)
	d.server = srv
	t.Cleanup(func() { _ = srv.Close() })
}

func startOpenSSHDepot(t testing.TB) *depot {
	t.Helper()
	s := sftptest.StartSSHD(t)
	dir := filepath.Join(s.Root, "depot")
	require.NoError(t, os.Mkdir(dir, 0o755))
	return &depot{
		cfg: sftp.Config{Addr: s.Addr, User: s.User, PrivateKey: s.PrivateKey, KnownHostsFile: s.KnownHostsFile,
			Dir: dir + "/", Timeout: 20 * time.Second},
		localDir: dir,
	}
}

// billingEnv is a billing run over the golden ledger, uploading to a depot.
type billingEnv struct {
	st      *store.Store
	reg     *prometheus.Registry
	billing *pipelines.Billing
	broker  *broker.Broker
	events  *collector
}

func newBillingEnv(t *testing.T, cfg sftp.Config, withEvents bool) *billingEnv {
	t.Helper()
	e := &billingEnv{st: newGoldenStore(t), reg: prometheus.NewRegistry()}
	sim := startSim(t, nil)
	e.billing = newBilling(t, e.st, newSimClient(t, sim, 1), e.reg)
	up, err := sftp.NewUploader(cfg, sftp.NewMetrics(e.reg))
	require.NoError(t, err)
	e.billing.Uploader = up
	if withEvents {
		dir := t.TempDir()
		var pub *broker.Publisher
		e.broker, pub = openTestBroker(t, dir)
		e.billing.Pub = pub
		e.events = newCollector(pipelines.TopicBillingEvents, "test_billing")
		detach := e.events.attach(t, e.broker)
		t.Cleanup(func() {
			detach()
			_ = pub.Close()
			_ = e.broker.Close()
		})
	}
	return e
}

func (e *billingEnv) uploads(t testing.TB, outcome string) float64 {
	t.Helper()
	v, ok := gathered(t, e.reg, "passerelle_sftp_uploads_total", map[string]string{"outcome": outcome})
	require.True(t, ok)
	return v
}

func (e *billingEnv) pendingGauge(t testing.TB) float64 {
	t.Helper()
	v, ok := gathered(t, e.reg, "passerelle_billing_pending_periods", nil)
	require.True(t, ok)
	return v
}

func (e *billingEnv) pending(t testing.TB) []store.PendingRun {
	t.Helper()
	p, err := e.st.BillingPending(context.Background())
	require.NoError(t, err)
	return p
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// depotFiles lists the names in the local folder behind the depot.
func depotFiles(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// TestBillingRunContract runs one body against the in-process SFTP server and a real OpenSSH.
func TestBillingRunContract(t *testing.T) {
	t.Parallel()
	for name, start := range map[string]func(testing.TB) *depot{"inprocess": startInProcessDepot, "openssh": startOpenSSHDepot} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testBillingRunContract(t, start(t))
		})
	}
}

func testBillingRunContract(t *testing.T, d *depot) {
	ctx := context.Background()
	golden := readGolden(t)
	e := newBillingEnv(t, d.cfg, true)
	b := e.billing
	final := filepath.Join(d.localDir, octoberFile)

	// A dry run returns the file and uploads and records nothing.
	rep, err := b.Run(ctx, october, pipelines.RunOptions{DryRun: true})
	require.NoError(t, err)
	require.Equal(t, "dry_run", rep.Outcome)
	require.Equal(t, string(golden), rep.CSV)
	require.Equal(t, goldenPipelineRows, rep.Rows)
	require.Equal(t, []string{"MO-NDD-A", "MO-SEO-M"}, rep.UnknownCodes)
	require.Equal(t, sha(golden), rep.SHA256)
	require.Equal(t, octoberFile, rep.FileName)
	require.Empty(t, depotFiles(t, d.localDir))
	_, ok, err := e.st.UploadFor(ctx, "2026-10")
	require.NoError(t, err)
	require.False(t, ok, "a dry run records nothing")
	require.Zero(t, e.uploads(t, "ok")+e.uploads(t, "error"))

	// The run uploads the golden bytes under /depot/ and records them.
	rep, err = b.Run(ctx, october, pipelines.RunOptions{})
	require.NoError(t, err)
	require.Equal(t, "uploaded", rep.Outcome)
	require.Equal(t, path.Join(d.cfg.Dir, octoberFile), rep.RemotePath)
	require.Empty(t, rep.CSV)
	onDisk, err := os.ReadFile(final)
	require.NoError(t, err)
	require.Equal(t, string(golden), string(onDisk))
	require.Equal(t, []string{octoberFile}, depotFiles(t, d.localDir), "no temporary file left")
	u, ok, err := e.st.UploadFor(ctx, "2026-10")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, store.Upload{Period: "2026-10", RemotePath: rep.RemotePath, SHA256: sha(golden), Rows: goldenPipelineRows,
		Bytes: int64(len(golden)), UploadedAt: billingNow(t)().UTC()}, u)
	require.Equal(t, 1.0, e.uploads(t, "ok"))
	require.Empty(t, e.pending(t))

	// billing.file_uploaded is published once.
	e.events.drain(t, e.broker)
	evs := e.events.since(0)
	require.Len(t, evs, 1)
	var ev map[string]any
	require.NoError(t, json.Unmarshal(evs[0], &ev))
	require.Equal(t, pipelines.EventFileUploaded, ev["type"])
	require.Equal(t, "2026-10", ev["period"])
	require.Equal(t, rep.RemotePath, ev["remote_path"])
	require.Equal(t, sha(golden), ev["sha256"])
	require.EqualValues(t, goldenPipelineRows, ev["rows"])

	// A second run uploads nothing and leaves the file alone.
	old := time.Date(2026, 11, 1, 5, 0, 0, 0, time.UTC)
	require.NoError(t, os.Chtimes(final, old, old))
	before, err := os.Stat(final)
	require.NoError(t, err)
	rep, err = b.Run(ctx, october, pipelines.RunOptions{})
	require.NoError(t, err)
	require.Equal(t, "already_uploaded", rep.Outcome)
	require.Equal(t, sha(golden), rep.SHA256)
	require.Equal(t, goldenPipelineRows, rep.Rows)
	require.Equal(t, 1.0, e.uploads(t, "ok"), "nothing uploaded")
	after, err := os.Stat(final)
	require.NoError(t, err)
	require.True(t, os.SameFile(before, after))
	require.True(t, after.ModTime().Equal(old), "file untouched")

	// Force uploads again, the same bytes.
	rep, err = b.Run(ctx, october, pipelines.RunOptions{Force: true})
	require.NoError(t, err)
	require.Equal(t, "uploaded", rep.Outcome)
	require.Equal(t, 2.0, e.uploads(t, "ok"))
	after, err = os.Stat(final)
	require.NoError(t, err)
	require.False(t, after.ModTime().Equal(old), "replaced")
	onDisk, err = os.ReadFile(final)
	require.NoError(t, err)
	require.Equal(t, string(golden), string(onDisk))

	// A host key that is not the server's: refused, not retried, and the period is pending.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	other, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	kh := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(kh, []byte(knownhosts.Line([]string{knownhosts.Normalize(d.cfg.Addr)}, other.PublicKey())+"\n"), 0o600))
	wrong := d.cfg
	wrong.KnownHostsFile = kh
	e2 := newBillingEnv(t, wrong, false)
	_, err = e2.billing.Run(ctx, october, pipelines.RunOptions{})
	require.ErrorIs(t, err, sftp.ErrHostKeyMismatch)
	require.False(t, sftp.IsRetryable(err))
	require.Equal(t, 1.0, e2.uploads(t, "error"), "a host key mismatch is not retried")
	require.Zero(t, e2.uploads(t, "ok"))
	p := e2.pending(t)
	require.Len(t, p, 1)
	require.Equal(t, "2026-10", p[0].Period)
	require.Equal(t, 1, p[0].Attempts)
	require.Contains(t, p[0].LastError, "host key mismatch")
	require.Equal(t, 1.0, e2.pendingGauge(t))
	_, ok, err = e2.st.UploadFor(ctx, "2026-10")
	require.NoError(t, err)
	require.False(t, ok)
}

// TestBillingRunCutMidUpload: a connection cut during the transfer leaves no file under the final
// name; the retry within the run succeeds.
func TestBillingRunCutMidUpload(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	golden := readGolden(t)
	d := startInProcessDepot(t)
	e := newBillingEnv(t, d.cfg, false)
	final := filepath.Join(d.localDir, octoberFile)

	e.billing.UploadAttempts = 1
	d.server.CutAfter(int64(len(golden) / 2))
	_, err := e.billing.Run(ctx, october, pipelines.RunOptions{})
	require.Error(t, err)
	require.True(t, sftp.IsRetryable(err), "a cut connection is transient: %v", err)
	_, err = os.Stat(final)
	require.ErrorIs(t, err, fs.ErrNotExist, "no file under the final name")
	require.Len(t, e.pending(t), 1)
	require.Equal(t, 1.0, e.pendingGauge(t))

	e.billing.UploadAttempts = 3
	d.server.CutAfter(int64(len(golden) / 2))
	rep, err := e.billing.Run(ctx, october, pipelines.RunOptions{})
	require.NoError(t, err)
	require.Equal(t, "uploaded", rep.Outcome)
	require.Equal(t, 2.0, e.uploads(t, "error"))
	require.Equal(t, 1.0, e.uploads(t, "ok"))
	onDisk, err := os.ReadFile(final)
	require.NoError(t, err)
	require.Equal(t, string(golden), string(onDisk))
	require.Equal(t, []string{octoberFile}, depotFiles(t, d.localDir), "temporary files swept")
	require.Empty(t, e.pending(t))
	require.Zero(t, e.pendingGauge(t))
}

// TestBillingRunServerDown: a server that is down is retried, then the period is pending until
// RetryPending finds the server back.
func TestBillingRunServerDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	golden := readGolden(t)
	d := startInProcessDepot(t)
	e := newBillingEnv(t, d.cfg, false)
	addr := d.server.Addr()
	require.NoError(t, d.server.Close())

	for attempt := 1; attempt <= 2; attempt++ {
		_, err := e.billing.Run(ctx, october, pipelines.RunOptions{})
		require.Error(t, err)
		require.True(t, sftp.IsRetryable(err), "%v", err)
		require.Equal(t, float64(3*attempt), e.uploads(t, "error"), "three attempts per run")
		p := e.pending(t)
		require.Len(t, p, 1)
		require.Equal(t, attempt, p[0].Attempts)
		require.Equal(t, 1.0, e.pendingGauge(t))
	}

	d.start(t, addr)
	e.billing.RetryPending(ctx)
	require.Empty(t, e.pending(t))
	require.Zero(t, e.pendingGauge(t))
	u, ok, err := e.st.UploadFor(ctx, "2026-10")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, sha(golden), u.SHA256)
	onDisk, err := os.ReadFile(filepath.Join(d.localDir, octoberFile))
	require.NoError(t, err)
	require.Equal(t, string(golden), string(onDisk))

	// Nothing left to retry: RetryPending uploads nothing more.
	e.billing.RetryPending(ctx)
	require.Equal(t, 1.0, e.uploads(t, "ok"))
}

// TestBillingRunWithoutUploader: dry runs work without an SFTP server; real runs say why not.
func TestBillingRunWithoutUploader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim := startSim(t, nil)
	st := newGoldenStore(t)
	b := newBilling(t, st, newSimClient(t, sim, 1), prometheus.NewRegistry())
	rep, err := b.Run(ctx, october, pipelines.RunOptions{DryRun: true})
	require.NoError(t, err)
	require.Equal(t, string(readGolden(t)), rep.CSV)
	_, err = b.Run(ctx, october, pipelines.RunOptions{})
	require.True(t, errors.Is(err, pipelines.ErrUploadsOff), "%v", err)
}
