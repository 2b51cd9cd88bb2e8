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
	// ParseAddress accepts display names, comments and quoting; requiring its
	// result to be the input itself keeps only plain addresses.
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", fmt.Errorf("%w: not a plain RFC 5322 address", ErrInvalidEmail)
	}
	return s, nil
}
