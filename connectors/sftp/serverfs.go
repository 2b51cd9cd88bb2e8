package sftp

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/pkg/sftp"
)

// rootFS implements pkg/sftp's request handlers over an os.Root, which
// refuses any path, symlinks included, that resolves outside the root.
type rootFS struct {
	root *os.Root
	// cut reports an armed CutAfter budget, disarming it.
	cut       func() (int64, bool)
	closeConn func()
}

var (
	_ sftp.FileReader           = (*rootFS)(nil)
	_ sftp.OpenFileWriter       = (*rootFS)(nil)
	_ sftp.PosixRenameFileCmder = (*rootFS)(nil)
	_ sftp.LstatFileLister      = (*rootFS)(nil)
)

// rel turns the absolute, cleaned SFTP path pkg/sftp hands us into a path
// relative to the root. os.Root would refuse an escape anyway; checking here
// too gives a clear message and does not depend on how pkg/sftp cleans.
func rel(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("path %q is not absolute: %w", p, sftp.ErrSSHFxPermissionDenied)
	}
	r := strings.TrimPrefix(path.Clean(p), "/")
	if r == "" {
		return ".", nil
	}
	if slices.Contains(strings.Split(r, "/"), "..") {
		return "", fmt.Errorf("path %q leaves the served root: %w", p, sftp.ErrSSHFxPermissionDenied)
	}
	return r, nil
}

// mapErr reports os.Root's refusals as "permission denied". os does not
// export its "path escapes from parent" error, hence the string match.
func mapErr(err error) error {
	if err != nil && strings.Contains(err.Error(), "path escapes from parent") {
		return fmt.Errorf("%w: %w", err, sftp.ErrSSHFxPermissionDenied)
	}
	return err
}

func (f *rootFS) Fileread(r *sftp.Request) (io.ReaderAt, error) {
	name, err := rel(r.Filepath)
	if err != nil {
		return nil, err
	}
	file, err := f.root.Open(name)
	return file, mapErr(err)
}

func (f *rootFS) Filewrite(r *sftp.Request) (io.WriterAt, error) {
	return f.OpenFile(r)
}

func (f *rootFS) OpenFile(r *sftp.Request) (sftp.WriterAtReaderAt, error) {
	name, err := rel(r.Filepath)
	if err != nil {
		return nil, err
	}
	pf := r.Pflags()
	flag := os.O_WRONLY
	if pf.Read {
		flag = os.O_RDWR
	}
	if pf.Creat {
		flag |= os.O_CREATE
	}
	if pf.Trunc {
		flag |= os.O_TRUNC
	}
	if pf.Excl {
		flag |= os.O_EXCL
	}
	// Append is not passed on: os.File.WriteAt refuses O_APPEND files, and
	// pkg/sftp clients send explicit offsets anyway.
	file, err := f.root.OpenFile(name, flag, 0o644)
	if err != nil {
		return nil, mapErr(err)
	}
	if n, ok := f.cut(); ok {
		return &cutFile{File: file, left: n, cut: f.closeConn}, nil
	}
	return file, nil
}

func (f *rootFS) Filecmd(r *sftp.Request) error {
	name, err := rel(r.Filepath)
	if err != nil {
		return err
	}
	switch r.Method {
	case "Setstat":
		// Only truncation matters to a depot; modes and times are accepted
		// and ignored, like a server that does not store them.
		if r.AttrFlags().Size {
			file, err := f.root.OpenFile(name, os.O_WRONLY, 0)
			if err != nil {
				return mapErr(err)
			}
			defer file.Close()
			return file.Truncate(int64(r.Attributes().Size))
		}
		_, err := f.root.Stat(name)
		return mapErr(err)
	case "Rename":
		target, err := rel(r.Target)
		if err != nil {
			return err
		}
		// SFTP v3 RENAME must fail when the target exists (OpenSSH agrees);
		// replacing is what posix-rename is for.
		if _, err := f.root.Lstat(target); err == nil {
			return fmt.Errorf("rename %s: %w", r.Target, os.ErrExist)
		}
		return mapErr(f.root.Rename(name, target))
	case "Remove":
		fi, err := f.root.Lstat(name)
		if err != nil {
			return mapErr(err)
		}
		if fi.IsDir() {
			return fmt.Errorf("remove %s: is a directory", r.Filepath)
		}
		return mapErr(f.root.Remove(name))
	case "Rmdir":
		fi, err := f.root.Lstat(name)
		if err != nil {
			return mapErr(err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("rmdir %s: not a directory", r.Filepath)
		}
		return mapErr(f.root.Remove(name))
	case "Mkdir":
		return mapErr(f.root.Mkdir(name, 0o755))
	default:
		// Link and Symlink are refused: a client-made link is the one way
		// left to point out of the root.
		return sftp.ErrSSHFxOpUnsupported
	}
}

func (f *rootFS) PosixRename(r *sftp.Request) error {
	name, err := rel(r.Filepath)
	if err != nil {
		return err
	}
	target, err := rel(r.Target)
	if err != nil {
		return err
	}
	return mapErr(f.root.Rename(name, target))
}

func (f *rootFS) Filelist(r *sftp.Request) (sftp.ListerAt, error) {
	name, err := rel(r.Filepath)
	if err != nil {
		return nil, err
	}
	switch r.Method {
	case "List":
		dir, err := f.root.Open(name)
		if err != nil {
			return nil, mapErr(err)
		}
		defer dir.Close()
		infos, err := dir.Readdir(-1)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", r.Filepath, err)
		}
		slices.SortFunc(infos, func(a, b fs.FileInfo) int { return strings.Compare(a.Name(), b.Name()) })
		return listerAt(infos), nil
	case "Stat":
		fi, err := f.root.Stat(name)
		if err != nil {
			return nil, mapErr(err)
		}
		return listerAt{fi}, nil
	default:
		return nil, sftp.ErrSSHFxOpUnsupported
	}
}

func (f *rootFS) Lstat(r *sftp.Request) (sftp.ListerAt, error) {
	name, err := rel(r.Filepath)
	if err != nil {
		return nil, err
	}
	fi, err := f.root.Lstat(name)
	if err != nil {
		return nil, mapErr(err)
	}
	return listerAt{fi}, nil
}

type listerAt []fs.FileInfo

func (l listerAt) ListAt(dst []fs.FileInfo, offset int64) (int, error) {
	if offset >= int64(len(l)) {
		return 0, io.EOF
	}
	n := copy(dst, l[offset:])
	if n < len(dst) {
		return n, io.EOF
	}
	return n, nil
}

// errCut is what the server's side sees when CutAfter fires.
var errCut = errors.New("connection cut by fault injection")

// cutFile writes up to left bytes, then closes the connection.
type cutFile struct {
	*os.File
	cut func()

	mu   sync.Mutex
	left int64
}

func (c *cutFile) WriteAt(p []byte, off int64) (int, error) {
	c.mu.Lock()
	if int64(len(p)) <= c.left {
		c.left -= int64(len(p))
		c.mu.Unlock()
		return c.File.WriteAt(p, off)
	}
	n := c.left
	c.left = 0
	c.mu.Unlock()
	if n > 0 {
		_, _ = c.File.WriteAt(p[:n], off)
	}
	c.cut()
	return int(n), errCut
}
