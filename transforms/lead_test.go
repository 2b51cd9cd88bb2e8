package transforms

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestNormalizeTitle(t *testing.T) {
	t.Parallel()
	tests := []struct{ raw, want string }{
		{"M.", TitleM}, {"M", TitleM}, {"m.", TitleM}, {"Mr", TitleM}, {"MR.", TitleM},
		{"Monsieur", TitleM}, {" MONSIEUR ", TitleM},
		{"Mme", TitleMme}, {"Mme.", TitleMme}, {"MME", TitleMme}, {"Madame", TitleMme},
		{"Mlle", TitleMme}, {"Mademoiselle", TitleMme}, {"mlle.", TitleMme},
		{"", ""}, {"Dr", ""}, {"Me", ""}, {"M. et Mme", ""}, {"Mx", ""}, {"1", ""},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, NormalizeTitle(tt.raw), "NormalizeTitle(%q)", tt.raw)
	}
}

func TestNormalizeLead(t *testing.T) {
	t.Parallel()
	receivedAt := time.Date(2026, 10, 14, 9, 30, 0, 0, time.UTC)
	seedRaw := json.RawMessage(`{"nom":"Dupont","prenom":"Jean","civilite":"M.","tel":"0102030405",` +
		`"email":"jean.dupont@example.fr","ville":"paris","code_postal":"75001","formation":"Comptabilité",` +
		`"horaire_rappel":"après-midi","statut":"prospect","client":"Passerelle SAS","id_client":"42"}`)
	seed := LeadInput{
		Source: "iciformation", LastName: "Dupont", FirstName: "Jean", Title: "M.",
		Phone: "0102030405", Email: "jean.dupont@example.fr", City: "paris", PostalCode: "75001",
		Course: "Comptabilité", CallbackTime: "après-midi", Status: "prospect",
		Company: "Passerelle SAS", ClientID: "42", Raw: seedRaw,
	}
	seedLead := Lead{
		EventID: "iciformation_sitmgt2qb4pl2b5mw57lxk72ge", Source: "iciformation",
		LastName: "Dupont", FirstName: "Jean", Title: TitleM,
		Email: "jean.dupont@example.fr", Phone: "+33102030405", PhoneRaw: "0102030405",
		City: "paris", PostalCode: "75001", Course: "Comptabilité", CallbackTime: "après-midi",
		Status: "prospect", Company: "Passerelle SAS", ClientID: "42",
		ReceivedAt: receivedAt, Raw: seedRaw,
	}

	tests := []struct {
		name string
		edit func(*LeadInput)
		want func(*Lead)
	}{
		{"seed", func(*LeadInput) {}, func(*Lead) {}},
		{
			"messy names and city",
			func(in *LeadInput) {
				in.LastName, in.FirstName, in.City = "  de la   Fontaine ", "Jean-\tPierre", "  SAINT-ÉTIENNE  "
			},
			func(l *Lead) { l.LastName, l.FirstName, l.City = "de la Fontaine", "Jean- Pierre", "saint-étienne" },
		},
		{
			"civilité variants",
			func(in *LeadInput) { in.Title = "madame" },
			func(l *Lead) { l.Title = TitleMme },
		},
		{
			"unknown civilité",
			func(in *LeadInput) { in.Title = "Dr" },
			func(l *Lead) { l.Title = "" },
		},
		{
			"phone as JSON number lost its zero",
			func(in *LeadInput) { in.Phone = "612345678" },
			func(l *Lead) { l.Phone, l.PhoneRaw = "+33612345678", "612345678" },
		},
		{
			"overseas phone",
			func(in *LeadInput) { in.Phone = "06 92 12 34 56" },
			func(l *Lead) { l.Phone, l.PhoneRaw = "+262692123456", "06 92 12 34 56" },
		},
		{
			"email upper case",
			func(in *LeadInput) { in.Email = " Jean.Dupont@Example.FR " },
			func(l *Lead) { l.Email = "jean.dupont@example.fr" },
		},
		{
			"invalid email dropped",
			func(in *LeadInput) { in.Email = "jean.dupont@" },
			func(l *Lead) { l.Email = "" },
		},
		{
			"invalid phone dropped, raw kept",
			func(in *LeadInput) { in.Phone = "01 02 03" },
			func(l *Lead) { l.Phone, l.PhoneRaw = "", "01 02 03" },
		},
		{
			"missing phone",
			func(in *LeadInput) { in.Phone = "" },
			func(l *Lead) { l.Phone, l.PhoneRaw = "", "" },
		},
		{
			"postal code lost its zero",
			func(in *LeadInput) { in.PostalCode = "1000" },
			func(l *Lead) { l.PostalCode = "01000" },
		},
		{
			"invalid postal code kept raw",
			func(in *LeadInput) { in.PostalCode = "750" },
			func(l *Lead) { l.PostalCode, l.PostalCodeRaw = "", "750" },
		},
		{
			"trimmed free text",
			func(in *LeadInput) { in.Course, in.CallbackTime, in.ClientID = " Comptabilité ", " 14H-16H ", " 42 " },
			func(l *Lead) { l.CallbackTime = "14H-16H" },
		},
		{
			"event id given",
			func(in *LeadInput) { in.EventID = "iciformation_given" },
			func(l *Lead) { l.EventID = "iciformation_given" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := seed
			tt.edit(&in)
			want := seedLead
			tt.want(&want)
			got, err := NormalizeLead(in, receivedAt)
			require.NoError(t, err)
			require.Equal(t, want, got)
			require.NoError(t, CheckLead(in), "CheckLead accepts what NormalizeLead accepts")
		})
	}
}

func TestNormalizeLeadNoContact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		phone, email string
	}{
		{"both missing", "", ""},
		{"both invalid", "01 02", "jean@"},
		{"placeholder values", "0000000000", "non renseigné"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := LeadInput{Source: "iciformation", LastName: "Dupont", Phone: tt.phone, Email: tt.email}
			got, err := NormalizeLead(in, time.Time{})
			require.ErrorIs(t, err, ErrNoContact)
			require.Equal(t, err, CheckLead(in), "CheckLead refuses what NormalizeLead refuses, for the same reasons")
			require.ErrorIs(t, err, ErrInvalidPhone)
			require.ErrorIs(t, err, ErrInvalidEmail)
			require.Equal(t, Lead{}, got)
			if tt.phone != "" {
				require.NotContains(t, err.Error(), tt.phone, "the error must not leak the number")
			}
		})
	}
}

func TestNormalizeLeadDoesNotAliasRaw(t *testing.T) {
	t.Parallel()
	raw := []byte(`{"email":"a@b.fr"}`)
	got, err := NormalizeLead(LeadInput{Source: "iciformation", Email: "a@b.fr", Raw: raw}, time.Time{})
	require.NoError(t, err)
	raw[2] = 'X'
	require.JSONEq(t, `{"email":"a@b.fr"}`, string(got.Raw))
}

func TestLeadJSON(t *testing.T) {
	t.Parallel()
	l := Lead{
		EventID: "iciformation_x", Source: "iciformation", LastName: "Dupont", Email: "jean@example.fr",
		PostalCodeRaw: "750", ReceivedAt: time.Date(2026, 10, 14, 9, 30, 0, 0, time.UTC),
		Raw: json.RawMessage(`{"nom":"Dupont"}`),
	}
	got, err := json.Marshal(l)
	require.NoError(t, err)
	require.JSONEq(t, `{"event_id":"iciformation_x","source":"iciformation","last_name":"Dupont",`+
		`"email":"jean@example.fr","postal_code_raw":"750","received_at":"2026-10-14T09:30:00Z",`+
		`"raw":{"nom":"Dupont"}}`, string(got))
}

// AppendJSON writes what json.Marshal writes, for every field filled or empty.
func TestLeadAppendJSON(t *testing.T) {
	t.Parallel()
	full := Lead{
		EventID: "iciformation_x", Source: "iciformation", LastName: "Dupont \"Jr\"", FirstName: "Zoé\u2028",
		Title: TitleMme, Email: "zoe@example.fr", Phone: "+33612345678", PhoneRaw: "06 12 34 56 78",
		City: "saint-denis", PostalCode: "97400", PostalCodeRaw: "974", Course: "Web <avancé> & co",
		CallbackTime: "14h\t16h", Status: "prospect", Company: "XYZ", ClientID: "1234",
		ReceivedAt: time.Date(2026, 10, 14, 9, 30, 0, 123456789, time.FixedZone("", 4*3600)),
		Raw:        json.RawMessage(`{"nom":"Dupont","n":[1,2.5e3,null]}`),
	}
	for name, l := range map[string]Lead{
		"full":  full,
		"empty": {},
		"bad utf-8 and controls": {EventID: "a\xffb", Source: "s\x01", Email: "x@y.fr",
			ReceivedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
	} {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(l)
			require.NoError(t, err)
			// json.Marshal escapes <, > and & where AppendJSON does not: compare the documents.
			got := l.AppendJSON([]byte("prefix"))
			require.Equal(t, "prefix", string(got[:6]))
			require.JSONEq(t, string(want), string(got[6:]))
			var back Lead
			require.NoError(t, json.Unmarshal(got[6:], &back))
			require.True(t, back.ReceivedAt.Equal(l.ReceivedAt))
		})
	}
}
