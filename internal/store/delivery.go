package store

import (
	"context"
	"database/sql"
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

// Attempt is what one delivery try of an event to an endpoint gave, for RecordAttempts.
type Attempt struct {
	EventID, Endpoint string
	Attempts, Status  int
	LastError         string
	Delivered         bool
	At                time.Time
}

// RecordAttempts adds each attempt to the delivery of its event to its endpoint and stores the
// latest status and error, all in one transaction. The first record's time stays FirstAttemptAt,
// and a delivery once delivered stays delivered, so a late failure report cannot un-deliver an
// event.
func (s *Store) RecordAttempts(ctx context.Context, attempts []Attempt) error {
	if len(attempts) == 0 {
		return nil
	}
	return s.withTx(ctx, func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, s.rebind(`
			INSERT INTO deliveries (`+deliveryColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (event_id, endpoint) DO UPDATE SET
				attempts = deliveries.attempts + excluded.attempts,
				status = excluded.status,
				last_error = excluded.last_error,
				delivered = CASE WHEN deliveries.delivered = 1 THEN 1 ELSE excluded.delivered END,
				updated_at_ms = excluded.updated_at_ms`))
		if err != nil {
			return fmt.Errorf("record delivery attempts: %w", err)
		}
		defer st.Close()
		for _, a := range attempts {
			if _, err := st.ExecContext(ctx, a.EventID, a.Endpoint, a.Attempts, a.Status, a.LastError,
				boolInt(a.Delivered), toMS(a.At), toMS(a.At)); err != nil {
				return fmt.Errorf("record delivery attempt of event %s to %s: %w", a.EventID, safeEndpoint(a.Endpoint), err)
			}
		}
		return nil
	})
}

// DeliveriesTo returns the recorded deliveries to endpoint of the events eventIDs, by event id;
// events never tried there are absent.
func (s *Store) DeliveriesTo(ctx context.Context, endpoint string, eventIDs []string) (map[string]Delivery, error) {
	out := make(map[string]Delivery, len(eventIDs))
	err := s.queryIn(ctx, `SELECT `+deliveryColumns+` FROM deliveries WHERE endpoint = ? AND event_id IN `,
		[]any{endpoint}, eventIDs, func(rows *sql.Rows) error {
			d, err := scanDelivery(rows)
			out[d.EventID] = d
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("read deliveries to %s: %w", safeEndpoint(endpoint), err)
	}
	return out, nil
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
