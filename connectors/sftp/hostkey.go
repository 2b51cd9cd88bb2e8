package sftp

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyChecker builds the host key callback and the host key algorithms to
// offer, both from the known_hosts file.
type hostKeyChecker struct {
	file     string
	callback ssh.HostKeyCallback
}

// loadKnownHosts reads the file anew on each dial so that an operator can fix
// it without restarting the daemon.
func loadKnownHosts(file string) (*hostKeyChecker, error) {
	cb, err := knownhosts.New(file)
	if err != nil {
		return nil, fmt.Errorf("load known_hosts %s: %w", file, err)
	}
	return &hostKeyChecker{file: file, callback: cb}, nil
}

// check wraps knownhosts' verdict in this package's sentinels, with the advice
// an operator needs.
func (h *hostKeyChecker) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := h.callback(hostname, remote, key)
	if err == nil {
		return nil
	}
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return fmt.Errorf("%w: host %s (%s key %s) is not in %s; after checking the fingerprint with the partner, add it with `ssh-keyscan %s >> %s`",
			ErrHostKeyUnknown, hostname, key.Type(), ssh.FingerprintSHA256(key), h.file, keyscanArgs(hostname), h.file)
	case errors.As(err, &keyErr):
		return fmt.Errorf("%w: host %s presented %s key %s, which differs from %s line %d; the key changed or someone is intercepting: confirm with the partner, then replace the line (ssh-keyscan %s)",
			ErrHostKeyMismatch, hostname, key.Type(), ssh.FingerprintSHA256(key), h.file, keyErr.Want[0].Line, keyscanArgs(hostname))
	case errors.As(err, &revoked):
		return fmt.Errorf("%w: host %s presented a key revoked in %s", ErrHostKeyMismatch, hostname, h.file)
	default:
		return fmt.Errorf("check host key of %s against %s: %w", hostname, h.file, err)
	}
}

// algorithms lists the host key algorithms known for addr, so that the
// server is asked for a key type we can check. Without it, a server holding
// several host keys may present one whose type is not in known_hosts, which
// would be reported as a changed key. Nil means "no preference" (unknown host:
// the check then fails with ErrHostKeyUnknown anyway).
func (h *hostKeyChecker) algorithms(addr string) []string {
	err := h.callback(addr, &net.TCPAddr{}, probeKey{})
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) {
		return nil
	}
	var algos []string
	for _, k := range keyErr.Want {
		for _, a := range algorithmsForKeyType(k.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algorithmsForKeyType(t string) []string {
	if t == ssh.KeyAlgoRSA {
		// An RSA key signs with SHA-2 algorithms on any current server.
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

func keyscanArgs(hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || port == "22" {
		return hostport
	}
	return "-p " + port + " " + host
}

// probeKey matches no known_hosts entry; checking it makes knownhosts list
// the keys it holds for a host.
type probeKey struct{}

func (probeKey) Type() string                        { return "passerelle-probe" }
func (probeKey) Marshal() []byte                     { return []byte("passerelle-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key verifies nothing") }
