package pipelines

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SendWindow is when messages may reach people: a daily span of local time in a zone, on some
// weekdays. A span whose end is not after its start runs past midnight (22:00-06:00), and
// belongs to the day it opens.
type SendWindow struct {
	Start, End time.Duration // since local midnight; End may be 24h
	Loc        *time.Location
	Days       [7]bool // by time.Weekday
}

// DefaultSendWindow is PASSERELLE_BIWAY_SEND_WINDOW's default: no message at night nor on Sunday.
const DefaultSendWindow = "08:00-20:00 Europe/Paris mon-sat"

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// ParseSendWindow reads "HH:MM-HH:MM [zone] [days]": zone an IANA name (default Europe/Paris),
// days a range ("mon-sat", "fri-mon") or a list ("mon+wed+fri"), every day when absent.
func ParseSendWindow(s string) (SendWindow, error) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f) > 3 {
		return SendWindow{}, errors.New(`want "HH:MM-HH:MM [zone] [days]", e.g. "` + DefaultSendWindow + `"`)
	}
	from, to, ok := strings.Cut(f[0], "-")
	if !ok {
		return SendWindow{}, fmt.Errorf("%q: want HH:MM-HH:MM", f[0])
	}
	var w SendWindow
	var err error
	if w.Start, err = clock(from, false); err != nil {
		return SendWindow{}, err
	}
	if w.End, err = clock(to, true); err != nil {
		return SendWindow{}, err
	}
	if w.Start == w.End {
		return SendWindow{}, fmt.Errorf("%q: the window is empty", f[0])
	}
	zone, days := "Europe/Paris", ""
	for _, x := range f[1:] {
		if strings.Contains(x, "/") || x == "UTC" || x == "Local" {
			zone = x
		} else {
			days = x
		}
	}
	if zone == "Local" {
		return SendWindow{}, errors.New("name the zone (Local depends on the machine)")
	}
	if w.Loc, err = time.LoadLocation(zone); err != nil {
		return SendWindow{}, fmt.Errorf("zone %q: %w", zone, err)
	}
	if days == "" {
		w.Days = [7]bool{true, true, true, true, true, true, true}
		return w, nil
	}
	if w.Days, err = parseDays(days); err != nil {
		return SendWindow{}, err
	}
	return w, nil
}

func clock(s string, end bool) (time.Duration, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || (hh == 24 && (mm != 0 || !end)) {
		return 0, fmt.Errorf("%q is not a time HH:MM", s)
	}
	return time.Duration(hh)*time.Hour + time.Duration(mm)*time.Minute, nil
}

func weekday(s string) (int, error) {
	for i, d := range weekdays {
		if strings.EqualFold(s, d) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%q is not a day (sun, mon, tue, wed, thu, fri, sat)", s)
}

func parseDays(s string) ([7]bool, error) {
	var days [7]bool
	if a, b, ok := strings.Cut(s, "-"); ok {
		from, err := weekday(a)
		if err != nil {
			return days, err
		}
		to, err := weekday(b)
		if err != nil {
			return days, err
		}
		for d := from; ; d = (d + 1) % 7 {
			days[d] = true
			if d == to {
				break
			}
		}
		return days, nil
	}
	for _, x := range strings.Split(s, "+") {
		d, err := weekday(x)
		if err != nil {
			return days, err
		}
		days[d] = true
	}
	return days, nil
}

// Next returns t when t is inside the window, and otherwise the window's next opening: a
// message due at night goes out when the window opens, never dropped. Local times are read on
// the wall clock, so the window opens at 08:00 on either side of a DST change.
func (w SendWindow) Next(t time.Time) time.Time {
	lt := t.In(w.Loc)
	y, m, d := lt.Date()
	for i := -1; i <= 8; i++ {
		day := time.Date(y, m, d+i, 12, 0, 0, 0, w.Loc) // noon: never skipped by a DST change
		if !w.Days[day.Weekday()] {
			continue
		}
		dy, dm, dd := day.Date()
		open := wall(dy, dm, dd, w.Start, w.Loc)
		end := dd
		if w.End <= w.Start {
			end++
		}
		closeAt := wall(dy, dm, end, w.End, w.Loc)
		if !closeAt.After(open) {
			continue // a short window a DST change swallows (02:30-03:00 on the last Sunday of March)
		}
		if !t.Before(open) && t.Before(closeAt) {
			return t
		}
		if open.After(t) {
			return open
		}
	}
	return t // no day at all: refused by Validate, never here
}

// Open reports whether t is inside the window.
func (w SendWindow) Open(t time.Time) bool { return w.Next(t).Equal(t) }

// wall is the instant the wall clock of loc shows d after midnight on y-m-dd (24:00 is the next
// midnight).
func wall(y int, m time.Month, dd int, d time.Duration, loc *time.Location) time.Time {
	return time.Date(y, m, dd, int(d/time.Hour), int(d%time.Hour/time.Minute), 0, 0, loc)
}

// String is the window as ParseSendWindow reads it.
func (w SendWindow) String() string {
	var ds []string
	for i, on := range w.Days {
		if on {
			ds = append(ds, weekdays[i])
		}
	}
	f := func(d time.Duration) string {
		return fmt.Sprintf("%02d:%02d", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%s-%s %s %s", f(w.Start), f(w.End), w.Loc, strings.Join(ds, "+"))
}

// LocalDay is t's date in the window's zone, "2006-01-02": the day a per-day limit counts in.
func (w SendWindow) LocalDay(t time.Time) string { return t.In(w.Loc).Format(time.DateOnly) }
