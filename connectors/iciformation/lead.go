package iciformation

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/passerelle/passerelle/internal/jsonx"
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
	// The fast path reads a valid object in one pass and says so; anything unusual (an escaped
	// key, deep nesting, any error) goes through encoding/json, which gives the same Lead.
	var l Lead
	// One copy for every field: plain values are substrings of it.
	text := string(obj)
	if jsonx.Object(obj, func(key, value []byte) {
		start := cap(obj) - cap(value) // value is obj[start : start+len(value)]
		l.set(key, text[start:start+len(value)])
	}) {
		l.Raw = bytes.Clone(obj) // the caller may reuse body
		return l, nil
	}
	return decodeLeadReference(obj)
}

// set assigns one member of the object to its field, matching names as encoding/json does
// (exactly, else case-insensitively); the last of repeated members wins, as there.
func (l *Lead) set(key []byte, value string) {
	if f := l.field(string(key)); f != nil {
		*f = scalar(value)
		return
	}
	for _, name := range leadFields {
		if bytes.EqualFold(key, []byte(name)) {
			*l.field(name) = scalar(value)
			return
		}
	}
}

// leadFields are the JSON names of Lead's fields.
var leadFields = [...]string{"nom", "prenom", "civilite", "tel", "email", "ville", "code_postal",
	"formation", "horaire_rappel", "statut", "client", "id_client"}

func (l *Lead) field(name string) *string {
	switch name {
	case "nom":
		return &l.Nom
	case "prenom":
		return &l.Prenom
	case "civilite":
		return &l.Civilite
	case "tel":
		return &l.Tel
	case "email":
		return &l.Email
	case "ville":
		return &l.Ville
	case "code_postal":
		return &l.CodePostal
	case "formation":
		return &l.Formation
	case "horaire_rappel":
		return &l.HoraireRappel
	case "statut":
		return &l.Statut
	case "client":
		return &l.Client
	case "id_client":
		return &l.IDClient
	}
	return nil
}

// decodeLeadReference is DecodeLead through encoding/json, for what the fast path leaves.
func decodeLeadReference(obj []byte) (Lead, error) {
	// One pass: Unmarshal checks the whole input before decoding anything, so a syntax error
	// means malformed JSON, and any other valid value than an object is refused below.
	var w wireLead
	err := json.Unmarshal(obj, &w)
	if _, syntax := errors.AsType[*json.SyntaxError](err); syntax {
		return Lead{}, fmt.Errorf("decode lead: %w: %v", ErrMalformed, err)
	}
	if len(obj) == 0 || obj[0] != '{' {
		return Lead{}, fmt.Errorf("decode lead: %w", ErrNotObject)
	}
	if err != nil {
		return Lead{}, fmt.Errorf("decode lead: %w: %v", ErrMalformed, err)
	}
	return Lead{
		Nom:           scalar(string(w.Nom)),
		Prenom:        scalar(string(w.Prenom)),
		Civilite:      scalar(string(w.Civilite)),
		Tel:           scalar(string(w.Tel)),
		Email:         scalar(string(w.Email)),
		Ville:         scalar(string(w.Ville)),
		CodePostal:    scalar(string(w.CodePostal)),
		Formation:     scalar(string(w.Formation)),
		HoraireRappel: scalar(string(w.HoraireRappel)),
		Statut:        scalar(string(w.Statut)),
		Client:        scalar(string(w.Client)),
		IDClient:      scalar(string(w.IDClient)),
		Raw:           bytes.Clone(obj),
	}, nil
}

// scalar flattens a JSON value to a string: strings as is, numbers as written, booleans as
// "true"/"false", and null, objects and arrays as "". raw is one value DecodeLead has validated;
// what it returns may share raw's memory.
func scalar(raw string) string {
	if len(raw) == 0 {
		return ""
	}
	switch raw[0] {
	case '"':
		// Most strings need no unescaping: take the bytes between the quotes. Escapes and invalid
		// UTF-8 (which encoding/json turns into U+FFFD) go through the decoder.
		if len(raw) >= 2 {
			if s := raw[1 : len(raw)-1]; strings.IndexByte(s, '\\') < 0 && utf8.ValidString(s) {
				return s
			}
		}
		var s string
		if err := json.Unmarshal([]byte(raw), &s); err != nil {
			return ""
		}
		return s
	case 't':
		return "true"
	case 'f':
		return "false"
	case 'n', '{', '[':
		return ""
	default:
		// A number, kept as written: 0102030405 would lose nothing as a float, but 1.02e9 or
		// 33612345678 must not become floats.
		return raw
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
