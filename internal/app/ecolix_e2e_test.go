package app_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/ecolix/ecolixsim"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/pipelines"
)

// ecolixEvent is what the CRM receives of an Ecolix change.
type ecolixEvent struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data struct {
		Resource string `json:"resource"`
		RecordID string `json:"record_id"`
		Origin   string `json:"origin"`
	} `json:"data"`
}

// ecolixDeliveries counts the CRM's deliveries of Ecolix events by event id, and returns them.
func ecolixDeliveries(f *fixture) (map[string]int, map[string]ecolixEvent) {
	count, byID := map[string]int{}, map[string]ecolixEvent{}
	for _, d := range f.Receiver.Deliveries() {
		var ev ecolixEvent
		if json.Unmarshal(d.Body, &ev) != nil || ev.Data.Resource == "" {
			continue
		}
		count[ev.ID]++
		byID[ev.ID] = ev
	}
	return count, byID
}

// TestEcolixEndToEnd runs the daemon against the Ecolix simulator (with its contractual limit),
// a file inbox, the Shop Application simulator and a CRM receiver: every exported record and every
// file row reaches the CRM once, the validated quote becomes one interface, a new lead is imported,
// the inbox file is processed once and moved, a restart resumes from the cursors without
// repeating a record, and the limit is never breached.
func TestEcolixEndToEnd(t *testing.T) {
	t.Parallel()
	const perMin = 600
	sim, err := ecolixsim.Start(ecolixsim.SimConfig{PerMinute: perMin})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	from := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	want := map[string]bool{} // event ids expected at the CRM
	add := func(resource string, ids []string, at func(i int) time.Time) {
		for i, id := range ids {
			want[pipelines.EcolixEventID(resource, id, at(i))] = true
		}
	}
	// Clients over three pages, 7 per second so that ties straddle page boundaries.
	for _, g := range []struct {
		resource string
		n        int
	}{{"clients", 1030}, {"commandes", 12}, {"articles", 5}, {"stocks", 5}, {"devis", 6}} {
		resource := g.resource
		ids, err := sim.Generate(resource, g.n, from, 7)
		require.NoError(t, err)
		add(resource, ids, func(i int) time.Time { return from.Add(time.Duration(i/7) * time.Second) })
	}
	quoteAt := from.Add(time.Hour)
	require.NoError(t, sim.Put("clients", map[string]any{"id": "C-Q1", "reference": "guid-q1", "societe": "ACME SARL", "nom": "Martin",
		"email": "compta@acme.example", "date_modification": quoteAt}))
	require.NoError(t, sim.Put("devis",
		map[string]any{"id": "D-Q1", "statut": "valide", "reference_client": "guid-q1",
			"lignes": []map[string]any{{"code": "IN-BTQST-S"}, {"code": "IN-BTQZ-AMM"}, {"code": "FRAIS-PORT"}}, "date_modification": quoteAt},
		map[string]any{"id": "D-Q2", "statut": "brouillon", "reference_client": "guid-q1",
			"lignes": []map[string]any{{"code": "IN-BTQST-S"}}, "date_modification": quoteAt}))
	want[pipelines.EcolixEventID("clients", "C-Q1", quoteAt)] = true
	want[pipelines.EcolixEventID("devis", "D-Q1", quoteAt)] = true
	want[pipelines.EcolixEventID("devis", "D-Q2", quoteAt)] = true

	inbox := filepath.Join(t.TempDir(), "inbox")
	require.NoError(t, os.MkdirAll(inbox, 0o750))
	fileAt := from.Add(2 * time.Hour)
	csv := "id;reference;societe;nom;email;date_modification\r\n" +
		"F-1;guid-f1;Boulangerie Dupont;Dupont;contact@dupont.example;" + frtime.Format(fileAt) + "\r\n" +
		"F-2;guid-f2;Garage Petit;Petit;garage@petit.example;" + frtime.Format(fileAt) + "\r\n"
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "clients_2026-12-04.csv"), []byte(csv), 0o640))
	want[pipelines.EcolixEventID("clients", "F-1", fileAt)] = true
	want[pipelines.EcolixEventID("clients", "F-2", fileAt)] = true

	shop, err := shopappsim.Start(shopappsim.Config{})
	require.NoError(t, err)
	t.Cleanup(shop.Close)

	f := newFixture(t,
		"PASSERELLE_ECOLIX_URL="+sim.URL(),
		"PASSERELLE_ECOLIX_API_KEY="+sim.APIKey(),
		"PASSERELLE_ECOLIX_RATE_PER_MIN="+strconv.Itoa(perMin),
		"PASSERELLE_ECOLIX_POLL_INTERVAL=200ms",
		"PASSERELLE_ECOLIX_INBOX="+inbox,
		"PASSERELLE_ECOLIX_IMPORT_LEADS=on",
		"PASSERELLE_SHOPAPP_URL="+shop.URL(),
		"PASSERELLE_SHOPAPP_CLIENT_ID="+shop.ClientID(),
		"PASSERELLE_SHOPAPP_CLIENT_SECRET="+shop.ClientSecret(),
		"PASSERELLE_SHOPAPP_POLL_INTERVAL=1h",
	)
	f.start()

	// A new lead is imported as an Ecolix client, under the same budget.
	lead := leadBody(1, "ecolix")
	status, body := f.post(t, lead)
	require.Equal(t, 200, status, "%s", body)
	leadRef := eventIDOf(lead)
	require.True(t, assertEventually(60*time.Second, func() bool { _, ok := sim.Imported(leadRef); return ok }), "lead not imported")

	// Every record reaches the CRM, once.
	var count map[string]int
	require.True(t, assertEventually(90*time.Second, func() bool {
		count, _ = ecolixDeliveries(f)
		for id := range want {
			if count[id] == 0 {
				return false
			}
		}
		return true
	}), "CRM has %d of %d Ecolix events", len(count), len(want))

	// The inbox file was processed and moved, once.
	require.True(t, assertEventually(20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(inbox, "traites", "clients_2026-12-04.csv"))
		return err == nil
	}), "inbox file not moved to traites/")
	_, err = os.Stat(filepath.Join(inbox, "clients_2026-12-04.csv"))
	require.ErrorIs(t, err, os.ErrNotExist)
	v, _ := metric(f.scrape(t), "passerelle_ecolix_inbox_files_total", map[string]string{"outcome": "done"})
	require.Equal(t, 1.0, v)

	// The validated quote made one interface; the draft none.
	require.True(t, assertEventually(30*time.Second, func() bool { return shop.Calls()["POST /interfaces"] == 1 }),
		"interface creations: %d", shop.Calls()["POST /interfaces"])
	v, _ = metric(f.scrape(t), "passerelle_ecolix_provision_commands_total", nil)
	require.Equal(t, 1.0, v)

	// The imported lead comes back as an Ecolix client: wait for it, so the restart below starts
	// from cursors that hold everything.
	importedID, _ := sim.Imported(leadRef)
	require.True(t, assertEventually(30*time.Second, func() bool {
		_, byID := ecolixDeliveries(f)
		for _, ev := range byID {
			if ev.Data.Resource == "clients" && ev.Data.RecordID == importedID {
				return true
			}
		}
		return false
	}), "imported client not exported back")
	f.stop()

	// Restart: edits made meanwhile are pulled, and nothing else.
	touchAt := time.Now().Truncate(time.Second)
	require.NoError(t, sim.Touch("clients", touchAt, "1", "2", "C-Q1"))
	require.NoError(t, sim.Touch("devis", touchAt, "D-Q1"))
	f.start()
	for _, id := range []string{"1", "2", "C-Q1"} {
		want[pipelines.EcolixEventID("clients", id, touchAt)] = true
	}
	want[pipelines.EcolixEventID("devis", "D-Q1", touchAt)] = true
	require.True(t, assertEventually(60*time.Second, func() bool {
		count, _ = ecolixDeliveries(f)
		for id := range want {
			if count[id] == 0 {
				return false
			}
		}
		return true
	}), "the edits made while stopped did not reach the CRM")
	// A few more polls: the cursors hold, nothing is published again.
	okPolls := func() float64 {
		v, _ := metric(f.scrape(t), "passerelle_ecolix_polls_total", map[string]string{"outcome": "ok"})
		return v
	}
	after := okPolls()
	require.True(t, assertEventually(30*time.Second, func() bool { return okPolls() >= after+3 }), "polls stopped")
	scrape := f.scrape(t)
	pubClients, _ := metric(scrape, "passerelle_ecolix_events_published_total", map[string]string{"resource": "clients", "origin": "api"})
	pubQuotes, _ := metric(scrape, "passerelle_ecolix_events_published_total", map[string]string{"resource": "devis", "origin": "api"})
	require.Equal(t, 3.0, pubClients, "clients published after the restart")
	require.Equal(t, 1.0, pubQuotes, "quotes published after the restart")
	// The edited quote is not provisioned twice.
	require.Equal(t, 1, shop.Calls()["POST /interfaces"])

	count, _ = ecolixDeliveries(f)
	for id, n := range count {
		require.Equal(t, 1, n, "event %s delivered %d times", id, n)
	}
	require.Zero(t, sim.Breaches(), "calls over the contractual limit (most in a window: %d)", sim.MaxInAnyWindow())
	require.LessOrEqual(t, sim.MaxInAnyWindow(), perMin)
}
