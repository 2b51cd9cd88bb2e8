package iciformation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/passerelle/passerelle/internal/redact"
)

// Lead is one prospect as Ici Formation sends it, every field flattened to a string and not yet
// normalised: normalising and validating is the pipeline's job.
type Lead struct {
	Nom           string `json:"nom"`
	Prenom        string `json:"prenom"`
	Civilite      string `json:"civilite"`
	Tel           string `json:"tel"`
	Email         string `json:"email"`
	Ville         string `json:"ville"`
	CodePostal    string `json:"code_postal"`
	Formation     string `json:"formation"`
	HoraireRappel string `json:"horaire_rappel"`
	Statut        string `json:"statut"`
	Client        string `json:"client"`
	IDClient      string `json:"id_client"`

	// Raw is the JSON object exactly as received, unknown fields included, so that downstream
	// systems can be given what the partner really sent.
	Raw json.RawMessage `json:"-"`
}

// Errors DecodeLead wraps; both mean the partner sent something unusable (HTTP 400).
var (
	ErrMalformed = errors.New("malformed JSON")
	ErrNotObject = errors.New("not a JSON object")
)

// wireLead captures each known field untyped, since the partner may send any JSON type.
type wireLead struct {
	Nom           json.RawMessage `json:"nom"`
	Prenom        json.RawMessage `json:"prenom"`
	Civilite      json.RawMessage `json:"civilite"`
	Tel           json.RawMessage `json:"tel"`
	Email         json.RawMessage `json:"email"`
	Ville         json.RawMessage `json:"ville"`
	CodePostal    json.RawMessage `json:"code_postal"`
	Formation     json.RawMessage `json:"formation"`
	HoraireRappel json.RawMessage `json:"horaire_rappel"`
	Statut        json.RawMessage `json:"statut"`
	Client        json.RawMessage `json:"client"`
	IDClient      json.RawMessage `json:"id_client"`
}

// DecodeLead reads one delivery. body must be a JSON object; each known field may be missing,
// null, a string, a number or a boolean (kept as written: a phone sent as 102030405 stays
// "102030405"); an object or array where a scalar is expected reads as empty rather than
// failing, so that one odd field never loses the lead.
func DecodeLead(body []byte) (Lead, error) {
	obj := trimJSONSpace(body)
	if !json.Valid(obj) {
		// Valid says no more than that; decoding again gives the partner a reason.
		err := json.Unmarshal(obj, new(any))
		if err == nil {
			err = errors.New("invalid JSON")
		}
		return Lead{}, fmt.Errorf("decode lead: %w: %v", ErrMalformed, err)
	}
	if obj[0] != '{' {
		return Lead{}, fmt.Errorf("decode lead: %w", ErrNotObject)
	}
	var w wireLead
	if err := json.Unmarshal(obj, &w); err != nil {
		return Lead{}, fmt.Errorf("decode lead: %w: %v", ErrMalformed, err)
	}
	return Lead{
		Nom:           scalar(w.Nom),
		Prenom:        scalar(w.Prenom),
		Civilite:      scalar(w.Civilite),
		Tel:           scalar(w.Tel),
		Email:         scalar(w.Email),
		Ville:         scalar(w.Ville),
		CodePostal:    scalar(w.CodePostal),
		Formation:     scalar(w.Formation),
		HoraireRappel: scalar(w.HoraireRappel),
		Statut:        scalar(w.Statut),
		Client:        scalar(w.Client),
		IDClient:      scalar(w.IDClient),
		Raw:           bytes.Clone(obj), // the caller may reuse body
	}, nil
}

// scalar flattens a JSON value to a string: strings as is, numbers as written, booleans as
// "true"/"false", and null, objects and arrays as "".
func scalar(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber() // 0102030405 would lose nothing, but 1.02e9 or 33612345678 must not become floats
	var v any
	if err := d.Decode(&v); err != nil {
		return ""
	}
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "true"
		}
		return "false"
	default:
		return ""
	}
}

// trimJSONSpace drops the whitespace JSON allows around a value, and no other (bytes.TrimSpace
// would also drop Unicode spaces that JSON rejects).
func trimJSONSpace(b []byte) []byte {
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// LogValue keeps personal data out of logs even when a whole Lead is logged by mistake.
func (l Lead) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("email", redact.Email(l.Email)),
		slog.String("tel", redact.Phone(l.Tel)),
		slog.String("formation", l.Formation),
		slog.String("id_client", l.IDClient),
	)
}
