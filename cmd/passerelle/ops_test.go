package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/modules"
	"github.com/passerelle/passerelle/pipelines"
)

// The provisioning commands talk to Shop Application (here its simulator) and creation is
// idempotent on guid.
func TestShopAppCommands(t *testing.T) {
	clearPasserelleEnv(t)
	sim, err := shopappsim.Start(shopappsim.Config{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	t.Setenv("PASSERELLE_DATA_DIR", t.TempDir())
	t.Setenv("PASSERELLE_SHOPAPP_URL", sim.URL())
	t.Setenv("PASSERELLE_SHOPAPP_CLIENT_ID", sim.ClientID())
	t.Setenv("PASSERELLE_SHOPAPP_CLIENT_SECRET", sim.ClientSecret())

	create := []string{"shopapp", "create", "--guid", "cli-1", "--prestations", "IN-BTQST-S,IN-BTQZ-AMM", "--company", "ACME", "--email", "a@acme.fr"}
	code, stdout, stderr := runCLI(create...)
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	var res map[string]string
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	key := res["sa_key"]
	require.NotEmpty(t, key)

	code, stdout, stderr = runCLI(create...)
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	require.Contains(t, stdout, key, "the same guid gives the same interface")
	require.Len(t, sim.Interfaces(), 1)

	require.NoError(t, sim.AdvanceInstall(key))
	code, stdout, stderr = runCLI("shopapp", "delete", "--key", key)
	require.Equal(t, exitOK, code, "stderr: %s", stderr)
	require.Contains(t, stdout, "date_suppression")
	code, _, stderr = runCLI("shopapp", "reactivate", "--key", key)
	require.Equal(t, exitOK, code, "stderr: %s", stderr)

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"shopapp"}, exitUsage, "usage: passerelle shopapp"},
		{[]string{"shopapp", "explode"}, exitUsage, `unknown command "explode" for "passerelle shopapp"`},
		{[]string{"shopapp", "create", "--guid", "x"}, exitUsage, `required flag(s) "prestations" not set`},
		{[]string{"shopapp", "delete"}, exitUsage, `required flag(s) "key" not set`},
		{[]string{"shopapp", "create", "--guid", "two-setups", "--prestations", "IN-BTQST-S,IN-VITRINE-S"}, exitFailed, "400"},
	} {
		code, _, stderr := runCLI(tc.args...)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, stderr)
		require.Contains(t, stderr, tc.want, "%v", tc.args)
	}

	t.Setenv("PASSERELLE_SHOPAPP_URL", "")
	code, _, stderr = runCLI("shopapp", "delete", "--key", key)
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "PASSERELLE_SHOPAPP_URL is empty")
}

// billing run and status go through the running daemon: a dry run prints the file, a run uploads
// it once, a second run says it was already uploaded.
func TestBillingCommands(t *testing.T) {
	clearPasserelleEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sim, err := shopappsim.Start(shopappsim.Config{})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "depot"), 0o750))
	depot, err := sftp.StartServer(ctx, sftp.ServerConfig{Root: root, User: "u", Password: "p"})
	require.NoError(t, err)
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, depot.WriteKnownHosts(knownHosts))

	a := startDaemon(t,
		"PASSERELLE_SHOPAPP_URL="+sim.URL(), "PASSERELLE_SHOPAPP_CLIENT_ID="+sim.ClientID(),
		"PASSERELLE_SHOPAPP_CLIENT_SECRET="+sim.ClientSecret(), "PASSERELLE_SHOPAPP_RATE=100",
		"PASSERELLE_SFTP_ADDR="+depot.Addr(), "PASSERELLE_SFTP_USER=u", "PASSERELLE_SFTP_PASSWORD=p",
		"PASSERELLE_SFTP_KNOWN_HOSTS="+knownHosts,
	)

	// An interface created and installed now: it is billed for the current month.
	key, err := app.Module[*modules.ShopApp](a).Client.CreateInterface(ctx, shopapp.CreateRequest{GUID: "bill-1", Prestations: []string{"IN-BTQST-S", "IN-BTQZ-AMM"}, Client: shopapp.Customer{Company: "ACME"}})
	require.NoError(t, err)
	require.NoError(t, sim.AdvanceInstall(key))
	_, err = app.Module[*modules.ShopApp](a).Poller.Poll(ctx)
	require.NoError(t, err)
	period := pipelines.PeriodOf(time.Now()).String()
	// The current month is not over: refused without --force, which says what it does.
	code, _, stderr := runCLI("billing", "run", "--period", period, "--dry-run")
	require.Equal(t, exitUsage, code, stderr)
	require.Contains(t, stderr, "is not over")
	require.Eventually(t, func() bool {
		code, stdout, _ := runCLI("billing", "run", "--period", period, "--dry-run", "--force")
		return code == exitOK && strings.Contains(stdout, key)
	}, 20*time.Second, 50*time.Millisecond, "the ledger never got the interface")

	code, stdout, stderr := runCLI("billing", "run", "--period", period, "--dry-run", "--force")
	require.Equal(t, exitOK, code, stderr)
	require.True(t, strings.HasPrefix(stdout, "periode;reference_client;"), stdout)
	require.Contains(t, stderr, "--force: building "+period+" before it ends")
	// What the file bills, for a person, after it and apart from it (stderr).
	require.Contains(t, stderr, "--- "+period+": 2 rows, 1 clients, total HT ")
	require.Contains(t, stderr, "rows per rule: once 1, monthly 1")
	require.Contains(t, stderr, "clients without identity (rows without company, name nor email): "+key, "created outside passerelle")

	// --strict refuses to upload it; once the directory names the client, it goes.
	code, _, stderr = runCLI("billing", "run", "--period", period, "--force", "--strict")
	require.Equal(t, exitFailed, code, stderr)
	require.Contains(t, stderr, "rows whose client has no identity: 1 client(s) ("+key+")")
	t.Setenv("PASSERELLE_DATA_DIR", a.Cfg.DataDir) // the directory commands open the daemon's store
	csvFile := filepath.Join(t.TempDir(), "clients.csv")
	require.NoError(t, os.WriteFile(csvFile, []byte("reference_client;societe;email\n"+key+";ACME;compta@acme.example\n"), 0o600))
	code, stdout, stderr = runCLI("clients", "import", csvFile, "--dry-run")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "line 2 (sa_key "+key+"): new client; company \"ACME\"; email \"compta@acme.example\"")
	require.Contains(t, stdout, "1 lines (dry run, nothing recorded): 1 new clients, 0 changed, 0 unchanged")
	code, stdout, stderr = runCLI("clients", "import", csvFile)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "1 lines (imported): 1 new clients")
	code, stdout, stderr = runCLI("clients", "show", "--key", key)
	require.Equal(t, exitOK, code, stderr)
	require.Regexp(t, `company +ACME +import clients.csv +20`, stdout)
	code, _, stderr = runCLI("clients", "show", "--guid", "nobody")
	require.Equal(t, exitFailed, code)
	require.Contains(t, stderr, `no client with guid "nobody"`)
	code, stdout, stderr = runCLI("billing", "run", "--period", period, "--dry-run", "--force")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, ";"+key+";ACME;;;compta@acme.example;")
	require.Contains(t, stderr, "clients without identity (rows without company, name nor email): none")
	_, err = os.Stat(filepath.Join(root, "depot", pipelines.FileName(pipelines.PeriodOf(time.Now()))))
	require.True(t, os.IsNotExist(err), "a dry run uploads nothing")

	code, stdout, stderr = runCLI("billing", "run", "--period", period, "--force", "--strict")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "uploaded to /depot/clients_a_facturer_"+period+".csv")
	require.Contains(t, stderr, "the upload counts as the period's")
	code, stdout, _ = runCLI("billing", "run", "--period", period, "--force")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "uploaded to", "--force uploads again")
	code, stdout, _ = runCLI("billing", "run", "--period", pipelines.PeriodOf(time.Now()).Previous().String())
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "uploaded to", "last month: over")
	code, stdout, _ = runCLI("billing", "run", "--period", pipelines.PeriodOf(time.Now()).Previous().String())
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, "already uploaded")
	code, stdout, _ = runCLI("billing", "status")
	require.Equal(t, exitOK, code)
	require.Contains(t, stdout, period)
	require.Contains(t, stdout, "uploaded")
	require.Contains(t, stdout, "clients without identity: none")
	require.Contains(t, stdout, "rules frozen ")
	require.Contains(t, stdout, "*-S once, *-AMM monthly, *-AMA annual")
	require.Contains(t, stdout, "the ledger absorbed the last poll at ")

	code, _, stderr = runCLI("billing", "run", "--period", "2026-13")
	require.Equal(t, exitUsage, code)
	require.Contains(t, stderr, "--period")
}
