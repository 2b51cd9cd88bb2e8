package biway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/passerelle/passerelle/internal/frtime"
)

// Callback types the partner posts to the registered URL.
const (
	TypeMessengerReport = "MESSENGER_REPORT"
	TypeAccountState    = "ACCOUNT_STATE"
	TypeCompanyState    = "COMPANY_STATE"
	TypeAgentState      = "AGENT_STATE"
)

// State is a message's delivery state, as a MESSENGER_REPORT carries it.
type State string

// Message states, in the order they happen; StateFailed is final.
const (
	StateAccepted  State = "accepted"
	StateSent      State = "sent"
	StateDelivered State = "delivered"
	StateRead      State = "read"
	StateFailed    State = "failed"
)

// rank orders the states; 0 is unknown.
func (s State) rank() int {
	switch s {
	case StateAccepted:
		return 1
	case StateSent:
		return 2
	case StateDelivered:
		return 3
	case StateRead:
		return 4
	case StateFailed:
		return 5
	}
	return 0
}

// Valid reports whether s is one of the five states.
func (s State) Valid() bool { return s.rank() != 0 }

// Advance reports whether a report of state next moves a message now in state current forward,
// so that duplicated and reordered reports change nothing. current is "" for a message with no
// report yet. The order is accepted < sent < delivered < read. Failed is final, and reachable
// only before delivery: a message the handset confirmed cannot fail afterwards, so a late
// "failed" after "delivered" is stale. An unknown next never advances.
func Advance(current, next State) bool {
	if !next.Valid() || current == StateFailed {
		return false
	}
	if !current.Valid() {
		return true
	}
	if next == StateFailed {
		return current == StateAccepted || current == StateSent
	}
	return next.rank() > current.rank()
}

// EntityEtat is the state of an account, company or agent.
type EntityEtat string

// Entity states. They have no order: an active account can be suspended and come back.
const (
	EtatPending   EntityEtat = "pending"
	EtatActive    EntityEtat = "active"
	EtatRefused   EntityEtat = "refused"
	EtatSuspended EntityEtat = "suspended"
)

// Valid reports whether e is one of the four states.
func (e EntityEtat) Valid() bool {
	switch e {
	case EtatPending, EtatActive, EtatRefused, EtatSuspended:
		return true
	}
	return false
}

// Report is a MESSENGER_REPORT: a message's new state.
type Report struct {
	MessageID string
	Reference string // our event id, as given at submission
	Etat      State
	Raison    string // why it failed; empty otherwise
	Date      time.Time
}

// EntityState is an ACCOUNT_STATE, COMPANY_STATE or AGENT_STATE: an entity's new state.
type EntityState struct {
	Type string // which kind of entity: TypeAccountState, TypeCompanyState or TypeAgentState
	ID   string
	Etat EntityEtat
	Date time.Time
}

// Callback is one decoded callback: exactly one of Report and Entity is set, as Type says.
type Callback struct {
	Type   string
	Report *Report
	Entity *EntityState
	// WebhookID is the webhook-id header, set by the handler (DecodeCallback leaves it empty):
	// the same report redelivered carries the same id.
	WebhookID string
}

// ErrInvalidCallback is wrapped by every DecodeCallback error; a CallbackAcceptor returns it
// (wrapped) for a callback no retry can fix, which the handler answers with 400.
var ErrInvalidCallback = errors.New("biway: invalid callback")

// callbackWire is the union of the callback shapes.
type callbackWire struct {
	Type      string      `json:"type"`
	MessageID string      `json:"message_id"`
	Reference string      `json:"reference"`
	Etat      string      `json:"etat"`
	Raison    string      `json:"raison"`
	Date      frtime.Time `json:"date"`
	ID        string      `json:"id"`
}

// DecodeCallback reads one callback body. Errors wrap ErrInvalidCallback and quote no field
// value but the type and state names, so they can be logged and sent back.
func DecodeCallback(body []byte) (Callback, error) {
	var w callbackWire
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&w); err != nil {
		return Callback{}, fmt.Errorf("%w: not a JSON object of the expected shape", ErrInvalidCallback)
	}
	if dec.More() {
		return Callback{}, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidCallback)
	}
	if w.Date.IsZero() {
		return Callback{}, fmt.Errorf("%w: missing date", ErrInvalidCallback)
	}
	switch w.Type {
	case TypeMessengerReport:
		st := State(w.Etat)
		if !st.Valid() {
			return Callback{}, fmt.Errorf("%w: unknown message state %q", ErrInvalidCallback, clip(w.Etat))
		}
		if w.MessageID == "" {
			return Callback{}, fmt.Errorf("%w: missing message_id", ErrInvalidCallback)
		}
		return Callback{Type: w.Type, Report: &Report{
			MessageID: w.MessageID, Reference: w.Reference, Etat: st, Raison: w.Raison, Date: w.Date.Time,
		}}, nil
	case TypeAccountState, TypeCompanyState, TypeAgentState:
		e := EntityEtat(w.Etat)
		if !e.Valid() {
			return Callback{}, fmt.Errorf("%w: unknown entity state %q", ErrInvalidCallback, clip(w.Etat))
		}
		if w.ID == "" {
			return Callback{}, fmt.Errorf("%w: missing id", ErrInvalidCallback)
		}
		return Callback{Type: w.Type, Entity: &EntityState{Type: w.Type, ID: w.ID, Etat: e, Date: w.Date.Time}}, nil
	case "":
		return Callback{}, fmt.Errorf("%w: missing type", ErrInvalidCallback)
	}
	return Callback{}, fmt.Errorf("%w: unknown type %q", ErrInvalidCallback, clip(w.Type))
}

// clip bounds a partner string quoted in an error.
func clip(s string) string {
	const n = 32
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
