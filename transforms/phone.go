package transforms

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ErrInvalidPhone is wrapped by every error NormalizePhone returns.
var ErrInvalidPhone = errors.New("invalid phone number")

// overseas maps the first four digits of a French 10-digit national number to
// the country code of the overseas territory it belongs to: those numbers are
// not reachable as +33 but under their own code.
var overseas = map[string]string{
	"0262": "262", "0263": "262", "0692": "262", "0693": "262", // La Réunion
	"0269": "262", "0639": "262", // Mayotte
	"0590": "590", "0690": "590", "0691": "590", // Guadeloupe, Saint-Martin, Saint-Barthélemy
	"0594": "594", "0694": "594", // Guyane
	"0596": "596", "0696": "596", "0697": "596", // Martinique
	"0508": "508", // Saint-Pierre-et-Miquelon
}

// overseasTrunk lists the overseas country codes whose national significant
// number has 9 digits, so that "+262 0692…" can drop its stray trunk zero.
var overseasTrunk = map[string]bool{"262": true, "590": true, "594": true, "596": true}

// NormalizePhone returns raw as an E.164 number ("+33612345678").
//
// It accepts French national numbers as people type them (spaces, dots,
// dashes, slashes, parentheses, "+33 (0)6…", "0033…", a leading zero lost by
// a spreadsheet) and maps overseas numbers to their own country code
// ("0692123456" → "+262692123456"). A number already international with
// another country code ("+44…", "0049…") is kept as "+digits" when it has 8 to
// 15 digits. Any other input gives an error wrapping ErrInvalidPhone; the error
// never repeats the input, which is personal data.
func NormalizePhone(raw string) (string, error) {
	s, err := phoneDigits(raw)
	if err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(s, "+"):
		return international(s[1:])
	case strings.HasPrefix(s, "00"):
		return international(s[2:])
	case len(s) == 9 && s[0] != '0':
		// A spreadsheet read "0612345678" as a number and dropped the zero.
		return national("0" + s)
	default:
		return national(s)
	}
}

// phoneDigits strips separators and returns the digits, with a leading "+"
// when there was one.
func phoneDigits(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidPhone)
	}
	s = strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
	// "+33 (0)6…" and "+44 (0)20…": the bracketed zero is the trunk prefix
	// that international dialling omits.
	s = strings.ReplaceAll(s, "(0)", "")

	var b strings.Builder
	b.Grow(len(s))
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case strings.ContainsRune(".-/()", r):
		default:
			return "", fmt.Errorf("%w: unexpected character", ErrInvalidPhone)
		}
	}
	return b.String(), nil
}

// national converts a 10-digit French national number.
func national(d string) (string, error) {
	if len(d) != 10 || !isDigits(d) {
		return "", fmt.Errorf("%w: %d digits, want 10", ErrInvalidPhone, len(d))
	}
	if d[0] != '0' || d[1] == '0' {
		return "", fmt.Errorf("%w: not a French national number", ErrInvalidPhone)
	}
	if cc, ok := overseas[d[:4]]; ok {
		if cc == "508" {
			// Saint-Pierre-et-Miquelon numbers have 6 digits after +508.
			return "+508" + d[4:], nil
		}
		return "+" + cc + d[1:], nil
	}
	return "+33" + d[1:], nil
}

// international handles the digits after "+" or "00".
func international(d string) (string, error) {
	if d == "" || !isDigits(d) {
		return "", fmt.Errorf("%w: no digits after the international prefix", ErrInvalidPhone)
	}
	if rest, ok := strings.CutPrefix(d, "33"); ok {
		// "+33 06…" written without the parentheses.
		if len(rest) == 10 && rest[0] == '0' {
			rest = rest[1:]
		}
		if len(rest) != 9 {
			return "", fmt.Errorf("%w: %d digits after +33, want 9", ErrInvalidPhone, len(rest))
		}
		// national maps "+33692…" to +262, as a French operator would route it.
		return national("0" + rest)
	}
	if d[0] == '0' {
		return "", fmt.Errorf("%w: country code starts with 0", ErrInvalidPhone)
	}
	if cc := d[:min(3, len(d))]; overseasTrunk[cc] && len(d) == 13 && d[3] == '0' {
		d = cc + d[4:]
	}
	if len(d) < 8 || len(d) > 15 {
		return "", fmt.Errorf("%w: %d digits, want 8 to 15", ErrInvalidPhone, len(d))
	}
	return "+" + d, nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
