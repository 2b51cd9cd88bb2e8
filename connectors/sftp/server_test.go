package sftp_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/passerelle/passerelle/connectors/sftp"
)

func TestPasswordAuth(t *testing.T) {
	t.Parallel()
	tg := startInProcess(t)
	tests := []struct {
		name     string
		password string
		wantErr  error
	}{
		{"right password", testPassword, nil},
		{"wrong password", "nope", sftp.ErrAuth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tg.cfg
			cfg.PrivateKey = nil
			cfg.Password = tt.password
			_, err := newUploader(t, cfg).Upload(context.Background(), "pw.csv", []byte("a;b\r\n"))
			if tt.wantErr == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tt.wantErr)
			require.False(t, sftp.IsRetryable(err))
		})
	}
}

// A connection cut mid-upload must never leave a partial file under the
// final name, nor damage the file a previous upload put there.
func TestCutMidUpload(t *testing.T) {
	t.Parallel()
	for _, concurrent := range []bool{false, true} {
		t.Run(map[bool]string{false: "sequential", true: "concurrent"}[concurrent], func(t *testing.T) {
			t.Parallel()
			tg := startInProcess(t)
			cfg := tg.cfg
			cfg.ConcurrentWrites = concurrent
			u := newUploader(t, cfg)
			ctx := context.Background()
			data := billingCSV(10_000)
			final := filepath.Join(tg.localDir, "clients_a_facturer_2025-01.csv")

			tg.server.CutAfter(200_000)
			_, err := u.Upload(ctx, "clients_a_facturer_2025-01.csv", data)
			require.Error(t, err)
			require.True(t, sftp.IsRetryable(err), "a cut connection must be retryable: %v", err)
			require.NoFileExists(t, final)
			_, ok, err := u.Exists(ctx, "clients_a_facturer_2025-01.csv")
			require.NoError(t, err)
			require.False(t, ok, "final name visible after a cut upload")

			_, err = u.Upload(ctx, "clients_a_facturer_2025-01.csv", data)
			require.NoError(t, err)
			got, err := os.ReadFile(final)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got), "retried upload content differs")
			require.Empty(t, tempFiles(t, tg.localDir), "leftover of the cut upload not swept")

			// A cut re-send leaves the previous file whole.
			tg.server.CutAfter(1000)
			_, err = u.Upload(ctx, "clients_a_facturer_2025-01.csv", billingCSV(20))
			require.Error(t, err)
			got, err = os.ReadFile(final)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got), "previous file damaged by a cut re-send")
		})
	}
}

func TestServerConfinesPaths(t *testing.T) {
	t.Parallel()
	parent := t.TempDir()
	root := filepath.Join(parent, "root")
	outside := filepath.Join(parent, "outside")
	require.NoError(t, os.MkdirAll(outside, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "secret"), []byte("secret"), 0o600))
	require.NoError(t, os.MkdirAll(root, 0o755))
	// A link planted on the served disk, as an operator might by mistake.
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "link")))

	srv, err := sftp.StartServer(context.Background(), sftp.ServerConfig{Root: root, User: testUser, Password: testPassword})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	c := rawClient(t, srv)

	t.Run("dot-dot stays inside", func(t *testing.T) {
		for _, p := range []string{"../escaped", "/../escaped", "a/../../escaped", "/./../../escaped"} {
			f, err := c.Create(p)
			require.NoError(t, err, "path %q", p) // lands at /escaped, inside root
			require.NoError(t, f.Close())
			require.NoFileExists(t, filepath.Join(parent, "escaped"))
			require.FileExists(t, filepath.Join(root, "escaped"))
		}
		_, err := c.Open("../outside/secret")
		require.ErrorIs(t, err, os.ErrNotExist)
		_, err = c.Stat("/../../../../etc/passwd")
		require.ErrorIs(t, err, os.ErrNotExist)
	})

	t.Run("symlinks out are refused", func(t *testing.T) {
		_, err := c.Open("/link/secret")
		require.ErrorIs(t, err, os.ErrPermission)
		_, err = c.Create("/link/planted")
		require.ErrorIs(t, err, os.ErrPermission)
		require.NoFileExists(t, filepath.Join(outside, "planted"))
		_, err = c.ReadDir("/link")
		require.ErrorIs(t, err, os.ErrPermission)
		require.ErrorIs(t, c.Remove("/link/secret"), os.ErrPermission)
		require.FileExists(t, filepath.Join(outside, "secret"))
		require.ErrorIs(t, c.PosixRename("/escaped", "/link/moved"), os.ErrPermission)
		require.NoFileExists(t, filepath.Join(outside, "moved"))
	})

	t.Run("clients cannot make links", func(t *testing.T) {
		err := c.Symlink("/etc", "/etc-link")
		require.Error(t, err)
		require.NoFileExists(t, filepath.Join(root, "etc-link"))
		require.Error(t, c.Link("/escaped", "/hard"))
	})

	t.Run("plain rename does not replace", func(t *testing.T) {
		for _, p := range []string{"/a", "/b"} {
			f, err := c.Create(p)
			require.NoError(t, err)
			require.NoError(t, f.Close())
		}
		require.Error(t, c.Rename("/a", "/b"))
		require.NoError(t, c.PosixRename("/a", "/b"))
		require.NoFileExists(t, filepath.Join(root, "a"))
	})

	t.Run("directories", func(t *testing.T) {
		require.NoError(t, c.Mkdir("/d"))
		require.DirExists(t, filepath.Join(root, "d"))
		require.NoError(t, c.RemoveDirectory("/d"))
		require.NoDirExists(t, filepath.Join(root, "d"))
	})
}

func TestServerRefusesShell(t *testing.T) {
	t.Parallel()
	srv, err := sftp.StartServer(context.Background(), sftp.ServerConfig{Root: t.TempDir(), User: testUser, Password: testPassword})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	sc := sshClient(t, srv)
	sess, err := sc.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	require.Error(t, sess.Run("cat /etc/passwd"))
}

func TestServerStopsWithContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := sftp.StartServer(ctx, sftp.ServerConfig{Root: t.TempDir(), User: testUser, Password: testPassword})
	require.NoError(t, err)
	cancel()
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", srv.Addr(), 100*time.Millisecond)
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, srv.Close())
}

func TestStartServerValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  sftp.ServerConfig
	}{
		{"no root", sftp.ServerConfig{User: "u", Password: "p"}},
		{"no user", sftp.ServerConfig{Root: t.TempDir(), Password: "p"}},
		{"no credential", sftp.ServerConfig{Root: t.TempDir(), User: "u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sftp.StartServer(context.Background(), tt.cfg)
			require.Error(t, err)
		})
	}
}

func sshClient(t *testing.T, srv *sftp.Server) *ssh.Client {
	t.Helper()
	sc, err := ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{
		User:            testUser,
		Auth:            []ssh.AuthMethod{ssh.Password(testPassword)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sc.Close() })
	return sc
}

// rawClient is a bare pkg/sftp client, free to send any path.
func rawClient(t *testing.T, srv *sftp.Server) *pkgsftp.Client {
	t.Helper()
	c, err := pkgsftp.NewClient(sshClient(t, srv))
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			t.Errorf("close sftp client: %v", err)
		}
	})
	return c
}
