package ecolix

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCursorAdvance(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	at := func(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }
	rec := func(id string, sec int) Record { return Record{ID: id, Modified: at(sec)} }
	ids := func(rs []Record) []string {
		out := []string{}
		for _, r := range rs {
			out = append(out, r.ID+"@"+r.Modified.Sub(t0).String())
		}
		return out
	}
	tests := []struct {
		name      string
		cur       Cursor
		received  []Record
		wantNew   []string
		wantSince time.Time
		wantSeen  []string
	}{
		{"first pull, nothing", Cursor{}, nil, []string{}, time.Time{}, nil},
		{"first pull takes all, cursor at the last second with its ids",
			Cursor{}, []Record{rec("1", 0), rec("2", 1), rec("3", 1)},
			[]string{"1@0s", "2@1s", "3@1s"}, at(1), []string{"2", "3"}},
		{"nothing changed: the server sends the instant again, all seen",
			Cursor{Since: at(1), SeenIDs: []string{"2", "3"}}, []Record{rec("2", 1), rec("3", 1)},
			[]string{}, at(1), []string{"2", "3"}},
		{"a record written later in the same second is new, the seen ids grow",
			Cursor{Since: at(1), SeenIDs: []string{"2", "3"}}, []Record{rec("2", 1), rec("3", 1), rec("4", 1)},
			[]string{"4@1s"}, at(1), []string{"2", "3", "4"}},
		{"moving on forgets the old instant's ids",
			Cursor{Since: at(1), SeenIDs: []string{"2", "3"}}, []Record{rec("2", 1), rec("3", 1), rec("5", 2), rec("6", 2)},
			[]string{"5@2s", "6@2s"}, at(2), []string{"5", "6"}},
		{"an edited record seen before comes again at its new date",
			Cursor{Since: at(1), SeenIDs: []string{"2"}}, []Record{rec("2", 1), rec("1", 3)},
			[]string{"1@3s"}, at(3), []string{"1"}},
		{"the same id twice in one pull (edited meanwhile): the latest version only",
			Cursor{}, []Record{rec("7", 0), rec("8", 1), rec("7", 2)},
			[]string{"8@1s", "7@2s"}, at(2), []string{"7"}},
		{"older than the cursor: dropped, the cursor never goes back",
			Cursor{Since: at(5)}, []Record{rec("1", 4)},
			[]string{}, at(5), nil},
		{"the same id at the same instant twice (a page shift): once",
			Cursor{}, []Record{rec("9", 0), rec("9", 0)},
			[]string{"9@0s"}, at(0), []string{"9"}},
		{"ids compare as text, sorted in the cursor",
			Cursor{Since: at(0), SeenIDs: []string{"b"}}, []Record{rec("c", 0), rec("a", 0), rec("b", 0)},
			[]string{"c@0s", "a@0s"}, at(0), []string{"a", "b", "c"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, next := tc.cur.Advance(tc.received)
			require.Equal(t, tc.wantNew, ids(got), "new records")
			require.True(t, tc.wantSince.Equal(next.Since), "since: got %s, want %s", next.Since, tc.wantSince)
			require.Equal(t, tc.wantSeen, next.SeenIDs, "seen ids")
		})
	}
}
