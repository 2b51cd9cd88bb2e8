package transforms

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNeutralizeCell(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
	}{
		{"", ""},
		{"Dupont", "Dupont"},
		{"=1+1", "'=1+1"},
		{`=HYPERLINK("https://exemple.invalid")`, `'=HYPERLINK("https://exemple.invalid")`},
		{"+33612345678", "'+33612345678"},
		{"-50% Déco", "'-50% Déco"},
		{"@SUM(A1:A2)", "'@SUM(A1:A2)"},
		{"\t=cmd", "'\t=cmd"},
		{"\r=cmd", "'\r=cmd"},
		{"'=already quoted", "'=already quoted"},
		{" =leading space", " =leading space"},
		{"a=b", "a=b"},
		{"Élodie", "Élodie"},
		{"\n=newline", "\n=newline"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, NeutralizeCell(tt.in), "NeutralizeCell(%q)", tt.in)
	}
}

func FuzzNeutralizeCell(f *testing.F) {
	for _, s := range []string{"", "=1+1", "+33", "-", "@", "\t", "\r", "'=", "Dupont"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got := NeutralizeCell(in)
		if got != "" && strings.ContainsRune("=+-@\t\r", rune(got[0])) {
			t.Fatalf("NeutralizeCell(%q) = %q starts with a formula character", in, got)
		}
		if got != in && got != "'"+in {
			t.Fatalf("NeutralizeCell(%q) = %q, want the input, prefixed with ' at most", in, got)
		}
		if got != in && strings.TrimPrefix(got, "'") != in {
			t.Fatalf("NeutralizeCell(%q) = %q: stripping the ' does not give the input back", in, got)
		}
	})
}
