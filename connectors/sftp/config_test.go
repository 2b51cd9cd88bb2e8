package sftp_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/sftp"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	_, key := newKey(t)
	valid := sftp.Config{Addr: "sftp.partner.example:22", User: "passerelle", Password: "pw", KnownHostsFile: "/etc/passerelle/known_hosts"}
	tests := []struct {
		name    string
		edit    func(*sftp.Config)
		wantErr string
	}{
		{"valid with password", func(*sftp.Config) {}, ""},
		{"valid with key", func(c *sftp.Config) { c.Password, c.PrivateKey = "", key }, ""},
		{"no addr", func(c *sftp.Config) { c.Addr = "" }, "addr"},
		{"no user", func(c *sftp.Config) { c.User = "" }, "user"},
		{"no credential", func(c *sftp.Config) { c.Password = "" }, "one of password or private key"},
		{"no known_hosts", func(c *sftp.Config) { c.KnownHostsFile = "" }, "known_hosts"},
		{"garbage key", func(c *sftp.Config) { c.PrivateKey = []byte("not a key") }, "private key"},
		{"negative timeout", func(c *sftp.Config) { c.Timeout = -1 }, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestNewUploaderChecksKnownHosts(t *testing.T) {
	t.Parallel()
	cfg := sftp.Config{Addr: "127.0.0.1:22", User: "u", Password: "pw"}

	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "missing")
	_, err := sftp.NewUploader(cfg, nil)
	require.ErrorContains(t, err, "known_hosts")

	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "bad")
	require.NoError(t, os.WriteFile(cfg.KnownHostsFile, []byte("[127.0.0.1]:22 ssh-ed25519 !!!\n"), 0o600))
	_, err = sftp.NewUploader(cfg, nil)
	require.ErrorContains(t, err, "known_hosts")
}
