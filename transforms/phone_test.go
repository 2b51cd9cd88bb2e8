package transforms

import (
	"errors"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalizePhone(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want string // "" means an error wrapping ErrInvalidPhone
	}{
		{"seed example", "0102030405", "+33102030405"},
		{"mobile", "0612345678", "+33612345678"},
		{"mobile 07", "0712345678", "+33712345678"},
		{"free phone", "0800123456", "+33800123456"},
		{"spaces", "06 12 34 56 78", "+33612345678"},
		{"dots", "06.12.34.56.78", "+33612345678"},
		{"dashes", "06-12-34-56-78", "+33612345678"},
		{"slashes", "06/12/34/56/78", "+33612345678"},
		{"parentheses", "(06) 12 34 56 78", "+33612345678"},
		{"mixed separators", " 06 .12-34/56 78\t", "+33612345678"},
		{"no-break spaces", "06\u00a012\u00a034\u202f56\u202f78", "+33612345678"},
		{"+33", "+33612345678", "+33612345678"},
		{"+33 spaced", "+33 6 12 34 56 78", "+33612345678"},
		{"+33 (0)", "+33 (0)6 12 34 56 78", "+33612345678"},
		{"+33(0) tight", "+33(0)612345678", "+33612345678"},
		{"+33 ( 0 ) spaced", "+33 ( 0 ) 6 12 34 56 78", "+33612345678"},
		{"+33 with trunk zero", "+33 06 12 34 56 78", "+33612345678"},
		{"0033", "0033612345678", "+33612345678"},
		{"0033 spaced", "00 33 6 12 34 56 78", "+33612345678"},
		{"0033 (0)", "0033 (0)1 02 03 04 05", "+33102030405"},
		{"leading zero lost", "612345678", "+33612345678"},
		{"seed as JSON number", "102030405", "+33102030405"},
		{"leading zero lost, dotted", "6.12.34.56.78", "+33612345678"},

		{"Réunion mobile", "0692123456", "+262692123456"},
		{"Réunion mobile 0693", "06 93 12 34 56", "+262693123456"},
		{"Réunion fixed", "0262 12 34 56", "+262262123456"},
		{"Réunion fixed 0263", "0263123456", "+262263123456"},
		{"Mayotte fixed", "02 69 61 23 45", "+262269612345"},
		{"Mayotte mobile", "0639123456", "+262639123456"},
		{"Guadeloupe fixed", "0590123456", "+590590123456"},
		{"Guadeloupe mobile", "0690123456", "+590690123456"},
		{"Guadeloupe mobile 0691", "0691123456", "+590691123456"},
		{"Guyane fixed", "0594123456", "+594594123456"},
		{"Guyane mobile", "0694123456", "+594694123456"},
		{"Martinique fixed", "0596123456", "+596596123456"},
		{"Martinique mobile", "0696123456", "+596696123456"},
		{"Martinique mobile 0697", "0697123456", "+596697123456"},
		{"Saint-Pierre-et-Miquelon", "05 08 41 23 45", "+508412345"},
		{"overseas leading zero lost", "692123456", "+262692123456"},
		{"overseas written +33", "+33692123456", "+262692123456"},
		{"overseas written 0033", "0033 590 12 34 56", "+590590123456"},
		{"overseas written +33 (0)", "+33 (0)6 96 12 34 56", "+596696123456"},
		{"overseas already E.164", "+262 692 12 34 56", "+262692123456"},
		{"overseas +262 (0)", "+262 (0)692 12 34 56", "+262692123456"},
		{"overseas +262 with trunk zero", "+262 0692 12 34 56", "+262692123456"},
		{"Saint-Pierre already E.164", "+508 41 23 45", "+508412345"},

		{"UK", "+44 20 7946 0958", "+442079460958"},
		{"UK (0)", "+44 (0)20 7946 0958", "+442079460958"},
		{"UK 0044", "0044 20 7946 0958", "+442079460958"},
		{"US", "+1 (212) 555-0100", "+12125550100"},
		{"Belgium", "+32 2 123 45 67", "+3221234567"},
		{"Switzerland 0041", "0041 22 123 45 67", "+41221234567"},
		{"8 digits is the shortest", "+12345678", "+12345678"},
		{"15 digits is the longest", "+123456789012345", "+123456789012345"},

		{"empty", "", ""},
		{"blank", " \t ", ""},
		{"letters", "abcdefghij", ""},
		{"label", "tel: 0612345678", ""},
		{"extension", "06 12 34 56 78 poste 12", ""},
		{"too short", "06 12 34 56 7", ""},
		{"too long", "061234567890", ""},
		{"all zeros", "0000000000", ""},
		{"nine zeros", "000000000", ""},
		// Without per-country metadata, "00" + 8 digits reads as an
		// international number; the brief accepts 8 to 15 digits.
		{"00 then 8 digits", "0012345678", "+12345678"},
		{"0 then 0 after +33", "+33 0012345678", ""},
		{"eight digits", "12345678", ""},
		{"two numbers", "0612345678 / 0712345678", ""},
		{"plus in the middle", "06+12345678", ""},
		{"plus alone", "+", ""},
		{"00 alone", "00", ""},
		{"country code 0", "+0612345678", ""},
		{"+33 too short", "+33 1 23", ""},
		{"+33 too long", "+33 6 12 34 56 78 9", ""},
		{"+33 zero number", "+33000000000", ""},
		{"7 digits international", "+1234567", ""},
		{"16 digits international", "+1234567890123456", ""},
		{"float written by a spreadsheet", "6.12345678E8", ""},
		{"Arabic-Indic digits", "٠٦١٢٣٤٥٦٧٨", ""},
		{"fullwidth digits", "０６１２３４５６７８", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizePhone(tt.raw)
			if tt.want == "" {
				require.ErrorIs(t, err, ErrInvalidPhone, "NormalizePhone(%q) = %q", tt.raw, got)
				require.Empty(t, got)
				return
			}
			require.NoError(t, err, "NormalizePhone(%q)", tt.raw)
			require.Equal(t, tt.want, got, "NormalizePhone(%q)", tt.raw)
		})
	}
}

func TestNormalizePhoneErrorHidesInput(t *testing.T) {
	t.Parallel()
	// Error messages reach logs; the number is personal data.
	for _, raw := range []string{"06 12 34 56 7", "abc 0612", "+33 1 23"} {
		_, err := NormalizePhone(raw)
		require.Error(t, err)
		require.NotContains(t, err.Error(), raw)
	}
}

var e164 = regexp.MustCompile(`^\+[1-9][0-9]{7,14}$`)

func FuzzNormalizePhone(f *testing.F) {
	for _, s := range []string{
		"0102030405", "06 12 34 56 78", "+33 (0)6 12 34 56 78", "0033612345678", "612345678",
		"0692123456", "+33692123456", "+262 0692 12 34 56", "0508412345", "+44 (0)20 7946 0958",
		"", "+", "00", "0000000000", "abc", "06\u00a012", "(0)(0)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizePhone(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidPhone) {
				t.Fatalf("NormalizePhone(%q) error %v does not wrap ErrInvalidPhone", raw, err)
			}
			return
		}
		if !e164.MatchString(got) {
			t.Fatalf("NormalizePhone(%q) = %q, not E.164", raw, got)
		}
		again, err := NormalizePhone(got)
		if err != nil || again != got {
			t.Fatalf("NormalizePhone(%q) = %q, but NormalizePhone(%q) = %q, %v", raw, got, got, again, err)
		}
	})
}
