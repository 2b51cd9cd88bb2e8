package sftp

import (
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults applied by [NewUploader] to a zero field.
const (
	DefaultDir     = "/depot/"
	DefaultTimeout = 2 * time.Minute
)

// Config describes how to reach the partner's SFTP depot.
type Config struct {
	// Addr is host:port of the SFTP server.
	Addr string
	User string
	// Password and PrivateKey (PEM, unencrypted) are both optional, but at
	// least one is required; with both, the key is offered first.
	Password   string
	PrivateKey []byte
	// KnownHostsFile is an OpenSSH known_hosts file holding the server's host
	// key. It is required: an SFTP upload without host key checking would
	// hand billing data to whoever answers on Addr.
	KnownHostsFile string
	// Dir is the remote folder the files are deposited in (default "/depot/").
	// A relative Dir is relative to the login directory.
	Dir string
	// Timeout bounds one whole call (dial, handshake, transfer, rename);
	// default 2 minutes. A shorter context deadline wins.
	Timeout time.Duration
	// ConcurrentWrites lets ReadFrom keep many write requests in flight
	// (pkg/sftp UseConcurrentWrites). Without it each 32 KiB write waits for
	// its acknowledgement, which costs one round trip per packet on a link
	// with latency. It is safe here because a failed transfer only ever
	// leaves a temporary file, never the final one.
	ConcurrentWrites bool
}

// Validate reports the first missing or malformed setting.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("sftp config: addr (host:port) is required")
	case c.User == "":
		return errors.New("sftp config: user is required")
	case c.Password == "" && len(c.PrivateKey) == 0:
		return errors.New("sftp config: one of password or private key is required")
	case c.KnownHostsFile == "":
		return errors.New("sftp config: known_hosts file is required (host keys are always checked)")
	case c.Timeout < 0:
		return fmt.Errorf("sftp config: timeout %s is negative", c.Timeout)
	}
	if len(c.PrivateKey) > 0 {
		if _, err := parsePrivateKey(c.PrivateKey); err != nil {
			return fmt.Errorf("sftp config: %w", err)
		}
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Dir == "" {
		c.Dir = DefaultDir
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

func parsePrivateKey(pemBytes []byte) (ssh.Signer, error) {
	signer, err := ssh.ParsePrivateKey(pemBytes)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, errors.New("private key is encrypted; passphrase-protected keys are not supported")
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	return signer, nil
}
