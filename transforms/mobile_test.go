package transforms

import (
	"strings"
	"testing"
)

func TestIsMobile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"+33612345678", true},
		{"+33712345678", true},
		{"+262692123456", true},
		{"+262693123456", true},
		{"+262639123456", true},  // Mayotte
		{"+590690123456", true},  // Guadeloupe
		{"+590691123456", true},  // Saint-Martin
		{"+594694123456", true},  // Guyane
		{"+596696123456", true},  // Martinique
		{"+596697123456", true},  // Martinique
		{"+33123456789", false},  // landline
		{"+33912345678", false},  // VoIP
		{"+33812345678", false},  // special rates
		{"+262262123456", false}, // Réunion landline
		{"+262269123456", false}, // Mayotte landline
		{"+590590123456", false}, // Guadeloupe landline
		{"+594594123456", false},
		{"+596596123456", false},
		{"+508551234", false},    // Saint-Pierre-et-Miquelon: no mobile range listed
		{"+3361234567", false},   // one digit short
		{"+336123456789", false}, // one digit too many
		{"+26269212345", false},
		{"+2626921234567", false},
		{"+447700900123", false}, // UK mobile: not French
		{"+33690000000", false},  // a Guadeloupe mobile under +33: it is +590690000000 (fuzz)
		{"+33692123456", false},  // a Réunion mobile under +33: it is +262692123456
		{"0612345678", false},    // national form: normalise first
		{"+33 612345678", false},
		{"+3361234567a", false},
		{"", false},
		{"+", false},
	}
	for _, tt := range tests {
		if got := IsMobile(tt.in); got != tt.want {
			t.Errorf("IsMobile(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestIsMobileAfterNormalize pins the pairing the Bi-way client relies on: national input goes
// through NormalizePhone, then IsMobile.
func TestIsMobileAfterNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want bool
	}{
		{"06 12 34 56 78", true},
		{"07.12.34.56.78", true},
		{"0692 12 34 56", true},
		{"0639123456", true},
		{"0690123456", true},
		{"0694123456", true},
		{"0697123456", true},
		{"+33 (0)6 12 34 56 78", true},
		{"01 23 45 67 89", false},
		{"0262 12 34 56", false},
	}
	for _, tt := range tests {
		n, err := NormalizePhone(tt.in)
		if err != nil {
			t.Fatalf("NormalizePhone(%q): %v", tt.in, err)
		}
		if got := IsMobile(n); got != tt.want {
			t.Errorf("IsMobile(%q → %q) = %v, want %v", tt.in, n, got, tt.want)
		}
	}
}

func FuzzIsMobile(f *testing.F) {
	for _, s := range []string{"+33612345678", "+262639123456", "+33123456789", "06 12 34 56 78", "", "+"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !IsMobile(s) {
			return
		}
		// A mobile is already what NormalizePhone makes: E.164, digits only, and a fixed point.
		if !strings.HasPrefix(s, "+") || !isDigits(s[1:]) || len(s) < 12 || len(s) > 13 {
			t.Fatalf("IsMobile(%q) accepted a malformed number", s)
		}
		n, err := NormalizePhone(s)
		if err != nil || n != s {
			t.Fatalf("NormalizePhone(%q) = %q, %v; want the number unchanged", s, n, err)
		}
	})
}
