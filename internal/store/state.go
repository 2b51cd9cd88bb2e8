package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Generic state holds what pollers carry between runs: snapshots to diff against and cursors to
// resume from. Each poller owns a namespace; values are opaque bytes.

const upsertState = `
	INSERT INTO state (namespace, name, data) VALUES (?, ?, ?)
	ON CONFLICT (namespace, name) DO UPDATE SET data = excluded.data`

// GetState returns the value of key in ns; ok is false if it is not set.
func (s *Store) GetState(ctx context.Context, ns, key string) (v []byte, ok bool, err error) {
	err = s.rdb.QueryRowContext(ctx,
		s.rebind(`SELECT data FROM state WHERE namespace = ? AND name = ?`), ns, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read state %s/%s: %w", ns, key, err)
	}
	return nonNil(v), true, nil
}

// PutState sets key in ns to v, replacing any previous value.
func (s *Store) PutState(ctx context.Context, ns, key string, v []byte) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(upsertState), ns, key, nonNil(v)); err != nil {
		return fmt.Errorf("write state %s/%s: %w", ns, key, err)
	}
	return nil
}

// ListState returns every key and value in ns.
func (s *Store) ListState(ctx context.Context, ns string) (map[string][]byte, error) {
	rows, err := s.rdb.QueryContext(ctx, s.rebind(`SELECT name, data FROM state WHERE namespace = ?`), ns)
	if err != nil {
		return nil, fmt.Errorf("list state %s: %w", ns, err)
	}
	defer rows.Close()
	out := make(map[string][]byte)
	for rows.Next() {
		var (
			key string
			v   []byte
		)
		if err := rows.Scan(&key, &v); err != nil {
			return nil, fmt.Errorf("list state %s: %w", ns, err)
		}
		out[key] = nonNil(v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list state %s: %w", ns, err)
	}
	return out, nil
}

// PutStates sets every key of kv and deletes every key of deleted in ns, in one transaction: a poll
// commits its whole snapshot or none of it. A key both set and deleted is a caller bug and is refused
// before anything is written.
func (s *Store) PutStates(ctx context.Context, ns string, kv map[string][]byte, deleted []string) error {
	for _, key := range deleted {
		if _, both := kv[key]; both {
			return fmt.Errorf("write state %s: key %s is both set and deleted", ns, key)
		}
	}
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		del, err := tx.PrepareContext(ctx, s.rebind(`DELETE FROM state WHERE namespace = ? AND name = ?`))
		if err != nil {
			return err
		}
		defer del.Close()
		for _, key := range deleted {
			if _, err := del.ExecContext(ctx, ns, key); err != nil {
				return fmt.Errorf("delete %s: %w", key, err)
			}
		}
		put, err := tx.PrepareContext(ctx, s.rebind(upsertState))
		if err != nil {
			return err
		}
		defer put.Close()
		for key, v := range kv {
			if _, err := put.ExecContext(ctx, ns, key, nonNil(v)); err != nil {
				return fmt.Errorf("set %s: %w", key, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write state %s: %w", ns, err)
	}
	return nil
}

// nonNil maps nil to an empty slice: the columns are NOT NULL, and a nil slice binds as NULL while a
// stored empty value may scan as nil.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
