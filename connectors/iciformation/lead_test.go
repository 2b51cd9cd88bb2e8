package iciformation_test

import (
	"encoding/json"
	"log/slog"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
)

func TestDecodeLead(t *testing.T) {
	t.Parallel()
	seed := iciformation.Lead{
		Nom: "Doe", Prenom: "John", Civilite: "M.", Tel: "0102030405", Email: "john.doe@example.com",
		Ville: "paris", CodePostal: "75001", Formation: "Développement Web", HoraireRappel: "après-midi",
		Statut: "prospect", Client: "XYZ Formations", IDClient: "1234",
	}
	tests := []struct {
		name    string
		body    string
		want    iciformation.Lead // Raw not compared here
		wantErr error
	}{
		{name: "seed example", body: string(iciformationsim.SeedExample()), want: seed},
		{name: "empty object", body: `{}`},
		{name: "surrounding whitespace", body: " \r\n\t{\"nom\":\"Doe\"}\n", want: iciformation.Lead{Nom: "Doe"}},
		{name: "nulls", body: `{"nom":null,"tel":null,"email":null}`},
		{name: "phone as integer", body: `{"tel":102030405}`, want: iciformation.Lead{Tel: "102030405"}},
		{name: "phone as float", body: `{"tel":1.02e9}`, want: iciformation.Lead{Tel: "1.02e9"}},
		{name: "phone beyond float precision", body: `{"tel":33612345678901234567}`, want: iciformation.Lead{Tel: "33612345678901234567"}},
		{name: "postal code as number", body: `{"code_postal":75001,"id_client":1234}`, want: iciformation.Lead{CodePostal: "75001", IDClient: "1234"}},
		{name: "booleans", body: `{"statut":true,"client":false}`, want: iciformation.Lead{Statut: "true", Client: "false"}},
		{name: "object and array read as empty", body: `{"nom":{"a":1},"tel":["0612345678"],"email":"a@b.fr"}`, want: iciformation.Lead{Email: "a@b.fr"}},
		{name: "unknown fields ignored", body: `{"email":"a@b.fr","date_creation":"2024-11-28T10:00:00+01:00","utm":{"s":"x"}}`, want: iciformation.Lead{Email: "a@b.fr"}},
		{name: "escapes and unicode", body: `{"nom":"L\u00e9a \"Lou\"","ville":"saint-\u00e9tienne"}`, want: iciformation.Lead{Nom: `Léa "Lou"`, Ville: "saint-étienne"}},
		{name: "field names match like encoding/json", body: `{"Email":"a@b.fr"}`, want: iciformation.Lead{Email: "a@b.fr"}},
		{name: "duplicate key last wins", body: `{"email":"a@b.fr","email":"c@d.fr"}`, want: iciformation.Lead{Email: "c@d.fr"}},

		{name: "empty body", body: ``, wantErr: iciformation.ErrMalformed},
		{name: "whitespace only", body: " \n", wantErr: iciformation.ErrMalformed},
		{name: "truncated", body: `{"nom":"Doe"`, wantErr: iciformation.ErrMalformed},
		{name: "trailing garbage", body: `{"nom":"Doe"} x`, wantErr: iciformation.ErrMalformed},
		{name: "two objects", body: `{}{}`, wantErr: iciformation.ErrMalformed},
		{name: "form encoded", body: `nom=Doe&prenom=John`, wantErr: iciformation.ErrMalformed},
		{name: "single quotes", body: `{'nom':'Doe'}`, wantErr: iciformation.ErrMalformed},
		{name: "array", body: `[{"nom":"Doe"}]`, wantErr: iciformation.ErrNotObject},
		{name: "string", body: `"Doe"`, wantErr: iciformation.ErrNotObject},
		{name: "number", body: `42`, wantErr: iciformation.ErrNotObject},
		{name: "null", body: `null`, wantErr: iciformation.ErrNotObject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := iciformation.DecodeLead([]byte(tt.body))
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				require.Equal(t, iciformation.Lead{}, got)
				return
			}
			require.NoError(t, err)
			require.JSONEq(t, tt.body, string(got.Raw), "Raw is the object as received")
			got.Raw = nil
			require.Equal(t, tt.want, got)
		})
	}
}

func TestDecodeLeadRawIsExactAndOwned(t *testing.T) {
	t.Parallel()
	body := []byte("  {\"email\" : \"a@b.fr\",  \"extra\":[1, 2.50, {\"k\":null}]}\n")
	l, err := iciformation.DecodeLead(body)
	require.NoError(t, err)
	require.Equal(t, strings.TrimSpace(string(body)), string(l.Raw), "bytes kept as sent, spacing included")

	for i := range body {
		body[i] = 'x' // the handler's buffer may be reused
	}
	require.True(t, json.Valid(l.Raw))
}

func TestLeadLogValueRedacts(t *testing.T) {
	t.Parallel()
	l, err := iciformation.DecodeLead(iciformationsim.SeedExample())
	require.NoError(t, err)
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("lead", "lead", l)
	for _, secret := range []string{"john.doe@example.com", "0102030405", "Doe", "John"} {
		require.NotContains(t, b.String(), secret)
	}
	require.Contains(t, b.String(), "Développement Web")
}

func FuzzDecodeLead(f *testing.F) {
	for _, s := range []string{
		string(iciformationsim.SeedExample()),
		`{}`, `[]`, `null`, `{"tel":102030405}`, `{"tel":1.02e9,"nom":null}`,
		`{"nom":{"a":[1,2]},"email":true}`, `{"nom":"\u00e9\ud800"}`, "{\"nom\":\"\xff\"}", `{"a":`,
		`{"EMAIL":"a@b.fr","email":"c@d.fr"}`, `{"ſtatut":"x","nom":"a","nom":"b"}`, `{"n\u006fm":"x"}`,
		` {"tel" : -0.5e+3 , "x":[{"y":[]}] } `, `{"a":1}x`, `{"a":01}`, `{"a":"\q"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		l, err := iciformation.DecodeLead(body)
		ref, refErr := iciformation.DecodeLeadReference(body)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("DecodeLead error %v, encoding/json's %v", err, refErr)
		}
		if !reflect.DeepEqual(l, ref) {
			t.Fatalf("DecodeLead = %#v, encoding/json gives %#v", l, ref)
		}
		if err != nil {
			if l.Raw != nil {
				t.Fatalf("Raw set on error: %q", l.Raw)
			}
			return
		}
		if !json.Valid(l.Raw) {
			t.Fatalf("Raw is not valid JSON: %q", l.Raw)
		}
		if l.Raw[0] != '{' {
			t.Fatalf("Raw is not an object: %q", l.Raw)
		}
	})
}
