package transforms

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/jsonx"
)

func TestCanonicalJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want string // "" means an error
	}{
		{"sorted keys", `{"b":1,"a":2}`, `{"a":2,"b":1}`},
		{"whitespace", " {\n\t\"nom\" : \"Dupont\" ,\r\n \"tel\": \"0102030405\" }\n", `{"nom":"Dupont","tel":"0102030405"}`},
		{"nested objects and arrays", `{"z":[{"y":1,"x":2},[]],"a":{}}`, `{"a":{},"z":[{"x":2,"y":1},[]]}`},
		{"numbers as written", `{"tel":102030405,"p":2.50,"e":1E3,"n":-0,"big":12345678901234567890}`, `{"big":12345678901234567890,"e":1E3,"n":-0,"p":2.50,"tel":102030405}`},
		{"escapes normalised", `{"ville":"Saint-\u00c9tienne","s":"\/"}`, `{"s":"/","ville":"Saint-Étienne"}`},
		{"HTML characters kept", `{"formation":"<Compta & Gestion>"}`, `{"formation":"<Compta & Gestion>"}`},
		{"duplicate key keeps the last", `{"a":1,"a":2}`, `{"a":2}`},
		{"null and booleans", `{"email":null,"ok":true,"ko":false}`, `{"email":null,"ko":false,"ok":true}`},
		{"scalar", `"x"`, `"x"`},
		{"array", `[3,1,2]`, `[3,1,2]`},

		{"empty", ``, ""},
		{"blank", `  `, ""},
		{"truncated", `{"a":`, ""},
		{"trailing value", `{"a":1}{"b":2}`, ""},
		{"trailing garbage", `{"a":1} x`, ""},
		{"trailing bracket", `{"a":1}]`, ""},
		{"single quotes", `{'a':1}`, ""},
		{"NaN", `{"a":NaN}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := CanonicalJSON([]byte(tt.raw))
			if tt.want == "" {
				require.Error(t, err, "CanonicalJSON(%q) = %q", tt.raw, got)
				return
			}
			require.NoError(t, err, "CanonicalJSON(%q)", tt.raw)
			require.Equal(t, tt.want, string(got), "CanonicalJSON(%q)", tt.raw)
		})
	}
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{
		`{"b":1,"a":[1,2.50,"x"]}`, `{"nom":"Dupont","tel":102030405,"extra":{"z":null,"y":true}}`,
		`[]`, `"é\u00e9"`, `1e-7`, `{"a":1,"a":2}`, `{"<":">&"}`, "\"\xff\"", ``, `{`,
		benchLead, `{"b":{"d":1,"c":2,"d":3},"a":[-0.0,1E+2]}`, "\"\u2028\"", `01`, `{"a":1}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := CanonicalJSON(raw)
		// The fast path must be invisible: same bytes, same success.
		ref, refErr := jsonx.CanonicalReference(raw)
		if (err == nil) != (refErr == nil) || !bytes.Equal(got, ref) {
			t.Fatalf("CanonicalJSON(%q) = %q, %v; jsonx.CanonicalReference = %q, %v", raw, got, err, ref, refErr)
		}
		if want := eventIDDefinition("iciformation", raw); EventID("iciformation", raw) != want {
			t.Fatalf("EventID(%q) = %s, want %s", raw, EventID("iciformation", raw), want)
		}
		if err != nil {
			return
		}
		if !json.Valid(got) {
			t.Fatalf("CanonicalJSON(%q) = %q, not valid JSON", raw, got)
		}
		again, err := CanonicalJSON(got)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("CanonicalJSON(%q) = %q, but again %q, %v", raw, got, again, err)
		}
		// Layout must not matter: the indented input canonicalises the same.
		var indented bytes.Buffer
		if json.Indent(&indented, raw, "", "  ") == nil {
			viaIndent, err := CanonicalJSON(indented.Bytes())
			if err != nil || !bytes.Equal(viaIndent, got) {
				t.Fatalf("CanonicalJSON of %q indented = %q, %v; want %q", raw, viaIndent, err, got)
			}
		}
	})
}

var eventIDPattern = regexp.MustCompile(`^iciformation_[a-z2-7]{26}$`)

func TestEventID(t *testing.T) {
	t.Parallel()
	seed := `{"nom":"Dupont","prenom":"Jean","civilite":"M.","tel":"0102030405","email":"jean.dupont@example.fr",` +
		`"ville":"paris","code_postal":"75001","formation":"Comptabilité","horaire_rappel":"après-midi",` +
		`"statut":"prospect","client":"Passerelle SAS","id_client":"42"}`
	reordered := "{\n  \"id_client\": \"42\", \"client\": \"Passerelle SAS\", \"statut\": \"prospect\",\n" +
		"  \"horaire_rappel\": \"après-midi\", \"formation\": \"Comptabilit\\u00e9\", \"code_postal\": \"75001\",\n" +
		"  \"ville\": \"paris\", \"email\": \"jean.dupont@example.fr\", \"tel\": \"0102030405\",\n" +
		"  \"civilite\": \"M.\", \"prenom\": \"Jean\", \"nom\": \"Dupont\"\n}\n"

	tests := []struct {
		name   string
		source string
		raw    string
		want   string
	}{
		// Expected values computed outside Go: any change here changes every
		// stored id, so it must be deliberate.
		{"known value", "iciformation", `{"b":1,"a":[1,2.50,"x"]}`, "iciformation_lb7sc5w47d6ltfwgtpc3hmw77g"},
		{"seed lead", "iciformation", seed, "iciformation_sitmgt2qb4pl2b5mw57lxk72ge"},
		{"same lead, other order and layout", "iciformation", reordered, "iciformation_sitmgt2qb4pl2b5mw57lxk72ge"},
		{"not JSON is hashed as is", "iciformation", "not json", "iciformation_5wn4ahu346d36ek7tunytnjpdw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := EventID(tt.source, []byte(tt.raw))
			require.Equal(t, tt.want, got)
			require.Regexp(t, eventIDPattern, got)
		})
	}

	t.Run("differs by source and content", func(t *testing.T) {
		t.Parallel()
		base := EventID("iciformation", []byte(seed))
		require.NotEqual(t, base[len("iciformation_"):], EventID("simplebo", []byte(seed))[len("simplebo_"):])
		require.NotEqual(t, base, EventID("iciformation", []byte(`{"nom":"Dupont"}`)))
		require.NotEqual(t, base, EventID("iciformation", []byte(`{"b":1,"a":[1,2.5,"x"]}`)), "numbers are kept as written")
	})
}

// eventIDDefinition is EventID as first written, through encoding/json
// alone: ids must never change.
func eventIDDefinition(source string, raw []byte) string {
	body, err := jsonx.CanonicalReference(raw)
	if err != nil {
		body = raw
	}
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(body)
	return source + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(h.Sum(nil))[:26])
}

func TestEventIDMatchesDefinition(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		benchLead, `{"b":1,"a":[1,2.50,"x"]}`, `{"a":1,"a":2}`, `[]`, `null`, `"x"`, `-0`,
		`{"ville":"Saint-\u00c9tienne"}`, "\"\xff\"", "\"a\u2028\"", "not json", ``, `{"a":1} x`,
		strings.Repeat("[", 100) + strings.Repeat("]", 100), // past the fast path's depth
		`{"big":"` + strings.Repeat("x", 5000) + `"}`,       // past EventID's stack buffer
	} {
		for _, source := range []string{"iciformation", "", strings.Repeat("s", 2000)} {
			require.Equal(t, eventIDDefinition(source, []byte(raw)), EventID(source, []byte(raw)), "EventID(%q, %q)", source, raw)
		}
	}
}

func TestLeadDedupeDigest(t *testing.T) {
	t.Parallel()
	base := Lead{Email: "jean.dupont@example.fr", Phone: "+33612345678", Course: "Comptabilité", ClientID: "42"}
	want := "a4ecae51a4cb61007962f61661b5400a162ba39dda4a256885e605f6399211e6" // computed outside Go
	require.Equal(t, want, LeadDedupeDigest(base))

	same := []struct {
		name string
		edit func(*Lead)
	}{
		{"other phone when there is an email", func(l *Lead) { l.Phone = "+33712345678" }},
		{"course case and spaces", func(l *Lead) { l.Course = "  COMPTABILITÉ " }},
		{"client id spaces", func(l *Lead) { l.ClientID = " 42 " }},
		{"other fields", func(l *Lead) { l.LastName, l.EventID, l.City = "Durand", "x", "lyon" }},
	}
	for _, tt := range same {
		l := base
		tt.edit(&l)
		require.Equal(t, want, LeadDedupeDigest(l), tt.name)
	}

	differ := []struct {
		name string
		edit func(*Lead)
	}{
		{"other email", func(l *Lead) { l.Email = "marie@example.fr" }},
		{"no email: keyed on phone", func(l *Lead) { l.Email = "" }},
		{"other course", func(l *Lead) { l.Course = "Paie" }},
		{"other client", func(l *Lead) { l.ClientID = "43" }},
		{"parts cannot shift", func(l *Lead) { l.Course, l.ClientID = "comptabilité\x0042", "" }},
	}
	for _, tt := range differ {
		l := base
		tt.edit(&l)
		require.NotEqual(t, want, LeadDedupeDigest(l), tt.name)
	}

	byPhone := Lead{Phone: "+33612345678", Course: "Paie", ClientID: "42"}
	require.Equal(t, LeadDedupeDigest(byPhone), LeadDedupeDigest(Lead{Phone: "+33612345678", Course: " paie", ClientID: "42"}))
	require.Regexp(t, `^[0-9a-f]{64}$`, LeadDedupeDigest(byPhone))
	require.NotContains(t, LeadDedupeDigest(base), "jean")
}

func TestLeadDedupeKey(t *testing.T) {
	t.Parallel()
	l := Lead{Email: "élodie.durand@example.fr", Course: "Comptabilité", ClientID: "42"}
	k1, k2 := []byte("key one"), []byte("key two")
	got := LeadDedupeKey(l, k1)
	require.Regexp(t, `^[0-9a-f]{64}$`, got)
	require.Equal(t, got, LeadDedupeKey(Lead{Email: l.Email, Course: " COMPTABILITÉ", ClientID: "42 ", City: "lyon"}, k1), "same lead, same key")
	require.NotEqual(t, got, LeadDedupeKey(l, k2), "another secret, another key")
	require.NotEqual(t, LeadDedupeDigest(l), got, "never the unkeyed digest")
	// A digest stored before keys were keyed is rewritten to the key the lead now gets.
	require.Equal(t, got, KeyedDedupeKey(k1, LeadDedupeDigest(l)))
	mac := hmac.New(sha256.New, k1)
	mac.Write([]byte(LeadDedupeDigest(l)))
	require.Equal(t, hex.EncodeToString(mac.Sum(nil)), got, "HMAC-SHA256 of the digest's hex")
}

// benchLead is a realistic webhook payload, the size the ingest path sees.
const benchLead = `{"nom":"Doe","prenom":"John","civilite":"M.","tel":"0102030405","email":"john.doe@example.com",` +
	`"ville":"paris","code_postal":"75001","statut":"prospect","horaire_rappel":"après-midi",` +
	`"formation":"Développement Web","client":"XYZ Formations","id_client":"1234"}`

func BenchmarkCanonicalJSON(b *testing.B) {
	for _, bb := range []struct {
		name string
		fn   func([]byte) ([]byte, error)
	}{
		{"fast", CanonicalJSON},
		{"reference", jsonx.CanonicalReference},
	} {
		b.Run(bb.name, func(b *testing.B) {
			raw := []byte(benchLead)
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bb.fn(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEventID(b *testing.B) {
	raw := []byte(benchLead)
	b.ReportAllocs()
	for b.Loop() {
		EventID("iciformation", raw)
	}
}

// The digest is the sha256 of json.Marshal([3]string{contact, course, client id}): keys committed
// before must still match.
func TestLeadDedupeDigestDefinition(t *testing.T) {
	t.Parallel()
	for _, l := range []Lead{
		{Email: "a@b.fr", Course: "Web <avancé> & co", ClientID: `"42"\`},
		{Phone: "+33612345678", Course: "\u2028x\x01\xff", ClientID: strings.Repeat("é", 200)},
		{},
	} {
		contact := "email:" + l.Email
		if l.Email == "" {
			contact = "phone:" + l.Phone
		}
		b, err := json.Marshal([3]string{contact, strings.ToLower(strings.Join(strings.Fields(l.Course), " ")), strings.TrimSpace(l.ClientID)})
		require.NoError(t, err)
		sum := sha256.Sum256(b)
		require.Equal(t, hex.EncodeToString(sum[:]), LeadDedupeDigest(l))
	}
}
