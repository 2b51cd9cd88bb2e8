package transforms

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // Europe/Paris without relying on the host's zoneinfo

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files under ../testdata")

func paris(t testing.TB) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	return loc
}

func TestParsePeriod(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Period
		wantErr bool
	}{
		{in: "2026-10", want: Period{2026, time.October}},
		{in: "2026-01", want: Period{2026, time.January}},
		{in: "1999-12", want: Period{1999, time.December}},
		{in: "0001-01", want: Period{1, time.January}},
		{in: "", wantErr: true},
		{in: "2026-1", wantErr: true},
		{in: "2026-13", wantErr: true},
		{in: "2026-00", wantErr: true},
		{in: "0000-05", wantErr: true},
		{in: "26-10", wantErr: true},
		{in: "2026/10", wantErr: true},
		{in: "2026-10-01", wantErr: true},
		{in: " 2026-10", wantErr: true},
		{in: "+026-10", wantErr: true},
		{in: "2026-+1", wantErr: true},
		{in: "octobre", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParsePeriod(tt.in)
		if tt.wantErr {
			require.Error(t, err, "ParsePeriod(%q) = %v", tt.in, got)
			continue
		}
		require.NoError(t, err, "ParsePeriod(%q)", tt.in)
		require.Equal(t, tt.want, got, "ParsePeriod(%q)", tt.in)
		require.Equal(t, tt.in, got.String())
	}
}

func FuzzParsePeriod(f *testing.F) {
	for _, s := range []string{"2026-10", "0000-01", "9999-12", "2026-13", "2026-1", "", "２０２６-10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePeriod(s)
		if err != nil {
			return
		}
		if p.String() != s {
			t.Fatalf("ParsePeriod(%q).String() = %q", s, p.String())
		}
		start, end := p.Bounds(time.UTC)
		if start.Year() != p.Year || start.Month() != p.Month || start.Day() != 1 || !start.Before(end) {
			t.Fatalf("ParsePeriod(%q).Bounds = %v, %v", s, start, end)
		}
		if p.Previous() == p {
			t.Fatalf("ParsePeriod(%q).Previous() is itself", s)
		}
	})
}

func TestPeriodBoundsAndPrevious(t *testing.T) {
	t.Parallel()
	loc := paris(t)
	tests := []struct {
		p          Period
		start, end string // RFC 3339 in Paris time
		previous   Period
	}{
		// October 2026 ends after the switch to winter time on the 25th.
		{Period{2026, time.October}, "2026-10-01T00:00:00+02:00", "2026-11-01T00:00:00+01:00", Period{2026, time.September}},
		{Period{2026, time.December}, "2026-12-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00", Period{2026, time.November}},
		{Period{2027, time.January}, "2027-01-01T00:00:00+01:00", "2027-02-01T00:00:00+01:00", Period{2026, time.December}},
		{Period{2028, time.February}, "2028-02-01T00:00:00+01:00", "2028-03-01T00:00:00+01:00", Period{2028, time.January}},
	}
	for _, tt := range tests {
		start, end := tt.p.Bounds(loc)
		require.Equal(t, tt.start, start.Format(time.RFC3339), "%v start", tt.p)
		require.Equal(t, tt.end, end.Format(time.RFC3339), "%v end", tt.p)
		require.Equal(t, tt.previous, tt.p.Previous(), "%v previous", tt.p)
	}

	start, end := Period{2026, time.October}.Bounds(nil)
	require.Equal(t, time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), start, "nil location is UTC")
	require.Equal(t, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), end)
}

func TestCents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		c    Cents
		want string
	}{
		{0, "0.00"}, {5, "0.05"}, {99, "0.99"}, {100, "1.00"}, {4990, "49.90"}, {123456789, "1234567.89"},
		{-1, "-0.01"}, {-500, "-5.00"},
		{-9223372036854775808, "-92233720368547758.08"}, {9223372036854775807, "92233720368547758.07"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.c.String(), "Cents(%d)", int64(tt.c))
		got, err := tt.c.MarshalCSV()
		require.NoError(t, err)
		require.Equal(t, tt.want, got)
	}
}

// at is a Paris wall-clock time for billing tests.
func at(t testing.TB, s string) time.Time {
	t.Helper()
	v, err := time.ParseInLocation("2006-01-02 15:04", s, paris(t))
	require.NoError(t, err)
	return v
}

func ptr[T any](v T) *T { return &v }

var testCatalogue = map[string]CatalogueItem{
	"IN-SITE-S": {Code: "IN-SITE-S", Name: "Installation site vitrine", PriceCents: 15000},
	"AB-SITE":   {Code: "AB-SITE", Name: "Abonnement site vitrine", PriceCents: 4990},
	"OPT-SEO":   {Code: "OPT-SEO", Name: "Option référencement", PriceCents: 1990},
	"OPT-MAIL":  {Code: "OPT-MAIL", Name: "Boîte e-mail supplémentaire", PriceCents: 250},
}

func TestBillingRows(t *testing.T) {
	t.Parallel()
	oct := Period{2026, time.October}
	iface := func(edit func(*BillableInterface)) BillableInterface {
		in := BillableInterface{
			Key: "SA-1", Source: SourceShopApp, Company: "ACME", LastName: "Dupont", FirstName: "Jean",
			Email: "jean@example.fr", CreatedAt: at(t, "2025-01-10 10:00"),
			Prestations: []BillablePrestation{{Code: "AB-SITE", UniqueRef: "R1", OrderedAt: at(t, "2025-01-10 10:00")}},
		}
		edit(&in)
		return in
	}
	pr := func(edit func(*BillablePrestation)) func(*BillableInterface) {
		return func(in *BillableInterface) { edit(&in.Prestations[0]) }
	}
	type span struct{ from, to string }

	tests := []struct {
		name string
		in   BillableInterface
		want []span // the rows' date_debut and date_fin; nil for no row
	}{
		{"active all month", iface(func(*BillableInterface) {}), []span{{"2026-10-01", "2026-10-31"}}},
		{"installing", iface(func(in *BillableInterface) { in.Installing = true }), nil},
		{"created after the period", iface(func(in *BillableInterface) { in.CreatedAt = at(t, "2026-11-01 00:00") }), nil},
		{
			"created on the last day",
			iface(func(in *BillableInterface) {
				in.CreatedAt = at(t, "2026-10-31 23:59")
				in.Prestations[0].OrderedAt = in.CreatedAt
			}),
			[]span{{"2026-10-31", "2026-10-31"}},
		},
		{"access ended before", iface(func(in *BillableInterface) { in.AccessEndsAt = ptr(at(t, "2026-09-01 00:00")) }), nil},
		{"access cut at the period start", iface(func(in *BillableInterface) { in.AccessEndsAt = ptr(at(t, "2026-10-01 00:00")) }), nil},
		{
			"access cut at the period end",
			iface(func(in *BillableInterface) { in.AccessEndsAt = ptr(at(t, "2026-11-01 00:00")) }),
			[]span{{"2026-10-01", "2026-10-31"}},
		},
		{
			"access cut mid-month",
			iface(func(in *BillableInterface) { in.AccessEndsAt = ptr(at(t, "2026-10-16 00:00")) }),
			[]span{{"2026-10-01", "2026-10-15"}},
		},
		{"ordered after the period", iface(pr(func(p *BillablePrestation) { p.OrderedAt = at(t, "2026-11-01 00:00") })), nil},
		{
			"ordered mid-month",
			iface(pr(func(p *BillablePrestation) { p.OrderedAt = at(t, "2026-10-14 16:45") })),
			[]span{{"2026-10-14", "2026-10-31"}},
		},
		{
			"ordered late on the 31st, Paris time",
			iface(pr(func(p *BillablePrestation) { p.OrderedAt = at(t, "2026-10-31 23:30") })),
			[]span{{"2026-10-31", "2026-10-31"}},
		},
		{"cancelled before", iface(pr(func(p *BillablePrestation) { p.CancelledAt = ptr(at(t, "2026-09-20 12:00")) })), nil},
		{"cancelled at the period start", iface(pr(func(p *BillablePrestation) { p.CancelledAt = ptr(at(t, "2026-10-01 00:00")) })), nil},
		{
			"cancelled mid-month",
			iface(pr(func(p *BillablePrestation) { p.CancelledAt = ptr(at(t, "2026-10-20 15:00")) })),
			[]span{{"2026-10-01", "2026-10-20"}},
		},
		{
			"cancelled after the period",
			iface(pr(func(p *BillablePrestation) { p.CancelledAt = ptr(at(t, "2026-12-01 00:00")) })),
			[]span{{"2026-10-01", "2026-10-31"}},
		},
		{
			"ordered and cancelled the same day",
			iface(pr(func(p *BillablePrestation) {
				p.OrderedAt, p.CancelledAt = at(t, "2026-10-05 09:00"), ptr(at(t, "2026-10-05 11:00"))
			})),
			[]span{{"2026-10-05", "2026-10-05"}},
		},
		{
			"ordered after the access was cut",
			iface(func(in *BillableInterface) {
				in.AccessEndsAt = ptr(at(t, "2026-10-16 00:00"))
				in.Prestations[0].OrderedAt = at(t, "2026-10-20 00:00")
			}),
			nil,
		},
		{
			"cancelled before it was ordered",
			iface(pr(func(p *BillablePrestation) {
				p.OrderedAt, p.CancelledAt = at(t, "2026-10-20 00:00"), ptr(at(t, "2026-10-10 00:00"))
			})),
			nil,
		},
		{"no prestation", iface(func(in *BillableInterface) { in.Prestations = nil }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep, err := BillingRows(oct, paris(t), []BillableInterface{tt.in}, testCatalogue, DefaultBillingRules())
			require.NoError(t, err)
			var got []span
			for _, r := range rep.Rows {
				got = append(got, span{r.StartDate, r.EndDate})
				require.Equal(t, BillingRow{
					Period: "2026-10", ClientRef: "SA-1", Company: "ACME", LastName: "Dupont", FirstName: "Jean",
					Email: "jean@example.fr", Source: "shopapp", Code: "AB-SITE", Label: "Abonnement site vitrine",
					Quantity: 1, UnitPrice: 4990, Amount: 4990, StartDate: r.StartDate, EndDate: r.EndDate, UniqueRef: "R1",
				}, r)
			}
			require.Equal(t, tt.want, got)
		})
	}
}

func TestBillingRowsErrors(t *testing.T) {
	t.Parallel()
	oct := Period{2026, time.October}
	ordered := at(t, "2025-01-10 10:00")
	tests := []struct {
		name    string
		in      BillableInterface
		wantErr string
	}{
		{
			"code missing from the catalogue",
			BillableInterface{Key: "SA-1", Source: SourceShopApp, CreatedAt: ordered,
				Prestations: []BillablePrestation{{Code: "OPT-VIDEO", UniqueRef: "R1", OrderedAt: ordered}}},
			`"OPT-VIDEO"`,
		},
		{
			"empty key",
			BillableInterface{Source: SourceShopApp, CreatedAt: ordered},
			"empty key",
		},
		{
			"unknown source",
			BillableInterface{Key: "SA-1", Source: "cegid", CreatedAt: ordered},
			`"cegid"`,
		},
		{
			"unique reference twice",
			BillableInterface{Key: "SA-1", Source: SourceSimplebo, CreatedAt: ordered, Prestations: []BillablePrestation{
				{Code: "OPT-MAIL", UniqueRef: "R1", OrderedAt: ordered},
				{Code: "OPT-MAIL", UniqueRef: "R1", OrderedAt: ordered},
			}},
			`"R1" listed twice`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rep, err := BillingRows(oct, paris(t), []BillableInterface{tt.in}, testCatalogue, DefaultBillingRules())
			require.ErrorContains(t, err, tt.wantErr)
			require.Zero(t, rep)
		})
	}

	t.Run("not billed, not checked", func(t *testing.T) {
		t.Parallel()
		// A code retired from the catalogue long ago must not block this month's file.
		in := BillableInterface{Key: "SA-1", Source: SourceShopApp, CreatedAt: ordered, Prestations: []BillablePrestation{
			{Code: "OLD", UniqueRef: "R1", OrderedAt: ordered, CancelledAt: ptr(at(t, "2025-06-01 00:00"))},
		}}
		rep, err := BillingRows(oct, paris(t), []BillableInterface{in, {Installing: true}}, testCatalogue, DefaultBillingRules())
		require.NoError(t, err)
		require.Empty(t, rep.Rows)
	})
}

// goldenInterfaces is the billing golden file's input: a company name
// starting with "=", one starting with "-", a cancelled prestation, a
// prestation cancelled before the period, one code ordered twice under two
// unique references, an interface deleted this month (billed to the end of
// the month), one deleted last month and one still installing (not billed),
// and a new interface with its setup prestation.
func goldenInterfaces(t testing.TB) []BillableInterface {
	return []BillableInterface{
		{
			Key: "SA-1001", Source: SourceShopApp,
			Company: `=HYPERLINK("https://exemple.invalid";"Cliquez")`, LastName: "Dupont", FirstName: "Marie",
			Email: "marie.dupont@example.fr", CreatedAt: at(t, "2025-03-12 10:00"),
			Prestations: []BillablePrestation{
				{Code: "OPT-MAIL", UniqueRef: "SA-1001-P4", OrderedAt: at(t, "2026-10-14 10:30")},
				{Code: "AB-SITE", UniqueRef: "SA-1001-P1", OrderedAt: at(t, "2025-03-12 10:00")},
				{Code: "OPT-MAIL", UniqueRef: "SA-1001-P3", OrderedAt: at(t, "2026-09-02 08:00")},
				{Code: "OPT-SEO", UniqueRef: "SA-1001-P2", OrderedAt: at(t, "2026-01-05 14:00"),
					CancelledAt: ptr(at(t, "2026-10-20 15:00"))},
				{Code: "OPT-SEO", UniqueRef: "SA-1001-P0", OrderedAt: at(t, "2025-04-01 09:00"),
					CancelledAt: ptr(at(t, "2025-12-31 18:00"))},
			},
		},
		{
			Key: "SA-0042", Source: SourceSimplebo, Company: "Boulangerie Lefèvre; Fils", LastName: "Lefèvre",
			FirstName: "Jérôme", Email: "contact@boulangerie-lefevre.example", CreatedAt: at(t, "2024-06-01 08:00"),
			// Deletion requested on 2026-10-08: access cut on 1 November.
			AccessEndsAt: ptr(at(t, "2026-11-01 00:00")),
			Prestations: []BillablePrestation{
				{Code: "AB-SITE", UniqueRef: "SA-0042-P1", OrderedAt: at(t, "2024-06-01 08:00")},
			},
		},
		{
			Key: "SA-1500", Source: SourceShopApp, Company: "-50% Déco", LastName: "Martin", FirstName: "Léa",
			Email: "lea@50deco.example", CreatedAt: at(t, "2026-10-15 09:00"),
			Prestations: []BillablePrestation{
				{Code: "IN-SITE-S", UniqueRef: "SA-1500-P1", OrderedAt: at(t, "2026-10-15 09:00")},
				{Code: "AB-SITE", UniqueRef: "SA-1500-P2", OrderedAt: at(t, "2026-10-15 09:00")},
			},
		},
		{
			Key: "SA-0007", Source: SourceShopApp, Company: "Ancien Client", LastName: "Bernard",
			CreatedAt: at(t, "2023-01-01 00:00"), AccessEndsAt: ptr(at(t, "2026-10-01 00:00")),
			Prestations: []BillablePrestation{{Code: "AB-SITE", UniqueRef: "SA-0007-P1", OrderedAt: at(t, "2023-01-01 00:00")}},
		},
		{
			Key: "SA-2000", Source: SourceShopApp, Company: "En Cours", CreatedAt: at(t, "2026-10-28 00:00"), Installing: true,
			Prestations: []BillablePrestation{{Code: "IN-SITE-S", UniqueRef: "SA-2000-P1", OrderedAt: at(t, "2026-10-28 00:00")}},
		},
	}
}

func TestBillingGolden(t *testing.T) {
	t.Parallel()
	rep, err := BillingRows(Period{2026, time.October}, paris(t), goldenInterfaces(t), testCatalogue, DefaultBillingRules())
	require.NoError(t, err)
	require.Equal(t, []string{"AB-SITE", "OPT-MAIL", "OPT-SEO"}, rep.Unknown, "the test catalogue's subscriptions follow no partner naming")
	got, err := EncodeBillingCSV(rep.Rows, CSVOptions{})
	require.NoError(t, err)

	path := filepath.Join("..", "testdata", "billing", "golden_2026-10.csv")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./transforms -run TestBillingGolden -update to create it")
	require.Equal(t, string(want), string(got))

	// Same input, same bytes, whatever the input order.
	reversed := goldenInterfaces(t)
	for i, j := 0, len(reversed)-1; i < j; i, j = i+1, j-1 {
		reversed[i], reversed[j] = reversed[j], reversed[i]
	}
	rep2, err := BillingRows(Period{2026, time.October}, paris(t), reversed, testCatalogue, DefaultBillingRules())
	require.NoError(t, err)
	got2, err := EncodeBillingCSV(rep2.Rows, CSVOptions{})
	require.NoError(t, err)
	require.Equal(t, string(got), string(got2))
}

const billingHeader = "periode;reference_client;societe;nom;prenom;email;source;code_prestation;libelle;" +
	"quantite;prix_unitaire_ht;montant_ht;date_debut;date_fin\r\n"

func TestEncodeBillingCSV(t *testing.T) {
	t.Parallel()
	row := BillingRow{
		Period: "2026-10", ClientRef: "SA-1", Company: "+Plus", LastName: "@nom", FirstName: "\tTab",
		Email: "a@b.fr", Source: "shopapp", Code: "-REMISE", Label: "Remise \"fidélité\"", Quantity: 1,
		UnitPrice: -500, Amount: -500, StartDate: "2026-10-01", EndDate: "2026-10-31", UniqueRef: "R1",
	}
	tests := []struct {
		name string
		rows []BillingRow
		opts CSVOptions
		want string
	}{
		{"no rows", nil, CSVOptions{}, billingHeader},
		{"no rows, BOM", []BillingRow{}, CSVOptions{BOM: true}, "\xEF\xBB\xBF" + billingHeader},
		{
			"neutralised text, numbers as written",
			[]BillingRow{row}, CSVOptions{},
			billingHeader + "2026-10;SA-1;'+Plus;'@nom;'\tTab;a@b.fr;shopapp;'-REMISE;\"Remise \"\"fidélité\"\"\";1;-5.00;-5.00;2026-10-01;2026-10-31\r\n",
		},
		{
			"decimal comma",
			[]BillingRow{{Period: "2026-10", ClientRef: "SA-1", Quantity: 1, UnitPrice: 4990, Amount: 4990}},
			CSVOptions{DecimalComma: true},
			billingHeader + "2026-10;SA-1;;;;;;;;1;49,90;49,90;;\r\n",
		},
		{
			"BOM and decimal comma",
			[]BillingRow{{Period: "2026-10", ClientRef: "SA-1", Label: "Prix 1.5", Quantity: 1, UnitPrice: 123456, Amount: 123456}},
			CSVOptions{BOM: true, DecimalComma: true},
			"\xEF\xBB\xBF" + billingHeader + "2026-10;SA-1;;;;;;;Prix 1.5;1;1234,56;1234,56;;\r\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := EncodeBillingCSV(tt.rows, tt.opts)
			require.NoError(t, err)
			require.Equal(t, tt.want, string(got))
		})
	}

	t.Run("does not modify the rows", func(t *testing.T) {
		t.Parallel()
		rows := []BillingRow{row}
		_, err := EncodeBillingCSV(rows, CSVOptions{})
		require.NoError(t, err)
		require.Equal(t, row, rows[0])
	})
}

func TestBillingHeaderMatchesContract(t *testing.T) {
	t.Parallel()
	got, err := EncodeBillingCSV(nil, CSVOptions{})
	require.NoError(t, err)
	require.Equal(t, strings.Split(strings.TrimSuffix(billingHeader, "\r\n"), ";"),
		strings.Split(strings.TrimSuffix(string(got), "\r\n"), ";"))
}
