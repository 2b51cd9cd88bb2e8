package transforms

import (
	"errors"
	"net/mail"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalizeEmail(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 64) + "@" + strings.Repeat("b", 185) + ".fr" // 253 bytes
	tests := []struct {
		name string
		raw  string
		want string // "" means an error wrapping ErrInvalidEmail
	}{
		{"plain", "jean.dupont@example.fr", "jean.dupont@example.fr"},
		{"upper case", "Jean.DUPONT@Example.FR", "jean.dupont@example.fr"},
		{"surrounding spaces", "  jean.dupont@example.fr \t\n", "jean.dupont@example.fr"},
		{"plus tag", "jean+formation@example.fr", "jean+formation@example.fr"},
		{"subdomain", "contact@mail.boulangerie-lefevre.example", "contact@mail.boulangerie-lefevre.example"},
		{"digits and dashes", "j-d_75@orange-business.fr", "j-d_75@orange-business.fr"},
		{"accented local part", "élodie@exemple.fr", "élodie@exemple.fr"},
		{"apostrophe (checked by net/mail)", "o'brien@example.fr", "o'brien@example.fr"},
		{"253 bytes", long, long},

		{"empty", "", ""},
		{"blank", "   ", ""},
		{"no at", "jean.dupont.example.fr", ""},
		{"two ats", "jean@dupont@example.fr", ""},
		{"empty local part", "@example.fr", ""},
		{"empty domain", "jean@", ""},
		{"domain without dot", "jean@localhost", ""},
		{"domain ends with dot", "jean@example.", ""},
		{"domain starts with dot", "jean@.example.fr", ""},
		{"double dot in domain", "jean@example..fr", ""},
		{"double dot in local part", "jean..dupont@example.fr", ""},
		{"inner space", "jean dupont@example.fr", ""},
		{"display name", "Jean Dupont <jean@example.fr>", ""},
		{"angle brackets", "<jean@example.fr>", ""},
		{"comment", "jean@example.fr(perso)", ""},
		{"quoted local part", `"jean"@example.fr`, ""},
		{"two addresses", "jean@example.fr,marie@example.fr", ""},
		{"semicolon list", "jean@example.fr;marie@example.fr", ""},
		{"trailing junk", "jean@example.fr>", ""},
		{"255 bytes", strings.Repeat("a", 64) + "@" + strings.Repeat("b", 187) + ".fr", ""},
		{"placeholder", "non renseigné", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := NormalizeEmail(tt.raw)
			if tt.want == "" {
				require.ErrorIs(t, err, ErrInvalidEmail, "NormalizeEmail(%q) = %q", tt.raw, got)
				require.Empty(t, got)
				return
			}
			require.NoError(t, err, "NormalizeEmail(%q)", tt.raw)
			require.Equal(t, tt.want, got, "NormalizeEmail(%q)", tt.raw)
		})
	}
}

func FuzzNormalizeEmail(f *testing.F) {
	for _, s := range []string{
		"jean.dupont@example.fr", " Jean@Example.FR ", "Jean <jean@example.fr>", "@", "a@b", "a@b.c",
		`"a b"@c.fr`, "a@b.c(d)", "İ@example.fr",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		got, err := NormalizeEmail(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalidEmail) {
				t.Fatalf("NormalizeEmail(%q) error %v does not wrap ErrInvalidEmail", raw, err)
			}
			return
		}
		if len(got) > maxEmailLen || strings.Count(got, "@") != 1 || strings.ContainsAny(got, " \t\r\n") {
			t.Fatalf("NormalizeEmail(%q) = %q, not a plain address", raw, got)
		}
		// What the fast path takes, ParseAddress takes as is.
		if local, domain, _ := strings.Cut(got, "@"); isPlainAddress(local, domain) {
			if a, err := mail.ParseAddress(got); err != nil || a.Name != "" || a.Address != got {
				t.Fatalf("isPlainAddress(%q) but mail.ParseAddress gives %v, %v", got, a, err)
			}
		}
		again, err := NormalizeEmail(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeEmail(%q) = %q, but NormalizeEmail(%q) = %q, %v", raw, got, got, again, err)
		}
	})
}
