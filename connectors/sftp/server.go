package sftp

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ServerConfig configures the in-process SFTP server.
type ServerConfig struct {
	// Addr to listen on; default 127.0.0.1:0 (a free port).
	Addr string
	// Root is the local directory served as "/"; it is created if missing.
	// Clients cannot reach outside it, through ".." or symlinks.
	Root string
	// User and Password accept password logins when Password is set.
	User, Password string
	// AuthorizedKey, when set, accepts public key logins for User.
	AuthorizedKey ssh.PublicKey
	// HostKey defaults to a fresh ed25519 key.
	HostKey ssh.Signer
}

// Server is an SFTP server standing in for the partner's depot in tests and
// in the sandbox. It serves the files of a local directory, confined to it.
type Server struct {
	root    *os.Root
	ln      net.Listener
	hostKey ssh.Signer
	sshCfg  *ssh.ServerConfig

	// cutAfter arms CutAfter; -1 when disarmed.
	cutAfter atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool

	wg        sync.WaitGroup
	stopCtx   func() bool
	closeOnce sync.Once
	closeErr  error
}

// StartServer listens and serves until Close is called or ctx ends.
//
// It is built on pkg/sftp's RequestServer with handlers over an os.Root,
// rather than on sftp.NewServer: WithServerWorkingDirectory only resolves
// relative paths, so an absolute path would reach the whole file system.
func StartServer(ctx context.Context, cfg ServerConfig) (*Server, error) {
	switch {
	case cfg.Root == "":
		return nil, errors.New("sftp server: root directory is required")
	case cfg.User == "":
		return nil, errors.New("sftp server: user is required")
	case cfg.Password == "" && cfg.AuthorizedKey == nil:
		return nil, errors.New("sftp server: one of password or authorized key is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.HostKey == nil {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("sftp server: generate host key: %w", err)
		}
		if cfg.HostKey, err = ssh.NewSignerFromKey(priv); err != nil {
			return nil, fmt.Errorf("sftp server: host key: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.Root, 0o755); err != nil {
		return nil, fmt.Errorf("sftp server: create root: %w", err)
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("sftp server: open root: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = root.Close()
		return nil, fmt.Errorf("sftp server: listen on %s: %w", cfg.Addr, err)
	}

	s := &Server{
		root:    root,
		ln:      ln,
		hostKey: cfg.HostKey,
		sshCfg:  authConfig(cfg),
		conns:   make(map[net.Conn]struct{}),
	}
	s.sshCfg.AddHostKey(cfg.HostKey)
	s.cutAfter.Store(-1)
	s.stopCtx = context.AfterFunc(ctx, func() { _ = s.Close() })

	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func authConfig(cfg ServerConfig) *ssh.ServerConfig {
	sc := &ssh.ServerConfig{}
	userOK := func(u string) bool { return subtle.ConstantTimeCompare([]byte(u), []byte(cfg.User)) == 1 }
	if cfg.Password != "" {
		sc.PasswordCallback = func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if userOK(m.User()) && subtle.ConstantTimeCompare(pw, []byte(cfg.Password)) == 1 {
				return nil, nil
			}
			return nil, fmt.Errorf("password rejected for %q", m.User())
		}
	}
	if cfg.AuthorizedKey != nil {
		want := cfg.AuthorizedKey.Marshal()
		sc.PublicKeyCallback = func(m ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if userOK(m.User()) && bytes.Equal(key.Marshal(), want) {
				return nil, nil
			}
			return nil, fmt.Errorf("key rejected for %q", m.User())
		}
	}
	return sc
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// HostKey is the server's public host key.
func (s *Server) HostKey() ssh.PublicKey { return s.hostKey.PublicKey() }

// KnownHostsLine is the known_hosts line a client needs to trust the server.
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, s.HostKey())
}

// WriteKnownHosts writes a known_hosts file trusting only this server.
func (s *Server) WriteKnownHosts(path string) error {
	if err := os.WriteFile(path, []byte(s.KnownHostsLine()+"\n"), 0o600); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	return nil
}

// CutAfter arms a fault: the next file opened for writing has its connection
// closed once n bytes have been written to it, as a reset mid-upload would.
// It fires once.
func (s *Server) CutAfter(n int64) {
	if n < 0 {
		n = 0
	}
	s.cutAfter.Store(n)
}

// Close stops listening, drops open connections and waits for their
// goroutines.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.stopCtx()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		err := s.ln.Close()
		s.wg.Wait()
		s.closeErr = errors.Join(err, s.root.Close())
	})
	return s.closeErr
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return // listener closed
		}
		if !s.track(nc) {
			_ = nc.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(nc)
			s.serveConn(nc)
		}()
	}
}

func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[nc] = struct{}{}
	return true
}

func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
	_ = nc.Close()
}

// handshakeTimeout keeps a client that connects and says nothing from
// holding a goroutine forever.
const handshakeTimeout = 10 * time.Second

func (s *Server) serveConn(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(handshakeTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(nc, s.sshCfg)
	if err != nil {
		return
	}
	_ = nc.SetDeadline(time.Time{})
	defer conn.Close()
	go ssh.DiscardRequests(reqs)

	var sessions sync.WaitGroup
	defer sessions.Wait()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "only session channels are served")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		sessions.Add(1)
		go func() {
			defer sessions.Done()
			s.serveSession(ch, chReqs, nc)
		}()
	}
}

// serveSession waits for the "sftp" subsystem request, refusing shells and
// commands, then serves SFTP on the channel.
func (s *Server) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request, nc net.Conn) {
	defer ch.Close()
	start := make(chan bool, 1)
	go func() {
		started := false
		for req := range reqs {
			ok := !started && req.Type == "subsystem" && subsystemName(req.Payload) == "sftp"
			if req.WantReply {
				_ = req.Reply(ok, nil)
			}
			if ok {
				started = true
				start <- true
			}
		}
		if !started {
			start <- false // channel closed without asking for sftp
		}
	}()
	if !<-start {
		return
	}

	fs := &rootFS{root: s.root, cut: s.takeCut, closeConn: func() { _ = nc.Close() }}
	srv := sftp.NewRequestServer(ch, sftp.Handlers{FileGet: fs, FilePut: fs, FileCmd: fs, FileList: fs})
	_ = srv.Serve() // ends with the channel; errors are the client's business
	_ = srv.Close()
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
}

// takeCut returns the armed CutAfter budget and disarms it.
func (s *Server) takeCut() (int64, bool) {
	n := s.cutAfter.Swap(-1)
	return n, n >= 0
}

// subsystemName decodes the SSH string payload of a subsystem request.
func subsystemName(p []byte) string {
	if len(p) < 4 {
		return ""
	}
	n := binary.BigEndian.Uint32(p)
	if uint64(n) > uint64(len(p)-4) {
		return ""
	}
	return string(p[4 : 4+n])
}
