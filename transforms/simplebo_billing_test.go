package transforms

import (
	"testing"
	"time"
)

// Worked examples of Simplébo billing, November 2026, Paris: a site at 29.00 € HT a month.
func TestSimpleboBillingRows(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	day := func(s string) time.Time {
		d, err := time.ParseInLocation("2006-01-02", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	nov := Period{Year: 2026, Month: time.November}
	item := CatalogueItem{Code: "SB-SITE-AMM", Name: "Site Simplébo", PriceCents: 2900}
	for _, tc := range []struct {
		name     string
		c        SimpleboBillable
		kind     BillingKind
		from, to string // the span billed; empty: no row
	}{
		{"running since September: the whole month", SimpleboBillable{Start: day("2026-09-10")}, BillingMonthly, "2026-11-01", "2026-11-30"},
		{"started mid-November: billed from its start", SimpleboBillable{Start: day("2026-11-12")}, BillingMonthly, "2026-11-12", "2026-11-30"},
		{"starts in December: nothing yet", SimpleboBillable{Start: day("2026-12-01")}, BillingMonthly, "", ""},
		{"never activated: nothing", SimpleboBillable{}, BillingMonthly, "", ""},
		{"two offered months from October: December is the first billed", SimpleboBillable{Start: day("2026-10-05"), OfferedMonths: 2}, BillingMonthly, "", ""},
		{"two offered months from September: November is the first billed", SimpleboBillable{Start: day("2026-09-05"), OfferedMonths: 2}, BillingMonthly, "2026-11-01", "2026-11-30"},
		{"contract ended on 15 November: billed to that day", SimpleboBillable{Start: day("2026-01-01"), End: day("2026-11-15")}, BillingMonthly, "2026-11-01", "2026-11-15"},
		{"contract ended in October: nothing", SimpleboBillable{Start: day("2026-01-01"), End: day("2026-10-31")}, BillingMonthly, "", ""},
		{"switched to free on 20 November: billed to the 19th", SimpleboBillable{Start: day("2026-01-01"), FreeFrom: day("2026-11-20")}, BillingMonthly, "2026-11-01", "2026-11-19"},
		{"switched to free on 1 November: nothing", SimpleboBillable{Start: day("2026-01-01"), FreeFrom: day("2026-11-01")}, BillingMonthly, "", ""},
		{"rule never: nothing", SimpleboBillable{Start: day("2026-01-01")}, BillingNever, "", ""},
		{"rule once, first billable month: billed", SimpleboBillable{Start: day("2026-11-03")}, BillingOnce, "2026-11-03", "2026-11-30"},
		{"rule once, a later month: nothing", SimpleboBillable{Start: day("2026-10-03")}, BillingOnce, "", ""},
		{"rule annual, on its anniversary", SimpleboBillable{Start: day("2025-11-20")}, BillingAnnual, "2026-11-01", "2026-11-30"},
		{"rule annual, off its anniversary", SimpleboBillable{Start: day("2025-12-20")}, BillingAnnual, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.ClientID, tc.c.Company = "G-1", "ACME"
			rows := SimpleboBillingRows(nov, paris, []SimpleboBillable{tc.c}, item, tc.kind)
			if tc.from == "" {
				if len(rows) != 0 {
					t.Fatalf("got %+v, want no row", rows)
				}
				return
			}
			if len(rows) != 1 {
				t.Fatalf("got %d rows, want 1: %+v", len(rows), rows)
			}
			r := rows[0]
			want := BillingRow{Period: "2026-11", ClientRef: "G-1", Company: "ACME", Source: SourceSimplebo, Code: "SB-SITE-AMM",
				Label: "Site Simplébo", Quantity: 1, UnitPrice: 2900, Amount: 2900, StartDate: tc.from, EndDate: tc.to}
			if r != want {
				t.Errorf("got  %+v\nwant %+v", r, want)
			}
		})
	}
}
