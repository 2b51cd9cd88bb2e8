package pipelines_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

var importAt = time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)

func TestParseClientsCSV(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		in      string
		want    []pipelines.ClientLine
		wantErr []string // each must appear in the error
	}{
		{
			name: "semicolons, French names, BOM, CRLF",
			in: "\xef\xbb\xbfreference_client;societe;nom;prenom;email;telephone;siret\r\n" +
				"SA-1;Boulangerie; Fils;Lefèvre;Jérôme;Contact@Example.FR;01 02 03 04 05;123 456 789 00012\r\n",
			wantErr: []string{"line 2: 8 fields, the header has 7"},
		},
		{
			name: "semicolons, French names, BOM, CRLF, quoted",
			in: "\xef\xbb\xbfreference_client;societe;nom;prenom;email;telephone;siret\r\n" +
				"SA-1;\"Boulangerie; Fils\";Lefèvre;Jérôme;Contact@Example.FR;01 02 03 04 05;123 456 789 00012\r\n" +
				"\r\n" +
				"SA-2;;;;;;\r\n",
			want: []pipelines.ClientLine{
				{Line: 2, Identity: store.Identity{Keys: map[string]string{"sa_key": "SA-1"}, Source: "import c.csv", At: importAt, Fields: map[string]string{
					"company": "Boulangerie; Fils", "last_name": "Lefèvre", "first_name": "Jérôme", "email": "contact@example.fr",
					"phone": "+33102030405", "siret": "12345678900012"}}},
				{Line: 4, Identity: store.Identity{Keys: map[string]string{"sa_key": "SA-2"}, Source: "import c.csv", At: importAt, Fields: map[string]string{}}},
			},
		},
		{
			name: "commas, guid and updated_at",
			in:   "GUID,sa_key,company,updated_at\ng-1,SA-1,ACME,2026-10-01\ng-2,,\"Dupont, père\",2026-10-02T08:00:00Z\n",
			want: []pipelines.ClientLine{
				{Line: 2, Identity: store.Identity{GUID: "g-1", Keys: map[string]string{"sa_key": "SA-1"}, Source: "import c.csv",
					At: time.Date(2026, 9, 30, 22, 0, 0, 0, time.UTC), Fields: map[string]string{"company": "ACME"}}},
				{Line: 3, Identity: store.Identity{GUID: "g-2", Keys: map[string]string{}, Source: "import c.csv",
					At: time.Date(2026, 10, 2, 8, 0, 0, 0, time.UTC), Fields: map[string]string{"company": "Dupont, père"}}},
			},
		},
		{
			name: "every bad line, by number, without its value",
			in: "guid;email;phone;siret;updated_at\n" +
				"g-1;not-an-email;;;\n" +
				"g-2;;12;;\n" +
				"g-3;;;1234;\n" +
				"g-4;;;;yesterday\n" +
				";a@b.fr;;;\n" +
				"g-7;;;;\n" +
				"g-7;;;;\n" +
				"g-9;;\n",
			wantErr: []string{"line 2: email: invalid email address", "line 3: phone: ", "line 4: siret: not 14 digits",
				"line 5: updated_at: want YYYY-MM-DD or RFC 3339", "line 6: no key", `line 8: guid "g-7" already on line 7`,
				"line 9: 3 fields, the header has 5"},
		},
		{name: "unknown column", in: "guid;shoe_size\ng;42\n", wantErr: []string{`line 1: column 2: unknown column "shoe_size"`}},
		{name: "twice a column", in: "nom;last_name;guid\n", wantErr: []string{"line 1: columns 1 and 2 are both last_name"}},
		{name: "no key column", in: "societe;nom\nACME;Martin\n", wantErr: []string{"line 1: no key column"}},
		{name: "empty", in: "", wantErr: []string{"line 1: empty file"}},
		{name: "Latin-1", in: "guid;nom\ng-1;Lef\xe8vre\n", wantErr: []string{"line 2: not UTF-8"}},
		{name: "bad quote", in: "guid;nom\ng-1;\"Martin\n", wantErr: []string{"line 2: "}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := pipelines.ParseClientsCSV([]byte(tt.in), "import c.csv", importAt)
			if len(tt.wantErr) > 0 {
				require.Error(t, err)
				require.Nil(t, got, "nothing half-parsed")
				for _, w := range tt.wantErr {
					require.Contains(t, err.Error(), w)
				}
				for _, secret := range []string{"not-an-email", "yesterday", "a@b.fr", "Lef"} {
					require.NotContains(t, err.Error(), secret, "errors never repeat a value")
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func FuzzParseClientsCSV(f *testing.F) {
	f.Add([]byte("guid;sa_key;societe;email\ng-1;SA-1;ACME;a@acme.fr\n"))
	f.Add([]byte("sa_key,phone,siret\nSA-1,0102030405,12345678900012\n"))
	f.Add([]byte("\xef\xbb\xbfguid\n\"g\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := pipelines.ParseClientsCSV(data, "fuzz", importAt)
		if err != nil {
			require.Nil(t, lines)
			require.True(t, strings.HasPrefix(err.Error(), "line "), "%q", err)
			return
		}
		prev := 1
		for _, l := range lines {
			require.Greater(t, l.Line, prev, "lines in order, after the header")
			prev = l.Line
			require.True(t, l.Identity.GUID != "" || len(l.Identity.Keys) > 0, "every identity has a key")
		}
	})
}
