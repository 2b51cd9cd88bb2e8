package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/internal/httpclient"
)

// Provisioning operations on Shop Application.
const (
	OpCreate           = "create"
	OpDelete           = "delete"
	OpReactivate       = "reactivate"
	OpAddPrestations   = "add-prestations"
	OpCancelPrestation = "cancel-prestation"

	nsShopAppGUIDs = "shopapp.guids"
)

// ProvisionCommand is the payload of shopapp.provision, and what the operator commands build.
type ProvisionCommand struct {
	Op          string           `json:"op"`
	GUID        string           `json:"guid,omitempty"`
	Key         string           `json:"key,omitempty"`
	Prestations []string         `json:"prestations,omitempty"`
	Client      shopapp.Customer `json:"client,omitzero"`
	Subdomain   string           `json:"sous_domaine,omitempty"`
	CodeOrRef   string           `json:"code_or_ref,omitempty"`
}

// ShopAppWriter is the provisioning side of the Shop Application API.
type ShopAppWriter interface {
	CreateInterface(ctx context.Context, req shopapp.CreateRequest) (string, error)
	DeleteInterface(ctx context.Context, key string) (time.Time, error)
	ReactivateInterface(ctx context.Context, key string) (time.Time, error)
	AddPrestations(ctx context.Context, key string, codes []string) ([]shopapp.AddedPrestation, error)
	CancelPrestation(ctx context.Context, key, codeOrRef string) ([]shopapp.AddedPrestation, error)
}

// ProvisionStore keeps the guid → key map and the client directory.
type ProvisionStore interface {
	StateStore
	ClientRecorder
}

// Provisioner runs provisioning commands, from the shopapp.provision topic or an operator.
type Provisioner struct {
	API   ShopAppWriter
	Store ProvisionStore
	Now   func() time.Time // nil: time.Now
}

// ErrBadCommand is a command that cannot be run as given.
var ErrBadCommand = errors.New("invalid provisioning command")

// Execute runs one command and returns what the API answered. Creation is idempotent on guid:
// a guid already created returns its key without a second call.
func (p *Provisioner) Execute(ctx context.Context, c ProvisionCommand) (any, error) {
	switch c.Op {
	case OpCreate:
		if c.GUID == "" || len(c.Prestations) == 0 {
			return nil, fmt.Errorf("%w: create needs a guid and prestations", ErrBadCommand)
		}
		if key, ok, err := p.Store.GetState(ctx, nsShopAppGUIDs, c.GUID); err != nil {
			return nil, err
		} else if ok {
			return map[string]string{"sa_key": string(key), "note": "already created"}, nil
		}
		key, err := p.API.CreateInterface(ctx, shopapp.CreateRequest{GUID: c.GUID, Prestations: c.Prestations, Client: c.Client, Subdomain: c.Subdomain})
		if err != nil {
			return nil, err
		}
		now := time.Now
		if p.Now != nil {
			now = p.Now
		}
		if err := RecordClient(ctx, p.Store, c.GUID, key, c.Client, "shopapp create", now()); err != nil {
			return nil, err
		}
		if err := p.Store.PutState(ctx, nsShopAppGUIDs, c.GUID, []byte(key)); err != nil {
			return nil, err
		}
		return map[string]string{"sa_key": key}, nil
	case OpDelete, OpReactivate:
		if c.Key == "" {
			return nil, fmt.Errorf("%w: %s needs an interface key", ErrBadCommand, c.Op)
		}
		if c.Op == OpDelete {
			t, err := p.API.DeleteInterface(ctx, c.Key)
			return map[string]time.Time{"date_suppression": t}, err
		}
		t, err := p.API.ReactivateInterface(ctx, c.Key)
		return map[string]time.Time{"date_reactivation": t}, err
	case OpAddPrestations:
		if c.Key == "" || len(c.Prestations) == 0 {
			return nil, fmt.Errorf("%w: add-prestations needs a key and prestations", ErrBadCommand)
		}
		return p.API.AddPrestations(ctx, c.Key, c.Prestations)
	case OpCancelPrestation:
		if c.Key == "" || c.CodeOrRef == "" {
			return nil, fmt.Errorf("%w: cancel-prestation needs a key and a code or reference_unique", ErrBadCommand)
		}
		return p.API.CancelPrestation(ctx, c.Key, c.CodeOrRef)
	default:
		return nil, fmt.Errorf("%w: unknown op %q", ErrBadCommand, c.Op)
	}
}

// Handle is the shopapp.provision stage. A command the API refuses (400), or that the client
// cannot even send (a key that is no path element), is dead-lettered; a server error or an outage
// is retried.
func (p *Provisioner) Handle(msg *message.Message) ([]*message.Message, error) {
	var c ProvisionCommand
	if err := json.Unmarshal(msg.Payload, &c); err != nil {
		return nil, Permanent(fmt.Errorf("decode provisioning command: %w", err))
	}
	_, err := p.Execute(msg.Context(), c)
	var apiErr *shopapp.APIError
	var argErr *shopapp.ArgumentError
	if errors.Is(err, ErrBadCommand) || errors.As(err, &argErr) ||
		(errors.As(err, &apiErr) && httpclient.Classify(apiErr.Status) != httpclient.Retry) {
		return nil, Permanent(err)
	}
	return nil, err
}

// AddShopApp adds the Shop Application handlers: the CRM sink of its events, provisioning, and
// its dead letters.
func AddShopApp(ctx context.Context, w Wiring, crm *CRMSink, prov *Provisioner, dead DeadLetterStore) error {
	// An interface's events reach the CRM in the order they happened.
	if err := w.crmStage(ctx, PipelineShopApp, TopicShopAppEvents, crm, ShopAppCRMEvent, true); err != nil {
		return err
	}
	if prov != nil {
		if err := w.handler(ctx, "shopapp.provision", TopicShopAppProvision, "", prov.Handle); err != nil {
			return err
		}
	}
	return w.deadLetters(ctx, PipelineShopApp, dead)
}

// AddBilling adds the billing handlers: the ledger of Shop Application's events, the CRM sink of
// billing events and its dead letters.
func AddBilling(ctx context.Context, w Wiring, ledger *BillingLedger, crm *CRMSink, dead DeadLetterStore) error {
	if err := w.handler(ctx, "billing.ledger", TopicShopAppEvents, "", ledger.Handle); err != nil {
		return err
	}
	if err := w.crmStage(ctx, PipelineBilling, TopicBillingEvents, crm, BillingCRMEvent, false); err != nil {
		return err
	}
	return w.deadLetters(ctx, PipelineBilling, dead)
}
