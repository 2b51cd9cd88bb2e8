package journal

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// replayDir holds the backfill sets written by internal/gen.
const replayDir = "../../testdata/replay"

// TestReplayTestdata reads every backfill set as a replay would and checks what its README
// promises: records, malformed lines at their line numbers, small files.
func TestReplayTestdata(t *testing.T) {
	t.Parallel()
	tests := []struct {
		file, source string
		records      int
		bad          []int // line numbers
	}{
		{"iciformation/2026-11-20.jsonl", "iciformation", 297, nil},
		{"simplebo/2026-11.jsonl", "simplebo", 58, []int{}},
		{"shopapp/snapshots-2026-11.jsonl", "shopapp", 77, []int{}},
		{"ecolix/clients.json", "ecolix", 1, []int{}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(replayDir, tt.file)
			st, err := os.Stat(path)
			require.NoError(t, err)
			require.Less(t, st.Size(), int64(300<<10), "keep backfill sets small")
			raw, err := os.ReadFile(path)
			require.NoError(t, err)

			bad := []int{}
			r := Reader{OnBad: func(p Position, err error) {
				if errors.Is(err, ErrMalformed) && p.File == path {
					bad = append(bad, p.Line)
				}
			}}
			n := 0
			require.NoError(t, r.ReadRaw(context.Background(), path, tt.source, func(e Entry, p Position) error {
				n++
				require.Equal(t, tt.source, e.Source)
				if tt.source == "simplebo" { // forms decoded to objects of strings
					var m map[string]string
					require.NoError(t, json.Unmarshal(e.Body, &m), "line %d", p.Line)
					require.Contains(t, m, "event_type")
				}
				if tt.source == "ecolix" {
					var page struct {
						Donnees []map[string]any `json:"donnees"`
						Total   int              `json:"total"`
					}
					require.NoError(t, json.Unmarshal(e.Body, &page))
					require.Len(t, page.Donnees, page.Total)
				}
				return nil
			}))
			require.Equal(t, tt.records, n)
			if tt.bad == nil { // the malformed lines are exactly those that are not JSON
				tt.bad = []int{}
				for i, l := range splitLines(raw) {
					if !json.Valid(l) {
						tt.bad = append(tt.bad, i+1)
					}
				}
				require.Len(t, tt.bad, 3)
			}
			require.Equal(t, tt.bad, bad)
		})
	}

	t.Run("ecolix csv", func(t *testing.T) {
		t.Parallel()
		f, err := os.Open(filepath.Join(replayDir, "ecolix/clients_2026-11-20.csv"))
		require.NoError(t, err)
		defer f.Close()
		cr := csv.NewReader(f)
		cr.Comma = ';'
		rows, err := cr.ReadAll()
		require.NoError(t, err)
		require.Equal(t, []string{"id", "reference", "societe", "nom", "prenom", "email", "telephone", "adresse", "code_postal", "ville", "date_modification"}, rows[0])
		require.Len(t, rows, 43)
	})
}

func splitLines(b []byte) [][]byte {
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}
