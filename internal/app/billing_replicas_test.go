package app_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/pipelines"
)

// testPostgresDSN creates a fresh database on the test server (PASSERELLE_TEST_POSTGRES_DSN, or a
// local one with trust auth), drops it when the test ends, and returns its DSN. An unreachable
// server skips the test, or fails it when CI=true.
func testPostgresDSN(t *testing.T) string {
	t.Helper()
	base := os.Getenv("PASSERELLE_TEST_POSTGRES_DSN")
	if base == "" {
		base = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	u, err := url.Parse(base)
	require.NoError(t, err)
	admin, err := sql.Open("pgx", base)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		msg := fmt.Sprintf("PostgreSQL unreachable at %s: %v", u.Redacted(), err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var random [6]byte
	_, _ = rand.Read(random[:])
	name := "passerelle_app_" + hex.EncodeToString(random[:])
	_, err = admin.ExecContext(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		assert.NoError(t, err)
		_ = admin.Close()
	})
	u.Path = "/" + name
	return u.String()
}

// TestBillingTwoReplicasUploadOnce runs two daemons on one PostgreSQL database, each with its own
// embedded broker, and asks both to bill the same period at once: the upload lock lets one upload,
// and the other, once it holds the lock, finds the period uploaded.
func TestBillingTwoReplicasUploadOnce(t *testing.T) {
	t.Parallel()
	dsn := testPostgresDSN(t)
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "depot"), 0o755))
	srv, err := sftp.StartServer(context.Background(), sftp.ServerConfig{Root: root, User: "facturation", Password: "depot-pw"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, srv.WriteKnownHosts(knownHosts))
	env := []string{
		"PASSERELLE_STORE_DSN=" + dsn,
		"PASSERELLE_SFTP_ADDR=" + srv.Addr(), "PASSERELLE_SFTP_USER=facturation", "PASSERELLE_SFTP_PASSWORD=depot-pw",
		"PASSERELLE_SFTP_KNOWN_HOSTS=" + knownHosts, "PASSERELLE_BILLING_SCHEDULE=off",
	}
	a, b := newFixture(t, env...), newFixture(t, env...)
	a.start()
	b.start()

	period := pipelines.PeriodOf(time.Now()).Previous().String()
	reps := make([]pipelines.Report, 2)
	codes := make([]int, 2)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, f := range []*fixture{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// No require in a goroutine: record, check below.
			codes[i], reps[i] = runBilling(f.admin(), period)
		}()
	}
	close(start)
	wg.Wait()
	require.Equal(t, []int{http.StatusOK, http.StatusOK}, codes, "reports: %+v", reps)
	outcomes := map[string]int{reps[0].Outcome: 1}
	outcomes[reps[1].Outcome]++
	require.Equal(t, map[string]int{"uploaded": 1, "already_uploaded": 1}, outcomes)
	require.Equal(t, reps[0].SHA256, reps[1].SHA256)

	db, err := sql.Open("pgx", dsn)
	require.NoError(t, err)
	defer db.Close()
	var uploads int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM billing_upload_history WHERE period = $1`, period).Scan(&uploads))
	require.Equal(t, 1, uploads, "one upload of the period across both replicas")
	_, err = os.Stat(filepath.Join(root, "depot", pipelines.FileName(pipelines.PeriodOf(time.Now()).Previous())))
	require.NoError(t, err)
}

// runBilling asks a daemon's admin API to run billing for period; it is safe in a goroutine.
func runBilling(admin, period string) (int, pipelines.Report) {
	var rep pipelines.Report
	body := fmt.Sprintf(`{"period": %q}`, period)
	resp, err := httpClient.Post(admin+"/admin/billing/run", "application/json", strings.NewReader(body))
	if err != nil {
		return 0, rep
	}
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	return resp.StatusCode, rep
}
