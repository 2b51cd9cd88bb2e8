package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshd is an OpenSSH sshd on loopback that accepts the current user with a key of its own.
// connectors/sftp/sftptest does the same for tests but needs a testing.TB.
type sshd struct {
	addr, port, user string
	keyFile          string // user's private key, OpenSSH PEM
	privateKey       []byte
	knownHosts       string
	root             string // where uploads go (sshd is not chrooted: absolute paths)
	cmd              *exec.Cmd
	exited           chan struct{}
	stderr           *logBuf
}

const sshdHint = "apt-get install -y openssh-server"

func findSSHD() (string, error) {
	if p, err := exec.LookPath("sshd"); err == nil {
		return filepath.Abs(p) // sshd re-executes itself: it wants an absolute path
	}
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no sshd")
}

func startSSHD(ctx context.Context, sshdPath, dir string) (*sshd, error) {
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		// As root, sshd wants its privilege separation directory, which a container may lack.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, err
		}
	}
	d := &sshd{user: u.Username, keyFile: filepath.Join(dir, "id_ed25519"), knownHosts: filepath.Join(dir, "known_hosts"),
		root: filepath.Join(dir, "root"), exited: make(chan struct{}), stderr: &logBuf{n: 16 << 10}}
	if err := os.Mkdir(d.root, 0o755); err != nil {
		return nil, err
	}
	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	hostSigner, _, err := writeKey(hostKeyFile)
	if err != nil {
		return nil, err
	}
	userSigner, pemBytes, err := writeKey(d.keyFile)
	if err != nil {
		return nil, err
	}
	d.privateKey = pemBytes
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(userSigner.PublicKey()), 0o600); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	d.addr = addr
	_, d.port, _ = net.SplitHostPort(addr)
	permitRoot := "no"
	if os.Geteuid() == 0 {
		permitRoot = "yes"
	}
	cfg := strings.Join([]string{
		"ListenAddress " + addr,
		"HostKey " + hostKeyFile,
		"AuthorizedKeysFile " + authKeys,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"PermitRootLogin " + permitRoot,
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no",
		"Subsystem sftp internal-sftp",
		"LogLevel ERROR",
	}, "\n") + "\n"
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostSigner.PublicKey())
	if err := os.WriteFile(d.knownHosts, []byte(line+"\n"), 0o600); err != nil {
		return nil, err
	}

	d.cmd = exec.Command(sshdPath, "-D", "-e", "-f", cfgFile)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sshd: %w", err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	for deadline := time.Now().Add(10 * time.Second); ; {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("sshd exited: %s", d.stderr)
		case <-ctx.Done():
			d.stop()
			return nil, ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return d, nil
		}
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("sshd not listening on %s after 10s: %s", addr, d.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *sshd) stop() {
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// writeKey writes a new ed25519 key as an OpenSSH private key file (mode 0600, as sshd and ssh
// require).
func writeKey(path string) (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "passerelle-bench")
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
