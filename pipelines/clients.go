package pipelines

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/transforms"
)

// ClientColumn is a column `passerelle clients import` reads.
type ClientColumn struct {
	Name    string   // as documented
	Aliases []string // French names finance may already use
	Help    string
}

// ClientColumns are the columns of a clients file, in documentation order. Names are matched
// without regard to case; a file holds any of them, in any order, and at least one key column.
var ClientColumns = []ClientColumn{
	{store.KeyGUID, nil, "our id of the client (Ecolix's reference)"},
	{store.KeySAKey, []string{"reference_client"}, "Shop Application interface key: the billing file's reference_client"},
	{store.KeyClientID, nil, "Simplébo client id"},
	{store.FieldCompany, []string{"societe"}, "company name"},
	{store.FieldLastName, []string{"nom"}, "last name"},
	{store.FieldFirstName, []string{"prenom"}, "first name"},
	{store.FieldEmail, nil, "email address (checked, lower-cased)"},
	{store.FieldPhone, []string{"telephone"}, "phone number (checked, written +33…)"},
	{store.FieldAddress, []string{"adresse"}, "street address"},
	{store.FieldPostalCode, []string{"code_postal"}, "postal code"},
	{store.FieldCity, []string{"ville"}, "city"},
	{store.FieldSIRET, nil, "SIRET, 14 digits (spaces allowed)"},
	{"updated_at", []string{"date"}, "when the line was true, YYYY-MM-DD (Europe/Paris) or RFC 3339; default: the import time"},
}

// ClientLine is one line of a clients file as the directory records it.
type ClientLine struct {
	Line     int
	Identity store.Identity
}

// maxClientErrors bounds the errors one file reports: past it, the file is clearly not a clients file.
const maxClientErrors = 50

// ParseClientsCSV reads a clients file: UTF-8 (a BOM is accepted), `;` or `,` separated (whichever
// the header line holds more of), a header line naming ClientColumns, then one client per line.
// Every bad line is reported with its number and what is wrong, never with the value (it may be
// personal data); a file with any bad line yields no identity, so an import is all or nothing.
// Identities have source as Source and at as At unless the line has an updated_at.
func ParseClientsCSV(data []byte, source string, at time.Time) ([]ClientLine, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	if !utf8.Valid(data) {
		line := 1 + bytes.Count(data[:firstInvalidUTF8(data)], []byte("\n"))
		return nil, fmt.Errorf("line %d: not UTF-8: save the file as CSV UTF-8", line)
	}
	header, _, _ := bytes.Cut(data, []byte("\n"))
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = ','
	if bytes.Count(header, []byte(";")) >= bytes.Count(header, []byte(",")) {
		r.Comma = ';'
	}
	r.FieldsPerRecord = -1
	r.ReuseRecord = false
	head, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("line 1: empty file: want a header line naming the columns")
	}
	if err != nil {
		return nil, csvLineError(err)
	}
	cols, err := clientHeader(head)
	if err != nil {
		return nil, err
	}
	var (
		out  []ClientLine
		errs []error
		seen = map[string]int{} // "kind=value" → line
	)
	for len(errs) < maxClientErrors {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			errs = append(errs, csvLineError(err))
			break // the reader cannot resync after a quoting error
		}
		line, _ := r.FieldPos(0)
		if len(rec) != len(cols) {
			errs = append(errs, fmt.Errorf("line %d: %d fields, the header has %d", line, len(rec), len(cols)))
			continue
		}
		id, err := clientIdentity(cols, rec, source, at)
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", line, err))
			continue
		}
		dup := false
		keys := maps.Clone(id.Keys)
		if id.GUID != "" {
			keys[store.KeyGUID] = id.GUID
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			v := keys[k]
			if first, ok := seen[k+"="+v]; ok {
				errs = append(errs, fmt.Errorf("line %d: %s %q already on line %d", line, k, v, first))
				dup = true
			}
			seen[k+"="+v] = line
		}
		if !dup {
			out = append(out, ClientLine{Line: line, Identity: id})
		}
	}
	if len(errs) >= maxClientErrors {
		errs = append(errs, fmt.Errorf("stopped after %d errors", maxClientErrors))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(b)
}

func csvLineError(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("line %d: %v", pe.StartLine, pe.Err)
	}
	return err
}

// clientHeader maps each header cell to its column name.
func clientHeader(head []string) ([]string, error) {
	names := map[string]string{}
	var all []string
	for _, c := range ClientColumns {
		names[c.Name] = c.Name
		for _, a := range c.Aliases {
			names[a] = c.Name
		}
		all = append(all, c.Name)
	}
	cols := make([]string, len(head))
	hasKey := false
	for i, h := range head {
		name, ok := names[strings.ToLower(strings.TrimSpace(h))]
		if !ok {
			return nil, fmt.Errorf("line 1: column %d: unknown column %q (want some of %s)", i+1, h, strings.Join(all, ", "))
		}
		for j := range i {
			if cols[j] == name {
				return nil, fmt.Errorf("line 1: columns %d and %d are both %s", j+1, i+1, name)
			}
		}
		cols[i] = name
		hasKey = hasKey || name == store.KeyGUID || name == store.KeySAKey || name == store.KeyClientID
	}
	if !hasKey {
		return nil, fmt.Errorf("line 1: no key column: want %s, %s or %s", store.KeyGUID, store.KeySAKey, store.KeyClientID)
	}
	return cols, nil
}

func clientIdentity(cols, rec []string, source string, at time.Time) (store.Identity, error) {
	id := store.Identity{Keys: map[string]string{}, Fields: map[string]string{}, Source: source, At: at}
	for i, name := range cols {
		v := strings.TrimSpace(rec[i])
		if v == "" {
			continue
		}
		var err error
		switch name {
		case store.KeyGUID:
			id.GUID = v
		case store.KeySAKey, store.KeyClientID:
			id.Keys[name] = v
		case store.FieldEmail:
			v, err = transforms.NormalizeEmail(v)
		case store.FieldPhone:
			v, err = transforms.NormalizePhone(v)
		case store.FieldSIRET:
			v = strings.ReplaceAll(v, " ", "")
			if len(v) != 14 || strings.Trim(v, "0123456789") != "" {
				err = errors.New("not 14 digits")
			}
		case "updated_at":
			id.At, err = parseUpdatedAt(v)
		}
		if err != nil {
			// The transforms' errors never repeat the input; ours say what is wrong, not the value.
			return id, fmt.Errorf("%s: %w", name, err)
		}
		if strings.HasPrefix(name, "updated_at") || name == store.KeyGUID || name == store.KeySAKey || name == store.KeyClientID {
			continue
		}
		id.Fields[name] = v
	}
	if id.GUID == "" && len(id.Keys) == 0 {
		return id, fmt.Errorf("no key: give %s, %s or %s", store.KeyGUID, store.KeySAKey, store.KeyClientID)
	}
	return id, nil
}

func parseUpdatedAt(v string) (time.Time, error) {
	if t, err := time.ParseInLocation("2006-01-02", v, frtime.Paris()); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, errors.New("want YYYY-MM-DD or RFC 3339")
	}
	return t.UTC(), nil
}
