package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Delivery is the log of one event's delivery to one endpoint.
type Delivery struct {
	EventID        string
	Endpoint       string
	Attempts       int    // summed over every RecordAttempt
	Status         int    // HTTP status of the last attempt; 0 if none was received
	LastError      string // of the last attempt; "" if it succeeded
	Delivered      bool   // once true, stays true
	FirstAttemptAt time.Time
	UpdatedAt      time.Time
}

const deliveryColumns = `event_id, endpoint, attempts, status, last_error, delivered, first_attempt_at_ms, updated_at_ms`

func scanDelivery(sc scanner) (Delivery, error) {
	var (
		d                 Delivery
		delivered         int
		firstMS, updateMS int64
	)
	if err := sc.Scan(&d.EventID, &d.Endpoint, &d.Attempts, &d.Status, &d.LastError, &delivered, &firstMS, &updateMS); err != nil {
		return Delivery{}, err
	}
	d.Delivered = delivered != 0
	d.FirstAttemptAt = fromMS(firstMS)
	d.UpdatedAt = fromMS(updateMS)
	return d, nil
}

// RecordAttempt adds attempts to the delivery of eventID to endpoint and stores the latest status and
// error. The first record's time stays FirstAttemptAt, and a delivery once delivered stays delivered,
// so a late failure report cannot un-deliver an event.
func (s *Store) RecordAttempt(ctx context.Context, eventID, endpoint string, attempts int, status int, lastErr string, delivered bool, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`
		INSERT INTO deliveries (`+deliveryColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (event_id, endpoint) DO UPDATE SET
			attempts = deliveries.attempts + excluded.attempts,
			status = excluded.status,
			last_error = excluded.last_error,
			delivered = CASE WHEN deliveries.delivered = 1 THEN 1 ELSE excluded.delivered END,
			updated_at_ms = excluded.updated_at_ms`),
		eventID, endpoint, attempts, status, lastErr, boolInt(delivered), toMS(at), toMS(at))
	if err != nil {
		return fmt.Errorf("record delivery attempt of event %s to %s: %w", eventID, safeEndpoint(endpoint), err)
	}
	return nil
}

// Delivery returns the delivery of eventID to endpoint; ok is false if none was recorded.
func (s *Store) Delivery(ctx context.Context, eventID, endpoint string) (d Delivery, ok bool, err error) {
	d, err = scanDelivery(s.rdb.QueryRowContext(ctx,
		s.rebind(`SELECT `+deliveryColumns+` FROM deliveries WHERE event_id = ? AND endpoint = ?`),
		eventID, endpoint))
	if errors.Is(err, sql.ErrNoRows) {
		return Delivery{}, false, nil
	}
	if err != nil {
		return Delivery{}, false, fmt.Errorf("read delivery of event %s to %s: %w", eventID, safeEndpoint(endpoint), err)
	}
	return d, true, nil
}

// Deliveries returns every delivery of eventID, ordered by endpoint.
func (s *Store) Deliveries(ctx context.Context, eventID string) ([]Delivery, error) {
	rows, err := s.rdb.QueryContext(ctx,
		s.rebind(`SELECT `+deliveryColumns+` FROM deliveries WHERE event_id = ? ORDER BY endpoint`), eventID)
	if err != nil {
		return nil, fmt.Errorf("list deliveries of event %s: %w", eventID, err)
	}
	defer rows.Close()
	var out []Delivery
	for rows.Next() {
		d, err := scanDelivery(rows)
		if err != nil {
			return nil, fmt.Errorf("list deliveries of event %s: %w", eventID, err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list deliveries of event %s: %w", eventID, err)
	}
	return out, nil
}
