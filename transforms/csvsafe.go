package transforms

import "strings"

// NeutralizeCell defuses CSV injection (OWASP): a cell that starts with "=",
// "+", "-", "@", a tab or a carriage return is prefixed with "'" so that a
// spreadsheet shows it as text instead of evaluating it as a formula.
func NeutralizeCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
