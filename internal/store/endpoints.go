package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// DisableEndpoint stops deliveries to endpoint, as Standard Webhooks asks after a 410 Gone. Disabling
// it again replaces the reason and time.
func (s *Store) DisableEndpoint(ctx context.Context, endpoint, reason string, at time.Time) error {
	_, err := s.db.ExecContext(ctx, s.rebind(`
		INSERT INTO disabled_endpoints (endpoint, reason, disabled_at_ms) VALUES (?, ?, ?)
		ON CONFLICT (endpoint) DO UPDATE SET
			reason = excluded.reason,
			disabled_at_ms = excluded.disabled_at_ms`),
		endpoint, reason, toMS(at))
	if err != nil {
		return fmt.Errorf("disable endpoint %s: %w", safeEndpoint(endpoint), err)
	}
	return nil
}

// EnableEndpoint lets deliveries to endpoint resume. Enabling an enabled endpoint does nothing.
func (s *Store) EnableEndpoint(ctx context.Context, endpoint string) error {
	if _, err := s.db.ExecContext(ctx, s.rebind(`DELETE FROM disabled_endpoints WHERE endpoint = ?`), endpoint); err != nil {
		return fmt.Errorf("enable endpoint %s: %w", safeEndpoint(endpoint), err)
	}
	return nil
}

// EndpointDisabled reports whether endpoint is disabled, and why.
func (s *Store) EndpointDisabled(ctx context.Context, endpoint string) (reason string, disabled bool, err error) {
	err = s.rdb.QueryRowContext(ctx,
		s.rebind(`SELECT reason FROM disabled_endpoints WHERE endpoint = ?`), endpoint).Scan(&reason)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read state of endpoint %s: %w", safeEndpoint(endpoint), err)
	}
	return reason, true, nil
}

// DisabledEndpoints returns every disabled endpoint with its reason.
func (s *Store) DisabledEndpoints(ctx context.Context) (map[string]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT endpoint, reason FROM disabled_endpoints`)
	if err != nil {
		return nil, fmt.Errorf("list disabled endpoints: %w", err)
	}
	defer rows.Close()
	out := make(map[string]string)
	for rows.Next() {
		var endpoint, reason string
		if err := rows.Scan(&endpoint, &reason); err != nil {
			return nil, fmt.Errorf("list disabled endpoints: %w", err)
		}
		out[endpoint] = reason
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list disabled endpoints: %w", err)
	}
	return out, nil
}

// safeEndpoint names an endpoint in an error without its path or query, which for webhook URLs often
// carry a token. Names that are not URLs are returned as they are.
func safeEndpoint(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return endpoint
	}
	return u.Scheme + "://" + u.Host
}

// HeldPrefix starts the last error of a delivery held while its endpoint is disabled.
const HeldPrefix = "held: "

// HeldEvents counts, per endpoint, the events held while it is disabled: not delivered, and last
// recorded as held.
func (s *Store) HeldEvents(ctx context.Context) (map[string]int, error) {
	rows, err := s.rdb.QueryContext(ctx, s.rebind(`
		SELECT endpoint, COUNT(*) FROM deliveries
		WHERE delivered = 0 AND last_error LIKE ?
		GROUP BY endpoint`), HeldPrefix+"%")
	if err != nil {
		return nil, fmt.Errorf("count held events: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var endpoint string
		var n int
		if err := rows.Scan(&endpoint, &n); err != nil {
			return nil, fmt.Errorf("count held events: %w", err)
		}
		out[endpoint] = n
	}
	return out, rows.Err()
}
