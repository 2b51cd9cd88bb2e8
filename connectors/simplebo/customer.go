package simplebo

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"

	"github.com/passerelle/passerelle/internal/redact"
)

// ErrInvalidCustomer marks a Customer that lacks a field the API requires: no retry can fix it.
var ErrInvalidCustomer = errors.New("invalid customer")

// Customer is what POST /v1/leads and POST /v1/customers take, with the partner's field names.
// partner_code and partner are not here: they come from the Client's Config.
type Customer struct {
	ClientID     string `json:"client_id"` // our id (the guid); Simplébo's idempotency key
	Lastname     string `json:"lastname"`
	Firstname    string `json:"firstname,omitempty"`
	ClientTitle  string `json:"client_title,omitempty"`
	CompanyName  string `json:"company_name,omitempty"`
	SIRET        string `json:"siret,omitempty"`
	Email        string `json:"email"`
	PhoneNumber1 string `json:"phone_number1"`
	PhoneNumber2 string `json:"phone_number2,omitempty"`
	Address1     string `json:"address1,omitempty"`
	Address2     string `json:"address2,omitempty"`
	Zipcode      string `json:"zipcode"`
	City         string `json:"city"`
	Country      string `json:"country"`
	Typology     int    `json:"typology"`
	CampaignCode string `json:"campaign_code,omitempty"`
	OtherInfo    string `json:"other_info,omitempty"`
}

// Validate checks the fields the contract marks required (*). Its error names the fields, never
// their values.
func (c Customer) Validate() error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"client_id", c.ClientID},
		{"lastname", c.Lastname},
		{"email", c.Email},
		{"phone_number1", c.PhoneNumber1},
		{"zipcode", c.Zipcode},
		{"city", c.City},
		{"country", c.Country},
	} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: missing %s", ErrInvalidCustomer, strings.Join(missing, ", "))
	}
	// typology is an integer the partner assigns; 0 is a value, so only a negative one is wrong.
	if c.Typology < 0 {
		return fmt.Errorf("%w: typology is negative", ErrInvalidCustomer)
	}
	return nil
}

// Values is the form Simplébo's API takes: the customer's fields, empty optional ones left out,
// plus partner_code and partner.
func (c Customer) Values(partnerCode, partner string) url.Values {
	v := url.Values{}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set("partner_code", partnerCode)
	set("partner", partner)
	set("campaign_code", c.CampaignCode)
	set("client_id", c.ClientID)
	set("lastname", c.Lastname)
	set("firstname", c.Firstname)
	set("client_title", c.ClientTitle)
	set("company_name", c.CompanyName)
	set("siret", c.SIRET)
	set("email", c.Email)
	set("phone_number1", c.PhoneNumber1)
	set("phone_number2", c.PhoneNumber2)
	set("address1", c.Address1)
	set("address2", c.Address2)
	set("zipcode", c.Zipcode)
	set("city", c.City)
	set("country", c.Country)
	v.Set("typology", strconv.Itoa(c.Typology))
	set("other_info", c.OtherInfo)
	return v
}

// CustomerFromFields reads a Customer from decoded request fields (see ParseFields), as the
// simulator does; a typology that is not an integer is an error.
func CustomerFromFields(f map[string]string) (Customer, error) {
	c := Customer{
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
		CampaignCode: f["campaign_code"],
		OtherInfo:    f["other_info"],
	}
	t := f["typology"]
	if t == "" {
		return c, fmt.Errorf("%w: missing typology", ErrInvalidCustomer)
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return c, fmt.Errorf("%w: typology is not an integer", ErrInvalidCustomer)
	}
	c.Typology = n
	return c, nil
}

// LogValue keeps personal data out of logs even when a whole Customer is logged.
func (c Customer) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("client_id", c.ClientID),
		slog.String("email", redact.Email(c.Email)),
		slog.String("phone", redact.Phone(c.PhoneNumber1)),
		slog.String("zipcode", c.Zipcode),
		slog.Int("typology", c.Typology),
	)
}

// ValidSIRET reports whether s is a well-formed SIRET: 14 ASCII digits passing the Luhn check,
// or, for La Poste's establishments (SIREN 356000000), many of which fail it, a digit sum that is
// a multiple of 5. Partners send SIRETs that fail it (the public document's own example does), so
// callers warn rather than reject.
func ValidSIRET(s string) bool {
	if len(s) != 14 {
		return false
	}
	sum, plain := 0, 0
	for i := range len(s) {
		d := int(s[i] - '0')
		if d < 0 || d > 9 {
			return false
		}
		plain += d
		// From the right, every second digit is doubled; with 14 digits those are the even indexes.
		if i%2 == 0 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	if s[:9] == "356000000" && plain%5 == 0 {
		return true
	}
	return sum%10 == 0
}
