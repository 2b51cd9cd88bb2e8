// Package redact masks personal data and secrets before they reach a log line. Every log call
// that could carry an email, a phone number, a name or a token goes through it.
package redact

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
)

// Email keeps the first letter and the domain: "j***@example.com".
func Email(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return Hash(s)
	}
	return s[:1] + "***" + s[at:]
}

// Phone keeps the last two digits: "***05".
func Phone(s string) string {
	if len(s) < 4 {
		return "***"
	}
	return "***" + s[len(s)-2:]
}

// Secret hides a token entirely but says whether one is set.
func Secret(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Hash is a short stable digest, for correlating log lines about the same person without naming them.
func Hash(s string) string {
	if s == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(s))
	return "h:" + hex.EncodeToString(sum[:6])
}
