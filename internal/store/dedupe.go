package store

import (
	"context"
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
	for start := 0; start < len(keys); start += 500 {
		chunk := keys[start:min(start+500, len(keys))]
		args := make([]any, 0, len(chunk)+2)
		args = append(args, scope, toMS(since))
		for _, k := range chunk {
			args = append(args, k)
		}
		q := `SELECT dedupe_key, event_id FROM dedupe_keys WHERE scope = ? AND at_ms >= ? AND dedupe_key IN (?` +
			strings.Repeat(", ?", len(chunk)-1) + `)`
		rows, err := s.rdb.QueryContext(ctx, s.rebind(q), args...)
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
