package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/connectors/simplebo/simplebosim"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/httpapi"
	"github.com/passerelle/passerelle/internal/journal"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
)

const (
	replaySimplebo   = "../../testdata/replay/simplebo/2026-11.jsonl"
	replayEcolixJSON = "../../testdata/replay/ecolix/clients.json"
	replayEcolixCSV  = "../../testdata/replay/ecolix/clients_2026-11-20.csv"
)

// simpleboDeliveryCounts counts the CRM's deliveries of Simplébo events by event id.
func simpleboDeliveryCounts(f *fixture) map[string]int {
	n := map[string]int{}
	for _, d := range f.Receiver.Deliveries() {
		var ev simpleboCRMEvent
		if json.Unmarshal(d.Body, &ev) == nil && ev.Source == "simplebo" {
			n[ev.ID]++
		}
	}
	return n
}

func TestReplaySimpleboDeliversEachEventOnce(t *testing.T) {
	t.Parallel()
	// The distinct webhook events of the set, by the ingest's own id.
	raw, err := os.ReadFile(replaySimplebo)
	require.NoError(t, err)
	distinct := map[string]bool{}
	for _, l := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		ev, err := pipelines.DecodeSimpleboReplay(l)
		require.NoError(t, err)
		distinct[pipelines.SimpleboEventID(ev)] = true
	}
	require.Len(t, distinct, 50, "58 lines, 8 repeated deliveries")

	f := startSimplebo(t, startSimpleboSim(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := f.run.App.AdminAddr()
	code, out, errOut := runCLI(ctx, "replay", "--admin", admin, "--source", "simplebo", replaySimplebo)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, out, "published 50", out)
	require.Contains(t, out, "duplicate 8", out)

	// The state stage turns each client's history into CRM events: wait for every client's.
	clients := map[string]bool{}
	for _, l := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		ev, _ := pipelines.DecodeSimpleboReplay(l)
		clients[ev.Client.ClientID] = true
	}
	require.True(t, testwait.Eventually(60*time.Second, func() bool {
		got := map[string]bool{}
		for _, ev := range simpleboDelivered(f) {
			got[ev.Data.ClientID] = true
		}
		return len(got) == len(clients)
	}), "every client's events reach the CRM")
	first := simpleboDeliveryCounts(f)
	for id, n := range first {
		require.Equal(t, 1, n, "event %s delivered once", id)
	}

	// Again: the same ids, which nothing delivers twice. A fresh client replayed after them
	// marks when the replay has gone through.
	code, out, errOut = runCLI(ctx, "replay", "--admin", admin, "--source", "simplebo", replaySimplebo)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	marker := filepath.Join(t.TempDir(), "marker.jsonl")
	require.NoError(t, os.WriteFile(marker, []byte(`{"event_type":"0","lead_creation_date":"2026-11-30","client_id":"HZ-REPLAY-MARK","lastname":"Marque","firstname":"Ana","email":"ana.marque@exemple.org","phone_number1":"0612345678","zipcode":"75001","city":"Paris","country":"France"}`+"\n"), 0o600))
	code, out, errOut = runCLI(ctx, "replay", "--admin", admin, "--source", "simplebo", marker)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.True(t, testwait.Eventually(60*time.Second, func() bool {
		for _, ev := range simpleboDelivered(f) {
			if ev.Data.ClientID == "HZ-REPLAY-MARK" {
				return true
			}
		}
		return false
	}), "the marker reaches the CRM")
	for id, n := range simpleboDeliveryCounts(f) {
		require.Equal(t, 1, n, "event %s delivered once, however often replayed", id)
	}
}

func TestReplayEcolixExportsDeliverEachRecordOnce(t *testing.T) {
	t.Parallel()
	want := map[string]bool{}
	raw, err := os.ReadFile(replayEcolixJSON)
	require.NoError(t, err)
	page, err := ecolix.DecodePage(bytes.TrimSpace(raw))
	require.NoError(t, err)
	for _, r := range page.Records {
		want[pipelines.EcolixEventID("clients", r.ID, r.Modified)] = true
	}
	require.Len(t, want, 42)
	csv, err := os.ReadFile(replayEcolixCSV)
	require.NoError(t, err)
	rows, err := ecolix.ParseCSV(csv)
	require.NoError(t, err)
	for _, r := range rows {
		require.True(t, want[pipelines.EcolixEventID("clients", r.ID, r.Modified)], "the CSV holds the same versions as the page")
	}

	// An empty inbox turns the module on without an API.
	f := newFixture(t, "PASSERELLE_ECOLIX_INBOX="+t.TempDir(), "PASSERELLE_ECOLIX_POLL_INTERVAL=1h")
	f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := f.run.App.AdminAddr()
	code, out, errOut := runCLI(ctx, "replay", "--admin", admin, "--source", "ecolix", replayEcolixJSON)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, out, "published 42", out)

	var count map[string]int
	var byID map[string]ecolixEvent
	require.True(t, testwait.Eventually(60*time.Second, func() bool {
		count, byID = ecolixDeliveries(f)
		return len(count) == len(want)
	}), "CRM has %d of %d Ecolix events", len(count), len(want))
	for id := range want {
		require.Equal(t, 1, count[id], "event %s once", id)
		require.Equal(t, pipelines.OriginReplay, byID[id].Data.Origin)
	}

	// The CSV export of the same clients, then the page again: nothing new. The quote marker,
	// replayed last, says when they have gone through.
	code, out, errOut = runCLI(ctx, "replay", "--admin", admin, "--source", "ecolix", replayEcolixCSV, replayEcolixJSON)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, out, "published 84", out)
	marker := filepath.Join(t.TempDir(), "articles.json")
	require.NoError(t, os.WriteFile(marker, []byte(`{"donnees":[{"id":"A-MARK","date_modification":"2026-11-30 10:00:00"}]}`+"\n"), 0o600))
	code, out, errOut = runCLI(ctx, "replay", "--admin", admin, "--source", "ecolix", marker)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	markAt, err := frtime.Parse("2026-11-30 10:00:00")
	require.NoError(t, err)
	markID := pipelines.EcolixEventID("articles", "A-MARK", markAt)
	require.True(t, testwait.Eventually(60*time.Second, func() bool {
		count, _ = ecolixDeliveries(f)
		return count[markID] == 1
	}), "the marker reaches the CRM")
	count, _ = ecolixDeliveries(f)
	require.Len(t, count, len(want)+1, "only the marker is new")
	for id := range want {
		require.Equal(t, 1, count[id], "event %s once", id)
	}
}

const replayShopApp = "../../testdata/replay/shopapp/snapshots-2026-11.jsonl"

// shopAppDeliveryCounts counts the CRM's deliveries of Shop Application events by event id.
func shopAppDeliveryCounts(f *fixture) map[string]int {
	n := map[string]int{}
	for _, d := range f.Receiver.Deliveries() {
		var ev struct {
			ID     string `json:"id"`
			Source string `json:"source"`
		}
		if json.Unmarshal(d.Body, &ev) == nil && ev.Source == "shopapp" {
			n[ev.ID]++
		}
	}
	return n
}

func TestReplayShopAppSnapshotsRebuildTheChangesOnce(t *testing.T) {
	t.Parallel()
	shop, err := shopappsim.Start(shopappsim.Config{})
	require.NoError(t, err)
	t.Cleanup(shop.Close)
	f := newFixture(t,
		"PASSERELLE_SHOPAPP_URL="+shop.URL(),
		"PASSERELLE_SHOPAPP_CLIENT_ID="+shop.ClientID(),
		"PASSERELLE_SHOPAPP_CLIENT_SECRET="+shop.ClientSecret(),
		"PASSERELLE_SHOPAPP_POLL_INTERVAL=1h",
	)
	f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin := f.run.App.AdminAddr()
	code, out, errOut := runCLI(ctx, "replay", "--admin", admin, "--output", "json", "--source", "shopapp", replayShopApp)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	var rep struct {
		Read   int            `json:"read"`
		Counts map[string]int `json:"counts"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, 77, rep.Read)
	require.Equal(t, 77, rep.Counts["published"]+rep.Counts["unchanged"]+rep.Counts["older"], "every snapshot applied or skipped: %v", rep.Counts)
	require.Positive(t, rep.Counts["unchanged"], "the repeated observations change nothing")
	events := rep.Counts["events"]
	require.GreaterOrEqual(t, events, 24, "at least each interface's creation: %v", rep.Counts)

	var got map[string]int
	require.True(t, testwait.Eventually(60*time.Second, func() bool {
		got = shopAppDeliveryCounts(f)
		return len(got) == events
	}), "CRM has %d of %d Shop Application events", len(got), events)
	for id, n := range got {
		require.Equal(t, 1, n, "event %s once", id)
	}

	// Again: every snapshot is the stored one or was applied already; nothing is published.
	code, out, errOut = runCLI(ctx, "replay", "--admin", admin, "--output", "json", "--source", "shopapp", replayShopApp)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	rep.Counts = nil
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, 77, rep.Counts["unchanged"], "%v", rep.Counts)
	require.Zero(t, rep.Counts["published"], "%v", rep.Counts)
	require.Zero(t, rep.Counts["events"], "%v", rep.Counts)
}

func TestSimpleboWebhookJournaledAndReplayedFromTheJournal(t *testing.T) {
	t.Parallel()
	sim := startSimpleboSim(t)
	f := startSimplebo(t, sim, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin := f.run.App.AdminAddr()

	// A replay is not journaled: what it carries is in its file already.
	code, out, errOut := runCLI(ctx, "replay", "--admin", admin, "--source", "simplebo", replaySimplebo)
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)

	// A live webhook event is.
	hook := "http://" + f.run.App.HTTPAddr() + "/webhooks/simplebo/" + simpleboHookSecret
	ev := simplebosim.EventsFor("J-1", time.Now().AddDate(0, -1, 0), simplebo.LeadCreated)[0]
	status, err := sim.SendEvent(ctx, hook, ev, simplebosim.WithAuth(httpapi.TokenAuth{Scheme: httpapi.AuthToken, Token: simpleboHookToken}))
	require.NoError(t, err)
	require.Equal(t, 200, status)
	dir := filepath.Join(f.DataDir, "journal")
	var got []journal.Entry
	require.True(t, testwait.Eventually(20*time.Second, func() bool {
		got = got[:0]
		err := (&journal.Reader{}).ReadRange(ctx, dir, "simplebo", time.Time{}, time.Time{}, func(e journal.Entry, _ journal.Position) error {
			got = append(got, e)
			return nil
		})
		return err == nil && len(got) > 0
	}), "the webhook event is journaled")
	require.Len(t, got, 1, "only the live event: replays are not journaled")
	back, err := pipelines.DecodeSimpleboReplay(got[0].RawBody())
	require.NoError(t, err)
	require.Equal(t, "J-1", back.Client.ClientID)
	require.Equal(t, pipelines.SimpleboEventID(ev), pipelines.SimpleboEventID(back), "the journaled body keeps the event's id")

	// Replayed from the journal: the same id, so nothing new reaches the CRM.
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		for _, ev := range simpleboDelivered(f) {
			if ev.Data.ClientID == "J-1" {
				return true
			}
		}
		return false
	}), "the live event reaches the CRM")
	code, out, errOut = runCLI(ctx, "replay", "--admin", admin, "--journal-dir", dir, "--from-journal", "--source", "simplebo",
		"--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	require.Equal(t, 0, code, "stdout %s\nstderr %s", out, errOut)
	require.Contains(t, out, "published 1", out)
}
