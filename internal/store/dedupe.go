package store

import (
	"context"
	"database/sql"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// committedKeys remembers, on SQLite, a hash of every dedupe key in the table, so that SeenKeys
// asks the database only about keys that may be there: most leads are new, and on SQLite this
// process is the only one committing keys (a daemon holds its file alone; the CLI commits none).
// A hash collision only costs a query.
type committedKeys struct {
	// gate orders commits and reloads: commits share it across their write, a (re)load of the
	// table takes it alone, so no key committed meanwhile is missed.
	gate   sync.RWMutex
	mu     sync.Mutex // guards hashes
	seed   maphash.Seed
	hashes map[uint64]struct{} // nil until loaded
}

func (c *committedKeys) hash(scope, key string) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteString(scope)
	h.WriteByte(0)
	h.WriteString(key)
	return h.Sum64()
}

func (c *committedKeys) loaded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hashes != nil
}

// reload runs change (nil for none) then reads every key of the table, with commits held off.
func (c *committedKeys) reload(ctx context.Context, db *sql.DB, change func() error) error {
	c.gate.Lock()
	defer c.gate.Unlock()
	if change != nil {
		if err := change(); err != nil {
			return err
		}
	} else if c.loaded() {
		return nil // loaded by another caller meanwhile
	}
	rows, err := db.QueryContext(ctx, `SELECT scope, dedupe_key FROM dedupe_keys`)
	if err != nil {
		return err
	}
	defer rows.Close()
	hashes := make(map[uint64]struct{})
	for rows.Next() {
		var scope, key string
		if err := rows.Scan(&scope, &key); err != nil {
			return err
		}
		hashes[c.hash(scope, key)] = struct{}{}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.hashes = hashes
	c.mu.Unlock()
	return nil
}

// mayHold returns the keys of scope that may be in the table, loading it on first use.
func (c *committedKeys) mayHold(ctx context.Context, db *sql.DB, scope string, keys []string) ([]string, error) {
	if !c.loaded() {
		if err := c.reload(ctx, db, nil); err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var maybe []string
	for _, k := range keys {
		if _, ok := c.hashes[c.hash(scope, k)]; ok {
			maybe = append(maybe, k)
		}
	}
	return maybe, nil
}

// commit runs write, which adds keys of scope to the table, knowing them from before it starts:
// a lookup in between queries for nothing but never misses them.
func (c *committedKeys) commit(scope string, claims []KeyClaim, write func() error) error {
	c.gate.RLock()
	defer c.gate.RUnlock()
	c.mu.Lock()
	if c.hashes != nil { // else the first load reads them from the table
		for _, cl := range claims {
			c.hashes[c.hash(scope, cl.Key)] = struct{}{}
		}
	}
	c.mu.Unlock()
	return write()
}

// SeenKeys returns the event of each of keys committed in scope at or after since; keys absent
// from the map are unseen (never committed, or aged out of the dedupe window). A batch of records
// costs one query instead of one per record.
func (s *Store) SeenKeys(ctx context.Context, scope string, keys []string, since time.Time) (map[string]string, error) {
	seen := make(map[string]string)
	if s.committed != nil {
		var err error
		if keys, err = s.committed.mayHold(ctx, s.db, scope, keys); err != nil {
			return nil, fmt.Errorf("look up dedupe keys in scope %s: %w", scope, err)
		}
	}
	err := s.queryIn(ctx, `SELECT dedupe_key, event_id FROM dedupe_keys WHERE scope = ? AND at_ms >= ? AND dedupe_key IN `,
		[]any{scope, toMS(since)}, keys, func(rows *sql.Rows) error {
			var k, ev string
			err := rows.Scan(&k, &ev)
			seen[k] = ev
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("look up dedupe keys in scope %s: %w", scope, err)
	}
	return seen, nil
}

// KeyClaim is a dedupe key and the event that claimed it, for CommitKeys.
type KeyClaim struct{ Key, EventID string }

// CommitKeys records each claim in scope at at, in one transaction. A later commit of the same key
// refreshes its time and event; an earlier one (a late replay) does not move it back.
func (s *Store) CommitKeys(ctx context.Context, scope string, claims []KeyClaim, at time.Time) error {
	if len(claims) == 0 {
		return nil
	}
	write := func() error {
		return s.withTx(ctx, func(tx *sql.Tx) error {
			st, err := tx.PrepareContext(ctx, s.rebind(`
				INSERT INTO dedupe_keys (scope, dedupe_key, event_id, at_ms) VALUES (?, ?, ?, ?)
				ON CONFLICT (scope, dedupe_key) DO UPDATE SET
					event_id = excluded.event_id,
					at_ms = excluded.at_ms
				WHERE excluded.at_ms >= dedupe_keys.at_ms`))
			if err != nil {
				return fmt.Errorf("commit dedupe keys in scope %s: %w", scope, err)
			}
			defer st.Close()
			for _, c := range claims {
				if _, err := st.ExecContext(ctx, scope, c.Key, c.EventID, toMS(at)); err != nil {
					return fmt.Errorf("commit dedupe key for event %s in scope %s: %w", c.EventID, scope, err)
				}
			}
			return nil
		})
	}
	if s.committed == nil {
		return write()
	}
	return s.committed.commit(scope, claims, write)
}

// PruneKeys deletes keys last committed before before and says how many went.
func (s *Store) PruneKeys(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	prune := func() error {
		res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM dedupe_keys WHERE at_ms < ?`), toMS(before))
		if err != nil {
			return fmt.Errorf("prune dedupe keys: %w", err)
		}
		if n, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("count pruned dedupe keys: %w", err)
		}
		return nil
	}
	if s.committed == nil {
		return n, prune()
	}
	// The pruned keys leave the memory too, or it would only grow.
	if err := s.committed.reload(ctx, s.db, prune); err != nil {
		return n, fmt.Errorf("prune dedupe keys: %w", err)
	}
	return n, nil
}
