package transforms

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalizePostalCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want string // "" means an error wrapping ErrInvalidPostalCode
	}{
		{"Paris", "75001", "75001"},
		{"Corse", "20000", "20000"},
		{"Réunion", "97400", "97400"},
		{"surrounding spaces", " 75001 ", "75001"},
		{"inner space", "75 001", "75001"},
		{"no-break space", "75\u00a0001", "75001"},
		{"leading zero lost", "1000", "01000"},
		{"Ain as JSON number", "1500", "01500"},

		{"empty", "", ""},
		{"blank", "  ", ""},
		{"three digits", "750", ""},
		{"six digits", "750010", ""},
		{"department 00", "00100", ""},
		{"four zeros", "0000", ""},
		{"letters", "7500A", ""},
		{"Corsican department letters", "2A004", ""},
		{"with city", "75001 Paris", ""},
		{"prefixed", "F-75001", ""},
		{"float", "75001.0", ""},
		{"negative", "-7500", ""},
		{"fullwidth digits", "７５００１", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizePostalCode(tt.raw)
			if tt.want == "" {
				require.ErrorIs(t, err, ErrInvalidPostalCode, "NormalizePostalCode(%q) = %q", tt.raw, got)
				require.Empty(t, got)
				return
			}
			require.NoError(t, err, "NormalizePostalCode(%q)", tt.raw)
			require.Equal(t, tt.want, got, "NormalizePostalCode(%q)", tt.raw)
		})
	}
}

func FuzzNormalizePostalCode(f *testing.F) {
	for _, s := range []string{"75001", "1000", " 75 001 ", "00100", "", "2A004", "７５００１"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizePostalCode(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidPostalCode) {
				t.Fatalf("NormalizePostalCode(%q) error %v does not wrap ErrInvalidPostalCode", raw, err)
			}
			return
		}
		if len(got) != 5 || !isDigits(got) {
			t.Fatalf("NormalizePostalCode(%q) = %q, want 5 digits", raw, got)
		}
		again, err := NormalizePostalCode(got)
		if err != nil || again != got {
			t.Fatalf("NormalizePostalCode(%q) = %q, but NormalizePostalCode(%q) = %q, %v", raw, got, got, again, err)
		}
	})
}
