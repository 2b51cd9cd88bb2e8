package transforms

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"strings"

	"github.com/passerelle/passerelle/internal/jsonx"
)

// CanonicalJSON re-encodes one JSON value with object keys sorted, no
// insignificant whitespace and numbers exactly as written, so that the same
// payload sent twice with another key order or layout gives the same bytes.
// Strings are re-escaped the same way every time (HTML characters are left
// as is). Duplicate keys keep the last value, as encoding/json does.
//
// Event ids are derived from these bytes, so they must never change:
// jsonx.Canonical handles the common payloads in one pass and gives up on
// anything it cannot reproduce exactly, which jsonx.CanonicalReference, the
// definition, then handles.
func CanonicalJSON(raw []byte) ([]byte, error) {
	var buf [1024]byte
	out, err := appendCanonical(buf[:0], raw)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(out), nil // one exact-size allocation
}

// appendCanonical appends CanonicalJSON(raw) to dst: jsonx.Canonical when it
// can, the definition otherwise.
func appendCanonical(dst, raw []byte) ([]byte, error) {
	if out, ok := jsonx.Canonical(dst, raw); ok {
		return out, nil
	}
	body, err := jsonx.CanonicalReference(raw)
	if err != nil {
		return dst, err
	}
	return append(dst, body...), nil
}

// eventIDEncoding is base32 with a lower-case alphabet, which gives exactly
// the lower-cased output of base32.StdEncoding: ids stay safe in file names,
// NATS subjects and URLs.
var eventIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// eventIDChars is how many base32 characters of the hash an id keeps.
const eventIDChars = 26

// EventID returns a stable id for a payload received from source:
// source + "_" + 26 base32 characters (130 bits) of
// sha256(source + "\x00" + CanonicalJSON(raw)). A payload that is not valid
// JSON is hashed as is.
func EventID(source string, raw []byte) string {
	// The hashed input is built in one buffer, on the stack for payloads of
	// the usual size; the body is CanonicalJSON's, without its copy.
	var stack [1024]byte
	buf := append(append(stack[:0], source...), 0)
	if out, err := appendCanonical(buf, raw); err == nil {
		buf = out
	} else {
		buf = append(buf, raw...) // not JSON: hashed as is
	}
	sum := sha256.Sum256(buf)
	var id [52]byte // eventIDEncoding.EncodedLen(sha256.Size)
	eventIDEncoding.Encode(id[:], sum[:])
	return source + "_" + string(id[:eventIDChars])
}

// LeadDedupeKey returns the key under which two deliveries of one lead are the
// same: the keyed digest (KeyedDedupeKey) of LeadDedupeDigest. Keyed by a secret,
// so that no one holding the table can test it for a known email or phone.
func LeadDedupeKey(l Lead, key []byte) string {
	return KeyedDedupeKey(key, LeadDedupeDigest(l))
}

// KeyedDedupeKey is the stored form of an unkeyed dedupe digest: the hex
// HMAC-SHA256 of its hex under key. Keys stored unkeyed before are rewritten
// with it, since the digest, not the personal data, is all the table holds.
func KeyedDedupeKey(key []byte, digest string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(digest))
	var sum [sha256.Size]byte
	return hex.EncodeToString(mac.Sum(sum[:0]))
}

// LeadDedupeDigest is what makes two deliveries of one lead the same: the
// contact (email, or the phone when there is no email), the course (trimmed,
// lower-cased) and the partner's client id; the payload carries no lead id of
// its own. It is a hex sha256, unkeyed: what dedupe keys were before they were
// keyed, never stored as such any more (see LeadDedupeKey).
func LeadDedupeDigest(l Lead) string {
	contact := "email:" + l.Email
	if l.Email == "" {
		contact = "phone:" + l.Phone
	}
	course := strings.ToLower(strings.Join(strings.Fields(l.Course), " "))
	clientID := strings.TrimSpace(l.ClientID)
	// A JSON array frames the parts, so no choice of values can make two
	// different tuples hash the same input. It is json.Marshal's encoding of
	// [3]string, which keys committed earlier were made of.
	var buf [256]byte
	b := append(buf[:0], '[')
	b = jsonx.AppendHTMLSafeString(b, contact)
	b = append(b, ',')
	b = jsonx.AppendHTMLSafeString(b, course)
	b = append(b, ',')
	b = jsonx.AppendHTMLSafeString(b, clientID)
	b = append(b, ']')
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
