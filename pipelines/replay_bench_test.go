package pipelines_test

import (
	"bufio"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/journal"
	"github.com/passerelle/passerelle/pipelines"
)

// replayBenchLines is the size of the backfill the replay benchmark reads.
const replayBenchLines = 1_000_000

// writeReplayBench writes replayBenchLines realistic Ici Formation lead bodies, one per line, in a
// temporary directory removed after the benchmark (a few hundred MB: never committed).
func writeReplayBench(b *testing.B) (path string, size int64) {
	b.Helper()
	path = filepath.Join(b.TempDir(), "leads.jsonl")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.New(rand.NewPCG(15, 15))
	for range replayBenchLines {
		body, err := json.Marshal(iciformationsim.RandomLead(rng))
		if err != nil {
			b.Fatal(err)
		}
		w.Write(body)
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return path, st.Size()
}

// BenchmarkReplay reads a generated 1,000,000-line file the way `passerelle replay` does, to a
// null sink, beside what encoding/json alone costs on the same file: the ceiling of any replay
// that decodes its records. Run it with -benchtime=1x (each iteration is the whole file);
// records/s is the figure to read (goal: the replay path at 150,000 or more).
//
//	go test -run '^$' -bench BenchmarkReplay -benchtime 1x ./pipelines
func BenchmarkReplay(b *testing.B) {
	path, size := writeReplayBench(b)
	ctx := context.Background()
	run := func(b *testing.B, fn func(e journal.Entry) error) {
		b.SetBytes(size)
		start := time.Now()
		n := 0
		for b.Loop() {
			err := (&journal.Reader{}).ReadRaw(ctx, path, pipelines.SourceIciFormation, func(e journal.Entry, _ journal.Position) error {
				n++
				return fn(e)
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "records/s")
	}

	b.Run("encoding_json_decode_only", func(b *testing.B) {
		// The twelve fields the lead decoder reads, untyped, as its reference decoder does.
		var w struct {
			Nom, Prenom, Civilite, Tel, Email, Ville, CodePostal, Formation json.RawMessage
			HoraireRappel, Statut, Client, IDClient                         json.RawMessage
		}
		run(b, func(e journal.Entry) error { return json.Unmarshal(e.Body, &w) })
	})

	b.Run("decode_normalise_eventid", func(b *testing.B) {
		// As the replay command does: records read in chunks, each chunk checked on every core.
		sources := pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}
		now := time.Now()
		chunk := make([]pipelines.ReplayRecord, 0, 1024)
		ok := 0
		check := func() {
			leads, errs := sources.CheckReplayAll(chunk, now, runtime.GOMAXPROCS(0))
			for i := range leads {
				if errs[i] == nil && leads[i].EventID != "" {
					ok++ // the null sink
				}
			}
			chunk = chunk[:0]
		}
		run(b, func(e journal.Entry) error {
			chunk = append(chunk, pipelines.ReplayRecord{Source: e.Source, Body: e.Body})
			if len(chunk) == cap(chunk) {
				check()
			}
			return nil
		})
		check()
		if ok == 0 {
			b.Fatal("no record passed")
		}
	})
}
