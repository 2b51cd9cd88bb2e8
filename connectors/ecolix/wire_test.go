package ecolix

import (
	"strings"
	"testing"
)

func TestDecodeRecord(t *testing.T) {
	for _, tc := range []struct {
		in, wantID, wantErr string
	}{
		{`{"id": 12, "date_modification": "2026-12-04 15:00:00"}`, "12", ""},
		{`{"id": "A-1", "date_modification": "2026-12-04"}`, "A-1", ""},
		{`{"id": 1e3, "date_modification": "2026-12-04 15:00:00"}`, "1e3", ""}, // kept as sent
		{`{"date_modification": "2026-12-04 15:00:00"}`, "", "no id"},
		{`{"id": null, "date_modification": "2026-12-04 15:00:00"}`, "", "no id"},
		{`{"id": " ", "date_modification": "2026-12-04 15:00:00"}`, "", "empty id"},
		{`{"id": true, "date_modification": "2026-12-04 15:00:00"}`, "", "neither"},
		{`{"id": 1}`, "", "no date_modification"},
		{`{"id": 1, "date_modification": "0000-00-00 00:00:00"}`, "", "empty date_modification"},
		{`{"id": 1, "date_modification": "04/12/2026"}`, "", "date_modification"},
		{`[1]`, "", "not an object"},
	} {
		r, err := decodeRecord([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("decodeRecord(%s) error = %v, want one containing %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || r.ID != tc.wantID || string(r.Raw) != tc.in {
			t.Errorf("decodeRecord(%s) = %q, %v; want id %q and the raw object", tc.in, r.ID, err, tc.wantID)
		}
	}
}

// The export page decoder never panics, and whatever it accepts has ids and dates.
func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(`{"donnees":[{"id":1,"date_modification":"2026-12-04 15:00:00"}],"page":1,"pages":1,"total":1}`))
	f.Add([]byte(`{"donnees":[],"page":1,"pages":0,"total":0}`))
	f.Add([]byte(`{"donnees":[{"id":"x","date_modification":"2026-10-25 02:30:00","n":null}],"page":2,"pages":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := decodePage(data)
		if err != nil {
			return
		}
		if p.Page < 0 || p.Pages < 0 || p.Total < 0 {
			t.Fatalf("negative counts accepted: %+v", p)
		}
		for _, r := range p.Records {
			if r.ID == "" || r.Modified.IsZero() || len(r.Raw) == 0 {
				t.Fatalf("accepted a record without id, date or body: %+v", r)
			}
		}
	})
}
