package sftp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SFTP extensions the uploader uses when the server advertises them.
const (
	extPosixRename = "posix-rename@openssh.com"
	extFsync       = "fsync@openssh.com"
)

// Client tuning. 32 KiB is the largest payload every server must accept;
// throughput comes from keeping many such requests in flight instead.
const (
	maxPacket             = 32 * 1024
	maxConcurrentRequests = 64
)

// Uploader deposits files in the partner's SFTP folder. It holds no
// connection: each call dials, does its work and hangs up, which suits a
// monthly file and leaves nothing to go stale in between. It is safe for
// concurrent use, but two uploads of the same name at once are not supported.
type Uploader struct {
	cfg     Config
	signer  ssh.Signer
	metrics *Metrics

	// noPosixRename makes rename take the fallback path; tests set it to
	// cover servers without posix-rename@openssh.com.
	noPosixRename bool
}

// Result describes a completed upload.
type Result struct {
	RemotePath string
	Bytes      int64
	// SHA256 is the hex digest of the data sent, for the operator's records
	// and the billing.file_uploaded event.
	SHA256   string
	Duration time.Duration
}

// NewUploader validates cfg, applies defaults and checks that the known_hosts
// file can be read. m may be nil.
func NewUploader(cfg Config, m *Metrics) (*Uploader, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if _, err := loadKnownHosts(cfg.KnownHostsFile); err != nil {
		return nil, fmt.Errorf("sftp config: %w", err)
	}
	u := &Uploader{cfg: cfg, metrics: m}
	if len(cfg.PrivateKey) > 0 {
		signer, err := parsePrivateKey(cfg.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("sftp config: %w", err)
		}
		u.signer = signer
	}
	return u, nil
}

// Upload writes data to Dir/name atomically: to a temporary name in the same
// folder first, then renamed once its size is checked, so that the partner
// never sees a partial file under the final name. An existing file of that
// name is replaced.
func (u *Uploader) Upload(ctx context.Context, name string, data []byte) (res Result, err error) {
	start := time.Now()
	defer func() { u.metrics.observe(time.Since(start), res.Bytes, err) }()

	if err := checkName(name); err != nil {
		return Result{}, err
	}
	ctx, cancel := u.withTimeout(ctx)
	defer cancel()

	s, err := u.connect(ctx)
	if err != nil {
		return Result{}, fmt.Errorf("sftp upload %s: %w", name, err)
	}
	defer s.close()

	final := u.remotePath(name)
	if err := u.put(s, final, data); err != nil {
		return Result{}, fmt.Errorf("sftp upload %s to %s: %w", name, u.cfg.Addr, withCause(ctx, err))
	}
	sum := sha256.Sum256(data)
	return Result{
		RemotePath: final,
		Bytes:      int64(len(data)),
		SHA256:     hex.EncodeToString(sum[:]),
		Duration:   time.Since(start),
	}, nil
}

// Exists reports the size of Dir/name, and false without error when it does
// not exist.
func (u *Uploader) Exists(ctx context.Context, name string) (size int64, ok bool, err error) {
	if err := checkName(name); err != nil {
		return 0, false, err
	}
	ctx, cancel := u.withTimeout(ctx)
	defer cancel()

	s, err := u.connect(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("sftp stat %s: %w", name, err)
	}
	defer s.close()

	fi, err := s.client.Stat(u.remotePath(name))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("sftp stat %s on %s: %w", name, u.cfg.Addr, withCause(ctx, err))
	}
	return fi.Size(), true, nil
}

// Fetch reads Dir/name back, for operators checking a deposit and for tests.
func (u *Uploader) Fetch(ctx context.Context, name string) ([]byte, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	ctx, cancel := u.withTimeout(ctx)
	defer cancel()

	s, err := u.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("sftp fetch %s: %w", name, err)
	}
	defer s.close()

	data, err := fetch(s.client, u.remotePath(name))
	if err != nil {
		return nil, fmt.Errorf("sftp fetch %s from %s: %w", name, u.cfg.Addr, withCause(ctx, err))
	}
	return data, nil
}

func fetch(c *sftp.Client, p string) ([]byte, error) {
	f, err := c.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	defer f.Close()
	var buf bytes.Buffer
	// WriteTo issues concurrent reads.
	if _, err := f.WriteTo(&buf); err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return buf.Bytes(), nil
}

func (u *Uploader) put(s *session, final string, data []byte) (err error) {
	dir, name := path.Split(final)
	sweepTemps(s.client, dir, name)
	tmp := path.Join(dir, tempPrefix(name)+randomSuffix())
	defer func() {
		if err != nil {
			// Best effort: after a cut connection this fails too, and the
			// next upload of the same name sweeps the leftover.
			_ = s.client.Remove(tmp)
		}
	}()

	f, err := s.client.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	// bytes.Reader has Len, which lets ReadFrom split the data into
	// concurrent requests when ConcurrentWrites is on.
	if _, err := f.ReadFrom(bytes.NewReader(data)); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if _, ok := s.client.HasExtension(extFsync); ok {
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return fmt.Errorf("fsync %s: %w", tmp, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	fi, err := s.client.Stat(tmp)
	if err != nil {
		return fmt.Errorf("stat %s: %w", tmp, err)
	}
	if fi.Size() != int64(len(data)) {
		return fmt.Errorf("%w: %s holds %d bytes, %d sent", ErrSizeMismatch, tmp, fi.Size(), len(data))
	}
	return u.rename(s.client, tmp, final)
}

func (u *Uploader) rename(c *sftp.Client, tmp, final string) error {
	if _, ok := c.HasExtension(extPosixRename); ok && !u.noPosixRename {
		if err := c.PosixRename(tmp, final); err != nil {
			return fmt.Errorf("rename %s to %s: %w", tmp, final, err)
		}
		return nil
	}
	// Plain SFTP v3 RENAME fails when the target exists, so a file sent again
	// for the same month must be removed first. The partner may then briefly
	// see no file, never a partial one; posix-rename avoids even that.
	if err := c.Remove(final); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove previous %s: %w", final, err)
	}
	if err := c.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, final, err)
	}
	return nil
}

// sweepTemps removes temporary files left by earlier uploads of name whose
// connection was cut. Errors are ignored: many depots refuse listing, and a
// leftover hidden file is harmless.
func sweepTemps(c *sftp.Client, dir, name string) {
	if dir == "" {
		dir = "."
	}
	entries, err := c.ReadDir(dir)
	if err != nil {
		return
	}
	prefix := tempPrefix(name)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Mode().IsRegular() {
			_ = c.Remove(path.Join(dir, e.Name()))
		}
	}
}

// tempPrefix starts with a dot so that the partner's tools, which look for
// *.csv, skip the file while it is being written.
func tempPrefix(name string) string { return "." + name + ".tmp-" }

func randomSuffix() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails since Go 1.24
	return hex.EncodeToString(b)
}

func (u *Uploader) remotePath(name string) string { return path.Join(u.cfg.Dir, name) }

func (u *Uploader) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, u.cfg.Timeout,
		fmt.Errorf("sftp call to %s took longer than %s: %w", u.cfg.Addr, u.cfg.Timeout, context.DeadlineExceeded))
}

// checkName accepts a plain file name only: the folder is configuration, not
// something a caller may reach out of.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") {
		return fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	return nil
}

// withCause puts the context's cause first when the context ended the call:
// the connection was closed under the operation, and the raw error ("use of
// closed network connection") would hide why.
func withCause(ctx context.Context, err error) error {
	cause := context.Cause(ctx)
	if cause == nil || errors.Is(err, cause) {
		return err
	}
	return fmt.Errorf("%w: %w", cause, err)
}

// session is one SSH connection and its SFTP client.
type session struct {
	conn   net.Conn
	ssh    *ssh.Client
	client *sftp.Client
	stop   func() bool
}

func (s *session) close() {
	s.stop()
	_ = s.client.Close()
	_ = s.ssh.Close()
	_ = s.conn.Close()
}

func (u *Uploader) connect(ctx context.Context) (*session, error) {
	addr := u.cfg.Addr
	hk, err := loadKnownHosts(u.cfg.KnownHostsFile)
	if err != nil {
		return nil, err
	}
	cc := &ssh.ClientConfig{
		User:              u.cfg.User,
		Auth:              u.authMethods(),
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(addr),
	}

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, withCause(ctx, err))
	}
	// The SSH and SFTP layers take no context; closing the connection is
	// what interrupts them when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })

	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cc)
	if err != nil {
		stop()
		_ = conn.Close()
		if strings.Contains(err.Error(), "unable to authenticate") {
			err = fmt.Errorf("%w: %s refused user %q: %w", ErrAuth, addr, u.cfg.User, err)
		}
		return nil, fmt.Errorf("ssh handshake with %s: %w", addr, withCause(ctx, err))
	}
	sc := ssh.NewClient(c, chans, reqs)
	client, err := sftp.NewClient(sc,
		sftp.MaxPacket(maxPacket),
		sftp.MaxConcurrentRequestsPerFile(maxConcurrentRequests),
		sftp.UseConcurrentWrites(u.cfg.ConcurrentWrites),
	)
	if err != nil {
		stop()
		_ = sc.Close()
		return nil, fmt.Errorf("start sftp subsystem on %s: %w", addr, withCause(ctx, err))
	}
	return &session{conn: conn, ssh: sc, client: client, stop: stop}, nil
}

func (u *Uploader) authMethods() []ssh.AuthMethod {
	var methods []ssh.AuthMethod
	if u.signer != nil {
		methods = append(methods, ssh.PublicKeys(u.signer))
	}
	if pw := u.cfg.Password; pw != "" {
		methods = append(methods,
			ssh.Password(pw),
			// Servers authenticating through PAM often offer only
			// keyboard-interactive, asking for the password as a prompt.
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = pw
				}
				return answers, nil
			}),
		)
	}
	return methods
}
