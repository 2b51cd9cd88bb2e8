package journal_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/journal"
)

// A stage journals what it accepted; a replay reads a time range back, bad lines reported and
// skipped.
func Example() {
	dir, err := os.MkdirTemp("", "journal")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	w, err := journal.Open(dir, journal.Options{Location: frtime.Paris()})
	if err != nil {
		log.Fatal(err)
	}
	at := time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)
	err = w.Append(context.Background(),
		journal.Entry{Source: "iciformation", ReceivedAt: at, Body: json.RawMessage(`{"nom":"Durand","tel":"0692123456"}`),
			Metadata: map[string]string{"content_type": "application/json"}},
		journal.Entry{Source: "simplebo", ReceivedAt: at.Add(time.Minute), Body: journal.StringBody([]byte("event_type=1&client_id=HZ-2026-0101")),
			Metadata: map[string]string{"content_type": "application/x-www-form-urlencoded"}},
	)
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Close(); err != nil {
		log.Fatal(err)
	}

	r := journal.Reader{
		Location: frtime.Paris(),
		OnBad:    func(p journal.Position, err error) { log.Printf("skipped: %v", err) },
	}
	err = r.ReadRange(context.Background(), dir, "", at.Add(-time.Hour), at.Add(time.Hour), func(e journal.Entry, p journal.Position) error {
		fmt.Printf("%s %s %s\n", e.Source, e.ReceivedAt.Format(time.RFC3339), e.RawBody())
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// iciformation 2026-11-20T09:30:00Z {"nom":"Durand","tel":"0692123456"}
	// simplebo 2026-11-20T09:31:00Z event_type=1&client_id=HZ-2026-0101
}
