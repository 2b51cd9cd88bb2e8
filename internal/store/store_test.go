package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"
)

const defaultTestPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

func TestSQLiteContract(t *testing.T) {
	t.Parallel()
	s := openTest(t, filepath.Join(t.TempDir(), "state", "passerelle.db"))
	require.Equal(t, DialectSQLite, s.Dialect())
	runContract(t, s)
}

func TestPostgresContract(t *testing.T) {
	t.Parallel()
	s := openTest(t, postgresTestDSN(t))
	require.Equal(t, DialectPostgres, s.Dialect())
	runContract(t, s)
}

func TestSQLiteMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	testMigrationsIdempotent(t, filepath.Join(t.TempDir(), "passerelle.db"))
}

func TestPostgresMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	testMigrationsIdempotent(t, postgresTestDSN(t))
}

// testMigrationsIdempotent opens dsn a second time, while the first store is open and then after it
// closed, and checks each migration was recorded once and the data survived.
func testMigrationsIdempotent(t *testing.T, dsn string) {
	ctx := t.Context()
	first, err := Open(ctx, dsn)
	require.NoError(t, err)
	require.NoError(t, first.PutState(ctx, "ns", "k", []byte("v")))

	second, err := Open(ctx, dsn)
	require.NoError(t, err, "open while another store has the database open")
	require.NoError(t, second.Close())
	require.NoError(t, first.Close())

	third := openTest(t, dsn)
	v, ok, err := third.GetState(ctx, "ns", "k")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, []byte("v"), v)

	migs, err := loadMigrations(migrationFiles)
	require.NoError(t, err)
	require.NotEmpty(t, migs)
	rows, err := third.rdb.QueryContext(ctx, `SELECT version, name FROM schema_migrations ORDER BY version`)
	require.NoError(t, err)
	defer rows.Close()
	var got []string
	for rows.Next() {
		var (
			version int
			name    string
		)
		require.NoError(t, rows.Scan(&version, &name))
		got = append(got, fmt.Sprintf("%d %s", version, name))
	}
	require.NoError(t, rows.Err())
	var want []string
	for _, m := range migs {
		want = append(want, fmt.Sprintf("%d %s", m.version, m.name))
	}
	assert.Equal(t, want, got, "each migration recorded once")
}

// TestSQLiteConcurrentWriters checks that writers never surface SQLITE_BUSY: within one Store the
// single writer connection queues them, and across two Stores on one file (the daemon and a CLI
// command) busy_timeout waits for the lock.
func TestSQLiteConcurrentWriters(t *testing.T) {
	t.Parallel()
	const goroutines, perGoroutine = 8, 200
	for _, tc := range []struct {
		name   string
		stores int
	}{
		{"one store", 1},
		{"two stores on one file", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "passerelle.db")
			stores := make([]*Store, tc.stores)
			for i := range stores {
				stores[i] = openTest(t, path)
			}
			var g errgroup.Group
			for w := range goroutines {
				s := stores[w%len(stores)]
				g.Go(func() error {
					for i := range perGoroutine {
						key := fmt.Sprintf("k-%d-%d", w, i)
						if err := s.CommitKeys(ctx, "load", []KeyClaim{{key, "ev-" + key}}, base.Add(time.Duration(i)*time.Millisecond)); err != nil {
							return err
						}
						// Reads interleave with writes, as the pipelines do.
						if seen, err := s.SeenKeys(ctx, "load", []string{key}, base); err != nil {
							return err
						} else if _, ok := seen[key]; !ok {
							return fmt.Errorf("key %s not seen after commit", key)
						}
					}
					return nil
				})
			}
			require.NoError(t, g.Wait())

			var n int
			require.NoError(t, stores[0].rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM dedupe_keys`).Scan(&n))
			assert.Equal(t, goroutines*perGoroutine, n, "committed keys")
		})
	}
}

func TestPostgresTryLockExclusiveAcrossStores(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := postgresTestDSN(t)
	a, b := openTest(t, dsn), openTest(t, dsn)

	releaseA, ok, err := a.TryLock(ctx, "poller.shopapp")
	require.NoError(t, err)
	require.True(t, ok, "a takes the lock")

	_, ok, err = b.TryLock(ctx, "poller.shopapp")
	require.NoError(t, err)
	assert.False(t, ok, "b while a holds it")

	releaseA()
	releaseB, ok, err := b.TryLock(ctx, "poller.shopapp")
	require.NoError(t, err)
	assert.True(t, ok, "b after a released")

	_, ok, err = a.TryLock(ctx, "poller.shopapp")
	require.NoError(t, err)
	assert.False(t, ok, "a while b holds it")
	releaseB()
}

func TestSQLiteOpenErrors(t *testing.T) {
	t.Parallel()
	notADir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notADir, []byte("x"), 0o600))
	notADB := filepath.Join(t.TempDir(), "garbage.db")
	require.NoError(t, os.WriteFile(notADB, []byte(strings.Repeat("not a database ", 512)), 0o600))

	for _, tc := range []struct {
		name, dsn, wantErr string
	}{
		{"empty", "", "empty path"},
		{"query in path", filepath.Join(t.TempDir(), "x.db?mode=ro"), "must not contain '?'"},
		{"parent is a file", filepath.Join(notADir, "x.db"), "create sqlite store directory"},
		{"not a database", notADB, "sqlite store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.dsn)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestRebind(t *testing.T) {
	t.Parallel()
	q := `SELECT a FROM t WHERE b = ? AND c IN (?, ?)`
	sqlite := &Store{dialect: DialectSQLite}
	pg := &Store{dialect: DialectPostgres}
	assert.Equal(t, q, sqlite.rebind(q))
	assert.Equal(t, `SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)`, pg.rebind(q))
}

func TestSafeEndpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://crm.example.com/hooks/abc?token=s3cret", "https://crm.example.com"},
		{"https://user:pw@crm.example.com/x", "https://crm.example.com"},
		{"hubspot-main", "hubspot-main"},
	} {
		assert.Equal(t, tc.want, safeEndpoint(tc.in), tc.in)
	}
}

// openTest opens dsn and closes the store when the test ends.
func openTest(t *testing.T, dsn string) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

// postgresTestDSN creates a fresh database on the test server, drops it when the test ends, and
// returns its DSN. The server is PASSERELLE_TEST_POSTGRES_DSN (a postgres:// URL) or a local one with
// trust auth. If it is unreachable the test is skipped, or fails when CI=true.
func postgresTestDSN(t *testing.T) string {
	t.Helper()
	base := os.Getenv("PASSERELLE_TEST_POSTGRES_DSN")
	if base == "" {
		base = defaultTestPostgresDSN
	}
	u, err := url.Parse(base)
	require.NoError(t, err, "PASSERELLE_TEST_POSTGRES_DSN must be a postgres:// URL")

	admin, err := sql.Open("pgx", base)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		_ = admin.Close()
		msg := fmt.Sprintf("PostgreSQL unreachable at %s (start one, or point PASSERELLE_TEST_POSTGRES_DSN at one): %v",
			u.Redacted(), err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}

	var random [6]byte
	_, _ = rand.Read(random[:])
	name := "passerelle_test_" + hex.EncodeToString(random[:])
	_, err = admin.ExecContext(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err, "create test database")
	t.Cleanup(func() {
		// Cleanups run after t.Context is cancelled, and before this one the stores were closed.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		assert.NoError(t, err, "drop test database")
		assert.NoError(t, admin.Close())
	})

	u.Path = "/" + name
	return u.String()
}

// On SQLite the store keeps the committed keys in memory to skip lookups of new ones: a reopened
// store learns the table's keys, and a prune forgets what it deleted.
func TestCommittedKeysInMemory(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "passerelle.db")
	first := openTest(t, path)
	require.NoError(t, first.CommitKeys(ctx, "leads", []KeyClaim{{"old", "ev-old"}}, base))
	require.NoError(t, first.Close())

	s := openTest(t, path)
	seen := func(key string) bool {
		t.Helper()
		got, err := s.SeenKeys(ctx, "leads", []string{key, "never"}, time.Time{})
		require.NoError(t, err)
		require.NotContains(t, got, "never")
		_, ok := got[key]
		return ok
	}
	require.NoError(t, s.CommitKeys(ctx, "leads", []KeyClaim{{"new", "ev-new"}}, base.Add(time.Hour)))
	assert.True(t, seen("old"), "committed by the previous store")
	assert.True(t, seen("new"), "committed before the first lookup")
	require.NoError(t, s.CommitKeys(ctx, "leads", []KeyClaim{{"later", "ev-later"}}, base.Add(time.Hour)))
	assert.True(t, seen("later"), "committed after the load")
	assert.False(t, seen("new-in-other-scope"))

	n, err := s.PruneKeys(ctx, base.Add(time.Minute))
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.False(t, seen("old"), "pruned")
	assert.True(t, seen("new"))
	assert.Len(t, s.committed.hashes, 2, "the pruned key left the memory")
}
