package sftp_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/sftp"
)

// TestUploaderContract runs one body against every server the uploader must
// work with: the in-process simulator and a real OpenSSH.
func TestUploaderContract(t *testing.T) {
	t.Parallel()
	servers := []struct {
		name  string
		start func(testing.TB) target
	}{
		{"inprocess", startInProcess},
		{"openssh", startOpenSSH},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			testUploaderContract(t, s.start(t))
		})
	}
}

func testUploaderContract(t *testing.T, tg target) {
	ctx := context.Background()

	t.Run("round trip", func(t *testing.T) {
		for _, concurrent := range []bool{false, true} {
			cfg := tg.cfg
			cfg.ConcurrentWrites = concurrent
			u := newUploader(t, cfg)
			name := "clients_a_facturer_2025-01.csv"
			if concurrent {
				name = "clients_a_facturer_2025-02.csv"
			}
			data := billingCSV(20_000) // ~3 MB: many packets in flight
			sum := sha256.Sum256(data)

			res, err := u.Upload(ctx, name, data)
			require.NoError(t, err)
			require.Equal(t, filepath.Join(cfg.Dir, name), res.RemotePath)
			require.Equal(t, int64(len(data)), res.Bytes)
			require.Equal(t, hex.EncodeToString(sum[:]), res.SHA256)
			require.Positive(t, res.Duration)

			size, ok, err := u.Exists(ctx, name)
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, int64(len(data)), size)

			got, err := u.Fetch(ctx, name)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got), "fetched content differs (concurrent writes %v)", concurrent)

			onDisk, err := os.ReadFile(filepath.Join(tg.localDir, name))
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, onDisk))
			require.Empty(t, tempFiles(t, tg.localDir), "temporary files left behind")
		}
	})

	t.Run("empty file", func(t *testing.T) {
		u := newUploader(t, tg.cfg)
		_, err := u.Upload(ctx, "empty.csv", nil)
		require.NoError(t, err)
		size, ok, err := u.Exists(ctx, "empty.csv")
		require.NoError(t, err)
		require.True(t, ok)
		require.Zero(t, size)
	})

	t.Run("replaces an existing file", func(t *testing.T) {
		u := newUploader(t, tg.cfg)
		name := "clients_a_facturer_2025-03.csv"
		_, err := u.Upload(ctx, name, billingCSV(100))
		require.NoError(t, err)
		second := billingCSV(3)
		_, err = u.Upload(ctx, name, second)
		require.NoError(t, err)
		got, err := u.Fetch(ctx, name)
		require.NoError(t, err)
		require.Equal(t, string(second), string(got))
	})

	t.Run("missing file", func(t *testing.T) {
		u := newUploader(t, tg.cfg)
		size, ok, err := u.Exists(ctx, "absent.csv")
		require.NoError(t, err)
		require.False(t, ok)
		require.Zero(t, size)
		_, err = u.Fetch(ctx, "absent.csv")
		require.ErrorIs(t, err, os.ErrNotExist)
	})

	t.Run("missing folder is not retried", func(t *testing.T) {
		cfg := tg.cfg
		cfg.Dir = filepath.Join(cfg.Dir, "no-such-folder")
		_, err := newUploader(t, cfg).Upload(ctx, "x.csv", []byte("x"))
		require.Error(t, err)
		require.False(t, sftp.IsRetryable(err), "error %v", err)
	})

	t.Run("names outside the folder are refused", func(t *testing.T) {
		u := newUploader(t, tg.cfg)
		for _, name := range []string{"", ".", "..", "../x.csv", "a/b.csv", "/etc/passwd", `..\x.csv`} {
			_, err := u.Upload(ctx, name, []byte("x"))
			require.ErrorIs(t, err, sftp.ErrInvalidName, "name %q", name)
			require.False(t, sftp.IsRetryable(err))
		}
	})

	t.Run("changed host key is refused", func(t *testing.T) {
		other, _ := newKey(t)
		cfg := tg.cfg
		cfg.KnownHostsFile = writeKnownHosts(t, cfg.Addr, other.PublicKey())
		_, err := newUploader(t, cfg).Upload(ctx, "never.csv", []byte("x"))
		require.ErrorIs(t, err, sftp.ErrHostKeyMismatch)
		require.False(t, sftp.IsRetryable(err))
		require.ErrorContains(t, err, cfg.Addr)
		require.ErrorContains(t, err, cfg.KnownHostsFile)
		require.ErrorContains(t, err, "ssh-keyscan")
		require.NoFileExists(t, filepath.Join(tg.localDir, "never.csv"))
	})

	t.Run("unknown host is refused", func(t *testing.T) {
		other, _ := newKey(t)
		cfg := tg.cfg
		cfg.KnownHostsFile = writeKnownHosts(t, "partner.example:22", other.PublicKey())
		_, err := newUploader(t, cfg).Upload(ctx, "never.csv", []byte("x"))
		require.ErrorIs(t, err, sftp.ErrHostKeyUnknown)
		require.False(t, sftp.IsRetryable(err))
		require.ErrorContains(t, err, cfg.KnownHostsFile)
		require.ErrorContains(t, err, "ssh-keyscan")
	})

	t.Run("wrong key is refused", func(t *testing.T) {
		_, wrong := newKey(t)
		cfg := tg.cfg
		cfg.PrivateKey = wrong
		_, err := newUploader(t, cfg).Upload(ctx, "never.csv", []byte("x"))
		require.ErrorIs(t, err, sftp.ErrAuth)
		require.False(t, sftp.IsRetryable(err))
	})
}
