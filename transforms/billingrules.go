package transforms

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// BillingKind says how often a prestation is billed.
type BillingKind string

// The billing kinds a rule can name.
const (
	BillingOnce    BillingKind = "once"    // in the month of its order, unless cancelled before that month ends
	BillingMonthly BillingKind = "monthly" // each month the interface is billable, from the month of its order
	BillingAnnual  BillingKind = "annual"  // the month of its order and each anniversary month while billable
	BillingNever   BillingKind = "never"   // not billed
)

// billingKinds are the kinds in the order error messages list them.
var billingKinds = []BillingKind{BillingOnce, BillingMonthly, BillingAnnual, BillingNever}

func (k BillingKind) valid() bool {
	for _, v := range billingKinds {
		if k == v {
			return true
		}
	}
	return false
}

// BillingRule bills the prestation codes matching Pattern (path.Match
// syntax: "*", "?", "[...]") as Kind. Line is where the rule was read in its
// YAML file, 0 for a built-in rule.
type BillingRule struct {
	Pattern string
	Kind    BillingKind
	Line    int
}

// BillingRules is an ordered rule table: the first rule whose pattern
// matches a code decides. A code no rule matches is billed monthly and
// reported (BillingReport.Unknown), never silently.
type BillingRules []BillingRule

// DefaultBillingRules is the table the partner document's naming implies:
// setups (IN-…-S) and one-time modules (MO-…-S) once, monthly
// subscriptions (…-AMM) monthly, annual ones (…-AMA) annually.
func DefaultBillingRules() BillingRules {
	return BillingRules{
		{Pattern: "*-S", Kind: BillingOnce},
		{Pattern: "*-AMM", Kind: BillingMonthly},
		{Pattern: "*-AMA", Kind: BillingAnnual},
	}
}

// Match returns the first rule whose pattern matches code; ok is false when
// none does.
func (rs BillingRules) Match(code string) (BillingRule, bool) {
	for _, r := range rs {
		// A pattern that does not parse never matches: ParseBillingRules
		// refuses them, so only a hand-built table can hold one.
		if ok, err := path.Match(r.Pattern, code); err == nil && ok {
			return r, true
		}
	}
	return BillingRule{}, false
}

// String is the table's canonical text: the YAML ParseBillingRules reads,
// without comments or line numbers, so that the rules in force for a period
// can be frozen and compared byte for byte.
func (rs BillingRules) String() string {
	var b strings.Builder
	b.WriteString("rules:\n")
	for _, r := range rs {
		// strconv.Quote is valid YAML here: ParseBillingRules admits only
		// printable characters, so the only escapes are \" and \\.
		fmt.Fprintf(&b, "  - match: %s\n    bill: %s\n", strconv.Quote(r.Pattern), r.Kind)
	}
	return b.String()
}

// Validate checks what ParseBillingRules checks, for a table built in code.
func (rs BillingRules) Validate() error {
	if len(rs) == 0 {
		return errors.New("billing rules: no rule")
	}
	seen := make(map[string]int, len(rs))
	for i, r := range rs {
		where := r.where(i)
		if err := checkPattern(r.Pattern); err != nil {
			return fmt.Errorf("billing rules: %s: %w", where, err)
		}
		if !r.Kind.valid() {
			return fmt.Errorf("billing rules: %s: %w", where, unknownKind(string(r.Kind)))
		}
		if j, dup := seen[r.Pattern]; dup {
			return fmt.Errorf("billing rules: %s: match %q already given at %s, so this rule never applies", where, r.Pattern, rs[j].where(j))
		}
		seen[r.Pattern] = i
	}
	return nil
}

// where names rule i of its table for an error: its line when read from a file.
func (r BillingRule) where(i int) string {
	if r.Line > 0 {
		return fmt.Sprintf("line %d", r.Line)
	}
	return fmt.Sprintf("rule %d", i+1)
}

func unknownKind(k string) error {
	return fmt.Errorf("unknown bill %q (want once, monthly, annual or never)", k)
}

// checkPattern refuses a pattern that would silently match nothing: empty,
// malformed for path.Match, or holding a character no prestation code has.
func checkPattern(p string) error {
	if p == "" {
		return errors.New("empty match pattern")
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("invalid match pattern %q: %w", p, err)
	}
	for _, c := range p {
		if c == '/' || unicode.IsSpace(c) || !unicode.IsPrint(c) {
			return fmt.Errorf("invalid match pattern %q: %q cannot appear in a prestation code", p, c)
		}
	}
	return nil
}

// ParseBillingRules reads a rule table from YAML:
//
//	rules:
//	  - match: "IN-*-S"
//	    bill: once
//	  - match: "*-AMA"
//	    bill: annual
//
// Every error names the line at fault: an unknown key, a missing, empty or
// malformed pattern, a pattern given twice, an unknown bill, an empty table.
func ParseBillingRules(data []byte) (BillingRules, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("billing rules: %w", err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, errors.New("billing rules: empty file, want a \"rules:\" list")
	}
	// A second document would be ignored: most likely a paste gone wrong.
	for {
		var more yaml.Node
		err := dec.Decode(&more)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("billing rules: %w", err)
		}
		if len(more.Content) > 0 && more.Content[0].Tag != "!!null" { // a bare "---" at the end is no table
			return nil, fmt.Errorf("billing rules: line %d: a second YAML document, want one table", more.Content[0].Line)
		}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("billing rules: line %d: want a mapping with a \"rules:\" list", root.Line)
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "rules" {
			return nil, fmt.Errorf("billing rules: line %d: unknown key %q (want rules)", k.Line, k.Value)
		}
		if list != nil {
			return nil, fmt.Errorf("billing rules: line %d: rules given twice", k.Line)
		}
		list = v
	}
	if list == nil {
		return nil, fmt.Errorf("billing rules: line %d: no \"rules:\" list", root.Line)
	}
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("billing rules: line %d: rules must be a list of {match, bill}", list.Line)
	}
	if len(list.Content) == 0 {
		return nil, fmt.Errorf("billing rules: line %d: no rule: every code would be billed monthly and reported", list.Line)
	}
	rules := make(BillingRules, 0, len(list.Content))
	for _, item := range list.Content {
		r, err := parseBillingRule(item)
		if err != nil {
			return nil, fmt.Errorf("billing rules: %w", err)
		}
		rules = append(rules, r)
	}
	if err := rules.Validate(); err != nil {
		return nil, err
	}
	return rules, nil
}

func parseBillingRule(item *yaml.Node) (BillingRule, error) {
	if item.Kind != yaml.MappingNode {
		return BillingRule{}, fmt.Errorf("line %d: a rule is a mapping {match, bill}", item.Line)
	}
	r := BillingRule{Line: item.Line}
	var haveMatch, haveBill bool
	for i := 0; i+1 < len(item.Content); i += 2 {
		k, v := item.Content[i], item.Content[i+1]
		if v.Kind != yaml.ScalarNode {
			return BillingRule{}, fmt.Errorf("line %d: %s must be a string", v.Line, k.Value)
		}
		value := v.Value
		if v.Tag == "!!null" {
			value = "" // "match:" or "match: ~"
		}
		switch k.Value {
		case "match":
			if haveMatch {
				return BillingRule{}, fmt.Errorf("line %d: match given twice", k.Line)
			}
			haveMatch = true
			if err := checkPattern(value); err != nil {
				return BillingRule{}, fmt.Errorf("line %d: %w", v.Line, err)
			}
			r.Pattern = value
		case "bill":
			if haveBill {
				return BillingRule{}, fmt.Errorf("line %d: bill given twice", k.Line)
			}
			haveBill = true
			r.Kind = BillingKind(value)
			if !r.Kind.valid() {
				return BillingRule{}, fmt.Errorf("line %d: %w", v.Line, unknownKind(value))
			}
		default:
			return BillingRule{}, fmt.Errorf("line %d: unknown key %q (want match or bill)", k.Line, k.Value)
		}
	}
	if !haveMatch {
		return BillingRule{}, fmt.Errorf("line %d: rule without match", item.Line)
	}
	if !haveBill {
		return BillingRule{}, fmt.Errorf("line %d: rule without bill", item.Line)
	}
	return r, nil
}
