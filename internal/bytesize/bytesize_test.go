package bytesize

import (
	"strconv"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{in: "0", want: 0},
		{in: "1234", want: 1234},
		{in: "12B", want: 12},
		{in: "500MB", want: 500e6},
		{in: " 64 MiB ", want: 64 << 20},
		{in: "2GiB", want: 2 << 30},
		{in: "3KB", want: 3000},
		{in: "1KiB", want: 1024},
		{in: "", bad: true},
		{in: "MB", bad: true},
		{in: "-1MB", bad: true},
		{in: "1.5GB", bad: true},
		{in: "10TB", bad: true},
		{in: "99999999999999999999GiB", bad: true},
		{in: "18446744073709551615GiB", bad: true},
	} {
		got, err := Parse(tc.in)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, bad=%v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"500MB", "64MiB", "0", "1GiB", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := Parse(s)
		if err == nil && v > 0 {
			// A size that parses reads the same in bytes.
			if w, err := Parse(strconv.FormatUint(v, 10)); err != nil || w != v {
				t.Fatalf("Parse(%q) = %d, but %d does not read back: %d, %v", s, v, v, w, err)
			}
		}
	})
}
