package sftp

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Servers without posix-rename@openssh.com take the remove-then-rename path.
func TestUploadWithoutPosixRename(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	srv, err := StartServer(context.Background(), ServerConfig{Root: root, User: "u", Password: "pw"})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	kh := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, srv.WriteKnownHosts(kh))

	u, err := NewUploader(Config{Addr: srv.Addr(), User: "u", Password: "pw", KnownHostsFile: kh, Dir: "/"}, nil)
	require.NoError(t, err)
	u.noPosixRename = true
	ctx := context.Background()
	for _, content := range []string{"first\r\n", "second\r\n"} {
		_, err := u.Upload(ctx, "f.csv", []byte(content))
		require.NoError(t, err)
		got, err := u.Fetch(ctx, "f.csv")
		require.NoError(t, err)
		require.Equal(t, content, string(got))
	}
}

func TestRel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"/", ".", false},
		{"/depot/f.csv", "depot/f.csv", false},
		{"/depot/../f.csv", "f.csv", false},
		{"/../f.csv", "f.csv", false},
		{"depot/f.csv", "", true},
		{"", "", true},
	}
	for _, tt := range tests {
		got, err := rel(tt.in)
		if tt.wantErr {
			require.Error(t, err, "rel(%q)", tt.in)
			continue
		}
		require.NoError(t, err, "rel(%q)", tt.in)
		require.Equal(t, tt.want, got, "rel(%q)", tt.in)
	}
}

func TestKeyscanArgs(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"sftp.partner.example:22":   "sftp.partner.example:22",
		"sftp.partner.example:2222": "-p 2222 sftp.partner.example",
		"[::1]:2222":                "-p 2222 ::1",
	} {
		require.Equal(t, want, keyscanArgs(in), in)
	}
}

// The client asks for the host key types known_hosts holds, so that a server
// with several host keys is not taken for one whose key changed.
func TestHostKeyAlgorithms(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsaPub, err := ssh.NewPublicKey(&rsaKey.PublicKey)
	require.NoError(t, err)
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	edKey, err := ssh.NewPublicKey(edPub)
	require.NoError(t, err)

	kh := filepath.Join(t.TempDir(), "known_hosts")
	lines := knownhosts.Line([]string{"[rsa.example]:2222"}, rsaPub) + "\n" +
		knownhosts.Line([]string{"both.example"}, edKey) + "\n" +
		knownhosts.Line([]string{"both.example"}, rsaPub) + "\n"
	require.NoError(t, os.WriteFile(kh, []byte(lines), 0o600))
	h, err := loadKnownHosts(kh)
	require.NoError(t, err)

	tests := []struct {
		addr string
		want []string
	}{
		{"rsa.example:2222", []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
		{"both.example:22", []string{ssh.KeyAlgoED25519, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
		{"unknown.example:22", nil},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, h.algorithms(tt.addr), tt.addr)
	}
}
