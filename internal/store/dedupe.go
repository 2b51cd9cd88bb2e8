package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// SeenKeys returns the event of each of keys committed in scope at or after since; keys absent
// from the map are unseen (never committed, or aged out of the dedupe window). A batch of records
// costs one query instead of one per record.
func (s *Store) SeenKeys(ctx context.Context, scope string, keys []string, since time.Time) (map[string]string, error) {
	seen := make(map[string]string)
	// Chunks stay well under SQLite's and PostgreSQL's limits on bound parameters.
	for start := 0; start < len(keys); start += maxSeenChunk {
		chunk := keys[start:min(start+maxSeenChunk, len(keys))]
		size := 1
		for size < len(chunk) {
			size *= 2
		}
		stmt, err := s.seenStmt(ctx, size)
		if err != nil {
			return nil, fmt.Errorf("look up dedupe keys in scope %s: %w", scope, err)
		}
		args := make([]any, 0, size+2)
		args = append(args, scope, toMS(since))
		for i := range size {
			// The padding repeats the last key, which changes nothing to an IN list.
			args = append(args, chunk[min(i, len(chunk)-1)])
		}
		rows, err := stmt.QueryContext(ctx, args...)
		if err != nil {
			return nil, fmt.Errorf("look up dedupe keys in scope %s: %w", scope, err)
		}
		for rows.Next() {
			var k, ev string
			if err := rows.Scan(&k, &ev); err != nil {
				rows.Close()
				return nil, fmt.Errorf("look up dedupe keys in scope %s: %w", scope, err)
			}
			seen[k] = ev
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, fmt.Errorf("look up dedupe keys in scope %s: %w", scope, err)
		}
	}
	return seen, nil
}

const maxSeenChunk = 512

// seenStmt returns the prepared lookup of size keys.
func (s *Store) seenStmt(ctx context.Context, size int) (*sql.Stmt, error) {
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	if st, ok := s.seenStmts[size]; ok {
		return st, nil
	}
	q := `SELECT dedupe_key, event_id FROM dedupe_keys WHERE scope = ? AND at_ms >= ? AND dedupe_key IN (?` +
		strings.Repeat(", ?", size-1) + `)`
	st, err := s.rdb.PrepareContext(ctx, s.rebind(q))
	if err != nil {
		return nil, err
	}
	if s.seenStmts == nil {
		s.seenStmts = make(map[int]*sql.Stmt)
	}
	s.seenStmts[size] = st
	return st, nil
}

// CommitKey records that eventID claimed key in scope at at. A later commit of the same key refreshes
// its time and event; an earlier one (a late replay) does not move it back.
func (s *Store) CommitKey(ctx context.Context, scope, key, eventID string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`
		INSERT INTO dedupe_keys (scope, dedupe_key, event_id, at_ms) VALUES (?, ?, ?, ?)
		ON CONFLICT (scope, dedupe_key) DO UPDATE SET
			event_id = excluded.event_id,
			at_ms = excluded.at_ms
		WHERE excluded.at_ms >= dedupe_keys.at_ms`),
		scope, key, eventID, toMS(at))
	if err != nil {
		return fmt.Errorf("commit dedupe key for event %s in scope %s: %w", eventID, scope, err)
	}
	return nil
}

// PruneKeys deletes keys last committed before before and says how many went.
func (s *Store) PruneKeys(ctx context.Context, before time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM dedupe_keys WHERE at_ms < ?`), toMS(before))
	if err != nil {
		return 0, fmt.Errorf("prune dedupe keys: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("count pruned dedupe keys: %w", err)
	}
	return n, nil
}
