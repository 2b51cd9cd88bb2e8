package transforms

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/passerelle/passerelle/internal/jsonx"
)

// LeadInput is a lead as a source received it, each field already flattened to a string.
type LeadInput struct {
	Source                         string // "iciformation"
	LastName, FirstName, Title     string // nom, prenom, civilite
	Phone, Email, City, PostalCode string // tel, email, ville, code_postal
	Course, CallbackTime, Status   string // formation, horaire_rappel, statut
	Company, ClientID              string // client, id_client
	// Raw is the JSON object as received, unknown fields included. It must be valid JSON (the
	// source's decoder checked it): the Lead embeds it as is.
	Raw json.RawMessage
	// EventID, when set, is the id already derived from Source and Raw (canonicalising a payload
	// is the costliest step, so a later stage reuses the first one's result). Empty: derived here.
	EventID string
}

// Lead is a normalised lead; JSON tags snake_case, omitempty where empty.
type Lead struct {
	EventID       string          `json:"event_id"`
	Source        string          `json:"source"`
	LastName      string          `json:"last_name,omitempty"`
	FirstName     string          `json:"first_name,omitempty"`
	Title         string          `json:"title,omitempty"` // TitleM, TitleMme, or "" when unknown
	Email         string          `json:"email,omitempty"`
	Phone         string          `json:"phone,omitempty"`     // E.164
	PhoneRaw      string          `json:"phone_raw,omitempty"` // as received
	City          string          `json:"city,omitempty"`      // lower-case
	PostalCode    string          `json:"postal_code,omitempty"`
	PostalCodeRaw string          `json:"postal_code_raw,omitempty"` // only when the raw one was invalid
	Course        string          `json:"course,omitempty"`
	CallbackTime  string          `json:"callback_time,omitempty"`
	Status        string          `json:"status,omitempty"`
	Company       string          `json:"company,omitempty"`
	ClientID      string          `json:"client_id,omitempty"`
	ReceivedAt    time.Time       `json:"received_at"`
	Raw           json.RawMessage `json:"raw,omitempty"`
}

// ErrNoContact is wrapped by NormalizeLead when a lead has neither a valid
// email nor a valid phone number: nobody could call it back.
var ErrNoContact = errors.New("no valid email nor phone number")

// The civilités a Lead carries.
const (
	TitleM   = "M."
	TitleMme = "Mme"
)

// NormalizeTitle maps a civilité as people type it to TitleM or TitleMme, or
// to "" when it is empty or unknown. Case and surrounding spaces are ignored.
func NormalizeTitle(raw string) string {
	switch strings.ToLower(strings.TrimSpace(raw)) {
	case "m.", "m", "mr", "mr.", "monsieur":
		return TitleM
	case "mme", "mme.", "madame", "mlle", "mlle.", "mademoiselle":
		return TitleMme
	default:
		return ""
	}
}

// CheckLead tells whether NormalizeLead would accept in, at a fraction of the cost: for a source
// that must answer before the lead is normalised.
func CheckLead(in LeadInput) error {
	if _, emailErr := NormalizeEmail(in.Email); emailErr != nil {
		if _, phoneErr := NormalizePhone(in.Phone); phoneErr != nil {
			return noContact(emailErr, phoneErr)
		}
	}
	return nil
}

func noContact(emailErr, phoneErr error) error {
	// The reasons name no personal data, so the caller may log them.
	return fmt.Errorf("normalize lead: %w (%w; %w)", ErrNoContact, emailErr, phoneErr)
}

// NormalizeLead turns a received lead into a Lead. Names are trimmed with
// inner whitespace collapsed, the civilité goes through NormalizeTitle, the
// city is lower-cased. An invalid email or phone is dropped, but when neither
// is usable the error wraps ErrNoContact. An invalid postal code is never an
// error: PostalCode stays empty and PostalCodeRaw keeps what was sent.
// EventID is EventID(in.Source, in.Raw) unless in.EventID is set.
func NormalizeLead(in LeadInput, receivedAt time.Time) (Lead, error) {
	email, emailErr := NormalizeEmail(in.Email)
	phone, phoneErr := NormalizePhone(in.Phone)
	if emailErr != nil && phoneErr != nil {
		return Lead{}, noContact(emailErr, phoneErr)
	}
	if in.EventID == "" {
		in.EventID = EventID(in.Source, in.Raw)
	}
	l := Lead{
		EventID:      in.EventID,
		Source:       in.Source,
		LastName:     collapseSpaces(in.LastName),
		FirstName:    collapseSpaces(in.FirstName),
		Title:        NormalizeTitle(in.Title),
		Email:        email,
		Phone:        phone,
		PhoneRaw:     in.Phone,
		City:         strings.ToLower(collapseSpaces(in.City)),
		Course:       strings.TrimSpace(in.Course),
		CallbackTime: strings.TrimSpace(in.CallbackTime),
		Status:       strings.TrimSpace(in.Status),
		Company:      strings.TrimSpace(in.Company),
		ClientID:     strings.TrimSpace(in.ClientID),
		ReceivedAt:   receivedAt,
	}
	if pc, err := NormalizePostalCode(in.PostalCode); err == nil {
		l.PostalCode = pc
	} else {
		l.PostalCodeRaw = in.PostalCode
	}
	l.Raw = bytes.Clone(in.Raw) // the caller may reuse its buffer
	return l, nil
}

// AppendJSON appends l as JSON: the document json.Marshal writes, fields in the same order, with
// <, > and & left unescaped, and without its cost: Raw, already valid JSON, is copied as is where
// json.Marshal would scan and compact it.
func (l Lead) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"event_id":`...)
	dst = jsonx.AppendString(dst, l.EventID)
	dst = append(dst, `,"source":`...)
	dst = jsonx.AppendString(dst, l.Source)
	for _, f := range [...]struct{ name, value string }{
		{`,"last_name":`, l.LastName}, {`,"first_name":`, l.FirstName}, {`,"title":`, l.Title},
		{`,"email":`, l.Email}, {`,"phone":`, l.Phone}, {`,"phone_raw":`, l.PhoneRaw},
		{`,"city":`, l.City}, {`,"postal_code":`, l.PostalCode}, {`,"postal_code_raw":`, l.PostalCodeRaw},
		{`,"course":`, l.Course}, {`,"callback_time":`, l.CallbackTime}, {`,"status":`, l.Status},
		{`,"company":`, l.Company}, {`,"client_id":`, l.ClientID},
	} {
		if f.value != "" {
			dst = jsonx.AppendString(append(dst, f.name...), f.value)
		}
	}
	dst = append(dst, `,"received_at":"`...)
	dst = l.ReceivedAt.AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, '"')
	if len(l.Raw) > 0 {
		dst = append(append(dst, `,"raw":`...), l.Raw...)
	}
	return append(dst, '}')
}

// collapseSpaces trims s and turns each run of inner whitespace into one space.
func collapseSpaces(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
