package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"
	"sync"
	"time"
)

// TryLock takes the leader lock called name without waiting, so that of several replicas only one
// runs a given poller or schedule. ok is false when someone else holds it. release gives it back; it
// is never nil and may be called more than once.
//
// On PostgreSQL the lock is a session advisory lock, pg_try_advisory_lock(hashtext(name)), held on a
// connection set aside until release; if that connection dies, PostgreSQL frees the lock. On SQLite one
// process owns the file, so the lock is in-process: exclusive among callers of this Store.
func (s *Store) TryLock(ctx context.Context, name string) (release func(), ok bool, err error) {
	if s.dialect == DialectPostgres {
		return s.tryAdvisoryLock(ctx, name)
	}
	if err := ctx.Err(); err != nil {
		return noop, false, fmt.Errorf("take lock %s: %w", name, err)
	}
	release, ok = s.locks.tryLock(name)
	return release, ok, nil
}

func noop() {}

// unlockTimeout bounds the unlock a release makes, which has no caller context to follow.
const unlockTimeout = 5 * time.Second

func (s *Store) tryAdvisoryLock(ctx context.Context, name string) (func(), bool, error) {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return noop, false, fmt.Errorf("take lock %s: get connection: %w", name, err)
	}
	var got bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock(hashtext($1))`, name).Scan(&got); err != nil {
		// The lock may have been taken before the error reached us: end the session to be sure.
		discard(conn)
		return noop, false, fmt.Errorf("take lock %s: %w", name, err)
	}
	if !got {
		_ = conn.Close() // back to the pool; nothing held
		return noop, false, nil
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), unlockTimeout)
			defer cancel()
			var unlocked bool
			err := conn.QueryRowContext(ctx, `SELECT pg_advisory_unlock(hashtext($1))`, name).Scan(&unlocked)
			if err != nil || !unlocked {
				// Rather than pool a session that may still hold the lock, end it: that drops its locks.
				discard(conn)
				return
			}
			_ = conn.Close()
		})
	}, true, nil
}

// discard closes conn's session instead of returning it to the pool, dropping any session locks.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// localLocks are SQLite's leader locks: names held by this Store.
type localLocks struct {
	mu   sync.Mutex
	held map[string]bool
}

func (l *localLocks) tryLock(name string) (func(), bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[name] {
		return noop, false
	}
	if l.held == nil {
		l.held = make(map[string]bool)
	}
	l.held[name] = true
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			delete(l.held, name)
		})
	}, true
}
