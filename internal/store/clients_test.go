package store

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testClients is the client directory's part of the contract: keys name one client, a newer value
// wins field by field, keys naming two clients merge them, and an import is all or nothing.
func testClients(t *testing.T, s *Store) {
	ctx := t.Context()
	_, ok, err := s.ClientByKey(ctx, KeyGUID, "g-1")
	require.NoError(t, err)
	require.False(t, ok)

	created := base
	ch, err := s.RecordIdentity(ctx, Identity{GUID: "g-1", Keys: map[string]string{KeySAKey: "SA-1"},
		Fields: map[string]string{FieldCompany: "ACME", FieldEmail: "a@acme.example", FieldPhone: ""}, Source: "shopapp create", At: created})
	require.NoError(t, err)
	assert.True(t, ch.New)
	assert.Equal(t, []string{"guid=g-1", "sa_key=SA-1"}, ch.KeysAdded)
	assert.Equal(t, []FieldChange{{Field: FieldCompany, New: "ACME"}, {Field: FieldEmail, New: "a@acme.example"}}, ch.Fields)

	// An older source loses field by field; a newer one wins; an empty value erases nothing.
	ch, err = s.RecordIdentity(ctx, Identity{Keys: map[string]string{KeySAKey: "SA-1"},
		Fields: map[string]string{FieldCompany: "Old Name", FieldLastName: "Martin"}, Source: "import old.csv", At: created.Add(-time.Hour)})
	require.NoError(t, err)
	assert.False(t, ch.New)
	assert.Equal(t, []FieldChange{{Field: FieldLastName, New: "Martin"}}, ch.Fields)
	assert.Equal(t, []string{FieldCompany}, ch.Kept)
	ch, err = s.RecordIdentity(ctx, Identity{GUID: "g-1", Fields: map[string]string{FieldCompany: "ACME SAS", FieldEmail: " "},
		Source: "import new.csv", At: created.Add(time.Hour)})
	require.NoError(t, err)
	assert.Equal(t, []FieldChange{{Field: FieldCompany, Old: "ACME", OldSource: "shopapp create", New: "ACME SAS"}}, ch.Fields)

	c, ok, err := s.ClientByKey(ctx, KeySAKey, "SA-1")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, map[string][]string{KeyGUID: {"g-1"}, KeySAKey: {"SA-1"}}, c.Keys)
	assert.Equal(t, map[string]FieldValue{
		FieldCompany:  {Value: "ACME SAS", Source: "import new.csv", At: created.Add(time.Hour)},
		FieldEmail:    {Value: "a@acme.example", Source: "shopapp create", At: created},
		FieldLastName: {Value: "Martin", Source: "import old.csv", At: created.Add(-time.Hour)},
	}, c.Fields)

	// Two clients known apart (by guid, by sa_key) become one when a record names both.
	_, err = s.RecordIdentity(ctx, Identity{GUID: "g-2", Fields: map[string]string{FieldFirstName: "Léa"}, Source: "a", At: created})
	require.NoError(t, err)
	_, err = s.RecordIdentity(ctx, Identity{Keys: map[string]string{KeySAKey: "SA-2"}, Fields: map[string]string{FieldFirstName: "Lea", FieldSIRET: "12345678901234"}, Source: "b", At: created.Add(time.Minute)})
	require.NoError(t, err)
	ch, err = s.RecordIdentity(ctx, Identity{GUID: "g-2", Keys: map[string]string{KeySAKey: "SA-2"}, Source: "c", At: created})
	require.NoError(t, err)
	assert.Equal(t, 1, ch.Merged)
	c, ok, err = s.ClientByKey(ctx, KeyGUID, "g-2")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, map[string][]string{KeyGUID: {"g-2"}, KeySAKey: {"SA-2"}}, c.Keys)
	assert.Equal(t, "Lea", c.Fields[FieldFirstName].Value, "the newer value wins the merge")
	assert.Equal(t, "12345678901234", c.Fields[FieldSIRET].Value)

	byKey, err := s.IdentitiesByKey(ctx, KeySAKey)
	require.NoError(t, err)
	assert.Equal(t, map[string]map[string]string{
		"SA-1": {FieldCompany: "ACME SAS", FieldEmail: "a@acme.example", FieldLastName: "Martin"},
		"SA-2": {FieldFirstName: "Lea", FieldSIRET: "12345678901234"},
	}, byKey)

	// An import is all or nothing; a dry run changes nothing and says what would change.
	batch := []Identity{
		{GUID: "g-3", Fields: map[string]string{FieldCompany: "Three"}, Source: "import x.csv", At: created},
		{Keys: map[string]string{KeySAKey: "SA-1"}, Fields: map[string]string{FieldPhone: "+33102030405"}, Source: "import x.csv", At: created.Add(2 * time.Hour)},
	}
	changes, err := s.ImportIdentities(ctx, batch, true)
	require.NoError(t, err)
	require.Len(t, changes, 2)
	assert.True(t, changes[0].New)
	assert.Equal(t, []FieldChange{{Field: FieldPhone, New: "+33102030405"}}, changes[1].Fields)
	_, ok, err = s.ClientByKey(ctx, KeyGUID, "g-3")
	require.NoError(t, err)
	assert.False(t, ok, "a dry run records nothing")

	bad := append(batch, Identity{GUID: "g-4", Fields: map[string]string{"shoe_size": "42"}, Source: "import x.csv", At: created})
	_, err = s.ImportIdentities(ctx, bad, false)
	require.ErrorContains(t, err, "identity 2: unknown field \"shoe_size\"")
	_, ok, err = s.ClientByKey(ctx, KeyGUID, "g-3")
	require.NoError(t, err)
	assert.False(t, ok, "nothing half-imported")

	_, err = s.ImportIdentities(ctx, batch, false)
	require.NoError(t, err)
	c, ok, err = s.ClientByKey(ctx, KeyGUID, "g-3")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "Three", c.Fields[FieldCompany].Value)

	for _, id := range []Identity{
		{Fields: map[string]string{FieldCompany: "x"}, Source: "s", At: created},
		{GUID: "g", Source: "", At: created},
		{GUID: "g", Source: "s"},
	} {
		_, err := s.RecordIdentity(ctx, id)
		assert.Error(t, err, "%+v", id)
	}
}
