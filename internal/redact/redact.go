// Package redact masks personal data and secrets before they reach a log line. Every log call
// that could carry an email, a phone number, a name or a token goes through it.
//
// Masks cut on rune boundaries and their output is always valid UTF-8, whatever the input: a
// name like "Élodie" must not leave half a character in a JSON log line.
package redact

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"
)

const mask = "***"

// Email keeps the first character and the domain: "j***@example.com", "é***@example.fr". A value
// with no local part or no '@' is masked whole.
func Email(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return mask
	}
	return valid(firstRune(s[:at]) + mask + s[at:])
}

// Phone keeps the last two characters: "***05".
func Phone(s string) string {
	if utf8.RuneCountInString(s) < 4 {
		return mask
	}
	return valid(mask + lastRunes(s, 2))
}

// Name keeps the initial: "É***".
func Name(s string) string {
	if s == "" {
		return ""
	}
	return valid(firstRune(s) + mask)
}

// Secret hides a token entirely but says whether one is set.
func Secret(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Hasher makes short stable digests, for correlating log lines about the same person without
// naming them. The digest is an HMAC-SHA256 keyed by a secret: an unkeyed hash of an email or a
// phone number is reversed by hashing a list of candidates.
type Hasher struct{ key []byte }

// NewHasher returns a Hasher keyed by key (the daemon's hash key; see internal/hashkey).
func NewHasher(key []byte) Hasher { return Hasher{key: key} }

// Hash returns "h:" and 12 hex digits of the keyed digest of s, or "" for "".
func (h Hasher) Hash(s string) string {
	if s == "" {
		return ""
	}
	mac := hmac.New(sha256.New, h.key)
	mac.Write([]byte(s))
	return "h:" + hex.EncodeToString(mac.Sum(nil)[:6])
}

// firstRune is the first character of s, "" for "".
func firstRune(s string) string {
	_, n := utf8.DecodeRuneInString(s)
	return s[:n]
}

// lastRunes is the last n characters of s.
func lastRunes(s string, n int) string {
	i := len(s)
	for ; n > 0 && i > 0; n-- {
		_, size := utf8.DecodeLastRuneInString(s[:i])
		i -= size
	}
	return s[i:]
}

// valid replaces what is not UTF-8 (a byte cut out of a character by the sender) by U+FFFD.
func valid(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
