package ecolix

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/passerelle/passerelle/internal/frtime"
)

// resources are the exports CONTRACTS.md names, in a fixed order.
var resources = []string{"clients", "devis", "commandes", "articles", "stocks"}

// Resources returns the export resources the connector knows.
func Resources() []string { return slices.Clone(resources) }

// KnownResource reports whether r is one of Resources.
func KnownResource(r string) bool { return slices.Contains(resources, r) }

// Record is one exported row: its id, its date_modification, and the object as received.
type Record struct {
	// ID is the record's id as text; the API sends a JSON number or a string.
	ID string `json:"id"`
	// Modified is date_modification, a Paris wall-clock time read to the second.
	Modified time.Time `json:"modified"`
	// Raw is the whole object, as received (file mode: the row as an object of strings).
	Raw json.RawMessage `json:"raw"`
}

// Page is one page of an export.
type Page struct {
	Records []Record
	Page    int
	Pages   int
	Total   int
}

// ClientImport is the body of POST /api/v1/import/clients; Reference is the upsert key (our guid).
type ClientImport struct {
	Reference  string `json:"reference"`
	Societe    string `json:"societe"`
	Nom        string `json:"nom"`
	Prenom     string `json:"prenom"`
	Email      string `json:"email"`
	Telephone  string `json:"telephone"`
	Adresse    string `json:"adresse"`
	CodePostal string `json:"code_postal"`
	Ville      string `json:"ville"`
}

// ImportAnswer is Ecolix's answer to an import: its client id, and whether the client was created
// (false: an existing one was updated).
type ImportAnswer struct {
	ID   string
	Cree bool
}

type wirePage struct {
	Donnees []json.RawMessage `json:"donnees"`
	Page    int               `json:"page"`
	Pages   int               `json:"pages"`
	Total   int               `json:"total"`
}

type wireImportAnswer struct {
	ID   json.RawMessage `json:"id"`
	Cree bool            `json:"cree"`
}

// DecodePage reads an export page as the API answers it ({"donnees": […], …}): for replays of
// saved exports.
func DecodePage(body []byte) (Page, error) { return decodePage(body) }

// decodePage reads an export answer; a record without a usable id or date_modification fails the
// page, since a cursor cannot be kept over it.
func decodePage(body []byte) (Page, error) {
	var w wirePage
	if err := json.Unmarshal(body, &w); err != nil {
		return Page{}, fmt.Errorf("decoding the export page: %w", err)
	}
	if w.Page < 0 || w.Pages < 0 || w.Total < 0 {
		return Page{}, fmt.Errorf("export page with negative counts (page %d, pages %d, total %d)", w.Page, w.Pages, w.Total)
	}
	p := Page{Page: w.Page, Pages: w.Pages, Total: w.Total, Records: make([]Record, 0, len(w.Donnees))}
	for i, raw := range w.Donnees {
		r, err := decodeRecord(raw)
		if err != nil {
			return Page{}, fmt.Errorf("record %d of the page: %w", i+1, err)
		}
		p.Records = append(p.Records, r)
	}
	return p, nil
}

func decodeRecord(raw json.RawMessage) (Record, error) {
	var w struct {
		ID       json.RawMessage `json:"id"`
		Modified json.RawMessage `json:"date_modification"`
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		return Record{}, fmt.Errorf("not an object: %w", err)
	}
	id, err := idText(w.ID)
	if err != nil {
		return Record{}, err
	}
	if len(w.Modified) == 0 {
		return Record{}, fmt.Errorf("id %s: no date_modification", id)
	}
	var mod frtime.Time
	if err := json.Unmarshal(w.Modified, &mod); err != nil {
		return Record{}, fmt.Errorf("id %s: date_modification: %w", id, err)
	}
	if mod.IsZero() {
		return Record{}, fmt.Errorf("id %s: empty date_modification", id)
	}
	return Record{ID: id, Modified: mod.Time, Raw: bytes.Clone(raw)}, nil
}

// idText reads an id sent as a JSON number or a non-empty string.
func idText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", errors.New("no id")
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("id: %w", err)
		}
		if strings.TrimSpace(s) == "" {
			return "", errors.New("empty id")
		}
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return "", errors.New("id is neither a number nor a string")
	}
	return n.String(), nil
}
