package pipelines_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/ecolix/ecolixsim"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

func TestParseEcolixQuote(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		raw       string
		validated bool
		guid      string
		codes     []string
	}{
		{"lines", `{"statut":"valide","reference_client":"g-1","lignes":[{"code":"IN-BTQST-S"},{"code":"frais"},{"code_article":"mo-opt-amm"}]}`,
			true, "g-1", []string{"IN-BTQST-S", "MO-OPT-AMM"}},
		{"accented status", `{"statut":"Validé","reference_client":"g-2","lignes":[{"code":"IN-X-S"}]}`, true, "g-2", []string{"IN-X-S"}},
		{"csv codes column", `{"statut":"accepte","reference_client":"g-3","codes":"IN-A-S|MO-B-AMM, FRAIS"}`, true, "g-3", []string{"IN-A-S", "MO-B-AMM"}},
		{"draft", `{"statut":"brouillon","reference_client":"g-4","lignes":[{"code":"IN-X-S"}]}`, false, "g-4", []string{"IN-X-S"}},
		{"duplicate codes once", `{"statut":"signé","lignes":[{"code":"IN-X-S"},{"code":"in-x-s"}]}`, true, "", []string{"IN-X-S"}},
		{"numeric reference", `{"statut":"valide","reference_client":42,"lignes":[]}`, true, "42", nil},
		{"no lines", `{"statut":"valide"}`, true, "", nil},
		{"lines as a CSV cell", `{"statut":"valide","reference_client":"g-5","lignes":"IN-X-S","codes":"IN-X-S"}`, true, "g-5", []string{"IN-X-S"}},
		{"some lines not objects", `{"statut":"valide","lignes":[{"code":"IN-X-S"},3]}`, true, "", []string{"IN-X-S"}},
		{"large numeric reference", `{"statut":"valide","reference_client":12345678901}`, true, "12345678901", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := pipelines.ParseEcolixQuote([]byte(tt.raw))
			require.NoError(t, err)
			require.Equal(t, tt.validated, q.Validated(), "validated")
			require.Equal(t, tt.guid, q.ClientReference, "client reference")
			require.Equal(t, tt.codes, q.ShopAppCodes(), "Shop Application codes")
		})
	}
	_, err := pipelines.ParseEcolixQuote([]byte(`[1,2]`))
	require.Error(t, err)
}

func FuzzParseEcolixQuote(f *testing.F) {
	f.Add([]byte(`{"statut":"valide","reference_client":"g-1","lignes":[{"code":"IN-BTQST-S"}]}`))
	f.Add([]byte(`{"statut":"accepte","codes":"IN-A-S|MO-B-AMM"}`))
	f.Add([]byte(`{"lignes":[{"code":null},{"code_article":3}],"codes":7}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, err := pipelines.ParseEcolixQuote(raw)
		if err != nil {
			return
		}
		for _, c := range q.ShopAppCodes() {
			if !strings.HasPrefix(c, "IN-") && !strings.HasPrefix(c, "MO-") {
				t.Fatalf("code %q is not a Shop Application code", c)
			}
		}
	})
}

func TestEcolixEventID(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 14, 0, 0, 0, time.UTC)
	id := pipelines.EcolixEventID("clients", "12", at)
	require.Equal(t, id, pipelines.EcolixEventID("clients", "12", at.In(time.FixedZone("x", 3600))), "the same instant in another zone")
	require.True(t, strings.HasPrefix(id, "ecolix_"))
	for _, other := range []string{
		pipelines.EcolixEventID("devis", "12", at),
		pipelines.EcolixEventID("clients", "13", at),
		pipelines.EcolixEventID("clients", "12", at.Add(time.Second)),
	} {
		require.NotEqual(t, id, other)
	}
}

// ecolixRig is a poller on the simulator, the real store and the real broker.
type ecolixRig struct {
	sim    *ecolixsim.Sim
	poller *pipelines.EcolixPoller
	pub    *countingPub
	reg    *prometheus.Registry
	store  pipelines.EcolixStore
}

func newEcolixRig(t *testing.T, simCfg ecolixsim.SimConfig) *ecolixRig {
	t.Helper()
	sim, err := ecolixsim.Start(simCfg)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	dir := t.TempDir()
	st := openTestStore(t, dir)
	t.Cleanup(func() { _ = st.Close() })
	b, pub := openTestBroker(t, dir)
	t.Cleanup(func() { _ = pub.Close(); _ = b.Close() })
	client, err := ecolix.New(ecolix.Config{BaseURL: sim.URL(), APIKey: sim.APIKey(), RetryWaitMin: 5 * time.Millisecond, Retries: -1},
		ecolix.NewBudgetWindow(1000, time.Second), nil)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	cp := &countingPub{Inner: pub}
	return &ecolixRig{sim: sim, pub: cp, reg: reg, store: st, poller: &pipelines.EcolixPoller{
		API: client, Resources: ecolix.Resources(), Store: st, Pub: cp,
		Metrics: pipelines.NewEcolixMetrics(reg), Log: slogDiscard(), Now: time.Now,
	}}
}

// published counts the ids published to topic.
func (r *ecolixRig) published(topic string) int {
	n := 0
	for _, id := range r.pub.Published() {
		if strings.HasPrefix(id, topic+"/") {
			n++
		}
	}
	return n
}

// TestEcolixPollCommitsOnlyWhatWasPublished: a resource whose pull fails part-way publishes and
// commits nothing, the others go on; the next poll publishes it whole, and the one after nothing.
func TestEcolixPollCommitsOnlyWhatWasPublished(t *testing.T) {
	t.Parallel()
	r := newEcolixRig(t, ecolixsim.SimConfig{})
	from := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	_, err := r.sim.Generate("clients", 1200, from, 9)
	require.NoError(t, err)
	_, err = r.sim.Generate("stocks", 3, from, 1)
	require.NoError(t, err)
	r.sim.FailPage("clients", 3, http.StatusInternalServerError)

	ctx := context.Background()
	res, err := r.poller.Poll(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), "clients")
	require.Equal(t, 3, res.Events, "the stocks went through")
	require.Equal(t, 3, r.published(pipelines.TopicEcolixEvents))
	_, ok, err := r.store.GetState(ctx, "ecolix.cursors", "clients")
	require.NoError(t, err)
	require.False(t, ok, "no cursor committed for the failed resource")

	r.sim.ClearFaults()
	res, err = r.poller.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, 1200, res.Events)
	res, err = r.poller.Poll(ctx)
	require.NoError(t, err)
	require.Zero(t, res.Events, "a poll with nothing changed publishes nothing")
	require.Equal(t, 1203, r.published(pipelines.TopicEcolixEvents))
	v, _ := gathered(t, r.reg, "passerelle_ecolix_polls_total", map[string]string{"outcome": "error"})
	require.Equal(t, 1.0, v)
}

// TestEcolixQuoteProvisionsOnce: a validated quote with Shop Application codes becomes one
// create command, with the client's identity from the directory; edited later, none more; a
// quote for a guid that has an interface adds prestations to it.
func TestEcolixQuoteProvisionsOnce(t *testing.T) {
	t.Parallel()
	r := newEcolixRig(t, ecolixsim.SimConfig{})
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	require.NoError(t, r.sim.Put("clients", map[string]any{"id": 1, "reference": "guid-1", "societe": "ACME", "email": "a@acme.example", "date_modification": at}))
	require.NoError(t, r.sim.Put("devis", map[string]any{"id": 10, "statut": "valide", "reference_client": "guid-1",
		"lignes": []map[string]any{{"code": "IN-BTQST-S"}, {"code": "IN-BTQZ-AMM"}}, "date_modification": at}))
	_, err := r.poller.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, r.published(pipelines.TopicShopAppProvision))
	raw, ok, err := r.store.GetState(ctx, "ecolix.quotes", "10")
	require.NoError(t, err)
	require.True(t, ok, "quote marker")
	var cmd pipelines.ProvisionCommand
	require.NoError(t, json.Unmarshal(raw, &cmd))
	require.Equal(t, pipelines.OpCreate, cmd.Op)
	require.Equal(t, "guid-1", cmd.GUID)
	require.Equal(t, []string{"IN-BTQST-S", "IN-BTQZ-AMM"}, cmd.Prestations)
	require.Equal(t, "ACME", cmd.Client.Company, "identity from the client directory")

	require.NoError(t, r.sim.Touch("devis", at.Add(time.Minute), "10"))
	res, err := r.poller.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.Events, "the edit is an event")
	require.Equal(t, 1, r.published(pipelines.TopicShopAppProvision), "but no second command")

	// guid-1 now has an interface: a new quote adds to it.
	require.NoError(t, r.store.PutState(ctx, "shopapp.guids", "guid-1", []byte("SA-KEY-1")))
	require.NoError(t, r.sim.Put("devis", map[string]any{"id": 11, "statut": "accepté", "reference_client": "guid-1",
		"lignes": []map[string]any{{"code": "MO-OPTION-AMM"}}, "date_modification": at.Add(2 * time.Minute)}))
	_, err = r.poller.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, 2, r.published(pipelines.TopicShopAppProvision))
	raw, _, err = r.store.GetState(ctx, "ecolix.quotes", "11")
	require.NoError(t, err)
	cmd = pipelines.ProvisionCommand{}
	require.NoError(t, json.Unmarshal(raw, &cmd))
	require.Equal(t, pipelines.ProvisionCommand{Op: pipelines.OpAddPrestations, Key: "SA-KEY-1", Prestations: []string{"MO-OPTION-AMM"}}, cmd)

	// The directory also refreshed billing's identity of that interface once the client changed.
	require.NoError(t, r.sim.Touch("clients", at.Add(3*time.Minute), "1"))
	_, err = r.poller.Poll(ctx)
	require.NoError(t, err)
	c, ok, err := r.store.(*store.Store).ClientByKey(ctx, store.KeySAKey, "SA-KEY-1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Contains(t, c.Fields[store.FieldCompany].Value, "ACME")
	require.Equal(t, "ecolix", c.Fields[store.FieldCompany].Source)
}

// TestEcolixRunSkipsWhileAPollRuns: ticks that come while a poll is still running are skipped,
// never queued nor run alongside.
func TestEcolixRunSkipsWhileAPollRuns(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	inFlight, most := 0, 0
	r := newEcolixRig(t, ecolixsim.SimConfig{OnExport: func(string, int) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		mu.Unlock()
	}})
	t.Cleanup(func() { once.Do(func() { close(release) }) }) // before the simulator stops, on failure too
	r.poller.Resources = []string{"clients"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.poller.Run(ctx, 10*time.Millisecond) }()
	require.Eventually(t, func() bool {
		v, _ := gathered(t, r.reg, "passerelle_ecolix_polls_total", map[string]string{"outcome": "skipped"})
		return v >= 3
	}, 10*time.Second, 5*time.Millisecond, "ticks during a running poll are skipped")
	once.Do(func() { close(release) })
	require.Eventually(t, func() bool {
		v, _ := gathered(t, r.reg, "passerelle_ecolix_polls_total", map[string]string{"outcome": "ok"})
		return v >= 2
	}, 10*time.Second, 5*time.Millisecond, "polls resume")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, most, "never two export calls at once: polls do not overlap")
}

// TestEcolixInboxFileOnce: a CSV dropped in the inbox is published once its size held between two
// scans, moved to traites/, and the same file dropped again is not published again.
func TestEcolixInboxFileOnce(t *testing.T) {
	t.Parallel()
	r := newEcolixRig(t, ecolixsim.SimConfig{})
	r.poller.API = nil
	dir := t.TempDir()
	in, err := ecolix.NewInbox(ecolix.InboxConfig{FS: ecolix.LocalFS(dir), Processed: pipelines.EcolixProcessed{Store: r.store, Now: time.Now}})
	require.NoError(t, err)
	r.poller.Inbox = in
	csv := []byte("id;reference;date_modification\r\n1;g-1;2026-12-01 10:00:00\r\n2;g-2;2026-12-01 10:00:00\r\n")
	ctx := context.Background()
	fs := ecolix.LocalFS(dir)
	require.NoError(t, fs.WriteFile(ctx, "clients_a.csv", csv))
	res, err := r.poller.Poll(ctx)
	require.NoError(t, err)
	require.Zero(t, res.Files, "first sighting: still possibly being written")
	res, err = r.poller.Poll(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, res.Files)
	require.Equal(t, 2, res.Events)
	_, err = fs.Stat(ctx, "traites/clients_a.csv")
	require.NoError(t, err)
	// The client directory has them, as from the API.
	_, ok, err := r.store.GetState(ctx, "ecolix.clients", "g-2")
	require.NoError(t, err)
	require.True(t, ok)

	require.NoError(t, fs.WriteFile(ctx, "clients_a.csv", csv))
	for range 2 {
		_, err = r.poller.Poll(ctx)
		require.NoError(t, err)
	}
	require.Equal(t, 2, r.published(pipelines.TopicEcolixEvents), "the same file again publishes nothing")
	entries, err := fs.List(ctx, "traites")
	require.NoError(t, err)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name)
	}
	slices.Sort(names)
	require.Equal(t, []string{"clients_a.csv", "clients_a.csv.1"}, names)
}
