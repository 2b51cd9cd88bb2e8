// Package stdwebhook signs and verifies webhooks with the Standard Webhooks scheme
// (https://www.standardwebhooks.com): an HMAC-SHA256 of "id.timestamp.body", keyed by the
// base64-decoded part of a whsec_ secret, carried in the webhook-id, webhook-timestamp and
// webhook-signature headers. The CRM sink signs what it sends with it; the Bi-way callback
// endpoint verifies what it receives.
package stdwebhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the scheme.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far a webhook-timestamp may be from the verifier's clock, either way.
const Tolerance = 5 * time.Minute

const (
	secretPrefix = "whsec_"
	version      = "v1"
)

// Sentinel errors, wrapped with details.
var (
	ErrInvalidSecret    = errors.New("stdwebhook: invalid secret")
	ErrMissingHeaders   = errors.New("stdwebhook: missing webhook headers")
	ErrInvalidSignature = errors.New("stdwebhook: no matching signature")
	ErrTimestamp        = errors.New("stdwebhook: invalid or out of tolerance timestamp")
)

// key decodes a secret, with or without its whsec_ prefix.
func key(secret string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, secretPrefix))
	if err != nil {
		// The decoder's message quotes an offset, never the secret itself.
		return nil, fmt.Errorf("%w: %w", ErrInvalidSecret, err)
	}
	if len(k) == 0 {
		return nil, fmt.Errorf("%w: empty key", ErrInvalidSecret)
	}
	return k, nil
}

// CheckSecret reports whether secret can sign, so that a misconfiguration fails at start-up.
func CheckSecret(secret string) error {
	_, err := key(secret)
	return err
}

// NewSecret returns a fresh secret: whsec_ and the base64 of 24 random bytes.
func NewSecret() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("stdwebhook: generate secret: %w", err)
	}
	return secretPrefix + base64.StdEncoding.EncodeToString(b), nil
}

func mac(k []byte, msgID string, ts int64, body []byte) []byte {
	h := hmac.New(sha256.New, k)
	h.Write([]byte(msgID))
	h.Write([]byte{'.'})
	h.Write(strconv.AppendInt(nil, ts, 10))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Sign returns the webhook-signature value for one message: "v1,<base64 HMAC>". The timestamp
// is taken at second precision, as the header carries it.
func Sign(secret, msgID string, ts time.Time, body []byte) (string, error) {
	k, err := key(secret)
	if err != nil {
		return "", err
	}
	return version + "," + base64.StdEncoding.EncodeToString(mac(k, msgID, ts.Unix(), body)), nil
}

// Headers returns the three headers of a signed message, to copy onto a request.
func Headers(secret, msgID string, ts time.Time, body []byte) (http.Header, error) {
	sig, err := Sign(secret, msgID, ts, body)
	if err != nil {
		return nil, err
	}
	h := make(http.Header, 3)
	h.Set(HeaderID, msgID)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, sig)
	return h, nil
}

// Verify checks a received message against secret at time now. It accepts when any of the
// space-separated v1 signatures matches, ignoring other versions (a sender rotating secrets
// sends one signature per secret), and rejects a timestamp more than Tolerance away from now,
// which bounds replays.
func Verify(secret string, h http.Header, body []byte, now time.Time) error {
	k, err := key(secret)
	if err != nil {
		return err
	}
	msgID, tsText, sigs := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if msgID == "" || tsText == "" || sigs == "" {
		return ErrMissingHeaders
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: not an integer", ErrTimestamp)
	}
	// time.Time.Sub saturates, so an absurd timestamp cannot overflow past the check.
	if d := now.Sub(time.Unix(ts, 0)); d > Tolerance || d < -Tolerance {
		return fmt.Errorf("%w: %s off", ErrTimestamp, d.Round(time.Second))
	}
	want := mac(k, msgID, ts, body)
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if !ok || v != version {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(sig)
		if err != nil {
			continue
		}
		if hmac.Equal(got, want) {
			return nil
		}
	}
	return ErrInvalidSignature
}
