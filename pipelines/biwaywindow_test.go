package pipelines

import (
	"testing"
	"time"
)

func TestSendWindowNext(t *testing.T) {
	t.Parallel()
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name, window, now, want string
	}{
		{"inside", DefaultSendWindow, "2026-12-04 10:00", "2026-12-04 10:00"},
		{"at the opening", DefaultSendWindow, "2026-12-04 08:00", "2026-12-04 08:00"},
		{"at the closing", DefaultSendWindow, "2026-12-04 20:00", "2026-12-05 08:00"},
		{"early morning", DefaultSendWindow, "2026-12-04 03:12", "2026-12-04 08:00"},
		{"night to the next day", DefaultSendWindow, "2026-12-03 23:30", "2026-12-04 08:00"},
		{"saturday night skips sunday", DefaultSendWindow, "2026-12-05 21:00", "2026-12-07 08:00"},
		{"sunday noon", DefaultSendWindow, "2026-12-06 12:00", "2026-12-07 08:00"},
		// 2026-03-29: Paris goes from 02:00 to 03:00; a Sunday, so the default opens Monday.
		{"DST start, sunday", DefaultSendWindow, "2026-03-28 22:00", "2026-03-30 08:00"},
		{"DST start, every day", "08:00-20:00 Europe/Paris", "2026-03-29 01:30", "2026-03-29 08:00"},
		{"DST start, opening in the skipped hour", "02:30-05:00 Europe/Paris", "2026-03-29 01:00", "2026-03-29 03:30"},
		// 2026-10-25: Paris goes from 03:00 back to 02:00.
		{"DST end, every day", "08:00-20:00 Europe/Paris", "2026-10-24 21:00", "2026-10-25 08:00"},
		{"DST end, overnight window", "22:00-06:00 Europe/Paris", "2026-10-25 05:30", "2026-10-25 05:30"},
		{"across midnight, before midnight", "22:00-06:00 Europe/Paris", "2026-12-04 23:00", "2026-12-04 23:00"},
		{"across midnight, after midnight", "22:00-06:00 Europe/Paris", "2026-12-05 02:00", "2026-12-05 02:00"},
		{"across midnight, day", "22:00-06:00 Europe/Paris", "2026-12-05 12:00", "2026-12-05 22:00"},
		{"across midnight belongs to its opening day", "22:00-06:00 Europe/Paris fri", "2026-12-05 03:00", "2026-12-05 03:00"},
		{"across midnight, closed day", "22:00-06:00 Europe/Paris fri", "2026-12-06 03:00", "2026-12-11 22:00"},
		{"all day", "00:00-24:00 Europe/Paris", "2026-12-06 23:59", "2026-12-06 23:59"},
		{"DST start swallows a short window", "02:30-03:00 Europe/Paris", "2026-03-29 01:00", "2026-03-30 02:30"},
		{"weekend range wraps", "09:00-12:00 Europe/Paris sat-sun", "2026-12-04 10:00", "2026-12-05 09:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := ParseSendWindow(tt.window)
			if err != nil {
				t.Fatalf("ParseSendWindow(%q): %v", tt.window, err)
			}
			now := at(tt.now)
			got, want := w.Next(now), at(tt.want)
			if !got.Equal(want) {
				t.Errorf("Next(%s) = %s, want %s", now, got.In(paris), want)
			}
			if w.Open(now) != now.Equal(want) {
				t.Errorf("Open(%s) = %v", now, w.Open(now))
			}
		})
	}
}

// An hour after the DST end's ambiguous 02:30 is still inside an overnight window, whichever
// 02:30 it was.
func TestSendWindowDSTEndHour(t *testing.T) {
	t.Parallel()
	w, err := ParseSendWindow("22:00-06:00 Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	// 00:30 UTC is 02:30 CEST, 01:30 UTC is 02:30 CET, 2026-10-25.
	for _, u := range []string{"2026-10-25T00:30:00Z", "2026-10-25T01:30:00Z", "2026-10-25T04:59:00Z"} {
		now, _ := time.Parse(time.RFC3339, u)
		if !w.Open(now) {
			t.Errorf("Open(%s) = false, want true", u)
		}
	}
	now, _ := time.Parse(time.RFC3339, "2026-10-25T05:00:00Z") // 06:00 CET: closed
	if w.Open(now) {
		t.Errorf("Open(06:00 CET) = true")
	}
}

func TestParseSendWindowErrors(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "08:00", "8h-20h", "08:00-08:00", "08:00-20:00 Mars/Olympus", "08:00-20:00 Europe/Paris dim",
		"24:00-08:00", "08:60-20:00", "08:00-20:00 Europe/Paris mon sat", "08:00-20:00 Local"} {
		if _, err := ParseSendWindow(s); err == nil {
			t.Errorf("ParseSendWindow(%q): no error", s)
		}
	}
	w, err := ParseSendWindow(DefaultSendWindow)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := w.String(), "08:00-20:00 Europe/Paris mon+tue+wed+thu+fri+sat"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func FuzzParseSendWindow(f *testing.F) {
	f.Add(DefaultSendWindow, int64(1764900000))
	f.Add("22:00-06:00 Europe/Paris fri-mon", int64(1774746000))
	f.Add("00:00-24:00 UTC mon+wed", int64(0))
	f.Fuzz(func(t *testing.T, s string, unix int64) {
		w, err := ParseSendWindow(s)
		if err != nil {
			return
		}
		now := time.Unix(unix%(1<<40), 0)
		next := w.Next(now)
		if next.Before(now) {
			t.Fatalf("%q: Next(%s) = %s, before now", s, now, next)
		}
		if !w.Open(next) {
			t.Fatalf("%q: Next(%s) = %s, which is not open", s, now, next)
		}
		if w2, err := ParseSendWindow(w.String()); err != nil || w2.String() != w.String() {
			t.Fatalf("%q: String %q does not parse back: %v", s, w.String(), err)
		}
	})
}
