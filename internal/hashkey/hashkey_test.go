package hashkey

import (
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadConfigured(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, generated, err := Load("a-configured-secret-key", dir)
	require.NoError(t, err)
	require.False(t, generated)
	require.Equal(t, "a-configured-secret-key", string(key))
	_, err = os.Stat(filepath.Join(dir, FileName))
	require.ErrorIs(t, err, os.ErrNotExist, "no file when the key is configured")

	_, _, err = Load("short", dir)
	require.ErrorContains(t, err, "PASSERELLE_HASH_KEY")
}

func TestLoadGeneratesOnceAndReuses(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data") // created on demand
	key, generated, err := Load("", dir)
	require.NoError(t, err)
	require.True(t, generated)
	require.Regexp(t, `^[0-9a-f]{64}$`, string(key))
	fi, err := os.Stat(filepath.Join(dir, FileName))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	again, generated, err := Load("", dir)
	require.NoError(t, err)
	require.False(t, generated)
	require.Equal(t, key, again, "reused across restarts")

	// The file's content, set as PASSERELLE_HASH_KEY, is the same key.
	b, err := os.ReadFile(filepath.Join(dir, FileName))
	require.NoError(t, err)
	configured, _, err := Load(string(b[:len(b)-1]), t.TempDir())
	require.NoError(t, err)
	require.Equal(t, key, configured)
}

func TestLoadConcurrentStartsAgree(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 8
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], _, errs[i] = Load("", dir) })
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, keys[0], keys[i])
	}
	left, err := filepath.Glob(filepath.Join(dir, "*.tmp"))
	require.NoError(t, err)
	require.Empty(t, left, "temporary files removed")
}

func TestLoadRejectsATruncatedFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, FileName), []byte("abc\n"), 0o600))
	_, _, err := Load("", dir)
	require.ErrorContains(t, err, "at least")
}

func TestDeriveAndID(t *testing.T) {
	t.Parallel()
	k := []byte("0123456789abcdef0123")
	require.Len(t, Derive(k, PurposeDedupe), 32)
	require.NotEqual(t, Derive(k, PurposeDedupe), Derive(k, PurposeLogs))
	require.NotEqual(t, Derive(k, PurposeDedupe), Derive([]byte("another key, long enough"), PurposeDedupe))
	require.Equal(t, ID(k), ID(k))
	require.Regexp(t, `^[0-9a-f]{16}$`, ID(k))
	require.NotContains(t, ID(k), "0123")
}
