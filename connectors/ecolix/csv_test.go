package ecolix

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestParseCSV(t *testing.T) {
	good := "id;date_modification;nom;ville\r\n" +
		"12;2026-12-04 15:00:00;Martin;Lyon\r\n" +
		"\"C;7\";2026-12-04 15:00:01;\"Dupont \"\"Jr\"\"\";\r\n"
	recs, err := ParseCSV([]byte(good))
	require.NoError(t, err)
	require.Len(t, recs, 2)
	require.Equal(t, "12", recs[0].ID)
	require.True(t, recs[0].Modified.Equal(time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)))
	require.JSONEq(t, `{"id":"12","date_modification":"2026-12-04 15:00:00","nom":"Martin","ville":"Lyon"}`, string(recs[0].Raw))
	require.Equal(t, "C;7", recs[1].ID)
	require.JSONEq(t, `{"id":"C;7","date_modification":"2026-12-04 15:00:01","nom":"Dupont \"Jr\"","ville":""}`, string(recs[1].Raw))

	withBOM, err := ParseCSV([]byte("\uFEFF" + good))
	require.NoError(t, err)
	require.Equal(t, recs, withBOM, "Excel's BOM is tolerated")

	for _, tc := range []struct {
		name, in string
		line     int
	}{
		{"empty", "", 1},
		{"no id column", "ref;date_modification\n1;2026-12-04 15:00:00\n", 1},
		{"duplicate column", "id;id;date_modification\n", 1},
		{"empty column name", "id;;date_modification\n", 1},
		{"bad date on line 3", "id;date_modification\n1;2026-12-04 15:00:00\n2;04/12/2026\n", 3},
		{"empty id on line 2", "id;date_modification\n;2026-12-04 15:00:00\n", 2},
		{"missing field on line 3", "id;date_modification;nom\n1;2026-12-04 15:00:00;a\n2;2026-12-04 15:00:00\n", 3},
		{"bare quote on line 2", "id;date_modification\n1\"x;2026-12-04 15:00:00\n", 2},
		{"not UTF-8 on line 2", "id;date_modification;nom\n1;2026-12-04 15:00:00;Fran\xe7ois\n", 2},
		{"blank lines do not shift the count", "id;date_modification\n\n1;2026-12-04 15:00:00\n\n2;x\n", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseCSV([]byte(tc.in))
			var le *LineError
			require.True(t, errors.As(err, &le), "got %v", err)
			require.Equal(t, tc.line, le.Line, "%v", err)
			require.True(t, strings.HasPrefix(err.Error(), "line "), "the reason names the line: %v", err)
		})
	}
}

// The CSV parser never panics, and whatever it accepts has an id, a date and a JSON object.
func FuzzParseCSV(f *testing.F) {
	f.Add([]byte("id;date_modification;nom\n1;2026-12-04 15:00:00;a\n"))
	f.Add([]byte("\uFEFFid;date_modification\r\n\"x;y\";2026-03-29 02:30:00\r\n"))
	f.Add([]byte("id;date_modification\n1;0000-00-00 00:00:00\n"))
	f.Add([]byte("date_modification;id;x\n2026-10-25 02:30:00;\"a\"\"b\";\"multi\nline\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := ParseCSV(data)
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		for _, r := range recs {
			if strings.TrimSpace(r.ID) == "" || r.Modified.IsZero() {
				t.Fatalf("accepted a record without id or date: %+v", r)
			}
			var obj map[string]string
			if err := json.Unmarshal(r.Raw, &obj); err != nil || !utf8.Valid(r.Raw) {
				t.Fatalf("raw is not a JSON object of strings: %q: %v", r.Raw, err)
			}
		}
	})
}
