package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// The state row naming the key the dedupe keys were made with (hashkey.ID, never the key).
const (
	nsStore       = "store"
	stateDedupeID = "dedupe_key_id"
)

// ErrDedupeKeyChanged means the dedupe keys in the store were made with another hash key than
// the one given: they cannot be rewritten (the old key is needed) and match nothing any more, so
// a lead seen before may pass once more until they age out of the dedupe window.
var ErrDedupeKeyChanged = errors.New("dedupe keys were made with another hash key")

// RekeyDedupe makes the stored dedupe keys those of the hash key named keyID. On the first call
// ever (the marker is absent: a store from before keyed dedupe keys, or a new one), every stored
// key, an unkeyed digest, is rewritten in place as rekey(digest), in the transaction that records
// keyID, and the number rewritten is returned: leads stored before the upgrade stay duplicates.
// Later calls with the same keyID do nothing. A call with another keyID records it and returns
// ErrDedupeKeyChanged. Two daemons starting at once on one PostgreSQL store rewrite once: the
// marker's insert serialises them.
func (s *Store) RekeyDedupe(ctx context.Context, keyID string, rekey func(digest string) string) (int64, error) {
	var n int64
	changed := false
	migrate := func() error {
		return s.withTx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO state (namespace, name, data) VALUES (?, ?, ?)
				ON CONFLICT (namespace, name) DO NOTHING`), nsStore, stateDedupeID, []byte(keyID))
			if err != nil {
				return fmt.Errorf("record the dedupe hash key: %w", err)
			}
			if first, err := res.RowsAffected(); err != nil {
				return fmt.Errorf("record the dedupe hash key: %w", err)
			} else if first == 0 {
				changed, err = s.swapDedupeKeyID(ctx, tx, keyID)
				return err
			}
			n, err = rewriteDedupeKeys(ctx, tx, s.rebind, rekey)
			return err
		})
	}
	var err error
	if s.committed == nil {
		err = migrate()
	} else {
		// The memory of committed keys is rebuilt from the rewritten table.
		err = s.committed.reload(ctx, s.db, migrate)
	}
	if err == nil && changed {
		err = ErrDedupeKeyChanged
	}
	return n, err
}

// swapDedupeKeyID records keyID and says whether another key id was recorded.
func (s *Store) swapDedupeKeyID(ctx context.Context, tx *sql.Tx, keyID string) (changed bool, err error) {
	var was []byte
	if err := tx.QueryRowContext(ctx, s.rebind(`SELECT data FROM state WHERE namespace = ? AND name = ?`),
		nsStore, stateDedupeID).Scan(&was); err != nil {
		return false, fmt.Errorf("read the dedupe hash key id: %w", err)
	}
	if string(was) == keyID {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, s.rebind(`UPDATE state SET data = ? WHERE namespace = ? AND name = ?`),
		[]byte(keyID), nsStore, stateDedupeID); err != nil {
		return false, fmt.Errorf("record the dedupe hash key: %w", err)
	}
	return true, nil
}

// rewriteDedupeKeys replaces every dedupe key by rekey(key), in tx.
func rewriteDedupeKeys(ctx context.Context, tx *sql.Tx, rebind func(string) string, rekey func(string) string) (int64, error) {
	rows, err := tx.QueryContext(ctx, `SELECT scope, dedupe_key FROM dedupe_keys`)
	if err != nil {
		return 0, fmt.Errorf("read dedupe keys: %w", err)
	}
	type row struct{ scope, key string }
	var all []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.scope, &r.key); err != nil {
			_ = rows.Close()
			return 0, fmt.Errorf("read dedupe keys: %w", err)
		}
		all = append(all, r)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return 0, fmt.Errorf("read dedupe keys: %w", err)
	}
	if len(all) == 0 {
		return 0, nil
	}
	st, err := tx.PrepareContext(ctx, rebind(`UPDATE dedupe_keys SET dedupe_key = ? WHERE scope = ? AND dedupe_key = ?`))
	if err != nil {
		return 0, fmt.Errorf("rewrite dedupe keys: %w", err)
	}
	defer st.Close()
	for _, r := range all {
		if _, err := st.ExecContext(ctx, rekey(r.key), r.scope, r.key); err != nil {
			return 0, fmt.Errorf("rewrite a dedupe key in scope %s: %w", r.scope, err)
		}
	}
	return int64(len(all)), nil
}
