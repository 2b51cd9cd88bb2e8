package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Client identity fields: what the billing file and invoices need to name a client.
const (
	FieldCompany    = "company"
	FieldLastName   = "last_name"
	FieldFirstName  = "first_name"
	FieldEmail      = "email"
	FieldPhone      = "phone"
	FieldAddress    = "address"
	FieldPostalCode = "postal_code"
	FieldCity       = "city"
	FieldSIRET      = "siret"
)

// IdentityFields lists the fields the directory keeps, in display order.
var IdentityFields = []string{FieldCompany, FieldLastName, FieldFirstName, FieldEmail, FieldPhone,
	FieldAddress, FieldPostalCode, FieldCity, FieldSIRET}

// Key kinds naming a client: ours and the partners'.
const (
	KeyGUID     = "guid"      // our id (Ecolix's reference)
	KeySAKey    = "sa_key"    // Shop Application's interface key, the billing file's reference_client
	KeyClientID = "client_id" // Simplébo's client id
)

// Identity is what one source says of one client at one time.
type Identity struct {
	GUID   string            // our id; same as Keys["guid"]
	Keys   map[string]string // partner keys by kind (KeySAKey, KeyClientID, …)
	Fields map[string]string // IdentityFields; an empty value says nothing (never erases)
	Source string            // who said it: "shopapp create", "import clients.csv"
	At     time.Time         // when the source knew it: a field keeps the newest value
}

// keys returns every key of id, guid included, sorted by kind then value.
func (id Identity) keys() [][2]string {
	var out [][2]string
	if id.GUID != "" {
		out = append(out, [2]string{KeyGUID, id.GUID})
	}
	for k, v := range id.Keys {
		if v != "" && !(k == KeyGUID && v == id.GUID) {
			out = append(out, [2]string{k, v})
		}
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1]) })
	return out
}

func (id Identity) validate() error {
	if len(id.keys()) == 0 {
		return errors.New("no key: give a guid or a partner key")
	}
	for k := range id.Keys {
		if k == "" {
			return errors.New("a key has no kind")
		}
	}
	for f := range id.Fields {
		if !slices.Contains(IdentityFields, f) {
			return fmt.Errorf("unknown field %q (want one of %s)", f, strings.Join(IdentityFields, ", "))
		}
	}
	if id.Source == "" {
		return errors.New("no source")
	}
	if id.At.IsZero() {
		return errors.New("no time")
	}
	return nil
}

// FieldValue is one field of a client as the directory keeps it.
type FieldValue struct {
	Value  string    `json:"value"`
	Source string    `json:"source"`
	At     time.Time `json:"at"`
}

// Client is what the directory knows of one client.
type Client struct {
	ID     int64                 `json:"id"`
	Keys   map[string][]string   `json:"keys"`   // by kind, sorted
	Fields map[string]FieldValue `json:"fields"` // by field
}

// FieldChange is one field an Identity changed (or would change).
type FieldChange struct {
	Field     string `json:"field"`
	Old       string `json:"old,omitempty"`
	OldSource string `json:"old_source,omitempty"`
	New       string `json:"new"`
}

// IdentityChange says what recording an Identity changed.
type IdentityChange struct {
	New       bool          `json:"new,omitempty"`        // a client the directory did not know
	KeysAdded []string      `json:"keys_added,omitempty"` // "sa_key=SA-1"
	Merged    int           `json:"merged,omitempty"`     // clients its keys named apart, now one
	Fields    []FieldChange `json:"fields,omitempty"`
	Kept      []string      `json:"kept,omitempty"` // fields left as they were: the directory's value is newer
}

// Changed is true when the record changed anything.
func (c IdentityChange) Changed() bool {
	return c.New || len(c.KeysAdded) > 0 || c.Merged > 0 || len(c.Fields) > 0
}

// RecordIdentity records what a source says of a client: the client its keys name (created if none
// does; merged into one if they name several), the keys it did not have, and each non-empty field
// unless the directory holds a value from a later time.
func (s *Store) RecordIdentity(ctx context.Context, id Identity) (IdentityChange, error) {
	var ch IdentityChange
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockClients(ctx, tx); err != nil {
			return err
		}
		var err error
		ch, err = s.recordIdentity(ctx, tx, id)
		return err
	})
	if err != nil {
		return ch, fmt.Errorf("record client identity: %w", err)
	}
	return ch, nil
}

// ImportIdentities records ids in one transaction: all or nothing. A dry run returns what would
// change and rolls back. Errors name the identity by its index in ids.
func (s *Store) ImportIdentities(ctx context.Context, ids []Identity, dryRun bool) ([]IdentityChange, error) {
	errDry := errors.New("dry run")
	changes := make([]IdentityChange, 0, len(ids))
	err := s.withTx(ctx, func(tx *sql.Tx) error {
		if err := s.lockClients(ctx, tx); err != nil {
			return err
		}
		for i, id := range ids {
			ch, err := s.recordIdentity(ctx, tx, id)
			if err != nil {
				return fmt.Errorf("identity %d: %w", i, err)
			}
			changes = append(changes, ch)
		}
		if dryRun {
			return errDry
		}
		return nil
	})
	if dryRun && errors.Is(err, errDry) {
		return changes, nil
	}
	if err != nil {
		return nil, fmt.Errorf("import client identities: %w", err)
	}
	return changes, nil
}

// lockClients serializes directory writers on PostgreSQL, so that two replicas recording the same
// new client do not create it twice. SQLite's BEGIN IMMEDIATE already does.
func (s *Store) lockClients(ctx context.Context, tx *sql.Tx) error {
	if s.dialect != DialectPostgres {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('passerelle.clients'))`); err != nil {
		return fmt.Errorf("lock client directory: %w", err)
	}
	return nil
}

func (s *Store) recordIdentity(ctx context.Context, tx *sql.Tx, id Identity) (IdentityChange, error) {
	var ch IdentityChange
	if err := id.validate(); err != nil {
		return ch, err
	}
	keys := id.keys()
	var found []int64
	for _, k := range keys {
		var cid int64
		err := tx.QueryRowContext(ctx, s.rebind(`SELECT client_id FROM client_keys WHERE kind = ? AND key_value = ?`), k[0], k[1]).Scan(&cid)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return ch, fmt.Errorf("find client by %s: %w", k[0], err)
		}
		if !slices.Contains(found, cid) {
			found = append(found, cid)
		}
	}
	var target int64
	if len(found) == 0 {
		if err := tx.QueryRowContext(ctx, s.rebind(`INSERT INTO clients (created_at_ms) VALUES (?) RETURNING id`), toMS(time.Now())).Scan(&target); err != nil {
			return ch, fmt.Errorf("create client: %w", err)
		}
		ch.New = true
	} else {
		slices.Sort(found)
		target = found[0]
		for _, other := range found[1:] {
			if err := s.mergeClient(ctx, tx, target, other); err != nil {
				return ch, err
			}
			ch.Merged++
		}
	}
	for _, k := range keys {
		res, err := tx.ExecContext(ctx, s.rebind(`INSERT INTO client_keys (kind, key_value, client_id) VALUES (?, ?, ?)
			ON CONFLICT (kind, key_value) DO NOTHING`), k[0], k[1], target)
		if err != nil {
			return ch, fmt.Errorf("add client key %s: %w", k[0], err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			ch.KeysAdded = append(ch.KeysAdded, k[0]+"="+k[1])
		}
	}
	cur, err := s.clientFields(ctx, tx, target)
	if err != nil {
		return ch, err
	}
	for _, f := range IdentityFields {
		v := strings.TrimSpace(id.Fields[f])
		if v == "" {
			continue
		}
		old, had := cur[f]
		if had && old.Value == v {
			continue
		}
		if had && old.At.After(id.At) {
			ch.Kept = append(ch.Kept, f)
			continue
		}
		// The WHERE keeps the newest value should a writer without the lock (an older binary) race.
		if _, err := tx.ExecContext(ctx, s.rebind(`
			INSERT INTO client_fields (client_id, field, field_value, source, at_ms) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (client_id, field) DO UPDATE SET
				field_value = excluded.field_value, source = excluded.source, at_ms = excluded.at_ms
			WHERE client_fields.at_ms <= excluded.at_ms`), target, f, v, id.Source, toMS(id.At)); err != nil {
			return ch, fmt.Errorf("write client field %s: %w", f, err)
		}
		ch.Fields = append(ch.Fields, FieldChange{Field: f, Old: old.Value, OldSource: old.Source, New: v})
	}
	return ch, nil
}

// mergeClient moves other's keys and fields onto target (the newer value of each field wins) and
// deletes other.
func (s *Store) mergeClient(ctx context.Context, tx *sql.Tx, target, other int64) error {
	for _, q := range []struct {
		what string
		sql  string
		args []any
	}{
		{"fields", `INSERT INTO client_fields (client_id, field, field_value, source, at_ms)
			SELECT ?, field, field_value, source, at_ms FROM client_fields WHERE client_id = ?
			ON CONFLICT (client_id, field) DO UPDATE SET
				field_value = excluded.field_value, source = excluded.source, at_ms = excluded.at_ms
			WHERE client_fields.at_ms < excluded.at_ms`, []any{target, other}},
		{"fields", `DELETE FROM client_fields WHERE client_id = ?`, []any{other}},
		{"keys", `UPDATE client_keys SET client_id = ? WHERE client_id = ?`, []any{target, other}},
		{"client", `DELETE FROM clients WHERE id = ?`, []any{other}},
	} {
		if _, err := tx.ExecContext(ctx, s.rebind(q.sql), q.args...); err != nil {
			return fmt.Errorf("merge client %d into %d: %s: %w", other, target, q.what, err)
		}
	}
	return nil
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) clientFields(ctx context.Context, q queryer, id int64) (map[string]FieldValue, error) {
	rows, err := q.QueryContext(ctx, s.rebind(`SELECT field, field_value, source, at_ms FROM client_fields WHERE client_id = ?`), id)
	if err != nil {
		return nil, fmt.Errorf("read client fields: %w", err)
	}
	defer rows.Close()
	out := map[string]FieldValue{}
	for rows.Next() {
		var (
			f, v, src string
			ms        int64
		)
		if err := rows.Scan(&f, &v, &src, &ms); err != nil {
			return nil, fmt.Errorf("read client fields: %w", err)
		}
		out[f] = FieldValue{Value: v, Source: src, At: fromMS(ms)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read client fields: %w", err)
	}
	return out, nil
}

// ClientByKey returns the client a key names (kind KeyGUID for our guid); ok is false if none.
func (s *Store) ClientByKey(ctx context.Context, kind, value string) (c Client, ok bool, err error) {
	err = s.rdb.QueryRowContext(ctx, s.rebind(`SELECT client_id FROM client_keys WHERE kind = ? AND key_value = ?`), kind, value).Scan(&c.ID)
	if errors.Is(err, sql.ErrNoRows) {
		return Client{}, false, nil
	}
	if err != nil {
		return Client{}, false, fmt.Errorf("find client by %s: %w", kind, err)
	}
	rows, err := s.rdb.QueryContext(ctx, s.rebind(`SELECT kind, key_value FROM client_keys WHERE client_id = ? ORDER BY kind, key_value`), c.ID)
	if err != nil {
		return Client{}, false, fmt.Errorf("read client keys: %w", err)
	}
	defer rows.Close()
	c.Keys = map[string][]string{}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return Client{}, false, fmt.Errorf("read client keys: %w", err)
		}
		c.Keys[k] = append(c.Keys[k], v)
	}
	if err := rows.Err(); err != nil {
		return Client{}, false, fmt.Errorf("read client keys: %w", err)
	}
	if c.Fields, err = s.clientFields(ctx, s.rdb, c.ID); err != nil {
		return Client{}, false, err
	}
	return c, true, nil
}

// IdentitiesByKey returns the fields of every client that has a key of kind, by that key's value:
// what the billing run joins its rows with (kind KeySAKey).
func (s *Store) IdentitiesByKey(ctx context.Context, kind string) (map[string]map[string]string, error) {
	rows, err := s.rdb.QueryContext(ctx, s.rebind(`
		SELECT client_keys.key_value, client_fields.field, client_fields.field_value
		FROM client_keys JOIN client_fields ON client_fields.client_id = client_keys.client_id
		WHERE client_keys.kind = ?`), kind)
	if err != nil {
		return nil, fmt.Errorf("read client identities by %s: %w", kind, err)
	}
	defer rows.Close()
	out := map[string]map[string]string{}
	for rows.Next() {
		var k, f, v string
		if err := rows.Scan(&k, &f, &v); err != nil {
			return nil, fmt.Errorf("read client identities by %s: %w", kind, err)
		}
		if out[k] == nil {
			out[k] = map[string]string{}
		}
		out[k][f] = v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read client identities by %s: %w", kind, err)
	}
	return out, nil
}

// SortedKinds returns c's key kinds in order, for display.
func (c Client) SortedKinds() []string {
	kinds := make([]string, 0, len(c.Keys))
	for k := range c.Keys {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}
