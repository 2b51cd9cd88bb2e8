package shopapp

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/frtime"
)

func TestCents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   float64
		want int64
	}{
		{490, 49000},
		{59.9, 5990},
		{24.99, 2499},
		{0.285, 29}, // math.Round(0.285*100) would give 28
		{1.005, 101},
		{0.004, 0},
		{0.005, 1},
		{-12.345, -1235},
		{0, 0},
		{1e6, 100000000},
	}
	for _, tt := range tests {
		got, err := Cents(tt.in)
		require.NoError(t, err)
		require.Equal(t, tt.want, got, "Cents(%v)", tt.in)
	}
	_, err := Cents(1e300)
	require.Error(t, err)
}

func TestCatalogueEntryJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		in        string
		wantPrice float64
		wantCents int64
		wantErr   bool
	}{
		{name: "seed example", in: `{"code":"IN-BTQST-S","nom":"Vestibulum","descriptif_court":"c","descriptif_long":"<p>l</p>","prix":490,"prestations_associees":["IN-BTQZ-AMM","IN-BTQZ-AMA"]}`, wantPrice: 490, wantCents: 49000},
		{name: "decimal", in: `{"prix":59.90}`, wantPrice: 59.9, wantCents: 5990},
		{name: "half cent", in: `{"prix":0.285}`, wantPrice: 0.285, wantCents: 29},
		{name: "string from PHP", in: `{"prix":"12.50"}`, wantPrice: 12.5, wantCents: 1250},
		{name: "null", in: `{"prix":null}`},
		{name: "absent", in: `{"nom":"x"}`},
		{name: "not a number", in: `{"prix":"gratuit"}`, wantErr: true},
		{name: "not an object", in: `[]`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var e CatalogueEntry
			err := json.Unmarshal([]byte(tt.in), &e)
			if tt.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.InDelta(t, tt.wantPrice, e.Price, 1e-9)
			require.Equal(t, tt.wantCents, e.PriceCents)
		})
	}
	var e CatalogueEntry
	require.NoError(t, json.Unmarshal([]byte(tests[0].in), &e))
	require.Equal(t, "IN-BTQST-S", e.Code)
	require.Equal(t, "Vestibulum", e.Name)
	require.Equal(t, []string{"IN-BTQZ-AMM", "IN-BTQZ-AMA"}, e.Associated)
	out, err := json.Marshal(e)
	require.NoError(t, err)
	require.JSONEq(t, tests[0].in, string(out), "PriceCents stays off the wire")
}

func TestInterfaceDetailJSON(t *testing.T) {
	t.Parallel()
	// The document's example, less its stray closing brace.
	in := `{"date_creation": "2017-11-10 10:04:10", "statut": 1, "url": "http:\/\/nomdusite.com",
		"url_administration": "http:\/\/nomdusite.com\/superadmin\/"}`
	var d InterfaceDetail
	require.NoError(t, json.Unmarshal([]byte(in), &d))
	require.Equal(t, StatusActive, d.Status)
	require.Equal(t, "2017-11-10 10:04:10", frtime.Format(d.Created.Time))
	require.Equal(t, "http://nomdusite.com/superadmin/", d.AdminURL)
	require.True(t, d.DeletionDate.IsZero())

	require.NoError(t, json.Unmarshal([]byte(`{"statut":"2","date_suppression":"2018-02-08 10:04:10"}`), &d))
	require.Equal(t, StatusDeactivated, d.Status)
	require.Error(t, json.Unmarshal([]byte(`{"statut":"active"}`), &d))

	occ := []PrestationOccurrence{}
	require.NoError(t, json.Unmarshal([]byte(`[{"code": "IN-CAISSE-S", "date_creation": "2018-12-19 11:44:22",
		"resilie": false, "date_resiliation": "", "reference_unique": "5c34c58c2121e"}]`), &occ))
	require.Equal(t, "5c34c58c2121e", occ[0].Reference)
	require.True(t, occ[0].CancelledAt.IsZero())
}

func TestStatusString(t *testing.T) {
	t.Parallel()
	for st, want := range map[Status]string{
		StatusDeleted: "deleted", StatusActive: "active", StatusDeactivated: "deactivated",
		StatusInstalling: "installing", Status(7): "Status(7)",
	} {
		require.Equal(t, want, st.String())
	}
}

func TestIsSetup(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"IN-BTQST-S": true, "IN-VITRINE-S": true, "IN-X-S": true, "IN--S": false, "IN-S": false,
		"IN-BTQZ-AMM": false, "MO-ARTCRITERES-S": false, "in-btqst-s": false, "": false,
	} {
		require.Equal(t, want, IsSetup(code), code)
	}
}
