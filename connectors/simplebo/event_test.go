package simplebo_test

import (
	"bytes"
	"mime/multipart"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/connectors/simplebo/simplebosim"
	"github.com/passerelle/passerelle/transforms"
)

const formCT = "application/x-www-form-urlencoded"

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func multipartBody(t *testing.T, fields [][2]string) ([]byte, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		require.NoError(t, mw.WriteField(f[0], f[1]))
	}
	fw, err := mw.CreateFormFile("attachment", "x.txt")
	require.NoError(t, err)
	_, _ = fw.Write([]byte("ignored"))
	require.NoError(t, mw.Close())
	return buf.Bytes(), mw.FormDataContentType()
}

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	want := simplebo.Event{
		TypeRaw: "3", Type: simplebo.BillingStarted,
		LeadCreationDate: date("2026-01-05"), ServiceStartingDate: date("2026-01-19"),
		BillingStartingDate: date("2026-02-19"), NbOfPaidMonths: 12, NbOfOfferedMonths: 1, NbOfOptions: 2,
		Client: simplebo.Snapshot{ClientID: "54d8b0fad5922248bf2f", Lastname: "Lhermitte", Firstname: "Thierry",
			CompanyName: "DécOrato", SIRET: "182918291", Email: "t@example.com", PhoneNumber1: "0182103621",
			Zipcode: "28000", City: "Chartres", Country: "France"},
	}
	form := "event_type=3&lead_creation_date=2026-01-05&service_starting_date=2026-01-19&billing_starting_date=2026-02-19" +
		"&end_of_contract_date=&unsubscription_reason=&nb_of_paid_months=12&nb_of_offered_months=1&nb_of_options=2" +
		"&client_id=54d8b0fad5922248bf2f&lastname=Lhermitte&firstname=Thierry&company_name=D%C3%A9cOrato&siret=182918291" +
		"&email=t%40example.com&phone_number1=0182103621&zipcode=28000&city=Chartres&country=France&unknown_field=x"
	mp, mpCT := multipartBody(t, [][2]string{
		{"client_id", "54d8b0fad5922248bf2f"}, {"event_type", "3"}, {"lead_creation_date", "2026-01-05"},
		{"service_starting_date", "2026-01-19"}, {"billing_starting_date", "2026-02-19"}, {"end_of_contract_date", "nil"},
		{"nb_of_paid_months", "12"}, {"nb_of_offered_months", "1"}, {"nb_of_options", "2"}, {"lastname", "Lhermitte"},
		{"firstname", "Thierry"}, {"company_name", "DécOrato"}, {"siret", "182918291"}, {"email", "t@example.com"},
		{"phone_number1", "0182103621"}, {"zipcode", "28000"}, {"city", "Chartres"}, {"country", "France"},
	})
	js := `{"event_type": 3, "lead_creation_date": "2026-01-05", "service_starting_date": "2026-01-19",
		"billing_starting_date": "2026-02-19", "end_of_contract_date": null, "nb_of_paid_months": 12,
		"nb_of_offered_months": "1", "nb_of_options": 2, "client_id": "54d8b0fad5922248bf2f", "lastname": "Lhermitte",
		"firstname": "Thierry", "company_name": "D\u00e9cOrato", "siret": "182918291", "email": " t@example.com ",
		"phone_number1": "0182103621", "zipcode": "28000", "city": "Chartres", "country": "France"}`

	tests := []struct {
		name string
		ct   string
		body []byte
	}{
		{"form", formCT, []byte(form)},
		{"form with charset", formCT + "; charset=UTF-8", []byte(form)},
		{"no content type is a form", "", []byte(form)},
		{"multipart", mpCT, mp},
		{"json", "application/json", []byte(js)},
	}
	for _, tc := range tests {
		got, err := simplebo.DecodeEvent(tc.ct, tc.body)
		require.NoError(t, err, tc.name)
		require.Equal(t, want, got, tc.name)
	}
}

func TestDecodeEventErrorsNameTheFieldOnly(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, ct, body, want string
	}{
		{"no event_type", formCT, "client_id=a", "missing event_type"},
		{"event_type not a number", formCT, "event_type=activated", "event_type is not an integer"},
		{"bad date", formCT, "event_type=1&service_starting_date=19/01/2026", "service_starting_date is not a date"},
		{"impossible date", formCT, "event_type=1&end_of_contract_date=2026-02-30", "end_of_contract_date is not a date"},
		{"negative count", formCT, "event_type=1&nb_of_paid_months=-3", "nb_of_paid_months is not a non-negative integer"},
		{"decimal count", formCT, "event_type=1&nb_of_options=1.5", "nb_of_options is not a non-negative integer"},
		{"bad form", formCT, "event_type=1&email=%zz", "malformed form body"},
		{"json array", "application/json", `[1]`, "malformed JSON body"},
		{"json null", "application/json", `null`, "malformed JSON body"},
		{"json object value", "application/json", `{"event_type": {"a": 1}}`, `field "event_type"`},
		{"multipart without boundary", "multipart/form-data", "x", "without a boundary"},
		{"multipart cut", "multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb", "malformed multipart"},
		{"other type", "text/plain", "event_type=1", "content type must be"},
	}
	for _, tc := range tests {
		_, err := simplebo.DecodeEvent(tc.ct, []byte(tc.body))
		require.ErrorIs(t, err, simplebo.ErrInvalidEvent, tc.name)
		require.Contains(t, err.Error(), tc.want, tc.name)
		require.NotContains(t, err.Error(), "19/01", tc.name)
	}
	_, err := simplebo.DecodeEvent("text/plain", nil)
	require.ErrorIs(t, err, simplebo.ErrUnsupportedContentType)
}

func TestUnknownEventCodeIsKept(t *testing.T) {
	t.Parallel()
	ev, err := simplebo.DecodeEvent(formCT, []byte("event_type=07&client_id=a"))
	require.NoError(t, err)
	require.Equal(t, "07", ev.TypeRaw)
	require.Equal(t, simplebo.EventCode(7), ev.Type)
	require.False(t, ev.Type.Known())
	require.Equal(t, "unknown(7)", ev.Type.String())
}

// The same event sent twice, in any encoding, field order, spacing or with empty fields left
// out, gets one event id; any change of a field gets another.
func TestCanonicalGivesOneIDPerEvent(t *testing.T) {
	t.Parallel()
	ev := simplebosim.EventsFor("g-42", date("2026-01-05"))[2]
	id := transforms.EventID("simplebo", ev.Canonical())

	bodies := map[string][]byte{
		formCT:             []byte(ev.Values().Encode()),
		"reordered":        []byte("nb_of_options=0&country=FR&event_type=3&" + ev.Values().Encode()),
		"sparse":           []byte("event_type=03&client_id=g-42&lead_creation_date=2026-01-05&service_starting_date=2026-01-19&billing_starting_date=2026-02-19&nb_of_paid_months=12&nb_of_offered_months=1&lastname=Martin&firstname=Claire&client_title=Mme&company_name=Boulangerie+g-42&siret=73282932000074&email=contact%2Bg-42%40example.com&phone_number1=0612345678&address1=12+rue+des+Lilas&zipcode=69003&city=Lyon&country=FR"),
		"spaces around":    []byte("event_type=+3+&" + ev.Values().Encode()),
		"end date as null": []byte("end_of_contract_date=null&" + ev.Values().Encode()),
	}
	for name, body := range bodies {
		got, err := simplebo.DecodeEvent(formCT, body)
		require.NoError(t, err, name)
		require.Equal(t, id, transforms.EventID("simplebo", got.Canonical()), name)
	}
	for _, enc := range []simplebosim.Encoding{simplebosim.Multipart, simplebosim.JSON} {
		body, ct, err := simplebosim.Encode(ev, enc)
		require.NoError(t, err)
		got, err := simplebo.DecodeEvent(ct, body)
		require.NoError(t, err)
		require.Equal(t, id, transforms.EventID("simplebo", got.Canonical()), "encoding %d", enc)
	}

	changed := []func(*simplebo.Event){
		func(e *simplebo.Event) { e.Type = simplebo.ContractEnded },
		func(e *simplebo.Event) { e.EndOfContractDate = date("2027-01-01") },
		func(e *simplebo.Event) { e.NbOfOptions = 1 },
		func(e *simplebo.Event) { e.Client.City = "Paris" },
		func(e *simplebo.Event) { e.Client.PhoneNumber2 = "0600000000" },
	}
	for i, change := range changed {
		e := ev
		change(&e)
		require.NotEqual(t, id, transforms.EventID("simplebo", e.Canonical()), "change %d", i)
	}
}

func FuzzDecodeEvent(f *testing.F) {
	for _, ev := range simplebosim.EventsFor("g-1", date("2026-01-05"), 0, 1, 3, 2, 4, 9) {
		for _, enc := range []simplebosim.Encoding{simplebosim.Form, simplebosim.Multipart, simplebosim.JSON} {
			body, ct, err := simplebosim.Encode(ev, enc)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(ct, body)
		}
	}
	f.Add("application/json", []byte(`{"event_type": 1e3, "nb_of_options": null}`))
	f.Add(formCT, []byte("event_type=1&lead_creation_date=0000-00-00"))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		ev, err := simplebo.DecodeEvent(ct, body)
		if err != nil {
			return
		}
		// What decodes survives the trip through Simplébo's form unchanged, but for the raw code.
		again, err := simplebo.DecodeEvent(formCT, []byte(ev.Values().Encode()))
		if err != nil {
			t.Fatalf("re-decoding %q: %v", ev.Values().Encode(), err)
		}
		if !bytes.Equal(ev.Canonical(), again.Canonical()) {
			t.Fatalf("canonical changed:\n%s\n%s", ev.Canonical(), again.Canonical())
		}
	})
}
