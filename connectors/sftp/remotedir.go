package sftp

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// RemoteDir is a folder on a partner's SFTP server that passerelle reads and rearranges: an inbox
// where the partner drops files (Ecolix exports), processed ones moved to a sub-folder. Like
// Uploader it holds no connection: each call dials, checks the host key against the known_hosts
// file and authenticates, then hangs up. Names are slash-separated and relative to Config.Dir
// (default "/depot/"); none may leave it. It is safe for concurrent use.
type RemoteDir struct{ u *Uploader }

// NewRemoteDir validates cfg, applies defaults and checks that the known_hosts file can be read.
func NewRemoteDir(cfg Config) (*RemoteDir, error) {
	u, err := NewUploader(cfg, nil)
	if err != nil {
		return nil, err
	}
	return &RemoteDir{u: u}, nil
}

// remote is name's path on the server, refused when it is absolute or leaves Dir.
func (d *RemoteDir) remote(name string) (string, error) {
	if name == "" {
		name = "."
	}
	if path.IsAbs(name) || strings.ContainsAny(name, "\\\x00") || slices.Contains(strings.Split(path.Clean(name), "/"), "..") {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, name)
	}
	return path.Join(d.u.cfg.Dir, name), nil
}

// with runs f on one connection, with name's remote path.
func (d *RemoteDir) with(ctx context.Context, op, name string, f func(s *session, p string) error) error {
	p, err := d.remote(name)
	if err != nil {
		return err
	}
	ctx, cancel := d.u.withTimeout(ctx)
	defer cancel()
	s, err := d.u.connect(ctx)
	if err != nil {
		return fmt.Errorf("sftp %s %s: %w", op, name, err)
	}
	defer s.close()
	if err := f(s, p); err != nil {
		return fmt.Errorf("sftp %s %s on %s: %w", op, name, d.u.cfg.Addr, withCause(ctx, err))
	}
	return nil
}

// List lists dir's entries.
func (d *RemoteDir) List(ctx context.Context, dir string) ([]fs.FileInfo, error) {
	var out []fs.FileInfo
	err := d.with(ctx, "list", dir, func(s *session, p string) error {
		var err error
		out, err = s.client.ReadDir(p)
		return err
	})
	return out, err
}

// ReadFile reads name whole, failing when it holds more than limit bytes.
func (d *RemoteDir) ReadFile(ctx context.Context, name string, limit int64) ([]byte, error) {
	var data []byte
	err := d.with(ctx, "read", name, func(s *session, p string) error {
		f, err := s.client.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if data, err = io.ReadAll(io.LimitReader(f, limit+1)); err != nil {
			return err
		}
		if int64(len(data)) > limit {
			return fmt.Errorf("over %d bytes", limit)
		}
		return nil
	})
	return data, err
}

// Rename moves from to to; it fails when to exists (SFTP v3 RENAME), so nothing is overwritten.
func (d *RemoteDir) Rename(ctx context.Context, from, to string) error {
	target, err := d.remote(to)
	if err != nil {
		return err
	}
	return d.with(ctx, "rename", from, func(s *session, p string) error { return s.client.Rename(p, target) })
}

// WriteFile writes data to name atomically (a temporary name, then a rename), replacing it.
func (d *RemoteDir) WriteFile(ctx context.Context, name string, data []byte) error {
	return d.with(ctx, "write", name, func(s *session, p string) error { return d.u.put(s, p, data) })
}

// Stat describes name; a missing file gives an error matching fs.ErrNotExist.
func (d *RemoteDir) Stat(ctx context.Context, name string) (fs.FileInfo, error) {
	var fi fs.FileInfo
	err := d.with(ctx, "stat", name, func(s *session, p string) error {
		var err error
		fi, err = s.client.Stat(p)
		return err
	})
	return fi, err
}

// MkdirAll creates dir and its parents.
func (d *RemoteDir) MkdirAll(ctx context.Context, dir string) error {
	return d.with(ctx, "mkdir", dir, func(s *session, p string) error { return s.client.MkdirAll(p) })
}
