package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Upload is the billing file sent for a period (YYYY-MM).
type Upload struct {
	Period     string
	RemotePath string
	SHA256     string // hex digest of the uploaded file
	Rows       int
	Bytes      int64
	UploadedAt time.Time
}

// PendingRun is a billing run that failed and waits to be tried again.
type PendingRun struct {
	Period    string
	LastError string
	Attempts  int
	Since     time.Time // when the period first became pending
}

const uploadColumns = `period, remote_path, sha256, row_count, size_bytes, uploaded_at_ms`

func scanUpload(sc scanner) (Upload, error) {
	var (
		u  Upload
		ms int64
	)
	if err := sc.Scan(&u.Period, &u.RemotePath, &u.SHA256, &u.Rows, &u.Bytes, &ms); err != nil {
		return Upload{}, err
	}
	u.UploadedAt = fromMS(ms)
	return u, nil
}

// RecordUpload makes u the upload of its period, replacing any earlier one, and appends it to
// billing_upload_history. Refusing a second upload without --force is the caller's check (UploadFor):
// the ledger records what was actually sent.
func (s *Store) RecordUpload(ctx context.Context, u Upload) error {
	args := []any{u.Period, u.RemotePath, u.SHA256, u.Rows, u.Bytes, toMS(u.UploadedAt)}
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.rebind(`
			INSERT INTO billing_upload_history (`+uploadColumns+`) VALUES (?, ?, ?, ?, ?, ?)`), args...); err != nil {
			return fmt.Errorf("append to history: %w", err)
		}
		if _, err := tx.ExecContext(ctx, s.rebind(`
			INSERT INTO billing_uploads (`+uploadColumns+`) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (period) DO UPDATE SET
				remote_path = excluded.remote_path,
				sha256 = excluded.sha256,
				row_count = excluded.row_count,
				size_bytes = excluded.size_bytes,
				uploaded_at_ms = excluded.uploaded_at_ms`), args...); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record billing upload for %s: %w", u.Period, err)
	}
	return nil
}

// UploadFor returns the upload of period; ok is false if none was made.
func (s *Store) UploadFor(ctx context.Context, period string) (u Upload, ok bool, err error) {
	u, err = scanUpload(s.rdb.QueryRowContext(ctx,
		s.rebind(`SELECT `+uploadColumns+` FROM billing_uploads WHERE period = ?`), period))
	if errors.Is(err, sql.ErrNoRows) {
		return Upload{}, false, nil
	}
	if err != nil {
		return Upload{}, false, fmt.Errorf("read billing upload for %s: %w", period, err)
	}
	return u, true, nil
}

// Uploads returns the upload of every period, ordered by period.
func (s *Store) Uploads(ctx context.Context) ([]Upload, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+uploadColumns+` FROM billing_uploads ORDER BY period`)
	if err != nil {
		return nil, fmt.Errorf("list billing uploads: %w", err)
	}
	defer rows.Close()
	var out []Upload
	for rows.Next() {
		u, err := scanUpload(rows)
		if err != nil {
			return nil, fmt.Errorf("list billing uploads: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list billing uploads: %w", err)
	}
	return out, nil
}

// SetBillingPending records that the run for period failed with lastErr after attempts attempts
// (a total, not an increment). Since keeps the time the period first became pending.
func (s *Store) SetBillingPending(ctx context.Context, period, lastErr string, attempts int, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`
		INSERT INTO billing_pending (period, last_error, attempts, since_ms) VALUES (?, ?, ?, ?)
		ON CONFLICT (period) DO UPDATE SET
			last_error = excluded.last_error,
			attempts = excluded.attempts`),
		period, lastErr, attempts, toMS(at))
	if err != nil {
		return fmt.Errorf("mark billing run for %s pending: %w", period, err)
	}
	return nil
}

// ClearBillingPending removes period from the pending runs, once it succeeded or was given up.
func (s *Store) ClearBillingPending(ctx context.Context, period string) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM billing_pending WHERE period = ?`), period); err != nil {
		return fmt.Errorf("clear pending billing run for %s: %w", period, err)
	}
	return nil
}

// BillingPending returns the pending runs, ordered by period.
func (s *Store) BillingPending(ctx context.Context) ([]PendingRun, error) {
	rows, err := s.rdb.QueryContext(ctx,
		`SELECT period, last_error, attempts, since_ms FROM billing_pending ORDER BY period`)
	if err != nil {
		return nil, fmt.Errorf("list pending billing runs: %w", err)
	}
	defer rows.Close()
	var out []PendingRun
	for rows.Next() {
		var (
			r  PendingRun
			ms int64
		)
		if err := rows.Scan(&r.Period, &r.LastError, &r.Attempts, &ms); err != nil {
			return nil, fmt.Errorf("list pending billing runs: %w", err)
		}
		r.Since = fromMS(ms)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list pending billing runs: %w", err)
	}
	return out, nil
}

// FreezeBillingRules makes rules the billing rule table of period unless one is already frozen, and
// returns the table in force: rules when it was the first, the earlier one otherwise. Two replicas
// building the same period at once get the same table.
func (s *Store) FreezeBillingRules(ctx context.Context, period, rules string, at time.Time) (string, error) {
	var frozen string
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, s.rebind(`
			INSERT INTO billing_rules (period, rules, frozen_at_ms) VALUES (?, ?, ?)
			ON CONFLICT (period) DO NOTHING`), period, rules, toMS(at)); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, s.rebind(`SELECT rules FROM billing_rules WHERE period = ?`), period).Scan(&frozen)
	})
	if err != nil {
		return "", fmt.Errorf("freeze billing rules for %s: %w", period, err)
	}
	return frozen, nil
}

// BillingRulesFor returns the rule table frozen for period and when; ok is false if none is.
func (s *Store) BillingRulesFor(ctx context.Context, period string) (rules string, frozenAt time.Time, ok bool, err error) {
	var ms int64
	err = s.rdb.QueryRowContext(ctx,
		s.rebind(`SELECT rules, frozen_at_ms FROM billing_rules WHERE period = ?`), period).Scan(&rules, &ms)
	if errors.Is(err, sql.ErrNoRows) {
		return "", time.Time{}, false, nil
	}
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("read billing rules for %s: %w", period, err)
	}
	return rules, fromMS(ms), true, nil
}
