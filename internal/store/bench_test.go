package store

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// The CRM stage writes one batch of delivery attempts and one of dedupe keys per batch of leads.
func BenchmarkBatchWrites(b *testing.B) {
	const batch = 32
	s, err := Open(b.Context(), filepath.Join(b.TempDir(), "passerelle.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	n := 0
	attempts := make([]Attempt, batch)
	claims := make([]KeyClaim, batch)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			n++
			id := fmt.Sprintf("iciformation_%026d", n)
			attempts[i] = Attempt{EventID: id, Endpoint: "crm.example.com#0a1b2c3d", Attempts: 1, Status: 200, Delivered: true, At: time.Now()}
			claims[i] = KeyClaim{Key: fmt.Sprintf("%064x", n*2654435761), EventID: id}
		}
		if err := s.RecordAttempts(b.Context(), attempts); err != nil {
			b.Fatal(err)
		}
		if err := s.CommitKeys(b.Context(), "leads", claims, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/lead")
}
