package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SeenKey reports whether key was committed in scope at or after since, and by which event. Keys
// committed before since have aged out of the dedupe window and count as unseen.
func (s *Store) SeenKey(ctx context.Context, scope, key string, since time.Time) (eventID string, seen bool, err error) {
	err = s.rdb.QueryRowContext(ctx,
		s.rebind(`SELECT event_id FROM dedupe_keys WHERE scope = ? AND dedupe_key = ? AND at_ms >= ?`),
		scope, key, toMS(since)).Scan(&eventID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		// The key itself may be derived from personal data, so only the scope is named.
		return "", false, fmt.Errorf("look up dedupe key in scope %s: %w", scope, err)
	}
	return eventID, true, nil
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
