package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// DeadLetter indexes a message that exhausted its retries, with what is needed to re-drive it.
type DeadLetter struct {
	ID        int64 // assigned by AddDeadLetter; never reused
	Pipeline  string
	Topic     string // where a retry republishes it
	EventID   string
	Payload   []byte
	Metadata  map[string]string // empty reads back as nil
	Error     string
	CreatedAt time.Time
	RetriedAt *time.Time // nil while pending
}

const deadLetterColumns = `id, pipeline, topic, event_id, payload, metadata, error, created_at_ms, retried_at_ms`

func scanDeadLetter(sc scanner) (DeadLetter, error) {
	var (
		d         DeadLetter
		meta      string
		createdMS int64
		retriedMS sql.NullInt64
	)
	if err := sc.Scan(&d.ID, &d.Pipeline, &d.Topic, &d.EventID, &d.Payload, &meta, &d.Error, &createdMS, &retriedMS); err != nil {
		return DeadLetter{}, err
	}
	if err := json.Unmarshal([]byte(meta), &d.Metadata); err != nil {
		return DeadLetter{}, fmt.Errorf("decode metadata of dead letter %d: %w", d.ID, err)
	}
	if len(d.Metadata) == 0 {
		d.Metadata = nil
	}
	d.Payload = nonNil(d.Payload)
	d.CreatedAt = fromMS(createdMS)
	if retriedMS.Valid {
		t := fromMS(retriedMS.Int64)
		d.RetriedAt = &t
	}
	return d, nil
}

// AddDeadLetter indexes d and returns its new ID; d.ID is ignored.
func (s *Store) AddDeadLetter(ctx context.Context, d DeadLetter) (int64, error) {
	meta := []byte("{}") // not "null", so the column always holds an object
	if len(d.Metadata) > 0 {
		var err error
		if meta, err = json.Marshal(d.Metadata); err != nil {
			return 0, fmt.Errorf("encode metadata of dead letter for event %s: %w", d.EventID, err)
		}
	}
	var retried sql.NullInt64
	if d.RetriedAt != nil {
		retried = sql.NullInt64{Int64: toMS(*d.RetriedAt), Valid: true}
	}
	var id int64
	err := s.db.QueryRowContext(ctx, s.rebind(`
		INSERT INTO dead_letters (pipeline, topic, event_id, payload, metadata, error, created_at_ms, retried_at_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
		d.Pipeline, d.Topic, d.EventID, nonNil(d.Payload), string(meta), d.Error, toMS(d.CreatedAt), retried).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("add dead letter for event %s in pipeline %s: %w", d.EventID, d.Pipeline, err)
	}
	return id, nil
}

// DeadLetters lists dead letters by ID, of one pipeline or of all when pipeline is "", and only those
// not yet retried when pending is true.
func (s *Store) DeadLetters(ctx context.Context, pipeline string, pending bool) ([]DeadLetter, error) {
	query := `SELECT ` + deadLetterColumns + ` FROM dead_letters WHERE 1 = 1`
	var args []any
	if pipeline != "" {
		query += ` AND pipeline = ?`
		args = append(args, pipeline)
	}
	if pending {
		query += ` AND retried_at_ms IS NULL`
	}
	query += ` ORDER BY id`
	rows, err := s.rdb.QueryContext(ctx, s.rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		d, err := scanDeadLetter(rows)
		if err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// DeadLetter returns the dead letter with id; ok is false if there is none.
func (s *Store) DeadLetter(ctx context.Context, id int64) (d DeadLetter, ok bool, err error) {
	d, err = scanDeadLetter(s.rdb.QueryRowContext(ctx,
		s.rebind(`SELECT `+deadLetterColumns+` FROM dead_letters WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return DeadLetter{}, false, nil
	}
	if err != nil {
		return DeadLetter{}, false, fmt.Errorf("read dead letter %d: %w", id, err)
	}
	return d, true, nil
}

// MarkRetried records that dead letter id was re-driven at at. It returns an error wrapping
// ErrNotFound if there is no such dead letter.
func (s *Store) MarkRetried(ctx context.Context, id int64, at time.Time) error {
	res, err := s.db.ExecContext(ctx, s.rebind(`UPDATE dead_letters SET retried_at_ms = ? WHERE id = ?`), toMS(at), id)
	if err != nil {
		return fmt.Errorf("mark dead letter %d retried: %w", id, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("mark dead letter %d retried: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("mark dead letter %d retried: %w", id, ErrNotFound)
	}
	return nil
}

// PendingDeadLetters counts the dead letters not yet retried, per pipeline, for the depth gauge.
// Pipelines with none are absent.
func (s *Store) PendingDeadLetters(ctx context.Context) (map[string]int, error) {
	rows, err := s.rdb.QueryContext(ctx,
		`SELECT pipeline, COUNT(*) FROM dead_letters WHERE retried_at_ms IS NULL GROUP BY pipeline`)
	if err != nil {
		return nil, fmt.Errorf("count pending dead letters: %w", err)
	}
	defer rows.Close()
	out := make(map[string]int)
	for rows.Next() {
		var (
			pipeline string
			n        int
		)
		if err := rows.Scan(&pipeline, &n); err != nil {
			return nil, fmt.Errorf("count pending dead letters: %w", err)
		}
		out[pipeline] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count pending dead letters: %w", err)
	}
	return out, nil
}
