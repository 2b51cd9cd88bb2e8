package redact

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"email", Email("john.doe@example.com"), "j***@example.com"},
		{"email with an accented initial", Email("élodie.durand@example.fr"), "é***@example.fr"},
		{"email with a decomposed accent", Email("e\u0301lodie@example.fr"), "e***@example.fr"},
		{"email in CJK", Email("王小明@example.cn"), "王***@example.cn"},
		{"email with an emoji", Email("😀fan@example.com"), "😀***@example.com"},
		{"email with an internationalised domain", Email("zoé@café.fr"), "z***@café.fr"},
		{"email without at", Email("nobody"), "***"},
		{"email without local part", Email("@example.com"), "***"},
		{"email of invalid UTF-8", Email("\xc3@example.com"), "\uFFFD***@example.com"},
		{"empty email", Email(""), "***"},
		{"phone", Phone("+33612345678"), "***78"},
		{"phone with spaces", Phone("06 12 34 56 78"), "***78"},
		{"phone in full-width digits", Phone("０６１２３４５６７８"), "***７８"},
		{"phone ending in a non-ASCII character", Phone("0612345é"), "***5é"},
		{"short phone", Phone("123"), "***"},
		{"short non-ASCII phone", Phone("é12"), "***"},
		{"name", Name("Durand"), "D***"},
		{"accented name", Name("Élodie"), "É***"},
		{"name in Greek", Name("Ωμέγα"), "Ω***"},
		{"name in Arabic", Name("ليلى"), "ل***"},
		{"empty name", Name(""), ""},
		{"secret", Secret("s3cret"), "[redacted]"},
		{"no secret", Secret(""), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.got)
			require.True(t, utf8.ValidString(tc.got), "%q is not valid UTF-8", tc.got)
		})
	}
}

func TestHasherIsStableKeyedAndHidesInput(t *testing.T) {
	h := NewHasher([]byte("key one"))
	got := h.Hash("élodie@example.fr")
	require.Equal(t, got, h.Hash("élodie@example.fr"), "stable")
	require.NotEqual(t, got, h.Hash("elodie@example.fr"))
	require.NotEqual(t, got, NewHasher([]byte("key two")).Hash("élodie@example.fr"), "another key, another digest")
	require.Regexp(t, `^h:[0-9a-f]{12}$`, got)
	require.NotContains(t, got, "lodie")
	require.Empty(t, h.Hash(""))
}

// FuzzRedact: whatever the input, masks are valid UTF-8 and never hold the input's local part.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{"", "@", "élodie@example.fr", "\xc3@x", "a\xff\xfe@b", "+33 6 12 34 56 78", "Élodie", "０６１２", "\xe2\x82"} {
		f.Add(s)
	}
	h := NewHasher([]byte("fuzz"))
	f.Fuzz(func(t *testing.T, s string) {
		for _, out := range []string{Email(s), Phone(s), Name(s), Secret(s), h.Hash(s)} {
			if !utf8.ValidString(out) {
				t.Fatalf("invalid UTF-8 %q from %q", out, s)
			}
		}
		// A local part holding the mask's own characters could show up in the mask by chance.
		if at := strings.LastIndexByte(s, '@'); at > 1 && utf8.ValidString(s[:at]) && utf8.RuneCountInString(s[:at]) > 1 &&
			!strings.ContainsAny(s[:at], "*\uFFFD") {
			local := s[:at]
			if got := Email(s); strings.Contains(got, local) && !strings.Contains(s[at:], local) {
				t.Fatalf("Email(%q) = %q keeps the local part", s, got)
			}
		}
	})
}
