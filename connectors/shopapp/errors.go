package shopapp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// Sentinels an *APIError matches with errors.Is, by status.
var (
	// ErrBadRequest: 400, the route is unknown or malformed — which, for this API, includes an
	// unknown interface key or prestation code and an order that breaks the rules.
	ErrBadRequest = errors.New("shopapp: bad request")
	// ErrUnauthorized: 401, bad credentials, or a token refused twice in a row.
	ErrUnauthorized = errors.New("shopapp: unauthorized")
	// ErrServer: 5xx, still failing after the retries.
	ErrServer = errors.New("shopapp: server error")
	// ErrRateLimited: 429, still refused after the retries.
	ErrRateLimited = errors.New("shopapp: rate limited")
)

// APIError is an answer other than 2xx, with the partner's message when it sent one.
type APIError struct {
	Status   int
	Message  string
	Endpoint string // route template, "GET /interfaces/{cle}": never a key, a code or a token
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("shopapp: %s: %d: %s", e.Endpoint, e.Status, msg)
}

// Is matches the sentinel of the error's status class.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrBadRequest:
		return e.Status == http.StatusBadRequest
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized
	case ErrServer:
		return e.Status >= 500
	case ErrRateLimited:
		return e.Status == http.StatusTooManyRequests
	}
	return false
}

// IsRetryable reports whether a later attempt of the call may succeed: rate limiting, server
// errors and transport failures are; 400, 401, other 4xx and cancellation are not, so that a bad
// order or bad credentials reach an operator instead of being retried.
func IsRetryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var api *APIError
	if errors.As(err, &api) {
		return httpclient.Classify(api.Status) == httpclient.Retry
	}
	var arg *ArgumentError
	return !errors.As(err, &arg)
}

// ArgumentError is a call refused before any request, for an argument that cannot be sent.
type ArgumentError struct {
	Endpoint string
	Reason   string
}

func (e *ArgumentError) Error() string {
	return fmt.Sprintf("shopapp: %s: %s", e.Endpoint, e.Reason)
}

// scrub removes from err what must never be printed: the query string of the URL in a *url.Error
// (GET /token carries client_secret there), and, belt and braces, any secret left in the text.
func scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	// net/http returns the *url.Error itself, not wrapped: that is the case to clean.
	if ue, ok := err.(*url.Error); ok {
		clean := *ue
		clean.URL = "[redacted]"
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.ForceQuery, u.User, u.Fragment = "", false, nil, ""
			clean.URL = u.String()
		}
		err = &clean
	}
	msg := err.Error()
	leaked := strings.Contains(msg, "client_secret=")
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg, leaked = strings.ReplaceAll(msg, s, "[redacted]"), true
		}
	}
	if !leaked {
		return err
	}
	// The original still holds the secret: keep only its text, cleaned, and whether it was a
	// cancellation or a deadline.
	if i := strings.Index(msg, "client_secret="); i >= 0 {
		msg = msg[:i] + "[redacted]"
	}
	s := &scrubbed{msg: msg}
	switch {
	case errors.Is(err, context.Canceled):
		s.cause = context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		s.cause = context.DeadlineExceeded
	}
	return s
}

// scrubbed is an error whose text had to be cleaned; it unwraps only to a context error.
type scrubbed struct {
	msg   string
	cause error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.cause }
