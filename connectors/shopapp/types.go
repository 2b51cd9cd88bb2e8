package shopapp

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"

	"github.com/passerelle/passerelle/internal/frtime"
)

// Status is an interface's statut.
type Status int

// The four statuts of the partner document.
const (
	StatusDeleted     Status = 0 // supprimée: gone for good
	StatusActive      Status = 1 // active: billed, reachable
	StatusDeactivated Status = 2 // désactivée: deletion requested, no longer billed, can be reactivated
	StatusInstalling  Status = 3 // en cours: ordered, installation under way
)

// String names the status in lower-case English, for logs and metric labels.
func (s Status) String() string {
	switch s {
	case StatusDeleted:
		return "deleted"
	case StatusActive:
		return "active"
	case StatusDeactivated:
		return "deactivated"
	case StatusInstalling:
		return "installing"
	}
	return "Status(" + strconv.Itoa(int(s)) + ")"
}

// UnmarshalJSON reads the statut as a number, or a numeric string as PHP back-ends sometimes send.
func (s *Status) UnmarshalJSON(b []byte) error {
	str := strings.Trim(string(b), `"`)
	n, err := strconv.Atoi(str)
	if err != nil {
		return fmt.Errorf("shopapp: statut %s is not an integer", b)
	}
	*s = Status(n)
	return nil
}

// Token is the answer of GET /token. It never prints its access token.
type Token struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"` // seconds
}

// String hides the access token.
func (t Token) String() string {
	return fmt.Sprintf("shopapp.Token{type: %q, expires_in: %d, access_token: [redacted]}", t.TokenType, t.ExpiresIn)
}

// GoString hides the access token from %#v too.
func (t Token) GoString() string { return t.String() }

// LogValue hides the access token from slog.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("token_type", t.TokenType), slog.Int("expires_in", t.ExpiresIn))
}

// InterfaceDetail is GET /interfaces/{cle}.
type InterfaceDetail struct {
	Created      frtime.Time `json:"date_creation"`
	Status       Status      `json:"statut"`
	URL          string      `json:"url,omitempty"`                // home page, when available
	AdminURL     string      `json:"url_administration,omitempty"` // back office, when available
	FormURL      string      `json:"url_formulaire,omitempty"`     // project form, while installing
	DeletionDate frtime.Time `json:"date_suppression,omitzero"`    // scheduled deletion, when requested
}

// Customer is the client object of an order.
type Customer struct {
	LastName   string `json:"nom,omitempty"`
	FirstName  string `json:"prenom,omitempty"`
	Company    string `json:"societe,omitempty"`
	Address    string `json:"adresse,omitempty"`
	PostalCode string `json:"code_postal,omitempty"`
	City       string `json:"ville,omitempty"`
	Country    string `json:"pays,omitempty"`
	Phone      string `json:"telephone,omitempty"`
	Email      string `json:"email,omitempty"`
	RCS        string `json:"rcs,omitempty"`
	APE        string `json:"ape,omitempty"`
}

// CreateRequest is the body of POST /interfaces.
type CreateRequest struct {
	GUID        string   `json:"guid"`        // our id for the interface; the simulator dedupes on it
	Prestations []string `json:"prestations"` // exactly one setup IN-…-S
	Client      Customer `json:"client"`
	Subdomain   string   `json:"sous_domaine,omitempty"`
}

// PrestationOccurrence is one occurrence of a prestation on an interface.
type PrestationOccurrence struct {
	Code        string      `json:"code"`
	Created     frtime.Time `json:"date_creation"`
	Cancelled   bool        `json:"resilie"`
	CancelledAt frtime.Time `json:"date_resiliation"`
	Reference   string      `json:"reference_unique"`
	FormURL     string      `json:"url_formulaire,omitempty"`
}

// AddedPrestation is one element of the answers of POST and DELETE
// /interfaces/{cle}/prestations[/{code}].
type AddedPrestation struct {
	Code      string `json:"code"`
	Reference string `json:"reference_unique"`
	FormURL   string `json:"url_formulaire,omitempty"`
}

// CatalogueEntry is GET /prestation/{code}.
type CatalogueEntry struct {
	Code             string   `json:"code"`
	Name             string   `json:"nom"`
	ShortDescription string   `json:"descriptif_court"`
	LongDescription  string   `json:"descriptif_long"` // HTML
	Price            float64  `json:"prix"`            // catalogue price before tax, in euros
	Associated       []string `json:"prestations_associees"`
	// PriceCents is Price in integer cents, rounded half away from zero, for billing. Filled when
	// decoding; not on the wire.
	PriceCents int64 `json:"-"`
}

// UnmarshalJSON decodes the entry and fills PriceCents. prix may also come as a numeric string.
func (e *CatalogueEntry) UnmarshalJSON(b []byte) error {
	type plain CatalogueEntry // no methods: no recursion
	var w struct {
		plain
		Price json.RawMessage `json:"prix"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = CatalogueEntry(w.plain)
	e.Price, e.PriceCents = 0, 0
	if len(w.Price) == 0 || string(w.Price) == "null" {
		return nil
	}
	p, err := strconv.ParseFloat(strings.Trim(string(w.Price), `"`), 64)
	if err != nil || math.IsNaN(p) || math.IsInf(p, 0) {
		return fmt.Errorf("shopapp: prix %s is not a number", w.Price)
	}
	cents, err := Cents(p)
	if err != nil {
		return err
	}
	e.Price, e.PriceCents = p, cents
	return nil
}

// Cents converts euros to integer cents, rounding half away from zero on the shortest decimal
// form of p, so 0.285 gives 29 where math.Round(0.285*100) gives 28.
func Cents(p float64) (int64, error) {
	if math.IsNaN(p) || math.IsInf(p, 0) || math.Abs(p) >= 9e15 {
		return 0, fmt.Errorf("shopapp: price %v out of range", p)
	}
	s := strconv.FormatFloat(math.Abs(p), 'f', -1, 64)
	whole, frac, _ := strings.Cut(s, ".")
	frac += "000"
	n, err := strconv.ParseInt(whole+frac[:2], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("shopapp: price %v: %w", p, err)
	}
	if frac[2] >= '5' {
		n++
	}
	if p < 0 {
		n = -n
	}
	return n, nil
}

// IsSetup reports whether code is a setup prestation, IN-…-S: an order creating an interface
// holds exactly one, an order adding to one holds none.
func IsSetup(code string) bool {
	return len(code) >= len("IN-x-S") && strings.HasPrefix(code, "IN-") && strings.HasSuffix(code, "-S")
}
