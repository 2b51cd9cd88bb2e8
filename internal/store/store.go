// Package store is passerelle's durable state: dedupe keys, the delivery log, endpoints disabled after a
// 410 Gone, the dead-letter index, poller snapshots and cursors, the billing ledger and the client
// directory billing takes identities from (clients.go). Pipelines and sinks read and write it;
// messages themselves live in the broker, not here.
//
// One machine keeps it in a SQLite file under the data dir (pure-Go modernc.org/sqlite); replicas share
// PostgreSQL. The SQL is written once and runs on both: placeholders are written `?` and rebound to `$n`
// for PostgreSQL in one helper, upserts use INSERT … ON CONFLICT … DO UPDATE and new ids come back with
// RETURNING (both dialects have them), columns referenced in an upsert are qualified with the table name
// (PostgreSQL rejects the bare name as ambiguous), times are BIGINT Unix milliseconds UTC and booleans
// INTEGER 0/1. The only column types the dialects spell differently, byte payloads and identity keys,
// are tokens in the embedded migrations replaced per dialect.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/maphash"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

// Dialects returned by Store.Dialect.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// ErrNotFound is returned by updates addressed to a row that does not exist.
var ErrNotFound = errors.New("not found")

// sqliteReaders bounds the SQLite read pool. WAL lets readers run beside the one writer; a few are
// enough for the HTTP and CLI listings that run beside the pipelines.
const sqliteReaders = 4

// Store is the state store. It is safe for concurrent use.
type Store struct {
	dialect string
	// db takes every write. On SQLite it has a single connection: SQLite admits one writer at a time
	// whatever the pool size, so more connections would only turn Go-side queueing into SQLITE_BUSY
	// waits. busy_timeout still covers a second process (the CLI) writing the same file.
	db *sql.DB
	// rdb serves reads: on SQLite a separate read-only pool, so listings never queue behind writes
	// (WAL readers see the last commit); on PostgreSQL the same pool as db.
	rdb   *sql.DB
	locks localLocks // SQLite leader locks; PostgreSQL uses advisory locks instead

	// inStmts holds queryIn's statements by query and list size: preparing one costs more than
	// running it. Sizes are powers of two, so there are a few per query.
	inMu    sync.Mutex
	inStmts map[inStmtKey]*sql.Stmt

	committed *committedKeys // SQLite only
}

// Open opens the store named by dsn and applies pending migrations. A dsn starting with postgres:// or
// postgresql:// is a PostgreSQL connection URL; anything else is the path of a SQLite file, created
// with its parent directory if missing.
func Open(ctx context.Context, dsn string) (*Store, error) {
	var (
		s   *Store
		err error
	)
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		s, err = openPostgres(ctx, dsn)
	} else {
		s, err = openSQLite(ctx, dsn)
	}
	if err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return nil, errors.Join(err, s.Close())
	}
	return s, nil
}

func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	// The DSN may carry a password, so errors name the dialect, not the DSN.
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres store: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("connect to postgres store: %w", err), db.Close())
	}
	return &Store{dialect: DialectPostgres, db: db, rdb: db}, nil
}

func openSQLite(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open sqlite store: empty path")
	}
	// The driver reads pragmas from a query string after '?', so the path itself must not hold one.
	if strings.Contains(path, "?") {
		return nil, fmt.Errorf("open sqlite store %s: path must not contain '?'", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create sqlite store directory: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)") // durable across crashes in WAL; an OS crash may lose the last commits
	q.Add("_pragma", "foreign_keys(1)")
	// BEGIN IMMEDIATE takes the write lock up front, so a transaction never fails to upgrade a read
	// lock with SQLITE_BUSY half-way, which busy_timeout cannot retry.
	q.Set("_txlock", "immediate")

	db, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)

	q.Add("_pragma", "query_only(1)")
	rdb, err := sql.Open("sqlite", path+"?"+q.Encode())
	if err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite store %s for reading: %w", path, err), db.Close())
	}
	rdb.SetMaxOpenConns(sqliteReaders)
	rdb.SetMaxIdleConns(sqliteReaders)

	s := &Store{dialect: DialectSQLite, db: db, rdb: rdb, committed: &committedKeys{seed: maphash.MakeSeed()}}
	// The writer's first connection switches the file to WAL; do it now so a bad path fails Open.
	if err := db.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("open sqlite store %s: %w", path, err), s.Close())
	}
	return s, nil
}

// Close closes the store's connections. Release TryLock locks first: a held PostgreSQL lock keeps its
// connection, and so the lock, until released.
func (s *Store) Close() error {
	var err error
	s.inMu.Lock()
	for _, st := range s.inStmts {
		err = errors.Join(err, st.Close())
	}
	s.inStmts = nil
	s.inMu.Unlock()
	err = errors.Join(err, s.db.Close())
	if s.rdb != s.db {
		err = errors.Join(err, s.rdb.Close())
	}
	if err != nil {
		return fmt.Errorf("close %s store: %w", s.dialect, err)
	}
	return nil
}

// Ping checks that the store answers, for readiness probes.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("ping %s store: %w", s.dialect, err)
	}
	if s.rdb != s.db {
		if err := s.rdb.PingContext(ctx); err != nil {
			return fmt.Errorf("ping %s store readers: %w", s.dialect, err)
		}
	}
	return nil
}

// Dialect reports which database backs the store: DialectSQLite or DialectPostgres.
func (s *Store) Dialect() string { return s.dialect }

// rebind turns the `?` placeholders every query is written with into PostgreSQL's `$1, $2, …`.
// No query in this package has a literal '?', so a plain scan is enough.
func (s *Store) rebind(query string) string {
	if s.dialect != DialectPostgres {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] != '?' {
			b.WriteByte(query[i])
			continue
		}
		n++
		b.WriteByte('$')
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

type inStmtKey struct {
	query string
	size  int
}

// maxInList bounds the values of one IN list, well under SQLite's and PostgreSQL's limits on
// bound parameters.
const maxInList = 512

// queryIn runs query, which ends with "IN ", on the reader with args then each of values as the
// IN list, and calls scan for each row. Long lists are cut in chunks; each chunk is padded to a
// power of two by repeating its last value (which changes nothing to an IN list), so that a few
// prepared statements serve every length.
func (s *Store) queryIn(ctx context.Context, query string, args []any, values []string, scan func(*sql.Rows) error) error {
	for start := 0; start < len(values); start += maxInList {
		chunk := values[start:min(start+maxInList, len(values))]
		size := 1
		for size < len(chunk) {
			size *= 2
		}
		st, err := s.inStmt(ctx, query, size)
		if err != nil {
			return err
		}
		all := append(make([]any, 0, len(args)+size), args...)
		for i := range size {
			all = append(all, chunk[min(i, len(chunk)-1)])
		}
		rows, err := st.QueryContext(ctx, all...)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := scan(rows); err != nil {
				rows.Close()
				return err
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) inStmt(ctx context.Context, query string, size int) (*sql.Stmt, error) {
	key := inStmtKey{query, size}
	s.inMu.Lock()
	defer s.inMu.Unlock()
	if st, ok := s.inStmts[key]; ok {
		return st, nil
	}
	st, err := s.rdb.PrepareContext(ctx, s.rebind(query+"(?"+strings.Repeat(", ?", size-1)+")"))
	if err != nil {
		return nil, err
	}
	if s.inStmts == nil {
		s.inStmts = make(map[inStmtKey]*sql.Stmt)
	}
	s.inStmts[key] = st
	return st, nil
}

// withTx runs fn in a transaction on the writer, committing if fn returns nil.
func (s *Store) withTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if err := fn(tx); err != nil {
		return errors.Join(err, rollback(tx))
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

func rollback(tx *sql.Tx) error {
	if err := tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("roll back transaction: %w", err)
	}
	return nil
}

// Times are stored as Unix milliseconds: sortable, the same on both dialects, and the zero time.Time
// survives the round trip.
func toMS(t time.Time) int64 { return t.UnixMilli() }

func fromMS(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// scanner is the part of *sql.Row and *sql.Rows a row decoder needs.
type scanner interface {
	Scan(dest ...any) error
}
