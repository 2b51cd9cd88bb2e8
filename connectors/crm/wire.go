package crm

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Event types carried in Envelope.Type.
const (
	EventLeadCreated            = "lead.created"
	EventInterfaceCreated       = "interface.created"
	EventInterfaceStatusChanged = "interface.status_changed"
	EventPrestationAdded        = "prestation.added"
	EventPrestationCancelled    = "prestation.cancelled"
	EventBillingFileUploaded    = "billing.file_uploaded"
	EventMessageStatusChanged   = "message.status_changed"
	EventClientStateChanged     = "client.state_changed"
	EventERPClientChanged       = "erp.client_changed"
	EventERPQuoteChanged        = "erp.quote_changed"
	EventERPOrderChanged        = "erp.order_changed"
)

// Envelope is the body of the generic format. ID is the event id, the same value as the
// webhook-id header. Data holds the normalised record and, under "raw", the record as received.
type Envelope struct {
	Type       string          `json:"type"`
	ID         string          `json:"id"`
	OccurredAt time.Time       `json:"occurred_at"`
	Source     string          `json:"source"`
	Data       json.RawMessage `json:"data"`
}

// HubSpotContact is the body of the hubspot format, for lead.created. Properties uses HubSpot's
// contact property names where they exist (email, firstname, lastname, phone, city, zip,
// salutation, company, hs_lead_status) and custom ones otherwise (formation, horaire_rappel,
// source_id).
type HubSpotContact struct {
	Properties map[string]string `json:"properties"`
}

// Format is the body shape an endpoint expects.
type Format string

// Formats an endpoint can be configured with.
const (
	FormatGeneric Format = "generic"
	FormatHubSpot Format = "hubspot"
)

// ErrUnknownFormat is returned by ParseFormat.
var ErrUnknownFormat = errors.New("crm: unknown format")

// ParseFormat reads a configured format name, ignoring case and surrounding spaces.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case FormatGeneric, FormatHubSpot:
		return f, nil
	}
	return "", fmt.Errorf("%w %q (want %q or %q)", ErrUnknownFormat, s, FormatGeneric, FormatHubSpot)
}
