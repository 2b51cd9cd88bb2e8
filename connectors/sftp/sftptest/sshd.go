// Package sftptest starts a real OpenSSH sshd for tests, so that the SFTP
// client is proven against the server partners actually run, not only
// against the in-process one.
package sftptest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHD is a running sshd that accepts User with Signer's key.
type SSHD struct {
	// Addr is 127.0.0.1:port.
	Addr string
	// User is the current OS user, the only one an sshd can log in as
	// without touching the system's accounts.
	User string
	// KeyFile holds the user's private key (PEM, unencrypted); PrivateKey is
	// its content and Signer the parsed key.
	KeyFile    string
	PrivateKey []byte
	Signer     ssh.Signer
	// HostKey is sshd's public host key; KnownHostsFile trusts it for Addr.
	HostKey        ssh.PublicKey
	KnownHostsFile string
	// Root is an empty directory for the test's files. sshd is not chrooted,
	// so remote paths are absolute paths under Root.
	Root string

	cmd    *exec.Cmd
	exited chan error
}

// InstallHint says how to get sshd on the Debian machines passerelle uses.
const InstallHint = "apt-get install -y openssh-server"

// StartSSHD starts sshd on a free loopback port and stops it when the test
// ends. Without sshd installed the test is skipped, or fails when CI=true, so
// that CI cannot go green without having run it.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	sshdPath, err := Find()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sshd not found (%v): install it with `%s`", err, InstallHint)
		}
		t.Skipf("sshd not found (%v): install it with `%s` to run this test", err, InstallHint)
	}
	d, err := Start(sshdPath, t.TempDir())
	if err != nil {
		t.Fatalf("sftptest: %v", err)
	}
	t.Cleanup(d.Stop)
	return d
}

// Start runs sshdPath on a free loopback port with its keys and files under
// dir, for the benchmarks as well as the tests. Stop ends it.
func Start(sshdPath, dir string) (*SSHD, error) {
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}
	if os.Geteuid() == 0 {
		// As root, sshd insists on its privilege separation directory,
		// which a fresh container may lack. Debian's sshd uses this one.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("create sshd privilege separation dir: %w", err)
		}
	}
	d := &SSHD{
		User:           u.Username,
		KeyFile:        filepath.Join(dir, "id_ed25519"),
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
		Root:           filepath.Join(dir, "root"),
	}
	if err := os.Mkdir(d.Root, 0o755); err != nil {
		return nil, err
	}
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	hostSigner, _, err := writeKey(hostKeyFile)
	if err != nil {
		return nil, fmt.Errorf("host key: %w", err)
	}
	d.HostKey = hostSigner.PublicKey()
	if d.Signer, d.PrivateKey, err = writeKey(d.KeyFile); err != nil {
		return nil, fmt.Errorf("user key: %w", err)
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(d.Signer.PublicKey()), 0o600); err != nil {
		return nil, err
	}

	// A port picked by listening can be taken again before sshd binds it:
	// try a few times.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		d.Addr = net.JoinHostPort("127.0.0.1", port)
		cfgFile := filepath.Join(dir, "sshd_config")
		cfg := sshdConfig(port, hostKeyFile, authKeys, filepath.Join(dir, "sshd.pid"), u.Uid == "0")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			return nil, err
		}
		if lastErr = d.start(sshdPath, cfgFile); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		return nil, lastErr
	}

	line := knownhosts.Line([]string{knownhosts.Normalize(d.Addr)}, d.HostKey)
	if err := os.WriteFile(d.KnownHostsFile, []byte(line+"\n"), 0o600); err != nil {
		d.Stop()
		return nil, err
	}
	return d, nil
}

// Port is the port sshd listens on.
func (d *SSHD) Port() string {
	_, port, _ := net.SplitHostPort(d.Addr)
	return port
}

// Stop kills sshd and waits for it.
func (d *SSHD) Stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
	d.cmd = nil
}

func sshdConfig(port, hostKey, authKeys, pidFile string, root bool) string {
	permitRoot := "no"
	if root {
		permitRoot = "yes"
	}
	return strings.Join([]string{
		"ListenAddress 127.0.0.1:" + port,
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + authKeys,
		"PidFile " + pidFile,
		"PermitRootLogin " + permitRoot,
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		// The temp dirs' modes are the test runner's, not sshd's business.
		"StrictModes no",
		// internal-sftp is sftp-server's code run inside sshd: no binary to
		// find on each distribution, no exec per session.
		"Subsystem sftp internal-sftp",
		"LogLevel ERROR",
	}, "\n") + "\n"
}

// start runs sshd in the foreground and waits until it accepts connections.
func (d *SSHD) start(sshdPath, cfgFile string) error {
	var stderr syncBuffer
	// sshd must be started by absolute path: it re-executes itself.
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", cfgFile)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("sshd exited (%v): %s", err, stderr.String())
		default:
		}
		c, err := net.DialTimeout("tcp", d.Addr, 200*time.Millisecond)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("sshd not listening on %s after 10s: %s", d.Addr, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.cmd, d.exited = cmd, exited
	return nil
}

// Find locates the sshd binary.
func Find() (string, error) {
	if p, err := exec.LookPath("sshd"); err == nil {
		return filepath.Abs(p)
	}
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no sshd in PATH, /usr/sbin or /usr/local/sbin")
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

// writeKey generates an ed25519 key and writes it as an OpenSSH private key
// file, mode 0600 as sshd requires for host keys.
func writeKey(path string) (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "passerelle-sftptest")
	if err != nil {
		return nil, nil, err
	}
	pemBytes := pem.EncodeToMemory(block)
	if err := os.WriteFile(path, pemBytes, 0o600); err != nil {
		return nil, nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	return signer, pemBytes, err
}

// syncBuffer collects sshd's stderr, written by exec's copying goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
