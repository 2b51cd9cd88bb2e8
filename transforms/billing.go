package transforms

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gocarina/gocsv"
)

// Period is a billing month.
type Period struct {
	Year  int
	Month time.Month
}

// ParsePeriod parses a period written "YYYY-MM" ("2026-10").
func ParsePeriod(s string) (Period, error) {
	if len(s) != 7 || s[4] != '-' || !isDigits(s[:4]) || !isDigits(s[5:]) {
		return Period{}, fmt.Errorf("parse period: want YYYY-MM, got %q", s)
	}
	year, _ := strconv.Atoi(s[:4]) // four digits always parse
	month, _ := strconv.Atoi(s[5:])
	if year < 1 {
		return Period{}, fmt.Errorf("parse period %q: year 0000", s)
	}
	if month < 1 || month > 12 {
		return Period{}, fmt.Errorf("parse period %q: month %d out of 1..12", s, month)
	}
	return Period{Year: year, Month: time.Month(month)}, nil
}

// String returns the period as "YYYY-MM", the form ParsePeriod reads and the
// billing file's periode column holds.
func (p Period) String() string {
	return fmt.Sprintf("%04d-%02d", p.Year, int(p.Month))
}

// Bounds returns the period as the half-open interval [start, end): the 1st
// of the month at 00:00 and the 1st of the next month at 00:00, in loc (UTC
// when loc is nil).
func (p Period) Bounds(loc *time.Location) (start, end time.Time) {
	if loc == nil {
		loc = time.UTC
	}
	start = time.Date(p.Year, p.Month, 1, 0, 0, 0, 0, loc)
	end = time.Date(p.Year, p.Month+1, 1, 0, 0, 0, 0, loc)
	return start, end
}

// Previous returns the month before p.
func (p Period) Previous() Period {
	if p.Month == time.January {
		return Period{Year: p.Year - 1, Month: time.December}
	}
	return Period{Year: p.Year, Month: p.Month - 1}
}

// Billing sources, the values of BillableInterface.Source and of the file's
// source column.
const (
	SourceShopApp  = "shopapp"
	SourceSimplebo = "simplebo"
)

// BillableInterface is one client interface with what it ordered, as the
// billing pipeline gathered it. Times should come from dates read in the same
// location as the one given to BillingRows.
type BillableInterface struct {
	Key                                 string // Shop Application interface key (reference_client)
	Source                              string // SourceShopApp or SourceSimplebo
	Company, LastName, FirstName, Email string
	CreatedAt                           time.Time
	AccessEndsAt                        *time.Time // access cut (1st of the month after the deletion request); nil while active
	Installing                          bool       // status 3: not billed yet
	Prestations                         []BillablePrestation
}

// BillablePrestation is one occurrence of a prestation on an interface; the
// same code may appear several times, told apart by UniqueRef.
type BillablePrestation struct {
	Code, UniqueRef string
	OrderedAt       time.Time
	CancelledAt     *time.Time
}

// CatalogueItem is a prestation of the catalogue, its price excluding tax
// (prix HT) in cents.
type CatalogueItem struct {
	Code, Name string
	PriceCents int64
}

// Cents is an amount in euro cents. Money stays in integers end to end so
// that no float rounding reaches an invoice.
type Cents int64

// String formats c with two decimals and a decimal point: "1234.50".
func (c Cents) String() string {
	return c.format('.')
}

// MarshalCSV lets gocsv write c as String does.
func (c Cents) MarshalCSV() (string, error) {
	return c.String(), nil
}

func (c Cents) format(sep byte) string {
	sign := ""
	u := uint64(c) // two's complement keeps math.MinInt64 right once negated
	if c < 0 {
		sign = "-"
		u = -u
	}
	return fmt.Sprintf("%s%d%c%02d", sign, u/100, sep, u%100)
}

// BillingRow is one line of the monthly billing file, one per billable
// prestation occurrence. Fields hold plain values: EncodeBillingCSV applies
// NeutralizeCell to the text cells when writing the file.
type BillingRow struct {
	Period    string `csv:"periode"`
	ClientRef string `csv:"reference_client"`
	Company   string `csv:"societe"`
	LastName  string `csv:"nom"`
	FirstName string `csv:"prenom"`
	Email     string `csv:"email"`
	Source    string `csv:"source"`
	Code      string `csv:"code_prestation"`
	Label     string `csv:"libelle"`
	Quantity  int    `csv:"quantite"`
	UnitPrice Cents  `csv:"prix_unitaire_ht"`
	Amount    Cents  `csv:"montant_ht"`
	StartDate string `csv:"date_debut"` // YYYY-MM-DD
	EndDate   string `csv:"date_fin"`   // YYYY-MM-DD, inclusive
	UniqueRef string `csv:"-"`          // the prestation's reference_unique, for ordering and tracing
}

// dateLayout is how billing dates are written.
const dateLayout = "2006-01-02"

// BillingReport is what BillingRows bills for a period, with what finance
// must see before the file goes out.
type BillingReport struct {
	Rows []BillingRow
	// PerKind counts rows by the kind that billed them; a code no rule names
	// counts as BillingMonthly, the kind it is billed as.
	PerKind map[BillingKind]int
	// Unknown lists, sorted and once each, the billed codes no rule names.
	Unknown []string
	Clients int   // distinct reference_client values in Rows
	TotalHT Cents // sum of the rows' montant_ht
	// WithoutIdentity counts the billed clients with no company, last name,
	// first name nor email: their rows are written all the same.
	WithoutIdentity int
}

// BillingRows lists what is billed for period p, in loc, under rules.
//
// An interface is billable when it is not installing, was created before the
// period ends and its access had not ended when the period started. Each of
// its prestation occurrences is billed as the first rule matching its code
// says (monthly, and reported, when none does), counting from its order: the
// prestation's OrderedAt, or the interface's CreatedAt when it has none.
//   - once: in the month of its order, unless cancelled before that month
//     ends, on the day of its order (date_debut = date_fin);
//   - monthly: in every month from that of its order while it runs;
//   - annual: in the month of its order and in each anniversary month while
//     it runs;
//   - never: not billed.
//
// A monthly or annual occurrence runs in the period when ordered before it
// ends, not cancelled by the time it starts, and still running after the
// later of its order and the period start. Its date_debut is the later of
// the order and the period start; its date_fin the last day before the
// earliest of the cancellation, the access end and the period end (those are
// instants something stops, so a cut on the 1st at 00:00 ends the day
// before). With no rules at all, every code is billed monthly and reported.
// Rows are sorted by reference_client, code_prestation, date_debut,
// then unique reference. A billed code missing from catalogue is an error, as
// are an empty interface key, an unknown source and a unique reference billed
// twice on one interface, since each would put a wrong line on an invoice.
func BillingRows(p Period, loc *time.Location, ifaces []BillableInterface, catalogue map[string]CatalogueItem, rules BillingRules) (BillingReport, error) {
	if loc == nil {
		loc = time.UTC
	}
	if len(rules) > 0 {
		// A hand-built table with an unknown kind would drop its codes silently.
		if err := rules.Validate(); err != nil {
			return BillingReport{}, fmt.Errorf("billing %s: %w", p, err)
		}
	}
	start, end := p.Bounds(loc)
	rep := BillingReport{PerKind: map[BillingKind]int{}}
	unknown := map[string]bool{}
	for _, in := range ifaces {
		if in.Installing || !in.CreatedAt.Before(end) || (in.AccessEndsAt != nil && !in.AccessEndsAt.After(start)) {
			continue
		}
		if in.Key == "" {
			return BillingReport{}, fmt.Errorf("billing %s: interface with an empty key", p)
		}
		if in.Source != SourceShopApp && in.Source != SourceSimplebo {
			return BillingReport{}, fmt.Errorf("billing %s: interface %s: unknown source %q", p, in.Key, in.Source)
		}
		seen := make(map[string]bool, len(in.Prestations))
		for _, pr := range in.Prestations {
			rule, known := rules.Match(pr.Code)
			kind := rule.Kind
			if !known {
				kind = BillingMonthly
			}
			ordered := pr.OrderedAt
			if ordered.IsZero() {
				ordered = in.CreatedAt
			}
			from, until, ok := billedSpan(kind, ordered, pr.CancelledAt, in.AccessEndsAt, start, end, loc)
			if !ok {
				continue
			}
			item, ok := catalogue[pr.Code]
			if !ok {
				return BillingReport{}, fmt.Errorf("billing %s: interface %s: prestation code %q not in the catalogue", p, in.Key, pr.Code)
			}
			if pr.UniqueRef != "" {
				if seen[pr.UniqueRef] {
					return BillingReport{}, fmt.Errorf("billing %s: interface %s: unique reference %q listed twice", p, in.Key, pr.UniqueRef)
				}
				seen[pr.UniqueRef] = true
			}
			if !known {
				unknown[pr.Code] = true
			}
			rep.PerKind[kind]++
			rep.Rows = append(rep.Rows, BillingRow{
				Period:    p.String(),
				ClientRef: in.Key,
				Company:   in.Company,
				LastName:  in.LastName,
				FirstName: in.FirstName,
				Email:     in.Email,
				Source:    in.Source,
				Code:      pr.Code,
				Label:     item.Name,
				Quantity:  1,
				UnitPrice: Cents(item.PriceCents),
				Amount:    Cents(item.PriceCents), // quantity 1
				StartDate: from.In(loc).Format(dateLayout),
				// until is exclusive: the last billed day is the one just before it.
				EndDate:   until.Add(-time.Nanosecond).In(loc).Format(dateLayout),
				UniqueRef: pr.UniqueRef,
			})
		}
	}
	for code := range unknown {
		rep.Unknown = append(rep.Unknown, code)
	}
	rep.finish()
	return rep, nil
}

// AddRows adds rows billed under kind (a source other than Shop Application's: Simplébo's
// clients) to the report; known is false when no rule named their code.
func (rep *BillingReport) AddRows(rows []BillingRow, kind BillingKind, known bool) {
	if len(rows) == 0 {
		return
	}
	if rep.PerKind == nil {
		rep.PerKind = map[BillingKind]int{}
	}
	rep.Rows = append(rep.Rows, rows...)
	rep.PerKind[kind] += len(rows)
	if !known && !slices.Contains(rep.Unknown, rows[0].Code) {
		rep.Unknown = append(rep.Unknown, rows[0].Code)
	}
	rep.finish()
}

// finish sorts the rows and sums the report up.
func (rep *BillingReport) finish() {
	// Stable, so that rows equal on every key keep the input order and the
	// same input always gives the same file.
	slices.SortStableFunc(rep.Rows, func(a, b BillingRow) int {
		return cmp.Or(
			strings.Compare(a.ClientRef, b.ClientRef),
			strings.Compare(a.Code, b.Code),
			strings.Compare(a.StartDate, b.StartDate),
			strings.Compare(a.UniqueRef, b.UniqueRef),
			strings.Compare(a.EndDate, b.EndDate),
		)
	})
	rep.TotalHT, rep.WithoutIdentity = 0, 0
	clients := map[string]bool{}
	for _, r := range rep.Rows {
		rep.TotalHT += r.Amount
		if clients[r.ClientRef] {
			continue
		}
		clients[r.ClientRef] = true
		if r.Company == "" && r.LastName == "" && r.FirstName == "" && r.Email == "" {
			rep.WithoutIdentity++
		}
	}
	rep.Clients = len(clients)
	slices.Sort(rep.Unknown)
}

// billedSpan is the half-open span [from, until) an occurrence of kind,
// ordered at ordered, is billed for in the period [start, end); ok is false
// when it is not billed in it. The interface is billable in the period.
func billedSpan(kind BillingKind, ordered time.Time, cancelled, accessEnds *time.Time, start, end time.Time, loc *time.Location) (from, until time.Time, ok bool) {
	from, until = later(ordered, start), end
	if cancelled != nil {
		until = earlier(until, *cancelled)
	}
	if accessEnds != nil {
		until = earlier(until, *accessEnds)
	}
	if !from.Before(until) {
		return time.Time{}, time.Time{}, false // ordered after the period, or stopped before it or before the order
	}
	switch kind {
	case BillingOnce:
		if ordered.Before(start) || (cancelled != nil && cancelled.Before(end)) {
			return time.Time{}, time.Time{}, false
		}
		// A one-off is billed for the day it was ordered, not for a span.
		day := ordered.In(loc)
		from = time.Date(day.Year(), day.Month(), day.Day(), 0, 0, 0, 0, loc)
		return from, from.AddDate(0, 0, 1), true
	case BillingMonthly:
		return from, until, true
	case BillingAnnual:
		// Ordered before the period and not in its month: not an anniversary.
		if ordered.Before(start) && ordered.In(loc).Month() != start.In(loc).Month() {
			return time.Time{}, time.Time{}, false
		}
		return from, until, true
	default: // BillingNever; Validate refuses any other kind
		return time.Time{}, time.Time{}, false
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// CSVOptions are the billing file's variants.
type CSVOptions struct {
	BOM          bool // start with a UTF-8 byte order mark, for Excel
	DecimalComma bool // write amounts "12,50" instead of "12.50"
}

// utf8BOM is what Excel needs to read the file as UTF-8 instead of Windows-1252.
const utf8BOM = "\xEF\xBB\xBF"

// EncodeBillingCSV writes rows as the billing file: ";" separated, CRLF line
// ends, a header row with the contract's column names, UTF-8. Text cells go
// through NeutralizeCell; the numeric columns, which we write, do not. The
// same rows always give the same bytes.
func EncodeBillingCSV(rows []BillingRow, opts CSVOptions) ([]byte, error) {
	var buf bytes.Buffer
	if opts.BOM {
		buf.WriteString(utf8BOM)
	}
	w := csv.NewWriter(&buf)
	w.Comma = ';'
	w.UseCRLF = true
	out := &cellWriter{CSVWriter: gocsv.NewSafeCSVWriter(w), decimalComma: opts.DecimalComma}
	if rows == nil {
		rows = []BillingRow{} // gocsv still writes the header row
	}
	if err := gocsv.MarshalCSV(rows, out); err != nil {
		return nil, fmt.Errorf("encode billing csv: %w", err)
	}
	return buf.Bytes(), nil
}

// numericColumns are the billing columns whose cells we format ourselves.
var numericColumns = map[string]bool{"quantite": true, "prix_unitaire_ht": true, "montant_ht": true}

// amountColumns are the numeric columns that carry a decimal separator.
var amountColumns = map[string]bool{"prix_unitaire_ht": true, "montant_ht": true}

// cellWriter sits between gocsv and the csv writer to neutralise text cells
// and switch the decimal separator, by column name taken from the header row:
// gocsv formats a field without knowing the file's options.
type cellWriter struct {
	gocsv.CSVWriter
	decimalComma bool
	header       []string
}

func (w *cellWriter) Write(record []string) error {
	if w.header == nil {
		w.header = slices.Clone(record)
		return w.CSVWriter.Write(record)
	}
	if len(record) != len(w.header) {
		return errors.New("record and header differ in length")
	}
	out := make([]string, len(record))
	for i, cell := range record {
		col := w.header[i]
		switch {
		case amountColumns[col] && w.decimalComma:
			out[i] = strings.Replace(cell, ".", ",", 1)
		case numericColumns[col]:
			out[i] = cell
		default:
			out[i] = NeutralizeCell(cell)
		}
	}
	return w.CSVWriter.Write(out)
}
