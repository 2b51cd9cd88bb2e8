package crm

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/passerelle/passerelle/internal/httpclient"
)

// DeliveryError is a failed delivery, classified for the caller: retry it later (Permanent
// false), dead-letter it (Permanent), and also disable the endpoint (Gone).
type DeliveryError struct {
	// Endpoint is the endpoint's host only: a webhook URL's path or query often holds a secret.
	Endpoint string
	// Status is the last HTTP status answered, 0 when no response came.
	Status int
	// Attempts counts the HTTP attempts made in the call.
	Attempts int
	// Permanent: sending the same body again will not help.
	Permanent bool
	// Gone: the endpoint answered 410, which Standard Webhooks defines as "stop sending here".
	Gone bool
	// RetryAfter is the wait the endpoint asked for with its last answer, if any.
	RetryAfter time.Duration
	// Body is the start of the last response body (at most 200 bytes), for the operator.
	Body string
	// Err is the transport or context error when no response came; nil when one did.
	Err error
}

func (e *DeliveryError) Error() string {
	endpoint := e.Endpoint
	if endpoint == "" {
		endpoint = "an unusable endpoint"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "crm: delivery to %s failed after %d attempt(s)", endpoint, e.Attempts)
	if e.Status != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.Status)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	if e.Body != "" {
		fmt.Fprintf(&b, ": body %q", e.Body)
	}
	switch {
	case e.Gone:
		b.WriteString(" (gone: disable the endpoint)")
	case e.Permanent:
		b.WriteString(" (permanent)")
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

func (e *DeliveryError) Unwrap() error { return e.Err }

// Verdict implements httpclient.Classified: the delivery engine reads it.
func (e *DeliveryError) Verdict() httpclient.Outcome {
	switch {
	case e.Gone:
		return httpclient.Gone
	case e.Permanent:
		return httpclient.Permanent
	}
	return httpclient.Retry
}

// RetryAfterHint is the wait the endpoint asked for.
func (e *DeliveryError) RetryAfterHint() time.Duration { return e.RetryAfter }

// HTTPStatus is the last status answered.
func (e *DeliveryError) HTTPStatus() int { return e.Status }

// IsPermanent reports whether err is a delivery that must not be retried.
func IsPermanent(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Permanent
}

// IsGone reports whether err says the endpoint is gone (HTTP 410) and should be disabled.
func IsGone(err error) bool {
	var de *DeliveryError
	return errors.As(err, &de) && de.Gone
}
