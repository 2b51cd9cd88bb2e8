package transforms

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// ErrInvalidPostalCode is wrapped by every error NormalizePostalCode returns.
var ErrInvalidPostalCode = errors.New("invalid French postal code")

// NormalizePostalCode returns raw as a 5-digit French postal code. Spaces are
// removed ("75 001"), and a 4-digit code gets back the leading zero a
// spreadsheet or a JSON number dropped ("1000" → "01000"). Codes starting with
// "00" do not exist. Errors wrap ErrInvalidPostalCode.
func NormalizePostalCode(raw string) (string, error) {
	s := strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, raw)
	if !isDigits(s) {
		return "", fmt.Errorf("%w: not only digits", ErrInvalidPostalCode)
	}
	if len(s) == 4 {
		s = "0" + s
	}
	if len(s) != 5 {
		return "", fmt.Errorf("%w: %d digits, want 5", ErrInvalidPostalCode, len(s))
	}
	if strings.HasPrefix(s, "00") {
		return "", fmt.Errorf("%w: no department 00", ErrInvalidPostalCode)
	}
	return s, nil
}
