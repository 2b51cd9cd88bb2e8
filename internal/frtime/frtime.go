// Package frtime reads and writes partner dates, "aaaa-mm-jj hh:mm:ss" wall-clock times in
// Europe/Paris (Shop Application, see CONTRACTS.md).
//
// Wall-clock times around daylight saving changes are resolved as PHP, the partner's likely
// stack, resolves them:
//   - a time that does not exist (02:00–02:59 on the last Sunday of March) is read with the
//     offset in force before the change, so it lands one hour later: "02:30" is 03:30 CEST;
//   - a time that exists twice (02:00–02:59 on the last Sunday of October) is the first
//     occurrence, still in summer time: "02:30" is 02:30 CEST, 00:30 UTC.
package frtime

import (
	"errors"
	"fmt"
	"sync"
	"time"
	_ "time/tzdata" // machines without a zoneinfo database still know Europe/Paris
)

// Layout is the partner's full date-time layout, DateLayout its date-only form.
const (
	Layout     = "2006-01-02 15:04:05"
	DateLayout = "2006-01-02"
)

// ErrEmpty is returned by Parse for an empty date, or the MySQL zero date
// ("0000-00-00 00:00:00") PHP APIs send for "none": callers decide whether that is an error.
var ErrEmpty = errors.New("frtime: empty date")

// Paris returns the Europe/Paris location, loaded once.
func Paris() *time.Location { return paris() }

var paris = sync.OnceValue(func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		// Unreachable: time/tzdata embeds the zone, which LoadLocation falls back to.
		panic(fmt.Sprintf("frtime: loading Europe/Paris: %v", err))
	}
	return loc
})

// Parse reads "aaaa-mm-jj hh:mm:ss" or "aaaa-mm-jj" (midnight) as a Paris wall-clock time.
// The shape is checked strictly (no surrounding spaces, no fraction, two-digit fields) so that
// whatever parses formats back to the same string, daylight-saving gaps aside.
func Parse(s string) (time.Time, error) {
	switch s {
	case "", "0000-00-00", "0000-00-00 00:00:00":
		return time.Time{}, ErrEmpty
	}
	layout := Layout
	switch {
	case len(s) == len(DateLayout) && shaped(s, DateLayout):
		layout = DateLayout
	case len(s) == len(Layout) && shaped(s, Layout):
	default:
		return time.Time{}, fmt.Errorf("frtime: %q is not a date in the form aaaa-mm-jj hh:mm:ss", s)
	}
	t, err := time.ParseInLocation(layout, s, Paris())
	if err != nil {
		return time.Time{}, fmt.Errorf("frtime: parsing %q: %w", s, err)
	}
	// Go picks the second occurrence of an ambiguous wall-clock time; take the first instead.
	if earlier := t.Add(-time.Hour); earlier.Format(Layout) == t.Format(Layout) {
		return earlier, nil
	}
	return t, nil
}

// shaped reports whether s has digits wherever layout has digits and the same separators.
func shaped(s, layout string) bool {
	for i := 0; i < len(layout); i++ {
		c := s[i]
		if l := layout[i]; l >= '0' && l <= '9' {
			if c < '0' || c > '9' {
				return false
			}
		} else if c != l {
			return false
		}
	}
	return true
}

// Format writes t as a Paris wall-clock "aaaa-mm-jj hh:mm:ss"; the zero time is "".
func Format(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.In(Paris()).Format(Layout)
}

// Time is a partner date in JSON: "aaaa-mm-jj hh:mm:ss" (or "aaaa-mm-jj") in Europe/Paris.
// "", null and the MySQL zero date read as the zero time, which is written as "".
type Time struct{ time.Time }

// MarshalJSON writes the date as a Paris wall-clock string, "" for the zero time.
func (t Time) MarshalJSON() ([]byte, error) {
	s := Format(t.Time)
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"'), nil
}

// UnmarshalJSON reads a partner date string or null.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("frtime: date %s is not a JSON string", b)
	}
	// Partner dates hold no escapes; a string with any is not a date anyway.
	v, err := Parse(string(b[1 : len(b)-1]))
	switch {
	case errors.Is(err, ErrEmpty):
		t.Time = time.Time{}
		return nil
	case err != nil:
		return err
	}
	t.Time = v
	return nil
}

// String is the partner form, "" for the zero time.
func (t Time) String() string { return Format(t.Time) }
