package simplebo

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"time"

	"github.com/passerelle/passerelle/internal/redact"
)

// ErrInvalidEvent marks a webhook event no retry can fix: DecodeEvent's errors wrap it, and an
// EventAcceptor returns an error wrapping it to have the handler answer 400 rather than 503.
var ErrInvalidEvent = errors.New("invalid event")

// EventCode is a webhook's event_type. The document lists five events but documents only three
// codes; these are our default reading of them (the pipeline may map codes otherwise). Any
// other code is kept as sent.
type EventCode int

// The default event codes.
const (
	LeadCreated      EventCode = 0
	ServiceActivated EventCode = 1
	ContractEnded    EventCode = 2
	BillingStarted   EventCode = 3
	SwitchedToFree   EventCode = 4
)

func (c EventCode) String() string {
	switch c {
	case LeadCreated:
		return "lead_created"
	case ServiceActivated:
		return "service_activated"
	case ContractEnded:
		return "contract_ended"
	case BillingStarted:
		return "billing_started"
	case SwitchedToFree:
		return "switched_to_free"
	}
	return "unknown(" + strconv.Itoa(int(c)) + ")"
}

// Known reports whether c is one of the five default codes.
func (c EventCode) Known() bool { return c >= LeadCreated && c <= SwitchedToFree }

// DateLayout is the webhook's date format.
const DateLayout = "2006-01-02"

// Event is one client-state webhook. Dates are UTC midnights, zero when sent empty.
type Event struct {
	// TypeRaw is event_type as sent (trimmed); Type is its value.
	TypeRaw string
	Type    EventCode

	LeadCreationDate     time.Time
	ServiceStartingDate  time.Time
	BillingStartingDate  time.Time
	EndOfContractDate    time.Time
	UnsubscriptionReason string
	NbOfPaidMonths       int
	NbOfOfferedMonths    int
	NbOfOptions          int

	Client Snapshot
}

// Snapshot is the client as Simplébo knows it when it sends the event.
type Snapshot struct {
	ClientID     string `json:"client_id"`
	Lastname     string `json:"lastname"`
	Firstname    string `json:"firstname"`
	ClientTitle  string `json:"client_title"`
	CompanyName  string `json:"company_name"`
	SIRET        string `json:"siret"`
	Email        string `json:"email"`
	PhoneNumber1 string `json:"phone_number1"`
	PhoneNumber2 string `json:"phone_number2"`
	Address1     string `json:"address1"`
	Address2     string `json:"address2"`
	Zipcode      string `json:"zipcode"`
	City         string `json:"city"`
	Country      string `json:"country"`
}

// DecodeEvent reads one webhook body: a form (what Simplébo sends), a multipart form or a JSON
// object, with the fields of CONTRACTS.md. event_type is required and must be an integer (an
// unknown one is kept); dates are YYYY-MM-DD or empty; counts are non-negative integers or
// empty. Errors wrap ErrInvalidEvent and name the field, never a value.
func DecodeEvent(contentType string, body []byte) (Event, error) {
	f, err := ParseFields(contentType, body)
	if err != nil {
		return Event{}, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return eventFromFields(f)
}

func eventFromFields(f map[string]string) (Event, error) {
	ev := Event{
		TypeRaw:              f["event_type"],
		UnsubscriptionReason: f["unsubscription_reason"],
		Client: Snapshot{
			ClientID:     f["client_id"],
			Lastname:     f["lastname"],
			Firstname:    f["firstname"],
			ClientTitle:  f["client_title"],
			CompanyName:  f["company_name"],
			SIRET:        f["siret"],
			Email:        f["email"],
			PhoneNumber1: f["phone_number1"],
			PhoneNumber2: f["phone_number2"],
			Address1:     f["address1"],
			Address2:     f["address2"],
			Zipcode:      f["zipcode"],
			City:         f["city"],
			Country:      f["country"],
		},
	}
	if ev.TypeRaw == "" {
		return Event{}, fmt.Errorf("%w: missing event_type", ErrInvalidEvent)
	}
	code, err := strconv.ParseInt(ev.TypeRaw, 10, 32)
	if err != nil {
		return Event{}, fmt.Errorf("%w: event_type is not an integer", ErrInvalidEvent)
	}
	ev.Type = EventCode(code)
	for _, d := range []struct {
		name string
		dst  *time.Time
	}{
		{"lead_creation_date", &ev.LeadCreationDate},
		{"service_starting_date", &ev.ServiceStartingDate},
		{"billing_starting_date", &ev.BillingStartingDate},
		{"end_of_contract_date", &ev.EndOfContractDate},
	} {
		if *d.dst, err = parseDate(f[d.name]); err != nil {
			return Event{}, fmt.Errorf("%w: %s is not a date (want YYYY-MM-DD)", ErrInvalidEvent, d.name)
		}
	}
	for _, n := range []struct {
		name string
		dst  *int
	}{
		{"nb_of_paid_months", &ev.NbOfPaidMonths},
		{"nb_of_offered_months", &ev.NbOfOfferedMonths},
		{"nb_of_options", &ev.NbOfOptions},
	} {
		if *n.dst, err = parseCount(f[n.name]); err != nil {
			return Event{}, fmt.Errorf("%w: %s is not a non-negative integer", ErrInvalidEvent, n.name)
		}
	}
	return ev, nil
}

func parseDate(s string) (time.Time, error) {
	// The partner's document shows an unset date as nil; MySQL-backed senders write zeros.
	switch s {
	case "", "nil", "null", "0000-00-00":
		return time.Time{}, nil
	}
	return time.Parse(DateLayout, s)
}

func parseCount(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 31)
	return int(n), err
}

func formatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(DateLayout)
}

// fields is the event as the flat fields of the wire, every one present.
func (e Event) fields() map[string]string {
	c := e.Client
	return map[string]string{
		"event_type":            strconv.Itoa(int(e.Type)),
		"lead_creation_date":    formatDate(e.LeadCreationDate),
		"service_starting_date": formatDate(e.ServiceStartingDate),
		"billing_starting_date": formatDate(e.BillingStartingDate),
		"end_of_contract_date":  formatDate(e.EndOfContractDate),
		"unsubscription_reason": e.UnsubscriptionReason,
		"nb_of_paid_months":     strconv.Itoa(e.NbOfPaidMonths),
		"nb_of_offered_months":  strconv.Itoa(e.NbOfOfferedMonths),
		"nb_of_options":         strconv.Itoa(e.NbOfOptions),
		"client_id":             c.ClientID,
		"lastname":              c.Lastname,
		"firstname":             c.Firstname,
		"client_title":          c.ClientTitle,
		"company_name":          c.CompanyName,
		"siret":                 c.SIRET,
		"email":                 c.Email,
		"phone_number1":         c.PhoneNumber1,
		"phone_number2":         c.PhoneNumber2,
		"address1":              c.Address1,
		"address2":              c.Address2,
		"zipcode":               c.Zipcode,
		"city":                  c.City,
		"country":               c.Country,
	}
}

// Values is the event as the form Simplébo posts, every field present (empty when unset). The
// event_type is the parsed code: TypeRaw is for logs of what came.
func (e Event) Values() url.Values {
	f := e.fields()
	v := make(url.Values, len(f))
	for k, s := range f {
		v.Set(k, s)
	}
	return v
}

// Canonical is the event as one flat JSON object of strings with sorted keys, every field
// present: the same event gives the same bytes whatever its encoding, field order, spacing or
// missing-versus-empty fields, so transforms.EventID("simplebo", ev.Canonical()) dedupes
// repeated deliveries. Counts and the event code are written in their normal decimal form
// ("01" and "1" are one event).
func (e Event) Canonical() []byte {
	b, err := json.Marshal(e.fields()) // encoding/json sorts map keys
	if err != nil {
		panic("simplebo: marshal of a map of strings failed: " + err.Error()) // cannot happen
	}
	return b
}

// LogValue keeps personal data out of logs even when a whole Event is logged.
func (e Event) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("event_type", e.TypeRaw),
		slog.String("client_id", e.Client.ClientID),
		slog.String("email", redact.Email(e.Client.Email)),
	)
}
