package journal

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeRawLeads writes n lead bodies shaped like Ici Formation's, one per line.
func writeRawLeads(tb testing.TB, n int) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "leads.jsonl")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	bw := bufio.NewWriter(f)
	for i := range n {
		fmt.Fprintf(bw, `{"nom":"Lefèvre","prenom":"Camille","civilite":"Mme","tel":"06%08d","email":"camille.lefevre%d@exemple.fr","ville":"lyon","code_postal":"69003","formation":"BTS Comptabilité et gestion","horaire_rappel":"après-midi","statut":"Demandeur d'emploi","client":"Passerelle Formation","id_client":"%d"}`+"\n", i, i, 1000+i%50)
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

// BenchmarkReadRaw reads a 100,000-line file of raw lead bodies: line splitting, JSON validation
// and the copy each Entry gets, the reader's share of a replay.
func BenchmarkReadRaw(b *testing.B) {
	const lines = 100_000
	path := writeRawLeads(b, lines)
	st, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	r := Reader{OnBad: func(p Position, err error) { b.Errorf("bad line %s: %v", p, err) }}
	b.SetBytes(st.Size())
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		n := 0
		if err := r.ReadRaw(context.Background(), path, "iciformation", func(Entry, Position) error {
			n++
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		if n != lines {
			b.Fatalf("read %d records, want %d", n, lines)
		}
	}
	b.ReportMetric(float64(b.N*lines)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkAppend appends batches of 100 entries, each synced: the journal stage's cost.
func BenchmarkAppend(b *testing.B) {
	w, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	batch := make([]Entry, 100)
	at := time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC)
	for i := range batch {
		batch[i] = Entry{Source: "iciformation", ReceivedAt: at, Body: lead(i)}
	}
	start := time.Now()
	for b.Loop() {
		if err := w.Append(context.Background(), batch...); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch))/time.Since(start).Seconds(), "entries/s")
}
