package app_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/ecolix/ecolixsim"
	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/testwait"
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
	require.True(t, testwait.Eventually(60*time.Second, func() bool { _, ok := sim.Imported(leadRef); return ok }), "lead not imported")

	// Every record reaches the CRM, once.
	var count map[string]int
	require.True(t, testwait.Eventually(90*time.Second, func() bool {
		count, _ = ecolixDeliveries(f)
		for id := range want {
			if count[id] == 0 {
				return false
			}
		}
		return true
	}), "CRM has %d of %d Ecolix events", len(count), len(want))

	// The inbox file was processed and moved, once.
	require.True(t, testwait.Eventually(20*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(inbox, "traites", "clients_2026-12-04.csv"))
		return err == nil
	}), "inbox file not moved to traites/")
	_, err = os.Stat(filepath.Join(inbox, "clients_2026-12-04.csv"))
	require.ErrorIs(t, err, os.ErrNotExist)
	require.True(t, testwait.Eventually(10*time.Second, func() bool { // counted after the move
		v, _ := metric(f.scrape(t), "passerelle_ecolix_inbox_files_total", map[string]string{"outcome": "done"})
		return v == 1
	}), "inbox file not counted done")

	// The validated quote made one interface; the draft none.
	require.True(t, testwait.Eventually(30*time.Second, func() bool { return shop.Calls()["POST /interfaces"] == 1 }),
		"interface creations: %d", shop.Calls()["POST /interfaces"])
	v, _ := metric(f.scrape(t), "passerelle_ecolix_provision_commands_total", nil)
	require.Equal(t, 1.0, v)

	// The imported lead comes back as an Ecolix client: wait for it, so the restart below starts
	// from cursors that hold everything.
	importedID, _ := sim.Imported(leadRef)
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
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
	require.True(t, testwait.Eventually(60*time.Second, func() bool {
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
	require.True(t, testwait.Eventually(30*time.Second, func() bool { return okPolls() >= after+3 }), "polls stopped")
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
	problems, err := testutil.GatherAndLint(f.run.App.Registry)
	require.NoError(t, err)
	require.Empty(t, problems, "the Ecolix metrics pass the Prometheus lint")
	require.Zero(t, sim.Breaches(), "calls over the contractual limit (most in a window: %d)", sim.MaxInAnyWindow())
	require.LessOrEqual(t, sim.MaxInAnyWindow(), perMin)
}

// TestEcolixSFTPInbox runs file mode alone on an SFTP inbox with its host key pinned: a good file
// reaches the CRM and moves to traites/, a file with a bad line moves to erreurs/ with its reason,
// a half-written one waits.
func TestEcolixSFTPInbox(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	inbox := filepath.Join(root, "exports")
	require.NoError(t, os.MkdirAll(inbox, 0o755))
	srv, err := sftp.StartServer(context.Background(), sftp.ServerConfig{Root: root, User: "ecolix", Password: "inbox-pw"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, srv.WriteKnownHosts(knownHosts))

	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	good := "id;reference;libelle;date_modification\n" +
		"A-1;;Article un;" + frtime.Format(at) + "\n" +
		"A-2;;Article deux;" + frtime.Format(at) + "\n"
	bad := "id;date_modification\nS-1;" + frtime.Format(at) + "\nS-2;pas une date\n"
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "articles_1.csv"), []byte(good), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "stocks_1.csv"), []byte(bad), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(inbox, "commandes_1.csv.part"), []byte("id;"), 0o644))

	f := newFixture(t,
		"PASSERELLE_ECOLIX_INBOX=sftp://ecolix@"+srv.Addr()+"/exports",
		"PASSERELLE_ECOLIX_INBOX_PASSWORD=inbox-pw",
		"PASSERELLE_ECOLIX_INBOX_KNOWN_HOSTS="+knownHosts,
		"PASSERELLE_ECOLIX_POLL_INTERVAL=200ms",
	)
	f.start()
	want := []string{pipelines.EcolixEventID("articles", "A-1", at), pipelines.EcolixEventID("articles", "A-2", at)}
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		count, _ := ecolixDeliveries(f)
		return count[want[0]] == 1 && count[want[1]] == 1
	}), "the file's rows did not reach the CRM")
	require.True(t, testwait.Eventually(20*time.Second, func() bool {
		_, err1 := os.Stat(filepath.Join(inbox, "traites", "articles_1.csv"))
		_, err2 := os.Stat(filepath.Join(inbox, "erreurs", "stocks_1.csv.raison.txt"))
		return err1 == nil && err2 == nil
	}), "files not moved")
	reason, err := os.ReadFile(filepath.Join(inbox, "erreurs", "stocks_1.csv.raison.txt"))
	require.NoError(t, err)
	require.Contains(t, string(reason), "line 3")
	_, err = os.Stat(filepath.Join(inbox, "commandes_1.csv.part"))
	require.NoError(t, err, "a half-written file stays")
	count, byID := ecolixDeliveries(f)
	require.Len(t, count, 2, "nothing of the refused file is published: %v", byID)
	// The reason is written before the move, the count after it.
	require.True(t, testwait.Eventually(10*time.Second, func() bool {
		v, _ := metric(f.scrape(t), "passerelle_ecolix_inbox_files_total", map[string]string{"outcome": "error"})
		return v == 1
	}), "refused file not counted")
	_, err = os.Stat(filepath.Join(inbox, "erreurs", "stocks_1.csv"))
	require.NoError(t, err)
}

func TestEcolixConfigNamesTheVariable(t *testing.T) {
	t.Parallel()
	const url = "PASSERELLE_ECOLIX_URL=https://erp.example.fr"
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{url, "PASSERELLE_ECOLIX_API_KEY=k"}, "PASSERELLE_ECOLIX_RATE_PER_MIN"},
		{[]string{url, "PASSERELLE_ECOLIX_RATE_PER_MIN=60"}, "PASSERELLE_ECOLIX_API_KEY"},
		{[]string{"PASSERELLE_ECOLIX_URL=erp.example.fr", "PASSERELLE_ECOLIX_API_KEY=k", "PASSERELLE_ECOLIX_RATE_PER_MIN=60"}, "PASSERELLE_ECOLIX_URL"},
		{[]string{"PASSERELLE_ECOLIX_RATE_PER_MIN=-1"}, "PASSERELLE_ECOLIX_RATE_PER_MIN"},
		{[]string{"PASSERELLE_ECOLIX_RESOURCES=clients,factures"}, "PASSERELLE_ECOLIX_RESOURCES"},
		{[]string{"PASSERELLE_ECOLIX_POLL_INTERVAL=0s"}, "PASSERELLE_ECOLIX_POLL_INTERVAL"},
		{[]string{"PASSERELLE_ECOLIX_IMPORT_LEADS=yes"}, "PASSERELLE_ECOLIX_IMPORT_LEADS"},
		{[]string{"PASSERELLE_ECOLIX_IMPORT_LEADS=on"}, "PASSERELLE_ECOLIX_IMPORT_LEADS"},
		{[]string{"PASSERELLE_ECOLIX_INBOX=ftp://h/x"}, "PASSERELLE_ECOLIX_INBOX"},
		{[]string{"PASSERELLE_ECOLIX_INBOX=sftp://u@h:22/x", "PASSERELLE_ECOLIX_INBOX_PASSWORD=p"}, "PASSERELLE_ECOLIX_INBOX_KNOWN_HOSTS"},
		{[]string{"PASSERELLE_ECOLIX_INBOX=sftp://u@h:22/x", "PASSERELLE_ECOLIX_INBOX_KNOWN_HOSTS=/kh"}, "PASSERELLE_ECOLIX_INBOX_PASSWORD"},
		{[]string{"PASSERELLE_ECOLIX_INBOX=sftp://h:22/x", "PASSERELLE_ECOLIX_INBOX_KNOWN_HOSTS=/kh", "PASSERELLE_ECOLIX_INBOX_PASSWORD=p"}, "user is missing"},
	} {
		t.Run(strings.Join(tc.env, " "), func(t *testing.T) {
			_, err := app.LoadConfig(context.Background(), tc.env)
			require.ErrorContains(t, err, tc.want)
		})
	}
	// A password in the URL is refused without being quoted.
	_, err := app.LoadConfig(context.Background(), []string{"PASSERELLE_ECOLIX_INBOX=sftp://u:hunter2@h:22/x"})
	require.ErrorContains(t, err, "PASSERELLE_ECOLIX_INBOX_PASSWORD")
	require.NotContains(t, err.Error(), "hunter2")

	// Exports that nothing would consume are refused at start.
	cfg, err := app.LoadConfig(context.Background(), []string{"PASSERELLE_ECOLIX_INBOX=" + t.TempDir()})
	require.NoError(t, err)
	require.ErrorContains(t, app.Check(cfg, true), "PASSERELLE_CRM_URL")
}
