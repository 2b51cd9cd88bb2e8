package transforms

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"unicode"
)

// ErrInvalidEmail is wrapped by every error NormalizeEmail returns.
var ErrInvalidEmail = errors.New("invalid email address")

// maxEmailLen is the longest address SMTP can carry (RFC 5321 path limit).
const maxEmailLen = 254

// NormalizeEmail trims and lower-cases raw and checks that it is a bare
// address ("jean.dupont@exemple.fr"): no display name, no angle brackets, one
// "@", a non-empty local part and a domain with a dot. Errors wrap
// ErrInvalidEmail and never repeat the input.
func NormalizeEmail(raw string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(raw))
	switch {
	case s == "":
		return "", fmt.Errorf("%w: empty", ErrInvalidEmail)
	case len(s) > maxEmailLen:
		return "", fmt.Errorf("%w: longer than %d bytes", ErrInvalidEmail, maxEmailLen)
	case strings.ContainsFunc(s, unicode.IsSpace):
		return "", fmt.Errorf("%w: contains a space", ErrInvalidEmail)
	case strings.Count(s, "@") != 1:
		return "", fmt.Errorf("%w: want exactly one @", ErrInvalidEmail)
	}
	local, domain, _ := strings.Cut(s, "@")
	if local == "" {
		return "", fmt.Errorf("%w: empty local part", ErrInvalidEmail)
	}
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", fmt.Errorf("%w: domain needs a dot between labels", ErrInvalidEmail)
	}
	if isPlainAddress(local, domain) {
		return s, nil
	}
	// ParseAddress accepts display names, comments and quoting; requiring its
	// result to be the input itself keeps only plain addresses.
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", fmt.Errorf("%w: not a plain RFC 5322 address", ErrInvalidEmail)
	}
	return s, nil
}

// isPlainAddress reports whether local@domain is made of the characters nearly every real
// address uses (lower-case letters, digits, and ".-_+" in the local part, ".-" in the domain),
// with no empty dot-separated part: such an address is an RFC 5322 dot-atom on both sides, which
// mail.ParseAddress accepts as is (FuzzNormalizeEmail holds the two together), for a fraction of
// its cost on the webhook's path.
func isPlainAddress(local, domain string) bool {
	return dotAtom(local, "._-+") && dotAtom(domain, ".-")
}

func dotAtom(s, punct string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && strings.IndexByte(punct, c) < 0 {
			return false
		}
	}
	return true
}
