package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// SeenKeys returns the event of each of keys committed in scope at or after since; keys absent
// from the map are unseen (never committed, or aged out of the dedupe window). A batch of records
// costs one query instead of one per record.
func (s *Store) SeenKeys(ctx context.Context, scope string, keys []string, since time.Time) (map[string]string, error) {
	seen := make(map[string]string)
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
