package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"github.com/passerelle/passerelle/internal/redact"
)

// AuthScheme says where a webhook sender puts its token. The set is the one the Ici Formation
// document offers its clients; Simplébo's webhooks reuse it.
type AuthScheme string

const (
	// AuthBearer reads "Authorization: Bearer <t>".
	AuthBearer AuthScheme = "bearer"
	// AuthAPIKey reads "X-API-Key: <t>".
	AuthAPIKey AuthScheme = "api-key"
	// AuthXToken reads "X-Token: <t>".
	AuthXToken AuthScheme = "x-token"
	// AuthToken reads "Authorization: Token <t>" or the Rails form `Authorization: Token token="<t>"`.
	AuthToken AuthScheme = "token"
)

// ParseAuthScheme reads a scheme from configuration, ignoring case and surrounding spaces.
func ParseAuthScheme(s string) (AuthScheme, error) {
	switch sc := AuthScheme(strings.ToLower(strings.TrimSpace(s))); sc {
	case AuthBearer, AuthAPIKey, AuthXToken, AuthToken:
		return sc, nil
	}
	return "", fmt.Errorf("unknown auth scheme %q (want %s, %s, %s or %s)", s, AuthBearer, AuthAPIKey, AuthXToken, AuthToken)
}

// TokenAuth checks the shared token a webhook sender presents. The zero value, or any value with
// an empty Token, refuses every request: a missing secret in configuration must not open the door.
type TokenAuth struct {
	Scheme AuthScheme
	Token  string
}

// Check reports whether r carries the configured token in the configured place.
func (a TokenAuth) Check(r *http.Request) bool {
	if a.Token == "" {
		return false
	}
	got, n := a.presented(r.Header)
	for _, t := range got[:n] {
		if equalConstantTime(t, a.Token) {
			return true
		}
	}
	return false
}

// presented returns the candidate tokens r carries for the scheme; two only for the Token
// scheme, whose value may be either bare or in the token="…" form. An array, not a slice: no
// allocation per request.
func (a TokenAuth) presented(h http.Header) (got [2]string, n int) {
	switch a.Scheme {
	case AuthAPIKey:
		return [2]string{strings.TrimSpace(h.Get("X-API-Key"))}, 1
	case AuthXToken:
		return [2]string{strings.TrimSpace(h.Get("X-Token"))}, 1
	case AuthBearer:
		if t, ok := authorization(h, "Bearer"); ok {
			return [2]string{t}, 1
		}
	case AuthToken:
		if t, ok := authorization(h, "Token"); ok {
			if p, ok := tokenParam(t); ok {
				return [2]string{t, p}, 2
			}
			return [2]string{t}, 1
		}
	}
	return got, 0
}

// authorization returns the credentials of an Authorization header using scheme, whose name
// compares without case (RFC 9110 §11.1).
func authorization(h http.Header, scheme string) (string, bool) {
	v := h.Get("Authorization")
	name, cred, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || !strings.EqualFold(name, scheme) {
		return "", false
	}
	return strings.TrimSpace(cred), true
}

// tokenParam reads the token="<t>" (or token=<t>) form that Rails' token authentication sends,
// ignoring any further ", key=value" parameters.
func tokenParam(cred string) (string, bool) {
	const key = "token="
	if len(cred) < len(key) || !strings.EqualFold(cred[:len(key)], key) {
		return "", false
	}
	v := cred[len(key):]
	if strings.HasPrefix(v, `"`) {
		end := strings.IndexByte(v[1:], '"')
		if end < 0 {
			return "", false
		}
		return v[1 : 1+end], true
	}
	v, _, _ = strings.Cut(v, ",")
	return strings.TrimSpace(v), true
}

// equalConstantTime compares digests rather than the strings so that neither the content nor
// the length of the configured token leaks through timing.
func equalConstantTime(got, want string) bool {
	g := sha256.Sum256([]byte(got))
	w := sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// SetHeader puts the token in h the way the scheme says; the Token scheme uses the token="<t>"
// form, which Check also accepts bare. Simulators use it to play the partner.
func (a TokenAuth) SetHeader(h http.Header) {
	switch a.Scheme {
	case AuthBearer:
		h.Set("Authorization", "Bearer "+a.Token)
	case AuthAPIKey:
		h.Set("X-API-Key", a.Token)
	case AuthXToken:
		h.Set("X-Token", a.Token)
	case AuthToken:
		h.Set("Authorization", `Token token="`+a.Token+`"`)
	}
}

// String hides the token, so that printing a config never leaks it.
func (a TokenAuth) String() string {
	return string(a.Scheme) + ":" + redact.Secret(a.Token)
}

// LogValue hides the token from slog.
func (a TokenAuth) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("scheme", string(a.Scheme)),
		slog.String("token", redact.Secret(a.Token)),
	)
}
