package transforms

import (
	"sort"
	"time"
)

// SimpleboBillable is one Simplébo client as billing sees it.
type SimpleboBillable struct {
	ClientID                            string
	Company, LastName, FirstName, Email string
	// Start is billing_starting_date, or the activation date (service_starting_date) when that
	// is empty; zero: never activated, never billed.
	Start time.Time
	// End is end_of_contract_date: the last day billed (zero: open-ended).
	End time.Time
	// FreeFrom is when the client switched from paid to free: billing stops from that day.
	FreeFrom time.Time
	// OfferedMonths are the first months of the contract, not billed.
	OfferedMonths int
}

// SimpleboBillingRows bills each Simplébo client of period p with item, monthly: from the month
// of its start, skipping its offered months, while its contract runs (up to its end, and before a
// switch to free). A month is billed in full, as Shop Application's interfaces are; the row's dates
// are the span billed, clipped to the month. kind comes from the rule table for item's code: never
// bills nothing, once bills the first billable month only, annual the first billable month and
// its anniversaries; monthly (and an unknown code) every month.
func SimpleboBillingRows(p Period, loc *time.Location, clients []SimpleboBillable, item CatalogueItem, kind BillingKind) []BillingRow {
	if kind == BillingNever {
		return nil
	}
	monthStart, monthEnd := p.Bounds(loc) // [start, end)
	var rows []BillingRow
	for _, c := range clients {
		if c.Start.IsZero() {
			continue
		}
		start := c.Start.In(loc)
		first := MonthOf(start, loc)
		for range c.OfferedMonths {
			first = first.Next()
		}
		if p.Before(first) {
			continue
		}
		switch kind {
		case BillingOnce:
			if p != first {
				continue
			}
		case BillingAnnual:
			if p.Month != first.Month {
				continue
			}
		}
		stop := monthEnd // exclusive: the first day not billed
		if !c.End.IsZero() {
			stop = earlier(stop, dayAfter(c.End.In(loc)))
		}
		if !c.FreeFrom.IsZero() {
			stop = earlier(stop, startOfDay(c.FreeFrom.In(loc)))
		}
		from := later(monthStart, startOfDay(start))
		if !stop.After(from) {
			continue
		}
		rows = append(rows, BillingRow{
			Period: p.String(), ClientRef: c.ClientID, Company: c.Company, LastName: c.LastName, FirstName: c.FirstName,
			Email: c.Email, Source: SourceSimplebo, Code: item.Code, Label: item.Name, Quantity: 1,
			UnitPrice: Cents(item.PriceCents), Amount: Cents(item.PriceCents),
			StartDate: from.Format(dateLayout), EndDate: stop.AddDate(0, 0, -1).Format(dateLayout),
		})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ClientRef < rows[j].ClientRef })
	return rows
}

// MonthOf is the month of t in loc.
func MonthOf(t time.Time, loc *time.Location) Period {
	t = t.In(loc)
	return Period{Year: t.Year(), Month: t.Month()}
}

// Next is the month after p.
func (p Period) Next() Period {
	if p.Month == time.December {
		return Period{Year: p.Year + 1, Month: time.January}
	}
	return Period{Year: p.Year, Month: p.Month + 1}
}

// Before reports whether p is an earlier month than q.
func (p Period) Before(q Period) bool {
	return p.Year < q.Year || (p.Year == q.Year && p.Month < q.Month)
}

func startOfDay(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, t.Location())
}

func dayAfter(t time.Time) time.Time { return startOfDay(t).AddDate(0, 0, 1) }
