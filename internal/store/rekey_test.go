package store

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSQLiteRekeyDedupe(t *testing.T) {
	t.Parallel()
	testRekeyDedupe(t, filepath.Join(t.TempDir(), "passerelle.db"))
}

func TestPostgresRekeyDedupe(t *testing.T) {
	t.Parallel()
	testRekeyDedupe(t, postgresTestDSN(t))
}

// testRekeyDedupe: keys stored before the upgrade are rewritten once, in place, and still match;
// a restart rewrites nothing; another hash key is reported.
func testRekeyDedupe(t *testing.T, dsn string) {
	ctx := t.Context()
	now := time.UnixMilli(1_800_000_000_000).UTC()
	rekeyA := func(d string) string { return "A(" + d + ")" }

	s := openTest(t, dsn)
	require.NoError(t, s.CommitKeys(ctx, "leads", []KeyClaim{{Key: "old1", EventID: "ev1"}, {Key: "old2", EventID: "ev2"}}, now))
	require.NoError(t, s.CommitKeys(ctx, "other", []KeyClaim{{Key: "old1", EventID: "ev3"}}, now))
	// Looked up once before the upgrade: the SQLite memory of committed keys is loaded.
	seen, err := s.SeenKeys(ctx, "leads", []string{"old1"}, now)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"old1": "ev1"}, seen)

	n, err := s.RekeyDedupe(ctx, "key-a", rekeyA)
	require.NoError(t, err)
	require.Equal(t, int64(3), n)
	seen, err = s.SeenKeys(ctx, "leads", []string{"A(old1)", "A(old2)", "old1"}, now)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"A(old1)": "ev1", "A(old2)": "ev2"}, seen, "rewritten keys match, time and event kept")
	seen, err = s.SeenKeys(ctx, "other", []string{"A(old1)"}, now)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"A(old1)": "ev3"}, seen, "every scope")

	// A restart with the same key: nothing rewritten twice, even after a reopen.
	require.NoError(t, s.CommitKeys(ctx, "leads", []KeyClaim{{Key: "A(new)", EventID: "ev4"}}, now))
	n, err = s.RekeyDedupe(ctx, "key-a", rekeyA)
	require.NoError(t, err)
	require.Zero(t, n)
	require.NoError(t, s.Close())
	s = openTest(t, dsn)
	n, err = s.RekeyDedupe(ctx, "key-a", rekeyA)
	require.NoError(t, err)
	require.Zero(t, n)
	seen, err = s.SeenKeys(ctx, "leads", []string{"A(old1)", "A(new)"}, now)
	require.NoError(t, err)
	require.Len(t, seen, 2)

	// Another key cannot rewrite keys made with the first: it is reported once, then recorded.
	_, err = s.RekeyDedupe(ctx, "key-b", func(d string) string { return "B(" + d + ")" })
	require.ErrorIs(t, err, ErrDedupeKeyChanged)
	n, err = s.RekeyDedupe(ctx, "key-b", func(d string) string { return "B(" + d + ")" })
	require.NoError(t, err)
	require.Zero(t, n)
	seen, err = s.SeenKeys(ctx, "leads", []string{"A(old1)"}, now)
	require.NoError(t, err)
	require.Len(t, seen, 1, "keys left as they were")
}

func TestSQLiteRekeyDedupeNewStore(t *testing.T) {
	t.Parallel()
	s := openTest(t, filepath.Join(t.TempDir(), "passerelle.db"))
	n, err := s.RekeyDedupe(t.Context(), "key-a", func(string) string { panic("nothing to rewrite") })
	require.NoError(t, err)
	require.Zero(t, n)
}
