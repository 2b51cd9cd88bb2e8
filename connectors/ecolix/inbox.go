package ecolix

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Inbox folders, inside the inbox, where files go once handled.
const (
	DoneDir  = "traites"
	ErrorDir = "erreurs"
)

// maxFile bounds an inbox file read in memory: exports are tens of MB at most.
const maxFile = 256 << 20

// FileInfo is what the inbox needs to know of a file.
type FileInfo struct {
	Name    string // base name
	Size    int64
	ModTime time.Time
	IsDir   bool
}

// FS is the inbox's storage: a local directory (LocalFS) or a remote one (SFTP). Names are
// slash-separated and relative to the inbox root.
type FS interface {
	List(ctx context.Context, dir string) ([]FileInfo, error)
	Open(ctx context.Context, name string) (io.ReadCloser, error)
	Rename(ctx context.Context, from, to string) error
	WriteFile(ctx context.Context, name string, data []byte) error
	Stat(ctx context.Context, name string) (FileInfo, error)
	MkdirAll(ctx context.Context, dir string) error
}

// Processed remembers which files were processed, by a key of name, size and sha256, so that a
// file is processed once across scans and restarts. The caller provides a durable one.
type Processed interface {
	Seen(ctx context.Context, key string) (bool, error)
	Mark(ctx context.Context, key string) error
}

// File is an inbox file being processed.
type File struct {
	Name     string // base name, e.g. clients_2026-12-04.csv
	Resource string // from the name's prefix: clients, devis, commandes, articles or stocks
	Size     int64
	SHA256   string // hex
}

// Key is the file's identity for Processed.
func (f File) Key() string { return f.Name + "|" + strconv.FormatInt(f.Size, 10) + "|" + f.SHA256 }

// ProcessFunc handles one file's records; an error sends the file to erreurs/ with the error as
// its reason.
type ProcessFunc func(ctx context.Context, f File, records []Record) error

// ScanReport says what one scan did, by file name.
type ScanReport struct {
	Done       []string // processed, moved to traites/
	Failed     []string // moved to erreurs/ with a .raison.txt
	Duplicates []string // processed before: moved to traites/ without processing
	Pending    []string // half-written (.tmp, .part, or size still changing): left for the next scan
}

// InboxConfig configures an Inbox.
type InboxConfig struct {
	FS        FS
	Processed Processed
	Metrics   *Metrics // nil for none
}

// Inbox scans a folder of CSV exports. Scans must not overlap; the daemon runs one at a time.
type Inbox struct {
	fs    FS
	done  Processed
	m     *Metrics
	sizes map[string]int64 // size of each candidate at the previous scan
}

// NewInbox checks cfg and builds an inbox.
func NewInbox(cfg InboxConfig) (*Inbox, error) {
	if cfg.FS == nil || cfg.Processed == nil {
		return nil, errors.New("ecolix: inbox needs an FS and a Processed record")
	}
	return &Inbox{fs: cfg.FS, done: cfg.Processed, m: cfg.Metrics, sizes: map[string]int64{}}, nil
}

// Scan handles every ready `<resource>*.csv` file of the inbox, in name order: a file seen for the
// first time, or whose size changed since the previous scan, is still being written and waits
// for the next scan. A file that fails to parse or to process goes to erreurs/ and does not stop
// the scan; an error is returned for what the inbox itself could not do (list, read, move,
// record), after the other files were handled.
func (in *Inbox) Scan(ctx context.Context, process ProcessFunc) (ScanReport, error) {
	var rep ScanReport
	list, err := in.fs.List(ctx, ".")
	if err != nil {
		return rep, fmt.Errorf("ecolix: inbox: listing: %w", err)
	}
	slices.SortFunc(list, func(a, b FileInfo) int { return strings.Compare(a.Name, b.Name) })
	// First pass: which files are ready. Sizes are remembered before any processing, so that a
	// scan cut short still dates every sighting.
	type ready struct {
		fi       FileInfo
		resource string
	}
	var todo []ready
	sizes := make(map[string]int64, len(list))
	for _, fi := range list {
		if fi.IsDir {
			continue
		}
		lower := strings.ToLower(fi.Name)
		if strings.HasSuffix(lower, ".tmp") || strings.HasSuffix(lower, ".part") {
			rep.Pending = append(rep.Pending, fi.Name)
			continue
		}
		res := resourceOf(fi.Name)
		if res == "" {
			continue // not an export: not ours to touch
		}
		sizes[fi.Name] = fi.Size
		if prev, ok := in.sizes[fi.Name]; !ok || prev != fi.Size {
			rep.Pending = append(rep.Pending, fi.Name)
			continue
		}
		todo = append(todo, ready{fi, res})
	}
	in.sizes = sizes

	var errs []error
	for _, r := range todo {
		if err := ctx.Err(); err != nil {
			return rep, fmt.Errorf("ecolix: inbox: %w", err)
		}
		outcome, err := in.handle(ctx, r.fi, r.resource, process)
		switch outcome {
		case fileDone:
			rep.Done = append(rep.Done, r.fi.Name)
		case fileDuplicate:
			rep.Duplicates = append(rep.Duplicates, r.fi.Name)
		case fileError:
			rep.Failed = append(rep.Failed, r.fi.Name)
		default:
			rep.Pending = append(rep.Pending, r.fi.Name)
		}
		if outcome != "" {
			in.m.file(outcome)
			// Moved away: a file dropped later under the same name is a new sighting.
			delete(in.sizes, r.fi.Name)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}

// resourceOf is the resource a file name starts with, "" when none or not a .csv.
func resourceOf(name string) string {
	lower := strings.ToLower(name)
	if !strings.HasSuffix(lower, ".csv") || strings.Contains(name, "/") {
		return ""
	}
	for _, r := range resources {
		if strings.HasPrefix(lower, r) {
			return r
		}
	}
	return ""
}

// handle processes one ready file and moves it; outcome "" leaves it where it is.
func (in *Inbox) handle(ctx context.Context, fi FileInfo, resource string, process ProcessFunc) (string, error) {
	data, err := in.read(ctx, fi.Name)
	if err != nil {
		return "", fmt.Errorf("ecolix: inbox: %s: %w", fi.Name, err)
	}
	if int64(len(data)) != fi.Size {
		return "", nil // grew or shrank between listing and reading: still being written
	}
	sum := sha256.Sum256(data)
	f := File{Name: fi.Name, Resource: resource, Size: fi.Size, SHA256: hex.EncodeToString(sum[:])}
	seen, err := in.done.Seen(ctx, f.Key())
	if err != nil {
		return "", fmt.Errorf("ecolix: inbox: %s: checking whether processed: %w", f.Name, err)
	}
	if seen {
		return fileDuplicate, in.move(ctx, f.Name, DoneDir)
	}
	records, err := ParseCSV(data)
	if err == nil {
		err = process(ctx, f, records)
		if err != nil && ctx.Err() != nil {
			// Stopped, not refused: the file stays for the next scan.
			return "", fmt.Errorf("ecolix: inbox: %s: %w", f.Name, err)
		}
	}
	if err != nil {
		return fileError, in.fail(ctx, f.Name, err)
	}
	if err := in.done.Mark(ctx, f.Key()); err != nil {
		return "", fmt.Errorf("ecolix: inbox: %s: recording as processed: %w", f.Name, err)
	}
	return fileDone, in.move(ctx, f.Name, DoneDir)
}

func (in *Inbox) read(ctx context.Context, name string) ([]byte, error) {
	rc, err := in.fs.Open(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("opening: %w", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("reading: %w", err)
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("over %d bytes", maxFile)
	}
	return data, nil
}

// fail moves name to erreurs/ with <name>.raison.txt beside it.
func (in *Inbox) fail(ctx context.Context, name string, reason error) error {
	if err := in.fs.MkdirAll(ctx, ErrorDir); err != nil {
		return fmt.Errorf("ecolix: inbox: creating %s: %w", ErrorDir, err)
	}
	target, err := in.freeName(ctx, ErrorDir, name)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("%s\n%s\n", time.Now().UTC().Format(time.RFC3339), reason)
	if err := in.fs.WriteFile(ctx, target+".raison.txt", []byte(msg)); err != nil {
		return fmt.Errorf("ecolix: inbox: %s: writing the reason: %w", name, err)
	}
	if err := in.fs.Rename(ctx, name, target); err != nil {
		return fmt.Errorf("ecolix: inbox: %s: moving to %s: %w", name, ErrorDir, err)
	}
	return nil
}

func (in *Inbox) move(ctx context.Context, name, dir string) error {
	if err := in.fs.MkdirAll(ctx, dir); err != nil {
		return fmt.Errorf("ecolix: inbox: creating %s: %w", dir, err)
	}
	target, err := in.freeName(ctx, dir, name)
	if err != nil {
		return err
	}
	if err := in.fs.Rename(ctx, name, target); err != nil {
		return fmt.Errorf("ecolix: inbox: %s: moving to %s: %w", name, dir, err)
	}
	return nil
}

// freeName is dir/name, or dir/name.N for the first N free: a file dropped again under the same
// name must not overwrite the one handled before (and SFTP refuses to rename over a file).
func (in *Inbox) freeName(ctx context.Context, dir, name string) (string, error) {
	target := path.Join(dir, name)
	for n := 1; ; n++ {
		_, err := in.fs.Stat(ctx, target)
		if errors.Is(err, fs.ErrNotExist) {
			return target, nil
		}
		if err != nil {
			return "", fmt.Errorf("ecolix: inbox: checking %s: %w", target, err)
		}
		if n > 1000 {
			return "", fmt.Errorf("ecolix: inbox: no free name for %s in %s", name, dir)
		}
		target = path.Join(dir, name+"."+strconv.Itoa(n))
	}
}

// LocalFS is an inbox in a local directory. Every operation is confined to it (os.Root): a name
// cannot reach outside.
type LocalFS string

var _ FS = LocalFS("")

func (d LocalFS) root() (*os.Root, error) { return os.OpenRoot(string(d)) }

// List lists dir's entries.
func (d LocalFS) List(_ context.Context, dir string) ([]FileInfo, error) {
	r, err := d.root()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.Open(filepath.FromSlash(dir))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	out := make([]FileInfo, 0, len(ents))
	for _, e := range ents {
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, fileInfo(info))
	}
	return out, nil
}

// Open opens name for reading.
func (d LocalFS) Open(_ context.Context, name string) (io.ReadCloser, error) {
	r, err := d.root()
	if err != nil {
		return nil, err
	}
	defer r.Close() // an open file outlives its root
	return r.Open(filepath.FromSlash(name))
}

// Rename moves from to to.
func (d LocalFS) Rename(_ context.Context, from, to string) error {
	r, err := d.root()
	if err != nil {
		return err
	}
	defer r.Close()
	return r.Rename(filepath.FromSlash(from), filepath.FromSlash(to))
}

// WriteFile writes data to name, created or replaced.
func (d LocalFS) WriteFile(_ context.Context, name string, data []byte) error {
	r, err := d.root()
	if err != nil {
		return err
	}
	defer r.Close()
	return r.WriteFile(filepath.FromSlash(name), data, 0o640)
}

// Stat describes name.
func (d LocalFS) Stat(_ context.Context, name string) (FileInfo, error) {
	r, err := d.root()
	if err != nil {
		return FileInfo{}, err
	}
	defer r.Close()
	info, err := r.Stat(filepath.FromSlash(name))
	if err != nil {
		return FileInfo{}, err
	}
	return fileInfo(info), nil
}

// MkdirAll creates dir and its parents.
func (d LocalFS) MkdirAll(_ context.Context, dir string) error {
	r, err := d.root()
	if err != nil {
		return err
	}
	defer r.Close()
	return r.MkdirAll(filepath.FromSlash(dir), 0o750)
}

func fileInfo(i fs.FileInfo) FileInfo {
	return FileInfo{Name: i.Name(), Size: i.Size(), ModTime: i.ModTime(), IsDir: i.IsDir()}
}

// MemProcessed is an in-memory Processed, for tests and the sandbox: it forgets on restart.
type MemProcessed struct {
	mu   sync.Mutex
	keys map[string]bool
}

// NewMemProcessed returns an empty record.
func NewMemProcessed() *MemProcessed { return &MemProcessed{keys: map[string]bool{}} }

// Seen reports whether key was marked.
func (p *MemProcessed) Seen(_ context.Context, key string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[key], nil
}

// Mark records key.
func (p *MemProcessed) Mark(_ context.Context, key string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[key] = true
	return nil
}
