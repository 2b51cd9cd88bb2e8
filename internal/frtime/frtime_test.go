package frtime

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParse(t *testing.T) {
	t.Parallel()
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		require.NoError(t, err)
		return v
	}
	tests := []struct {
		name    string
		in      string
		want    time.Time // instant
		wantErr error     // sentinel, if any
		bad     bool      // any other error
	}{
		{name: "winter", in: "2017-11-10 10:04:10", want: utc("2017-11-10T09:04:10Z")},
		{name: "summer", in: "2018-07-01 00:00:00", want: utc("2018-06-30T22:00:00Z")},
		{name: "date only is midnight Paris", in: "2018-12-19", want: utc("2018-12-18T23:00:00Z")},
		{name: "last second before the spring gap", in: "2024-03-31 01:59:59", want: utc("2024-03-31T00:59:59Z")},
		// 02:30 does not exist that night: read with the winter offset, so 03:30 CEST.
		{name: "spring gap moves forward", in: "2024-03-31 02:30:00", want: utc("2024-03-31T01:30:00Z")},
		{name: "first summer second", in: "2024-03-31 03:00:00", want: utc("2024-03-31T01:00:00Z")},
		// 02:30 happens twice that night: the first one, in summer time.
		{name: "autumn ambiguous is first occurrence", in: "2024-10-27 02:30:00", want: utc("2024-10-27T00:30:00Z")},
		{name: "autumn ambiguous start", in: "2024-10-27 02:00:00", want: utc("2024-10-27T00:00:00Z")},
		{name: "after the autumn change", in: "2024-10-27 03:00:00", want: utc("2024-10-27T02:00:00Z")},
		{name: "empty", in: "", wantErr: ErrEmpty},
		{name: "mysql zero date", in: "0000-00-00 00:00:00", wantErr: ErrEmpty},
		{name: "mysql zero day", in: "0000-00-00", wantErr: ErrEmpty},
		{name: "fraction refused", in: "2017-11-10 10:04:10.5", bad: true},
		{name: "T separator refused", in: "2017-11-10T10:04:10", bad: true},
		{name: "single-digit hour refused", in: "2017-11-10 1:04:10", bad: true},
		{name: "spaces refused", in: " 2017-11-10 10:04:10", bad: true},
		{name: "no such day", in: "2023-02-29 10:00:00", bad: true},
		{name: "hour 24", in: "2023-02-01 24:00:00", bad: true},
		{name: "leap second", in: "2016-12-31 23:59:60", bad: true},
		{name: "junk", in: "hier", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tt.in)
			switch {
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
				require.True(t, got.IsZero())
			case tt.bad:
				require.Error(t, err)
				require.NotErrorIs(t, err, ErrEmpty)
			default:
				require.NoError(t, err)
				require.True(t, tt.want.Equal(got), "Parse(%q) = %s, want %s", tt.in, got.UTC(), tt.want)
				require.Equal(t, Paris(), got.Location())
			}
		})
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{name: "zero", in: time.Time{}, want: ""},
		{name: "utc to paris winter", in: time.Date(2017, 11, 10, 9, 4, 10, 0, time.UTC), want: "2017-11-10 10:04:10"},
		{name: "utc to paris summer", in: time.Date(2018, 6, 30, 22, 0, 0, 0, time.UTC), want: "2018-07-01 00:00:00"},
		{name: "fraction dropped", in: time.Date(2018, 6, 30, 22, 0, 0, 999, time.UTC), want: "2018-07-01 00:00:00"},
		{name: "ambiguous hour, first", in: time.Date(2024, 10, 27, 0, 30, 0, 0, time.UTC), want: "2024-10-27 02:30:00"},
		{name: "ambiguous hour, second", in: time.Date(2024, 10, 27, 1, 30, 0, 0, time.UTC), want: "2024-10-27 02:30:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, Format(tt.in))
		})
	}
}

func TestTimeJSON(t *testing.T) {
	t.Parallel()
	type doc struct {
		D Time `json:"d"`
	}
	paris := time.Date(2018, 12, 19, 11, 44, 22, 0, Paris())
	tests := []struct {
		name    string
		in      string
		want    time.Time
		wantErr bool
		out     string // re-encoded
	}{
		{name: "date", in: `{"d":"2018-12-19 11:44:22"}`, want: paris, out: `{"d":"2018-12-19 11:44:22"}`},
		{name: "empty string", in: `{"d":""}`, out: `{"d":""}`},
		{name: "null", in: `{"d":null}`, out: `{"d":""}`},
		{name: "absent", in: `{}`, out: `{"d":""}`},
		{name: "mysql zero", in: `{"d":"0000-00-00 00:00:00"}`, out: `{"d":""}`},
		{name: "number", in: `{"d":1545216262}`, wantErr: true},
		{name: "bad string", in: `{"d":"19/12/2018"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d doc
			err := json.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.True(t, tt.want.Equal(d.D.Time), "got %s, want %s", d.D.Time, tt.want)
			out, err := json.Marshal(d)
			require.NoError(t, err)
			require.JSONEq(t, tt.out, string(out))
		})
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"2017-11-10 10:04:10", "2018-12-19", "", "0000-00-00 00:00:00", "2024-03-31 02:30:00",
		"2024-10-27 02:30:00", "2023-02-29 10:00:00", "9999-12-31 23:59:59", "0000-01-01 00:00:00",
		"2017-11-10 10:04:10.5", "2017-11-10T10:04:10",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		if err != nil {
			if !got.IsZero() {
				t.Fatalf("Parse(%q) failed with a non-zero time %s", s, got)
			}
			return
		}
		if len(s) != len(Layout) {
			return // date only: formats with 00:00:00, or 01:00:00 on a gap day
		}
		if out := Format(got); out != s {
			// Only a wall-clock time skipped by a spring change may differ: it lands later, by
			// the size of the gap.
			in, err1 := time.ParseInLocation(Layout, s, time.UTC)
			back, err2 := time.ParseInLocation(Layout, out, time.UTC)
			if err1 != nil || err2 != nil {
				t.Fatalf("Parse(%q) succeeded but the layout does not: %v, %v", s, err1, err2)
			}
			if d := back.Sub(in); d <= 0 || d > 2*time.Hour {
				t.Fatalf("Format(Parse(%q)) = %q, want the same string", s, out)
			}
		}
	})
}
