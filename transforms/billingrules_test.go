package transforms

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBillingRulesMatch(t *testing.T) {
	t.Parallel()
	custom := BillingRules{
		{Pattern: "IN-BTQZ-*", Kind: BillingMonthly},
		{Pattern: "OPT-*", Kind: BillingNever},
		{Pattern: "*-AMA", Kind: BillingAnnual},
	}
	tests := []struct {
		rules    BillingRules
		code     string
		want     BillingKind
		wantRule string // "" when no rule matches
	}{
		{DefaultBillingRules(), "IN-BTQST-S", BillingOnce, "*-S"},
		{DefaultBillingRules(), "MO-ARTCRITERES-S", BillingOnce, "*-S"},
		{DefaultBillingRules(), "IN-BTQZ-AMM", BillingMonthly, "*-AMM"},
		{DefaultBillingRules(), "IN-BTQZ-AMA", BillingAnnual, "*-AMA"},
		{DefaultBillingRules(), "MO-SEO-M", "", ""},
		{DefaultBillingRules(), "IN-BTQZ-AMA-S", BillingOnce, "*-S"},
		{DefaultBillingRules(), "-S", BillingOnce, "*-S"},
		{DefaultBillingRules(), "in-btqst-s", "", ""}, // codes are case-sensitive, as the partner writes them
		{DefaultBillingRules(), "", "", ""},
		{custom, "IN-BTQZ-AMA", BillingMonthly, "IN-BTQZ-*"}, // the first match wins
		{custom, "IN-VITZ-AMA", BillingAnnual, "*-AMA"},
		{custom, "OPT-OFFERT", BillingNever, "OPT-*"},
		{nil, "IN-BTQST-S", "", ""},
		{BillingRules{{Pattern: "[", Kind: BillingNever}}, "[", "", ""}, // malformed: never matches
	}
	for _, tt := range tests {
		got, ok := tt.rules.Match(tt.code)
		require.Equal(t, tt.wantRule != "", ok, "Match(%q)", tt.code)
		require.Equal(t, tt.want, got.Kind, "Match(%q)", tt.code)
		require.Equal(t, tt.wantRule, got.Pattern, "Match(%q)", tt.code)
	}
}

func TestParseBillingRules(t *testing.T) {
	t.Parallel()
	got, err := ParseBillingRules([]byte(`# finance's table
rules:
  - match: "IN-*-S"
    bill: once
  - bill: annual      # keys in any order
    match: '*-AMA'
  - {match: OPT-OFFERT, bill: never}
  - match: "*-AMM"
    bill: monthly
`))
	require.NoError(t, err)
	bom, err := ParseBillingRules([]byte("\xEF\xBB\xBFrules:\n  - {match: \"*-S\", bill: once}\n---\n"))
	require.NoError(t, err, "a byte order mark from a Windows editor, an explicit end of document")
	require.Equal(t, BillingRules{{Pattern: "*-S", Kind: BillingOnce, Line: 2}}, bom)
	require.Equal(t, BillingRules{
		{Pattern: "IN-*-S", Kind: BillingOnce, Line: 3},
		{Pattern: "*-AMA", Kind: BillingAnnual, Line: 5},
		{Pattern: "OPT-OFFERT", Kind: BillingNever, Line: 7},
		{Pattern: "*-AMM", Kind: BillingMonthly, Line: 8},
	}, got)

	bad := []struct {
		name, yaml, wantErr string
	}{
		{"empty file", "", "empty file"},
		{"only comments", "# nothing\n", "empty file"},
		{"not a mapping", "- match: x\n  bill: once\n", "line 1: want a mapping"},
		{"unknown top key", "rules:\n  - match: x\n    bill: once\nrule:\n  - match: y\n", `line 4: unknown key "rule"`},
		{"no rules key", "{}\n", `no "rules:" list`},
		{"rules not a list", "rules: once\n", "line 1: rules must be a list"},
		{"no rule", "rules: []\n", "line 1: no rule"},
		{"rule not a mapping", "rules:\n  - \"*-S\"\n", "line 2: a rule is a mapping"},
		{"unknown kind", "rules:\n  - match: \"*-S\"\n    bill: once\n  - match: \"*-AMM\"\n    bill: weekly\n", `line 5: unknown bill "weekly" (want once, monthly, annual or never)`},
		{"kind in capitals", "rules:\n  - match: \"*-S\"\n    bill: Once\n", `line 3: unknown bill "Once"`},
		{"empty pattern", "rules:\n  - match: \"\"\n    bill: once\n", "line 2: empty match pattern"},
		{"null pattern", "rules:\n  - match:\n    bill: once\n", "line 2: empty match pattern"},
		{"invalid pattern", "rules:\n  - match: \"*-S\"\n    bill: once\n  - match: \"IN-[\"\n    bill: once\n", `line 4: invalid match pattern "IN-["`},
		{"space in pattern", "rules:\n  - match: \"IN- *\"\n    bill: once\n", `line 2: invalid match pattern "IN- *"`},
		{"slash in pattern", "rules:\n  - match: \"IN/*\"\n    bill: once\n", `line 2: invalid match pattern "IN/*"`},
		{"unknown rule key", "rules:\n  - match: \"*-S\"\n    bill: once\n    price: 12\n", `line 4: unknown key "price" (want match or bill)`},
		{"misspelt key", "rules:\n  - matches: \"*-S\"\n    bill: once\n", `line 2: unknown key "matches"`},
		{"no bill", "rules:\n  - match: \"*-S\"\n", "line 2: rule without bill"},
		{"no match", "rules:\n  - bill: once\n", "line 2: rule without match"},
		{"bill as a list", "rules:\n  - match: \"*-S\"\n    bill: [once]\n", "line 3: bill must be a string"},
		{"pattern twice", "rules:\n  - match: \"*-S\"\n    bill: once\n  - match: \"*-S\"\n    bill: never\n", `line 4: match "*-S" already given at line 2`},
		{"key twice", "rules:\n  - match: \"*-S\"\n    bill: once\n    bill: never\n", "line 4: bill given twice"},
		{"rules twice", "rules:\n  - {match: a, bill: once}\nrules:\n  - {match: b, bill: once}\n", "line 3: rules given twice"},
		{"not YAML", "rules: [\n", "billing rules: yaml:"},
		{"two documents", "rules:\n  - {match: a, bill: once}\n---\nrules:\n  - {match: b, bill: once}\n", "line 4: a second YAML document"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rules, err := ParseBillingRules([]byte(tt.yaml))
			require.ErrorContains(t, err, tt.wantErr)
			require.Nil(t, rules)
		})
	}
}

func TestBillingRulesString(t *testing.T) {
	t.Parallel()
	require.Equal(t, "rules:\n"+
		"  - match: \"*-S\"\n    bill: once\n"+
		"  - match: \"*-AMM\"\n    bill: monthly\n"+
		"  - match: \"*-AMA\"\n    bill: annual\n", DefaultBillingRules().String())

	// The canonical form reads back as the same table, whatever the
	// source's comments, quoting and key order.
	src := "rules:\n  - bill: never # free\n    match: 'OPT-\\\"x\\\\'\n  - {match: \"[A-Z]?-S\", bill: once}\n  - match: Prêt-*\n    bill: annual\n"
	rules, err := ParseBillingRules([]byte(src))
	require.NoError(t, err)
	back, err := ParseBillingRules([]byte(rules.String()))
	require.NoError(t, err)
	require.Equal(t, withoutLines(rules), withoutLines(back))
	require.Equal(t, rules.String(), back.String())
	require.Equal(t, `OPT-\"x\\`, rules[0].Pattern)
}

func withoutLines(rs BillingRules) BillingRules {
	out := make(BillingRules, len(rs))
	for i, r := range rs {
		r.Line = 0
		out[i] = r
	}
	return out
}

func TestBillingRulesValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, DefaultBillingRules().Validate())
	require.ErrorContains(t, BillingRules{}.Validate(), "no rule")
	require.ErrorContains(t, BillingRules{{Pattern: "*-S", Kind: "weekly"}}.Validate(), `rule 1: unknown bill "weekly"`)
	require.ErrorContains(t, BillingRules{{Pattern: "*-S", Kind: BillingOnce}, {Pattern: "", Kind: BillingOnce}}.Validate(), "rule 2: empty match pattern")

	// BillingRows refuses a hand-built table it would apply wrongly.
	_, err := BillingRows(Period{2026, time.November}, nil, nil, nil, BillingRules{{Pattern: "*-S", Kind: "weekly"}})
	require.ErrorContains(t, err, `unknown bill "weekly"`)
}

func FuzzParseBillingRules(f *testing.F) {
	for _, s := range []string{
		DefaultBillingRules().String(),
		"rules:\n  - match: \"IN-*-S\"\n    bill: once\n",
		"rules:\n  - {match: 'a\\\\b', bill: never}\n",
		"rules: []\n", "rules:\n  - match: \"[\"\n    bill: once\n", "", "- a\n", "rules:\n  - match: &a x\n    bill: *a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rules, err := ParseBillingRules(data)
		if err != nil {
			return
		}
		if len(rules) == 0 {
			t.Fatalf("ParseBillingRules(%q): no rule and no error", data)
		}
		// A table that parses has a canonical form that parses to itself.
		canon := rules.String()
		back, err := ParseBillingRules([]byte(canon))
		if err != nil {
			t.Fatalf("canonical form of %q does not parse: %v\n%s", data, err, canon)
		}
		if back.String() != canon {
			t.Fatalf("canonical form of %q is not stable:\n%s\n%s", data, canon, back.String())
		}
		for i := range rules {
			if rules[i].Pattern != back[i].Pattern || rules[i].Kind != back[i].Kind {
				t.Fatalf("rule %d of %q: %+v read back as %+v", i, data, rules[i], back[i])
			}
		}
	})
}

// rulesCatalogue holds the partner's codes, at the prices of the worked
// examples (the Shop Application simulator's).
var rulesCatalogue = map[string]CatalogueItem{
	"IN-BTQST-S":      {Code: "IN-BTQST-S", Name: "Installation boutique en ligne Standard", PriceCents: 49000},
	"IN-CAISSE-S":     {Code: "IN-CAISSE-S", Name: "Installation caisse connectée", PriceCents: 39000},
	"IN-VITRINE-S":    {Code: "IN-VITRINE-S", Name: "Installation site vitrine", PriceCents: 29000},
	"IN-BTQZ-AMM":     {Code: "IN-BTQZ-AMM", Name: "Abonnement boutique mensuel", PriceCents: 5990},
	"IN-BTQZ-AMA":     {Code: "IN-BTQZ-AMA", Name: "Abonnement boutique annuel", PriceCents: 59900},
	"IN-CAISSE-AMM":   {Code: "IN-CAISSE-AMM", Name: "Abonnement caisse mensuel", PriceCents: 3990},
	"IN-VITZ-AMM":     {Code: "IN-VITZ-AMM", Name: "Abonnement site vitrine mensuel", PriceCents: 2990},
	"MO-TRADUCTION-S": {Code: "MO-TRADUCTION-S", Name: "Traduction d'une langue", PriceCents: 8000},
	"MO-SEO-M":        {Code: "MO-SEO-M", Name: "Pack référencement", PriceCents: 2499},
	"OPT-OFFERT":      {Code: "OPT-OFFERT", Name: "Option offerte", PriceCents: 1000},
}

// TestBillingRowsByKind bills November 2026 (Paris) for one interface active
// since March 2024, one worked example per line: what was ordered when, and
// the rows and amounts expected.
func TestBillingRowsByKind(t *testing.T) {
	t.Parallel()
	nov := Period{2026, time.November}
	withOffert := BillingRules{{Pattern: "OPT-*", Kind: BillingNever}}
	withOffert = append(withOffert, DefaultBillingRules()...)
	btqzMonthly := BillingRules{{Pattern: "IN-BTQZ-*", Kind: BillingMonthly}}
	btqzMonthly = append(btqzMonthly, DefaultBillingRules()...)
	type row struct {
		code     string
		amount   Cents
		from, to string
		kind     BillingKind
	}
	prest := func(code, ref, ordered, cancelled string) BillablePrestation {
		p := BillablePrestation{Code: code, UniqueRef: ref}
		if ordered != "" {
			p.OrderedAt = at(t, ordered)
		}
		if cancelled != "" {
			p.CancelledAt = ptr(at(t, cancelled))
		}
		return p
	}
	tests := []struct {
		name        string
		rules       BillingRules // nil: DefaultBillingRules
		created     string       // the interface's creation, "" for 2024-03-10 09:00
		accessEnds  string       // "" while active
		prestations []BillablePrestation
		want        []row
		wantUnknown []string
	}{
		// once
		{
			name:        "setup ordered in the month: billed on its day",
			prestations: []BillablePrestation{prest("IN-BTQST-S", "R1", "2026-11-11 14:00", "")},
			want:        []row{{"IN-BTQST-S", 49000, "2026-11-11", "2026-11-11", BillingOnce}},
		},
		{
			name:        "setup ordered before the month: billed then, not again",
			prestations: []BillablePrestation{prest("IN-BTQST-S", "R1", "2026-08-20 10:00", "")},
		},
		{
			name:        "setup ordered and cancelled in the month: not billed",
			prestations: []BillablePrestation{prest("IN-CAISSE-S", "R1", "2026-11-03 10:00", "2026-11-20 09:00")},
		},
		{
			name:        "setup cancelled after its month: billed",
			prestations: []BillablePrestation{prest("IN-CAISSE-S", "R1", "2026-11-03 10:00", "2026-12-02 09:00")},
			want:        []row{{"IN-CAISSE-S", 39000, "2026-11-03", "2026-11-03", BillingOnce}},
		},
		{
			name:        "setup ordered at 23:30 on the last day, Paris time",
			prestations: []BillablePrestation{prest("IN-BTQST-S", "R1", "2026-11-30 23:30", "")},
			want:        []row{{"IN-BTQST-S", 49000, "2026-11-30", "2026-11-30", BillingOnce}},
		},
		{
			name:        "setup ordered at 00:30 on 1 December, Paris time (November in UTC): December's",
			prestations: []BillablePrestation{prest("IN-BTQST-S", "R1", "2026-12-01 00:30", "")},
		},
		{
			name:        "setup of an interface whose access ends in the month: billed",
			accessEnds:  "2026-12-01 00:00",
			prestations: []BillablePrestation{prest("IN-VITRINE-S", "R1", "2026-11-05 10:00", "")},
			want:        []row{{"IN-VITRINE-S", 29000, "2026-11-05", "2026-11-05", BillingOnce}},
		},
		{
			name:        "setup without date_creation, interface created in the month: billed on the creation day",
			created:     "2026-11-09 16:00",
			prestations: []BillablePrestation{prest("IN-BTQST-S", "R1", "", "")},
			want:        []row{{"IN-BTQST-S", 49000, "2026-11-09", "2026-11-09", BillingOnce}},
		},
		{
			name:        "setup without date_creation, interface created before: not billed",
			prestations: []BillablePrestation{prest("IN-BTQST-S", "R1", "", "")},
		},
		{
			name: "two exemplaires of one module ordered in the month: two rows",
			prestations: []BillablePrestation{
				prest("MO-TRADUCTION-S", "R2", "2026-11-20 10:00", ""),
				prest("MO-TRADUCTION-S", "R1", "2026-11-20 10:00", ""),
			},
			want: []row{
				{"MO-TRADUCTION-S", 8000, "2026-11-20", "2026-11-20", BillingOnce},
				{"MO-TRADUCTION-S", 8000, "2026-11-20", "2026-11-20", BillingOnce},
			},
		},
		// monthly
		{
			name:        "subscription ordered before: the whole month, full price",
			prestations: []BillablePrestation{prest("IN-BTQZ-AMM", "R1", "2024-03-10 09:00", "")},
			want:        []row{{"IN-BTQZ-AMM", 5990, "2026-11-01", "2026-11-30", BillingMonthly}},
		},
		{
			name:        "subscription ordered mid-month: from its order, full price",
			prestations: []BillablePrestation{prest("IN-BTQZ-AMM", "R1", "2026-11-15 10:00", "")},
			want:        []row{{"IN-BTQZ-AMM", 5990, "2026-11-15", "2026-11-30", BillingMonthly}},
		},
		{
			name:        "subscription cancelled during the month: to the cancellation, full price",
			prestations: []BillablePrestation{prest("IN-CAISSE-AMM", "R1", "2026-06-12 10:00", "2026-11-20 15:00")},
			want:        []row{{"IN-CAISSE-AMM", 3990, "2026-11-01", "2026-11-20", BillingMonthly}},
		},
		{
			name:        "subscription cancelled before the month: not billed",
			prestations: []BillablePrestation{prest("IN-CAISSE-AMM", "R1", "2026-06-12 10:00", "2026-10-31 18:00")},
		},
		{
			name:        "subscription ordered after the month: not billed",
			prestations: []BillablePrestation{prest("IN-CAISSE-AMM", "R1", "2026-12-01 00:00", "")},
		},
		{
			name:        "subscription, access cut mid-month (early deletion): to the cut",
			accessEnds:  "2026-11-16 00:00",
			prestations: []BillablePrestation{prest("IN-VITZ-AMM", "R1", "2025-01-10 12:00", "")},
			want:        []row{{"IN-VITZ-AMM", 2990, "2026-11-01", "2026-11-15", BillingMonthly}},
		},
		{
			name:        "two exemplaires of one subscription: two rows",
			prestations: []BillablePrestation{prest("IN-VITZ-AMM", "R1", "2025-01-10 12:00", ""), prest("IN-VITZ-AMM", "R2", "2026-11-02 12:00", "")},
			want: []row{
				{"IN-VITZ-AMM", 2990, "2026-11-01", "2026-11-30", BillingMonthly},
				{"IN-VITZ-AMM", 2990, "2026-11-02", "2026-11-30", BillingMonthly},
			},
		},
		// annual
		{
			name:        "annual on its anniversary month: the year's price",
			prestations: []BillablePrestation{prest("IN-BTQZ-AMA", "R1", "2025-11-05 10:00", "")},
			want:        []row{{"IN-BTQZ-AMA", 59900, "2026-11-01", "2026-11-30", BillingAnnual}},
		},
		{
			name:        "annual on its second anniversary",
			prestations: []BillablePrestation{prest("IN-BTQZ-AMA", "R1", "2024-11-30 23:00", "")},
			want:        []row{{"IN-BTQZ-AMA", 59900, "2026-11-01", "2026-11-30", BillingAnnual}},
		},
		{
			name:        "annual off its anniversary: not billed",
			prestations: []BillablePrestation{prest("IN-BTQZ-AMA", "R1", "2026-06-12 10:00", "")},
		},
		{
			name:        "annual ordered 1 December 00:30 Paris (November in UTC): off its anniversary",
			prestations: []BillablePrestation{prest("IN-BTQZ-AMA", "R1", "2025-12-01 00:30", "")},
		},
		{
			name:        "annual ordered in the month: from its order",
			prestations: []BillablePrestation{prest("IN-BTQZ-AMA", "R1", "2026-11-05 10:00", "")},
			want:        []row{{"IN-BTQZ-AMA", 59900, "2026-11-05", "2026-11-30", BillingAnnual}},
		},
		{
			name:        "annual cancelled before its anniversary: not billed",
			prestations: []BillablePrestation{prest("IN-BTQZ-AMA", "R1", "2025-11-05 10:00", "2026-10-01 10:00")},
		},
		{
			name:        "annual, anniversary in the month the deletion was requested: billed",
			accessEnds:  "2026-12-01 00:00",
			prestations: []BillablePrestation{prest("IN-BTQZ-AMA", "R1", "2025-11-05 10:00", "")},
			want:        []row{{"IN-BTQZ-AMA", 59900, "2026-11-01", "2026-11-30", BillingAnnual}},
		},
		// never, unknown codes, rule order
		{
			name:        "never",
			rules:       withOffert,
			prestations: []BillablePrestation{prest("OPT-OFFERT", "R1", "2026-11-02 10:00", "")},
		},
		{
			name:        "unknown code: billed monthly and reported",
			prestations: []BillablePrestation{prest("MO-SEO-M", "R1", "2026-01-05 14:00", "")},
			want:        []row{{"MO-SEO-M", 2499, "2026-11-01", "2026-11-30", BillingMonthly}},
			wantUnknown: []string{"MO-SEO-M"},
		},
		{
			name:        "unknown code not billed this month: not reported",
			prestations: []BillablePrestation{prest("MO-SEO-M", "R1", "2026-01-05 14:00", "2026-10-02 10:00")},
		},
		{
			name:        "no rule at all: every code monthly and reported",
			rules:       BillingRules{},
			prestations: []BillablePrestation{prest("IN-BTQST-S", "R1", "2026-08-20 10:00", ""), prest("MO-SEO-M", "R2", "2026-01-05 14:00", "")},
			want: []row{
				{"IN-BTQST-S", 49000, "2026-11-01", "2026-11-30", BillingMonthly},
				{"MO-SEO-M", 2499, "2026-11-01", "2026-11-30", BillingMonthly},
			},
			wantUnknown: []string{"IN-BTQST-S", "MO-SEO-M"},
		},
		{
			name:        "first match wins: a monthly rule before *-AMA",
			rules:       btqzMonthly,
			prestations: []BillablePrestation{prest("IN-BTQZ-AMA", "R1", "2026-06-12 10:00", "")},
			want:        []row{{"IN-BTQZ-AMA", 59900, "2026-11-01", "2026-11-30", BillingMonthly}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rules := tt.rules
			if rules == nil {
				rules = DefaultBillingRules()
			}
			in := BillableInterface{Key: "SA-1", Source: SourceShopApp, Company: "ACME", CreatedAt: at(t, "2024-03-10 09:00"), Prestations: tt.prestations}
			if tt.created != "" {
				in.CreatedAt = at(t, tt.created)
			}
			if tt.accessEnds != "" {
				in.AccessEndsAt = ptr(at(t, tt.accessEnds))
			}
			rep, err := BillingRows(nov, paris(t), []BillableInterface{in}, rulesCatalogue, rules)
			require.NoError(t, err)
			var got []row
			var total Cents
			perKind := map[BillingKind]int{}
			for _, r := range rep.Rows {
				require.Equal(t, r.UnitPrice, r.Amount, "quantity 1")
				require.Equal(t, 1, r.Quantity)
				require.Equal(t, rulesCatalogue[r.Code].Name, r.Label)
				rule, _ := rules.Match(r.Code)
				kind := rule.Kind
				if kind == "" {
					kind = BillingMonthly
				}
				got = append(got, row{r.Code, r.Amount, r.StartDate, r.EndDate, kind})
			}
			for _, r := range tt.want {
				total += r.amount
				perKind[r.kind]++
			}
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.wantUnknown, rep.Unknown)
			require.Equal(t, perKind, rep.PerKind)
			require.Equal(t, total, rep.TotalHT)
			require.Equal(t, min(len(tt.want), 1), rep.Clients)
		})
	}
}

// rulesGoldenYAML is the golden month's rule table: the defaults, with free
// options never billed.
const rulesGoldenYAML = `rules:
  - match: "OPT-*"
    bill: never
  - match: "*-S"
    bill: once
  - match: "*-AMM"
    bill: monthly
  - match: "*-AMA"
    bill: annual
`

// rulesGoldenInterfaces is November 2026 for five clients, each rule at work:
//   - SA-3001, new on 12 November: its setup and first month, two exemplaires
//     of a one-time module (80.00 each);
//   - SA-3002, since 5 November 2025: setup not billed again, annual
//     subscription on its anniversary (599.00), an unknown code billed monthly;
//   - SA-3003, since June: setup and annual subscription not billed (off
//     their anniversary), monthly subscription cancelled on the 20th (39.90);
//   - SA-3004, no identity known: a monthly subscription, a free option never;
//   - SA-3005, deletion requested on 10 November: billed to the month's end,
//     a setup ordered and cancelled this month not billed.
func rulesGoldenInterfaces(t testing.TB) []BillableInterface {
	return []BillableInterface{
		{
			Key: "SA-3001", Source: SourceShopApp, Company: "Boutique Neuve", LastName: "Petit", FirstName: "Anne",
			Email: "anne@boutique-neuve.example", CreatedAt: at(t, "2026-11-12 10:00"),
			Prestations: []BillablePrestation{
				{Code: "IN-BTQST-S", UniqueRef: "SA-3001-P1", OrderedAt: at(t, "2026-11-12 10:00")},
				{Code: "IN-BTQZ-AMM", UniqueRef: "SA-3001-P2", OrderedAt: at(t, "2026-11-12 10:00")},
				{Code: "MO-TRADUCTION-S", UniqueRef: "SA-3001-P4", OrderedAt: at(t, "2026-11-20 09:00")},
				{Code: "MO-TRADUCTION-S", UniqueRef: "SA-3001-P3", OrderedAt: at(t, "2026-11-20 09:00")},
			},
		},
		{
			Key: "SA-3002", Source: SourceShopApp, Company: "=Épicerie Ancienne", LastName: "Roux",
			Email: "roux@epicerie.example", CreatedAt: at(t, "2025-11-05 10:00"),
			Prestations: []BillablePrestation{
				{Code: "IN-BTQST-S", UniqueRef: "SA-3002-P1", OrderedAt: at(t, "2025-11-05 10:00")},
				{Code: "IN-BTQZ-AMA", UniqueRef: "SA-3002-P2", OrderedAt: at(t, "2025-11-05 10:00")},
				{Code: "MO-SEO-M", UniqueRef: "SA-3002-P3", OrderedAt: at(t, "2026-02-01 11:00")},
			},
		},
		{
			Key: "SA-3003", Source: SourceSimplebo, Company: "Caisse Été", FirstName: "Luc",
			CreatedAt: at(t, "2026-06-12 10:00"),
			Prestations: []BillablePrestation{
				{Code: "IN-CAISSE-S", UniqueRef: "SA-3003-P1", OrderedAt: at(t, "2026-06-12 10:00")},
				{Code: "IN-BTQZ-AMA", UniqueRef: "SA-3003-P2", OrderedAt: at(t, "2026-06-12 10:00")},
				{Code: "IN-CAISSE-AMM", UniqueRef: "SA-3003-P3", OrderedAt: at(t, "2026-06-12 10:00"),
					CancelledAt: ptr(at(t, "2026-11-20 15:00"))},
			},
		},
		{
			Key: "SA-3004", Source: SourceShopApp, CreatedAt: at(t, "2026-09-01 08:00"),
			Prestations: []BillablePrestation{
				{Code: "IN-VITZ-AMM", UniqueRef: "SA-3004-P1", OrderedAt: at(t, "2026-09-01 08:00")},
				{Code: "OPT-OFFERT", UniqueRef: "SA-3004-P2", OrderedAt: at(t, "2026-11-02 08:00")},
			},
		},
		{
			Key: "SA-3005", Source: SourceShopApp, Company: "Fin de Bail", LastName: "Blanc", FirstName: "Paul",
			Email: "paul@fin-de-bail.example", CreatedAt: at(t, "2025-01-10 12:00"),
			AccessEndsAt: ptr(at(t, "2026-12-01 00:00")),
			Prestations: []BillablePrestation{
				{Code: "IN-VITZ-AMM", UniqueRef: "SA-3005-P1", OrderedAt: at(t, "2025-01-10 12:00")},
				{Code: "IN-VITRINE-S", UniqueRef: "SA-3005-P2", OrderedAt: at(t, "2026-11-03 10:00"),
					CancelledAt: ptr(at(t, "2026-11-10 10:00"))},
			},
		},
	}
}

func TestBillingRulesGolden(t *testing.T) {
	t.Parallel()
	rules, err := ParseBillingRules([]byte(rulesGoldenYAML))
	require.NoError(t, err)
	rep, err := BillingRows(Period{2026, time.November}, paris(t), rulesGoldenInterfaces(t), rulesCatalogue, rules)
	require.NoError(t, err)
	got, err := EncodeBillingCSV(rep.Rows, CSVOptions{})
	require.NoError(t, err)

	path := filepath.Join("..", "testdata", "billing", "golden_rules_2026-11.csv")
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./transforms -run TestBillingRulesGolden -update to create it")
	require.Equal(t, string(want), string(got))

	// 490 + 59.90 + 2 × 80 + 599 + 24.99 + 39.90 + 29.90 + 29.90
	require.Equal(t, Cents(143359), rep.TotalHT)
	require.Len(t, rep.Rows, 9)
	require.Equal(t, map[BillingKind]int{BillingOnce: 3, BillingMonthly: 5, BillingAnnual: 1}, rep.PerKind)
	require.Equal(t, []string{"MO-SEO-M"}, rep.Unknown)
	require.Equal(t, 5, rep.Clients)
	require.Equal(t, 1, rep.WithoutIdentity, "SA-3004")
}
