package httpclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Outcome is what a call to a partner's endpoint came to, by the one table every outbound sink
// uses (CONTRACTS.md "CRM webhooks"): delivered, try again later, the endpoint is gone, or no
// retry will help.
type Outcome int

// The outcomes of the table.
const (
	Delivered Outcome = iota
	Retry
	Gone
	Permanent
)

func (o Outcome) String() string {
	switch o {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case Gone:
		return "gone"
	case Permanent:
		return "permanent"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Classify is the outcome table for an HTTP status: 2xx delivered; 408, 425, 429 and 5xx but 501
// retry; 410 gone (disable the endpoint); 1xx, 3xx, 501 and every other 4xx permanent.
func Classify(status int) Outcome {
	switch {
	case status >= 200 && status < 300:
		return Delivered
	case status == http.StatusGone:
		return Gone
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests:
		return Retry
	case status >= 500 && status != http.StatusNotImplemented && status < 600:
		return Retry
	}
	return Permanent
}

// Retryable tells whether a status is worth another attempt.
func Retryable(status int) bool { return Classify(status) == Retry }

// Error is a failed outbound call, classified by the outcome table. Every connector's client
// returns it (or wraps it), so the delivery engine and the pipelines read one shape.
type Error struct {
	// Connector names the partner ("crm", "shopapp", "simplebo", …).
	Connector string
	// Endpoint is the host or route template only: a URL's path or query often holds a secret.
	Endpoint string
	// Status is the last HTTP status answered, 0 when no response came.
	Status int
	// Attempts counts the HTTP attempts made in the call.
	Attempts int
	// Outcome is the table's verdict: Retry, Gone or Permanent.
	Outcome Outcome
	// RetryAfter is the wait the endpoint asked for with its last answer, if any.
	RetryAfter time.Duration
	// Message is the partner's reason (an error field of its body, or the start of the body).
	Message string
	// Err is the transport or context error when no response came, or a cause the connector adds.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	endpoint := e.Endpoint
	if endpoint == "" {
		endpoint = "an unusable endpoint"
	}
	fmt.Fprintf(&b, "%s: %s failed", e.Connector, endpoint)
	if e.Attempts > 0 {
		fmt.Fprintf(&b, " after %d attempt(s)", e.Attempts)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %q", e.Message)
	}
	switch e.Outcome {
	case Gone:
		b.WriteString(" (gone: endpoint disabled)")
	case Permanent:
		b.WriteString(" (permanent)")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Classified is an error that carries its verdict: *Error, and a connector's own error types
// that classify with the same table.
type Classified interface {
	error
	Verdict() Outcome
}

// Verdict implements Classified.
func (e *Error) Verdict() Outcome { return e.Outcome }

// OutcomeOf classifies any error a call returned: nil is delivered, a Classified error carries
// its own outcome, anything else (a transport failure, a timeout) is retried.
func OutcomeOf(err error) Outcome {
	if err == nil {
		return Delivered
	}
	var c Classified
	if errors.As(err, &c) {
		return c.Verdict()
	}
	return Retry
}

// IsPermanent reports whether no later attempt of the call can succeed (Gone included).
func IsPermanent(err error) bool {
	o := OutcomeOf(err)
	return o == Permanent || o == Gone
}

// IsGone reports whether the endpoint answered 410 and must be disabled.
func IsGone(err error) bool { return OutcomeOf(err) == Gone }

// RetryAfterOf is the wait the endpoint asked for, if the error carries one (a RetryAfter
// method, as *Error has).
func RetryAfterOf(err error) (time.Duration, bool) {
	var e interface{ RetryAfterHint() time.Duration }
	if errors.As(err, &e) && e.RetryAfterHint() > 0 {
		return e.RetryAfterHint(), true
	}
	return 0, false
}

// RetryAfterHint is the wait the endpoint asked for.
func (e *Error) RetryAfterHint() time.Duration { return e.RetryAfter }

// StatusOf is the HTTP status a failed call last got, 0 when none (or not known).
func StatusOf(err error) int {
	var e interface{ HTTPStatus() int }
	if errors.As(err, &e) {
		return e.HTTPStatus()
	}
	return 0
}

// HTTPStatus is the last status answered.
func (e *Error) HTTPStatus() int { return e.Status }

// ResponseRetryAfter reads Retry-After from a retryable answer (429, 503 and the other statuses
// the table retries); 0 and false when there is none.
func ResponseRetryAfter(resp *http.Response) (time.Duration, bool) {
	if resp == nil || Classify(resp.StatusCode) != Retry {
		return 0, false
	}
	return RetryAfter(resp.Header.Get("Retry-After"), time.Now())
}

// Canceled reports whether err is the caller's own cancellation, which is no verdict on the
// endpoint.
func Canceled(err error) bool {
	return errors.Is(err, context.Canceled)
}
