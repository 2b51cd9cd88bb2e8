package sftp_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/connectors/sftp/sftptest"
)

// target is an SFTP server under test, with an uploader config that logs in
// to it and the local directory behind the config's Dir.
type target struct {
	cfg      sftp.Config
	localDir string
	// server is set for the in-process server only.
	server *sftp.Server
}

const (
	testUser     = "passerelle"
	testPassword = "s3cret-pw"
)

// startInProcess starts the in-process server accepting testUser with both
// testPassword and a fresh key; the returned config uses the key.
func startInProcess(t testing.TB) target {
	t.Helper()
	signer, pemKey := newKey(t)
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "depot"), 0o755))
	srv, err := sftp.StartServer(context.Background(), sftp.ServerConfig{
		Root:          root,
		User:          testUser,
		Password:      testPassword,
		AuthorizedKey: signer.PublicKey(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	kh := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, srv.WriteKnownHosts(kh))
	return target{
		cfg: sftp.Config{
			Addr:           srv.Addr(),
			User:           testUser,
			PrivateKey:     pemKey,
			KnownHostsFile: kh,
			Dir:            "/depot/",
		},
		localDir: filepath.Join(root, "depot"),
		server:   srv,
	}
}

func startOpenSSH(t testing.TB) target {
	t.Helper()
	d := sftptest.StartSSHD(t)
	depot := filepath.Join(d.Root, "depot")
	require.NoError(t, os.Mkdir(depot, 0o755))
	return target{
		cfg: sftp.Config{
			Addr:           d.Addr,
			User:           d.User,
			PrivateKey:     d.PrivateKey,
			KnownHostsFile: d.KnownHostsFile,
			Dir:            depot + "/",
		},
		localDir: depot,
	}
}

func newKey(t testing.TB) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	signer, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "test")
	require.NoError(t, err)
	return signer, pem.EncodeToMemory(block)
}

func newUploader(t testing.TB, cfg sftp.Config) *sftp.Uploader {
	t.Helper()
	u, err := sftp.NewUploader(cfg, nil)
	require.NoError(t, err)
	return u
}

// writeKnownHosts writes a known_hosts file holding key for addr.
func writeKnownHosts(t testing.TB, addr string, key ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key)
	require.NoError(t, os.WriteFile(p, []byte(line+"\n"), 0o600))
	return p
}

// tempFiles lists the upload temporaries left in dir.
func tempFiles(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var tmps []string
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp-") {
			tmps = append(tmps, e.Name())
		}
	}
	return tmps
}

// billingCSV builds a billing file of n rows in the contract's format:
// UTF-8, ';', CRLF.
func billingCSV(n int) []byte {
	var b bytes.Buffer
	b.WriteString("periode;reference_client;societe;nom;prenom;email;source;code_prestation;libelle;quantite;prix_unitaire_ht;montant_ht;date_debut;date_fin\r\n")
	for i := range n {
		fmt.Fprintf(&b, "2025-01;C%06d;Société d'Été;Dupré;Zoé;zoe@example.fr;shopapp;IN-001-S;Installation;1;149.00;149.00;2025-01-01;2025-01-31\r\n", i)
	}
	return b.Bytes()
}
