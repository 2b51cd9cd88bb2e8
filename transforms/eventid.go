package transforms

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// CanonicalJSON re-encodes one JSON value with object keys sorted, no
// insignificant whitespace and numbers exactly as written, so that the same
// payload sent twice with another key order or layout gives the same bytes.
// Strings are re-escaped the same way every time (HTML characters are left
// as is). Duplicate keys keep the last value, as encoding/json does.
func CanonicalJSON(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("canonical json: data after the top-level value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// encoding/json writes map keys sorted and json.Number verbatim.
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// eventIDEncoding is lower-cased after encoding: base32 keeps ids safe in
// file names, NATS subjects and URLs.
var eventIDEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// EventID returns a stable id for a payload received from source:
// source + "_" + 26 base32 characters (130 bits) of
// sha256(source + "\x00" + CanonicalJSON(raw)). A payload that is not valid
// JSON is hashed as is.
func EventID(source string, raw []byte) string {
	body, err := CanonicalJSON(raw)
	if err != nil {
		body = raw
	}
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write(body)
	return source + "_" + strings.ToLower(eventIDEncoding.EncodeToString(h.Sum(nil))[:26])
}

// LeadDedupeKey returns the key under which two deliveries of one lead are the
// same: the contact (email, or the phone when there is no email), the course
// (trimmed, lower-cased) and the partner's client id. The payload carries no
// lead id of its own. The key is a hex sha256 so that no personal data is
// stored in clear.
func LeadDedupeKey(l Lead) string {
	contact := "email:" + l.Email
	if l.Email == "" {
		contact = "phone:" + l.Phone
	}
	course := strings.ToLower(strings.Join(strings.Fields(l.Course), " "))
	clientID := strings.TrimSpace(l.ClientID)
	// A JSON array frames the parts, so no choice of values can make two
	// different tuples hash the same input.
	b, _ := json.Marshal([3]string{contact, course, clientID}) // strings always marshal
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
