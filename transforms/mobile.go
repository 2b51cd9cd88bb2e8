package transforms

import "strings"

// mobilePrefixes are the E.164 prefixes of French mobile numbers, metropolitan and overseas,
// with the length of the whole number: every one has a 9-digit national significant number.
var mobilePrefixes = []struct {
	prefix string
	length int
}{
	{"+336", 12}, {"+337", 12}, // métropole
	{"+262692", 13}, {"+262693", 13}, // La Réunion
	{"+262639", 13},                  // Mayotte
	{"+590690", 13}, {"+590691", 13}, // Guadeloupe, Saint-Martin, Saint-Barthélemy
	{"+594694", 13},                  // Guyane
	{"+596696", 13}, {"+596697", 13}, // Martinique
}

// MobileE164 normalises raw (NormalizePhone) and reports whether the result is a French mobile
// number, the only kind an SMS or RCS reaches.
func MobileE164(raw string) (string, bool) {
	n, err := NormalizePhone(raw)
	if err != nil || !IsMobile(n) {
		return "", false
	}
	return n, true
}

// IsMobile reports whether e164 is a French mobile number in E.164 form ("+33612345678",
// "+262692123456"): the only numbers an SMS or RCS can reach. It expects NormalizePhone's
// output and does no cleaning of its own, so " +33 6…" is not a mobile.
func IsMobile(e164 string) bool {
	// "+33 690…" is an overseas mobile written with the metropolitan code: NormalizePhone gives it
	// its own (+590 690…), and only that form reaches it.
	if len(e164) == 12 && strings.HasPrefix(e164, "+33") {
		if _, elsewhere := overseas["0"+e164[3:6]]; elsewhere {
			return false
		}
	}
	for _, p := range mobilePrefixes {
		if len(e164) == p.length && strings.HasPrefix(e164, p.prefix) && isDigits(e164[1:]) {
			return true
		}
	}
	return false
}
