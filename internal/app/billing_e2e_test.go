package app_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/modules"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
)

const billingHeaderLine = "periode;reference_client;societe;nom;prenom;email;source;code_prestation;libelle;" +
	"quantite;prix_unitaire_ht;montant_ht;date_debut;date_fin\r\n"

// TestBillingEndToEnd runs the whole daemon against the Shop Application simulator, an in-process
// SFTP depot and a CRM receiver: the poller fills the ledger, the billing run of last month uploads
// the file once, and the CRM hears of the interfaces and of the upload.
func TestBillingEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	sim, err := shopappsim.Start(shopappsim.Config{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	sim.Seed(10, rand.New(rand.NewPCG(7, 9)))
	keys := sim.Interfaces()
	require.Len(t, keys, 10)

	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "depot"), 0o755))
	srv, err := sftp.StartServer(ctx, sftp.ServerConfig{Root: root, User: "facturation", Password: "depot-pw"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, srv.WriteKnownHosts(knownHosts))

	f := newFixture(t,
		"PASSERELLE_SHOPAPP_URL="+sim.URL(),
		"PASSERELLE_SHOPAPP_CLIENT_ID="+sim.ClientID(),
		"PASSERELLE_SHOPAPP_CLIENT_SECRET="+sim.ClientSecret(),
		"PASSERELLE_SHOPAPP_POLL_INTERVAL=200ms",
		"PASSERELLE_SHOPAPP_RATE=1000",
		"PASSERELLE_SFTP_ADDR="+srv.Addr(),
		"PASSERELLE_SFTP_USER=facturation",
		"PASSERELLE_SFTP_PASSWORD=depot-pw",
		"PASSERELLE_SFTP_KNOWN_HOSTS="+knownHosts,
	)
	f.start()
	period := pipelines.PeriodOf(time.Now()).Previous().String()
	remote := filepath.Join(root, "depot", "clients_a_facturer_"+period+".csv")

	// The ledger has taken in every change the poller published.
	var changes, ledger float64
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		scrape := f.scrape(t)
		changes = 0
		for _, kind := range []string{pipelines.EventInterfaceCreated, pipelines.EventInterfaceStatusChanged, pipelines.EventPrestationAdded, pipelines.EventPrestationCancelled} {
			v, _ := metric(scrape, "passerelle_shopapp_changes_total", map[string]string{"kind": kind})
			changes += v
		}
		ledger, _ = metric(scrape, "passerelle_stage_messages_total", map[string]string{"pipeline": "billing", "stage": "ledger", "outcome": "out"})
		return changes >= 10 && ledger >= changes
	}), "ledger applied %v of %v changes", ledger, changes)

	// A dry run shows last month's rows, and uploads nothing.
	var dry pipelines.Report
	require.True(t, testwait.Eventually(20*time.Second, func() bool {
		dry = pipelines.Report{}
		status := f.adminJSON(t, http.MethodPost, "/admin/billing/run", map[string]any{"period": period, "dry_run": true}, &dry)
		return status == http.StatusOK && dry.Rows > 0
	}), "no billable row for %s", period)
	require.Equal(t, "dry_run", dry.Outcome)
	require.True(t, strings.HasPrefix(dry.CSV, billingHeaderLine))
	_, err = os.Stat(remote)
	require.ErrorIs(t, err, os.ErrNotExist, "a dry run uploads nothing")

	// The run uploads it.
	var rep pipelines.Report
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodPost, "/admin/billing/run", map[string]any{"period": period}, &rep))
	require.Equal(t, "uploaded", rep.Outcome)
	require.Equal(t, "/depot/clients_a_facturer_"+period+".csv", rep.RemotePath)
	require.Equal(t, dry.Rows, rep.Rows)
	require.Equal(t, dry.SHA256, rep.SHA256, "the same period gives the same bytes")
	data, err := os.ReadFile(remote)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(data), billingHeaderLine))
	require.Equal(t, dry.CSV, string(data))

	// The CRM hears of every interface and of the upload.
	type envelope struct {
		crm.Envelope
		Data struct {
			InterfaceKey string `json:"interface_key"`
			Period       string `json:"period"`
			SHA256       string `json:"sha256"`
		} `json:"data"`
	}
	var created []string
	var uploaded []envelope
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		created, uploaded = nil, nil
		seen := map[string]bool{}
		for _, d := range f.Receiver.Deliveries() {
			var env envelope
			if json.Unmarshal(d.Body, &env) != nil || seen[env.ID] {
				continue
			}
			seen[env.ID] = true
			switch env.Type {
			case pipelines.EventInterfaceCreated:
				created = append(created, env.Data.InterfaceKey)
			case pipelines.EventFileUploaded:
				uploaded = append(uploaded, env)
			}
		}
		return len(created) >= len(keys) && len(uploaded) >= 1
	}), "CRM got %d interface.created of %d and %d billing.file_uploaded", len(created), len(keys), len(uploaded))
	slices.Sort(created)
	slices.Sort(keys)
	require.Equal(t, keys, created, "one interface.created per interface")
	require.Len(t, uploaded, 1)
	require.Equal(t, "billing", uploaded[0].Source)
	require.Equal(t, period, uploaded[0].Data.Period)
	require.Equal(t, rep.SHA256, uploaded[0].Data.SHA256)

	// Again: nothing uploaded.
	before, err := os.Stat(remote)
	require.NoError(t, err)
	var again pipelines.Report
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodPost, "/admin/billing/run", map[string]any{"period": period}, &again))
	require.Equal(t, "already_uploaded", again.Outcome)
	require.Equal(t, rep.SHA256, again.SHA256)
	after, err := os.Stat(remote)
	require.NoError(t, err)
	require.True(t, os.SameFile(before, after) && before.ModTime().Equal(after.ModTime()), "file untouched")

	// The status lists the upload and nothing pending.
	var st modules.BillingStatus
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodGet, "/admin/billing", nil, &st))
	require.Len(t, st.Uploads, 1)
	require.Equal(t, period, st.Uploads[0].Period)
	require.Equal(t, rep.SHA256, st.Uploads[0].SHA256)
	require.Equal(t, rep.RemotePath, st.Uploads[0].RemotePath)
	require.Equal(t, rep.Rows, st.Uploads[0].Rows)
	require.Empty(t, st.Pending)
	// The ledger says which poll it absorbed last, in the status and as a metric.
	require.NotNil(t, st.LedgerLastPoll)
	require.Len(t, st.Periods, 1)
	require.Equal(t, "uploaded", st.Periods[0].LastBuild.Outcome)
	require.Equal(t, rep.Rows, st.Periods[0].LastBuild.Rows)
	require.NotEmpty(t, st.Periods[0].FrozenRules)
	lastPoll, ok := metric(f.scrape(t), "passerelle_billing_ledger_last_poll_timestamp_seconds", nil)
	require.True(t, ok)
	require.Equal(t, float64(st.LedgerLastPoll.Unix()), lastPoll)
	v, ok := metric(f.scrape(t), "passerelle_billing_runs_total", map[string]string{"outcome": "already_uploaded"})
	require.True(t, ok)
	require.Equal(t, 1.0, v)
}
