package pipelines

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/frtime"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/transforms"
)

// Topics, event types and state of the Simplébo pipeline. Provisioning commands
// (simplebo.provision) go to the partner's API; client-state webhooks are stored as received
// (simplebo.received) and applied to the client directory; both publish events on
// simplebo.events, which the CRM sink delivers in order per client.
const (
	PipelineSimplebo       = "simplebo"
	SourceSimplebo         = "simplebo"
	TopicSimpleboProvision = "simplebo.provision"
	TopicSimpleboReceived  = "simplebo.received"
	TopicSimpleboEvents    = "simplebo.events"

	EventClientMockupRequested     = "client.mockup_requested"
	EventClientActivationRequested = "client.activation_requested"
	EventClientStateChanged        = "client.state_changed"

	// Operations of a SimpleboCommand.
	SimpleboOpMockup   = "mockup"
	SimpleboOpActivate = "activate"

	// NamespaceSimpleboClients is the directory of Simplébo clients in the store's state, keyed by
	// our client_id, one SimpleboClient (JSON) each: what was sent, what the webhooks told.
	// Billing reads it.
	NamespaceSimpleboClients = "simplebo.clients"
	// nsSimpleboSeen records every webhook event applied or refused, by event id: the dedupe.
	nsSimpleboSeen = "simplebo.seen"
)

// Client states, named after the events that lead to them, in the order of a client's life.
const (
	SimpleboLeadCreated      = "lead_created"
	SimpleboServiceActivated = "service_activated"
	SimpleboBillingStarted   = "billing_started"
	SimpleboSwitchedToFree   = "switched_to_free"
	SimpleboContractEnded    = "contract_ended"
)

// SimpleboStates lists the client states in the order of a client's life.
func SimpleboStates() []string {
	return []string{SimpleboLeadCreated, SimpleboServiceActivated, SimpleboBillingStarted, SimpleboSwitchedToFree, SimpleboContractEnded}
}

// simpleboRank is a state's place in a client's life, 0 for no state.
func simpleboRank(state string) int {
	for i, s := range SimpleboStates() {
		if s == state {
			return i + 1
		}
	}
	return 0
}

// SimpleboEventMap names the states Simplébo's event_type codes lead to. The partner documents
// only three of its five codes, so the table is configuration.
type SimpleboEventMap map[int]string

// DefaultSimpleboEventMap is our reading of the partner's document: 0 lead created, 1 service
// activated, 2 contract ended, 3 billing started, 4 switched from paid to free.
func DefaultSimpleboEventMap() SimpleboEventMap {
	return SimpleboEventMap{0: SimpleboLeadCreated, 1: SimpleboServiceActivated, 2: SimpleboContractEnded, 3: SimpleboBillingStarted, 4: SimpleboSwitchedToFree}
}

// ParseSimpleboEventMap reads "0=lead_created,1=service_activated,…"; the table given replaces
// the default one whole (empty gives the default). Names are the states of SimpleboStates.
func ParseSimpleboEventMap(s string) (SimpleboEventMap, error) {
	if strings.TrimSpace(s) == "" {
		return DefaultSimpleboEventMap(), nil
	}
	m := SimpleboEventMap{}
	for _, part := range strings.Split(s, ",") {
		code, name, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return nil, fmt.Errorf("%q: want code=state", part)
		}
		n, err := strconv.Atoi(strings.TrimSpace(code))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%q: the code must be a non-negative integer", part)
		}
		name = strings.TrimSpace(name)
		if simpleboRank(name) == 0 {
			return nil, fmt.Errorf("%q: unknown state %q (want one of %s)", part, name, strings.Join(SimpleboStates(), ", "))
		}
		if _, dup := m[n]; dup {
			return nil, fmt.Errorf("code %d is mapped twice", n)
		}
		m[n] = name
	}
	return m, nil
}

// Name is the state code leads to; false for a code the table does not name.
func (m SimpleboEventMap) Name(code simplebo.EventCode) (string, bool) {
	s, ok := m[int(code)]
	return s, ok
}

// String writes the table as ParseSimpleboEventMap reads it, by code.
func (m SimpleboEventMap) String() string {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, 0, len(codes))
	for _, c := range codes {
		parts = append(parts, strconv.Itoa(c)+"="+m[c])
	}
	return strings.Join(parts, ",")
}

// SimpleboOrder places an event in a client's life, so that an event delivered late never takes
// the client's state back: by its latest date (an event sent later knows at least the dates of
// the earlier ones), then by how many dates it knows, then by its state's place in a client's
// life. Events carry dates, not times, so the last two settle events of the same day.
type SimpleboOrder struct {
	Date  time.Time `json:"date,omitzero"`
	Dates int       `json:"dates,omitempty"`
	Rank  int       `json:"rank,omitempty"`
}

// Compare is -1, 0 or +1 as o is before, level with or after p.
func (o SimpleboOrder) Compare(p SimpleboOrder) int {
	if c := o.Date.Compare(p.Date); c != 0 {
		return c
	}
	if o.Dates != p.Dates {
		return cmpInt(o.Dates, p.Dates)
	}
	return cmpInt(o.Rank, p.Rank)
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SimpleboOrderOf is where ev, leading to state (empty when its code is unknown), stands.
func SimpleboOrderOf(ev simplebo.Event, state string) SimpleboOrder {
	o := SimpleboOrder{Rank: simpleboRank(state)}
	for _, d := range []time.Time{ev.LeadCreationDate, ev.ServiceStartingDate, ev.BillingStartingDate, ev.EndOfContractDate} {
		if d.IsZero() {
			continue
		}
		o.Dates++
		if d.After(o.Date) {
			o.Date = d
		}
	}
	return o
}

// SimpleboContract is what Simplébo's events tell of a client's contract, as of the newest one.
type SimpleboContract struct {
	LeadCreationDate     time.Time `json:"lead_creation_date,omitzero"`
	ServiceStartingDate  time.Time `json:"service_starting_date,omitzero"`
	BillingStartingDate  time.Time `json:"billing_starting_date,omitzero"`
	EndOfContractDate    time.Time `json:"end_of_contract_date,omitzero"`
	UnsubscriptionReason string    `json:"unsubscription_reason,omitempty"`
	NbOfPaidMonths       int       `json:"nb_of_paid_months"`
	NbOfOfferedMonths    int       `json:"nb_of_offered_months"`
	NbOfOptions          int       `json:"nb_of_options"`
}

func contractOf(ev simplebo.Event) SimpleboContract {
	return SimpleboContract{
		LeadCreationDate: ev.LeadCreationDate, ServiceStartingDate: ev.ServiceStartingDate,
		BillingStartingDate: ev.BillingStartingDate, EndOfContractDate: ev.EndOfContractDate,
		UnsubscriptionReason: ev.UnsubscriptionReason, NbOfPaidMonths: ev.NbOfPaidMonths,
		NbOfOfferedMonths: ev.NbOfOfferedMonths, NbOfOptions: ev.NbOfOptions,
	}
}

// SimpleboClient is one client of the directory (NamespaceSimpleboClients): its identity, what
// we asked Simplébo for, and its state as the webhooks told it.
type SimpleboClient struct {
	ClientID string `json:"client_id"`
	// Identity is the client's company, names, email, phones, address and SIRET: what we sent,
	// updated by the snapshots of Simplébo's events, newer data winning field by field.
	Identity simplebo.Snapshot `json:"identity"`
	// IdentityAt is when each identity field (by its wire name) was last set.
	IdentityAt map[string]time.Time `json:"identity_at,omitempty"`
	// IdentitySource is what last changed the identity: mockup, activate or webhook.
	IdentitySource    string    `json:"identity_source,omitempty"`
	IdentityUpdatedAt time.Time `json:"identity_updated_at,omitzero"`
	Typology          *int      `json:"typology,omitempty"`

	RedirectTo            string     `json:"redirect_to,omitempty"`
	MockupRequestedAt     *time.Time `json:"mockup_requested_at,omitempty"`
	ActivationRequestedAt *time.Time `json:"activation_requested_at,omitempty"`

	// State is empty until an event of a known code arrived.
	State          string           `json:"state,omitempty"`
	StateCode      *int             `json:"state_code,omitempty"`
	StateOrder     SimpleboOrder    `json:"state_order,omitzero"`
	StateEventID   string           `json:"state_event_id,omitempty"`
	StateChangedAt time.Time        `json:"state_changed_at,omitzero"` // when we received the event
	Contract       SimpleboContract `json:"contract"`
	// UnknownEvents counts the events of codes the map does not name.
	UnknownEvents int `json:"unknown_events,omitempty"`
}

// identityFields pairs the wire names of a snapshot's fields with their values.
func identityFields(s *simplebo.Snapshot) []struct {
	name string
	v    *string
} {
	return []struct {
		name string
		v    *string
	}{
		{"lastname", &s.Lastname}, {"firstname", &s.Firstname}, {"client_title", &s.ClientTitle},
		{"company_name", &s.CompanyName}, {"siret", &s.SIRET}, {"email", &s.Email},
		{"phone_number1", &s.PhoneNumber1}, {"phone_number2", &s.PhoneNumber2},
		{"address1", &s.Address1}, {"address2", &s.Address2}, {"zipcode", &s.Zipcode},
		{"city", &s.City}, {"country", &s.Country},
	}
}

// MergeIdentity sets each non-empty field of s known at `at` over the one the client has, unless
// the client's was set later: newer data wins, field by field, and an empty field erases
// nothing. It reports whether anything changed.
func (c *SimpleboClient) MergeIdentity(s simplebo.Snapshot, at time.Time, source string) bool {
	if c.IdentityAt == nil {
		c.IdentityAt = map[string]time.Time{}
	}
	changed := false
	cur := identityFields(&c.Identity)
	for i, f := range identityFields(&s) {
		if *f.v == "" || at.Before(c.IdentityAt[f.name]) {
			continue
		}
		c.IdentityAt[f.name] = at
		if *cur[i].v != *f.v {
			*cur[i].v = *f.v
			changed = true
		}
	}
	if changed {
		c.IdentitySource, c.IdentityUpdatedAt = source, at
	}
	return changed
}

func snapshotOf(cu simplebo.Customer) simplebo.Snapshot {
	return simplebo.Snapshot{
		ClientID: cu.ClientID, Lastname: cu.Lastname, Firstname: cu.Firstname, ClientTitle: cu.ClientTitle,
		CompanyName: cu.CompanyName, SIRET: cu.SIRET, Email: cu.Email, PhoneNumber1: cu.PhoneNumber1,
		PhoneNumber2: cu.PhoneNumber2, Address1: cu.Address1, Address2: cu.Address2, Zipcode: cu.Zipcode,
		City: cu.City, Country: cu.Country,
	}
}

// SimpleboVerdict is what applying an event did to a client.
type SimpleboVerdict int

// The verdicts of ApplySimpleboEvent.
const (
	// SimpleboApplied: the event is the newest; the client's state and contract are its.
	SimpleboApplied SimpleboVerdict = iota
	// SimpleboUnchanged: the event stands level with the client's state (a repeat with another
	// snapshot): the identity may change, the state does not.
	SimpleboUnchanged
	// SimpleboStale: the event is older than the client's state: it changes nothing.
	SimpleboStale
	// SimpleboUnknown: the map does not name the code: counted, sent on as is, the state kept.
	SimpleboUnknown
)

func (v SimpleboVerdict) String() string {
	switch v {
	case SimpleboApplied:
		return "applied"
	case SimpleboUnchanged:
		return "unchanged"
	case SimpleboStale:
		return "stale"
	case SimpleboUnknown:
		return "unknown"
	}
	return "verdict(" + strconv.Itoa(int(v)) + ")"
}

// ApplySimpleboEvent applies one webhook event (its id eventID, received at receivedAt) to the
// client c and returns the client after it. Pure: the client's state never moves backwards in
// the order of SimpleboOrder, whatever the order of delivery, and applying events in any order
// ends in the state of the newest. The snapshot's fields count as of the event's latest date
// (the time received when later, or when the event has none).
func ApplySimpleboEvent(c SimpleboClient, ev simplebo.Event, m SimpleboEventMap, eventID string, receivedAt time.Time) (SimpleboClient, SimpleboVerdict) {
	if c.ClientID == "" {
		c.ClientID = ev.Client.ClientID
	}
	if c.IdentityAt != nil { // the caller's map stays the caller's
		at := make(map[string]time.Time, len(c.IdentityAt))
		for k, v := range c.IdentityAt {
			at[k] = v
		}
		c.IdentityAt = at
	}
	state, known := m.Name(ev.Type)
	order := SimpleboOrderOf(ev, state)
	at := order.Date
	if at.IsZero() || at.After(receivedAt) {
		at = receivedAt
	}
	if !known {
		c.UnknownEvents++
		if !order.Date.Before(c.StateOrder.Date) {
			c.MergeIdentity(ev.Client, at, "webhook")
		}
		return c, SimpleboUnknown
	}
	switch cmp := order.Compare(c.StateOrder); {
	case c.State != "" && cmp < 0:
		return c, SimpleboStale
	case c.State != "" && cmp == 0:
		c.MergeIdentity(ev.Client, at, "webhook")
		return c, SimpleboUnchanged
	}
	c.MergeIdentity(ev.Client, at, "webhook")
	code := int(ev.Type)
	c.State, c.StateCode, c.StateOrder, c.StateEventID, c.StateChangedAt = state, &code, order, eventID, receivedAt
	c.Contract = contractOf(ev)
	return c, SimpleboApplied
}

// SimpleboEvent is the payload of simplebo.events: a provisioning request answered, or a change
// of a client's state.
type SimpleboEvent struct {
	Type       string    `json:"type"`
	ID         string    `json:"id"`
	ClientID   string    `json:"client_id"`
	OccurredAt time.Time `json:"occurred_at"`

	// Provisioning: the operation and the link Simplébo answered with.
	Op           string `json:"op,omitempty"`
	RedirectTo   string `json:"redirect_to,omitempty"`
	InvalidSIRET bool   `json:"invalid_siret,omitempty"`

	// State changes: from and to (empty from: the first event; empty to: a code the map does not
	// name, sent as is with its event_type), the contract's dates as of the event, and the event
	// as received.
	From        string            `json:"from,omitempty"`
	To          string            `json:"to,omitempty"`
	EventType   *int              `json:"event_type,omitempty"`
	UnknownCode bool              `json:"unknown_code,omitempty"`
	Contract    *SimpleboContract `json:"contract,omitempty"`
	Raw         json.RawMessage   `json:"raw,omitempty"`

	// Client is the client's identity after the event.
	Client *simplebo.Snapshot `json:"client,omitempty"`
}

// SimpleboCRMEvent turns a simplebo.events payload into the CRM event of its type.
func SimpleboCRMEvent(payload []byte) (Event, error) {
	var ev SimpleboEvent
	if err := json.Unmarshal(payload, &ev); err != nil {
		return Event{}, fmt.Errorf("decode simplebo event: %w", err)
	}
	return Event{Type: ev.Type, ID: ev.ID, Source: SourceSimplebo, OccurredAt: ev.OccurredAt, Data: payload}, nil
}

// simpleboEventID derives a stable id: the same provisioning of a client, or the same webhook
// event, gives the same id, which the broker and the CRM drop as repeats.
func simpleboEventID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return "simplebo_" + hex.EncodeToString(h.Sum(nil)[:13])
}

func (ev SimpleboEvent) message(now time.Time) (*message.Message, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode simplebo event: %w", err)
	}
	m := message.NewMessage(ev.ID, b)
	setMeta(m, ev.ID, PipelineSimplebo, SourceSimplebo, now)
	m.Metadata.Set(MetaOrderingKey, ev.ClientID)
	return m, nil
}

// LoadSimpleboClient reads a client of the directory; ok is false when it has none.
func LoadSimpleboClient(ctx context.Context, st StateStore, clientID string) (c SimpleboClient, ok bool, err error) {
	raw, ok, err := st.GetState(ctx, NamespaceSimpleboClients, clientID)
	if err != nil || !ok {
		return SimpleboClient{ClientID: clientID}, false, err
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, false, fmt.Errorf("decode simplebo client %s: %w", clientID, err)
	}
	return c, true, nil
}

func putSimpleboClient(ctx context.Context, st StateStore, c SimpleboClient) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode simplebo client: %w", err)
	}
	if err := st.PutState(ctx, NamespaceSimpleboClients, c.ClientID, b); err != nil {
		return fmt.Errorf("record simplebo client %s: %w", c.ClientID, err)
	}
	// The client directory (what billing and operators read) learns the identity too: client_id
	// is our guid.
	if d, ok := st.(ClientRecorder); ok && !c.IdentityUpdatedAt.IsZero() {
		id := c.Identity
		address := strings.TrimSpace(id.Address1 + " " + id.Address2)
		if _, err := d.RecordIdentity(ctx, store.Identity{GUID: c.ClientID, Keys: map[string]string{store.KeyClientID: c.ClientID},
			Source: "simplebo " + c.IdentitySource, At: c.IdentityUpdatedAt, Fields: map[string]string{
				store.FieldCompany: id.CompanyName, store.FieldLastName: id.Lastname, store.FieldFirstName: id.Firstname,
				store.FieldEmail: id.Email, store.FieldPhone: id.PhoneNumber1, store.FieldAddress: address,
				store.FieldPostalCode: id.Zipcode, store.FieldCity: id.City, store.FieldSIRET: id.SIRET,
			}}); err != nil {
			return fmt.Errorf("record simplebo client %s in the directory: %w", c.ClientID, err)
		}
	}
	return nil
}

// ListSimpleboClients is the whole directory, by client id.
func ListSimpleboClients(ctx context.Context, st StateStore) ([]SimpleboClient, error) {
	all, err := st.ListState(ctx, NamespaceSimpleboClients)
	if err != nil {
		return nil, err
	}
	out := make([]SimpleboClient, 0, len(all))
	for id, raw := range all {
		var c SimpleboClient
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("decode simplebo client %s: %w", id, err)
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClientID < out[j].ClientID })
	return out, nil
}

// SimpleboAPI is the provisioning side of Simplébo's API.
type SimpleboAPI interface {
	RequestMockup(ctx context.Context, cu simplebo.Customer) (simplebo.Answer, error)
	Activate(ctx context.Context, cu simplebo.Customer) (simplebo.Answer, error)
}

// SimpleboCommand is the payload of simplebo.provision, and what the operator commands build.
type SimpleboCommand struct {
	Op     string            `json:"op"` // mockup or activate
	Client simplebo.Customer `json:"client"`
}

// SimpleboResult is what a provisioning command got.
type SimpleboResult struct {
	ClientID     string `json:"client_id"`
	Op           string `json:"op"`
	RedirectTo   string `json:"redirect_to"`
	InvalidSIRET bool   `json:"invalid_siret,omitempty"`
}

// SimpleboProvisioner runs provisioning commands, from the simplebo.provision topic or an
// operator, and records what was sent in the client directory.
type SimpleboProvisioner struct {
	API SimpleboAPI
	// Engine, when set, runs each call under the endpoint's limits (the stage); an operator's
	// command calls at once.
	Engine   *delivery.Engine
	Endpoint string // the engine's id of the API
	Store    StateStore
	Log      *slog.Logger
	Now      func() time.Time
}

// Execute runs one command. A SIRET that fails its checksum is sent all the same, and logged
// as a warning naming only the client id. Errors wrap ErrBadCommand for a command that cannot
// be sent, and are *httpclient.Error for the API's answers.
func (p *SimpleboProvisioner) Execute(ctx context.Context, c SimpleboCommand) (SimpleboResult, error) {
	call := p.API.RequestMockup
	switch c.Op {
	case SimpleboOpMockup:
	case SimpleboOpActivate:
		call = p.API.Activate
	default:
		return SimpleboResult{}, fmt.Errorf("%w: unknown op %q (want %s or %s)", ErrBadCommand, c.Op, SimpleboOpMockup, SimpleboOpActivate)
	}
	if err := c.Client.Validate(); err != nil {
		return SimpleboResult{}, fmt.Errorf("%w: %w", ErrBadCommand, err)
	}
	var ans simplebo.Answer
	send := func(ctx context.Context) error {
		var err error
		ans, err = call(ctx, c.Client)
		return err
	}
	var err error
	if p.Engine != nil {
		err = p.Engine.Do(ctx, p.Endpoint, send)
	} else {
		err = send(ctx)
	}
	invalidSIRET := ans.InvalidSIRET || (c.Client.SIRET != "" && !simplebo.ValidSIRET(c.Client.SIRET))
	if invalidSIRET {
		logOrDiscard(p.Log).Warn("simplebo: SIRET fails its checksum, sent anyway", "client_id", c.Client.ClientID, "op", c.Op)
	}
	if err != nil {
		return SimpleboResult{}, err
	}
	now := p.Now().UTC()
	cl, _, err := LoadSimpleboClient(ctx, p.Store, c.Client.ClientID)
	if err != nil {
		return SimpleboResult{}, err
	}
	cl.MergeIdentity(snapshotOf(c.Client), now, c.Op)
	typology := c.Client.Typology
	cl.Typology = &typology
	if ans.RedirectTo != "" {
		cl.RedirectTo = ans.RedirectTo
	}
	if c.Op == SimpleboOpMockup {
		cl.MockupRequestedAt = &now
	} else {
		cl.ActivationRequestedAt = &now
	}
	if err := putSimpleboClient(ctx, p.Store, cl); err != nil {
		return SimpleboResult{}, err
	}
	return SimpleboResult{ClientID: c.Client.ClientID, Op: c.Op, RedirectTo: ans.RedirectTo, InvalidSIRET: invalidSIRET}, nil
}

// Handle is the simplebo.provision stage: it runs the command and publishes
// client.mockup_requested or client.activation_requested. A command that cannot be sent, or that
// the partner refuses (a {"response": 1} answer, with its text), is dead-lettered; an outage is
// retried by redelivery (client_id makes a repeat harmless).
func (p *SimpleboProvisioner) Handle(msg *message.Message) ([]*message.Message, error) {
	var c SimpleboCommand
	if err := json.Unmarshal(msg.Payload, &c); err != nil {
		return nil, Permanent(fmt.Errorf("decode simplebo command: %w", err))
	}
	res, err := p.Execute(msg.Context(), c)
	if err != nil {
		if errors.Is(err, ErrBadCommand) || httpclient.IsPermanent(err) {
			return nil, Permanent(err)
		}
		return nil, err
	}
	typ := EventClientMockupRequested
	if c.Op == SimpleboOpActivate {
		typ = EventClientActivationRequested
	}
	now := p.Now().UTC()
	snap := snapshotOf(c.Client)
	out, err := SimpleboEvent{
		Type: typ, ID: simpleboEventID("provision", c.Op, res.ClientID), ClientID: res.ClientID, OccurredAt: now,
		Op: c.Op, RedirectTo: res.RedirectTo, InvalidSIRET: res.InvalidSIRET, Client: &snap,
	}.message(now)
	if err != nil {
		return nil, err
	}
	return []*message.Message{out}, nil
}

// SimpleboIngest accepts the events of Simplébo's webhook: it returns only once the event is
// durably published to simplebo.received, which is when the webhook may answer 200. The message
// id is the event's id, so the broker drops a repeat delivered inside its duplicate window.
type SimpleboIngest struct {
	pub     ContextPublisher
	metrics StageCounters
	yield   *Yield
	now     func() time.Time
}

// simpleboIngestWait bounds a publish: the partner waits for the answer.
const simpleboIngestWait = 15 * time.Second

// NewSimpleboIngest returns the ingest stage publishing through pub; y (may be nil) hears of
// each event being stored.
func NewSimpleboIngest(pub ContextPublisher, m *Metrics, y *Yield, now func() time.Time) *SimpleboIngest {
	return &SimpleboIngest{pub: pub, metrics: m.Stage(PipelineSimplebo, "ingest"), yield: y, now: now}
}

// SimpleboEventID is the stable id of a webhook event, whatever its encoding.
func SimpleboEventID(ev simplebo.Event) string {
	return transforms.EventID(SourceSimplebo, ev.Canonical())
}

// AcceptEvent implements simplebo.EventAcceptor.
func (in *SimpleboIngest) AcceptEvent(ctx context.Context, ev simplebo.Event) error {
	return in.accept(ctx, ev, false)
}

// accept publishes ev; a replayed one is marked MetaReplay, so the journal does not keep it again.
func (in *SimpleboIngest) accept(ctx context.Context, ev simplebo.Event, replay bool) error {
	start := time.Now()
	in.metrics.In.Inc()
	defer func() { in.metrics.Duration.Observe(time.Since(start).Seconds()) }()
	if strings.TrimSpace(ev.Client.ClientID) == "" {
		in.metrics.Failed.Inc()
		return fmt.Errorf("%w: missing client_id", simplebo.ErrInvalidEvent)
	}
	raw := ev.Canonical()
	id := transforms.EventID(SourceSimplebo, raw)
	msg := message.NewMessage(id, raw)
	setMeta(msg, id, PipelineSimplebo, SourceSimplebo, in.now())
	msg.Metadata.Set(MetaOrderingKey, ev.Client.ClientID)
	if replay {
		msg.Metadata.Set(MetaReplay, "1")
	}
	ctx, cancel := context.WithTimeout(ctx, simpleboIngestWait)
	defer cancel()
	in.yield.Storing()
	err := in.pub.PublishContext(ctx, TopicSimpleboReceived, msg)
	in.yield.Stored()
	if err != nil {
		in.metrics.Failed.Inc()
		return fmt.Errorf("store simplebo event: %w", err)
	}
	in.metrics.Out.Inc()
	return nil
}

// simpleboSeen is what the dedupe keeps of an event.
type simpleboSeen struct {
	ClientID   string    `json:"client_id"`
	EventType  int       `json:"event_type"`
	Verdict    string    `json:"verdict"`
	ReceivedAt time.Time `json:"received_at"`
}

// SimpleboSeenKeep is how long the record of an applied event is kept for its dedupe. An event
// sent again after that is still safe: it is older than the client's state (stale, nothing
// changes) or repeats it (unchanged), and a state change published again keeps its event id,
// which the CRM's delivery log skips.
const SimpleboSeenKeep = 90 * 24 * time.Hour

// PruneSimpleboSeen deletes the dedupe records of events received before before, and says how many.
func PruneSimpleboSeen(ctx context.Context, st PruningStore, before time.Time) (int, error) {
	return pruneState(ctx, st, nsSimpleboSeen, func(_ string, v []byte) bool {
		var seen simpleboSeen
		return json.Unmarshal(v, &seen) == nil && seen.ReceivedAt.Before(before)
	})
}

// SimpleboStateStage is the simplebo.state stage: it applies each received event to the client
// directory, once per event id, and publishes client.state_changed for what changed (and for
// codes the map does not name, as received).
type SimpleboStateStage struct {
	Store   StateStore
	Pub     ContextPublisher
	Map     SimpleboEventMap
	Metrics *SimpleboMetrics
	Log     *slog.Logger
	Now     func() time.Time
}

// Handle applies one event. It publishes before it records, so a failure in between redelivers
// the event, whose change is published again under the same id (dropped as a repeat): nothing is
// recorded as applied that was not published.
func (s *SimpleboStateStage) Handle(msg *message.Message) ([]*message.Message, error) {
	ctx := msg.Context()
	ev, err := simplebo.DecodeEvent("application/json", msg.Payload)
	if err != nil {
		return nil, Permanent(fmt.Errorf("decode received simplebo event %s: %w", msg.UUID, err))
	}
	if ev.Client.ClientID == "" {
		return nil, Permanent(fmt.Errorf("simplebo event %s has no client_id", msg.UUID))
	}
	id := msg.Metadata.Get(MetaEventID)
	if id == "" {
		id = SimpleboEventID(ev)
	}
	state, _ := s.Map.Name(ev.Type)
	if _, seen, err := s.Store.GetState(ctx, nsSimpleboSeen, id); err != nil {
		return nil, fmt.Errorf("simplebo dedupe: %w", err)
	} else if seen {
		markDuplicate(msg)
		s.Metrics.event(state, "duplicate")
		return nil, nil
	}
	receivedAt, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(MetaReceivedAt))
	if err != nil {
		receivedAt = s.Now()
	}
	receivedAt = receivedAt.UTC()
	prev, _, err := LoadSimpleboClient(ctx, s.Store, ev.Client.ClientID)
	if err != nil {
		return nil, err
	}
	next, verdict := ApplySimpleboEvent(prev, ev, s.Map, id, receivedAt)
	if verdict == SimpleboApplied || verdict == SimpleboUnknown {
		code := int(ev.Type)
		contract := contractOf(ev)
		snap := next.Identity
		snap.ClientID = next.ClientID
		out := SimpleboEvent{
			Type: EventClientStateChanged, ID: simpleboEventID("state", id), ClientID: next.ClientID, OccurredAt: receivedAt,
			From: prev.State, To: state, EventType: &code, UnknownCode: verdict == SimpleboUnknown,
			Contract: &contract, Raw: json.RawMessage(ev.Canonical()), Client: &snap,
		}
		m, err := out.message(receivedAt)
		if err != nil {
			return nil, Permanent(err)
		}
		if err := s.Pub.PublishContext(ctx, TopicSimpleboEvents, m); err != nil {
			return nil, fmt.Errorf("publish client state change: %w", err)
		}
	}
	if verdict != SimpleboStale {
		if err := putSimpleboClient(ctx, s.Store, next); err != nil {
			return nil, err
		}
	}
	seen, err := json.Marshal(simpleboSeen{ClientID: ev.Client.ClientID, EventType: int(ev.Type), Verdict: verdict.String(), ReceivedAt: receivedAt})
	if err != nil {
		return nil, err
	}
	if err := s.Store.PutState(ctx, nsSimpleboSeen, id, seen); err != nil {
		return nil, fmt.Errorf("simplebo dedupe: %w", err)
	}
	s.Metrics.event(state, verdict.String())
	switch verdict {
	case SimpleboApplied:
		s.Metrics.change(prev.State, state)
	case SimpleboStale:
		logOrDiscard(s.Log).Info("simplebo: older event recorded, state kept", "client_id", ev.Client.ClientID, "event_id", id,
			"event_type", int(ev.Type), "state", prev.State)
	case SimpleboUnknown:
		logOrDiscard(s.Log).Warn("simplebo: event code not in the map, sent on as is", "client_id", ev.Client.ClientID, "event_id", id, "event_type", ev.TypeRaw)
	}
	return nil, nil
}

func logOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// SimpleboMetrics counts the events the state stage applied and the state changes, and reads
// the number of clients by state from the store at each scrape.
type SimpleboMetrics struct {
	events  *prometheus.CounterVec
	changes *prometheus.CounterVec
}

const simpleboNoState = "none"

// NewSimpleboMetrics registers the pipeline's metrics on reg; clients is the directory the
// clients-by-state gauge reads.
func NewSimpleboMetrics(reg prometheus.Registerer, clients StateStore) *SimpleboMetrics {
	m := &SimpleboMetrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "simplebo", Name: "state_events_total",
			Help: "Simplébo webhook events by the state they lead to (unknown for a code the map does not name) and what the state stage did (applied, unchanged, stale, unknown, duplicate).",
		}, []string{"state", "verdict"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "simplebo", Name: "state_changes_total",
			Help: "Simplébo client state changes, by state left (none for a new client) and state entered.",
		}, []string{"from", "to"}),
	}
	reg.MustRegister(m.events, m.changes, &simpleboClientsCollector{
		store: clients,
		desc: prometheus.NewDesc("passerelle_simplebo_clients", "Simplébo clients of the directory by state (none: provisioned, no event yet).",
			[]string{"state"}, nil),
	})
	for _, s := range append(SimpleboStates(), "unknown") {
		for _, v := range []string{"applied", "unchanged", "stale", "unknown", "duplicate"} {
			m.events.WithLabelValues(s, v)
		}
	}
	return m
}

func (m *SimpleboMetrics) event(state, verdict string) {
	if m == nil {
		return
	}
	if state == "" {
		state = "unknown"
	}
	m.events.WithLabelValues(state, verdict).Inc()
}

func (m *SimpleboMetrics) change(from, to string) {
	if m == nil {
		return
	}
	if from == "" {
		from = simpleboNoState
	}
	m.changes.WithLabelValues(from, to).Inc()
}

// simpleboClientsCollector is the clients-by-state gauge, read from the store at each scrape.
type simpleboClientsCollector struct {
	store StateStore
	desc  *prometheus.Desc
}

func (c *simpleboClientsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *simpleboClientsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	clients, err := ListSimpleboClients(ctx, c.store)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	counts := map[string]int{simpleboNoState: 0}
	for _, s := range SimpleboStates() {
		counts[s] = 0
	}
	for _, cl := range clients {
		s := cl.State
		if s == "" {
			s = simpleboNoState
		}
		counts[s]++
	}
	for s, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), s)
	}
}

// SimpleboStages are the Simplébo pipeline's collaborators.
type SimpleboStages struct {
	// CRM is nil when no CRM endpoint is configured: events wait in their topic.
	CRM *CRMSink
	// Provisioner is nil when the API is not configured: commands wait in their topic.
	Provisioner *SimpleboProvisioner
	States      *SimpleboStateStage
	Dead        DeadLetterStore
}

// AddSimplebo adds the Simplébo handlers: provisioning, client states, the CRM sink of their
// events, and the dead letters.
func AddSimplebo(ctx context.Context, w Wiring, st SimpleboStages) error {
	if st.Provisioner != nil {
		if err := w.handler(ctx, "simplebo.provision", TopicSimpleboProvision, TopicSimpleboEvents, st.Provisioner.Handle); err != nil {
			return err
		}
	}
	// One event at a time: each reads and writes its client's record.
	if err := w.handlerWith(ctx, "simplebo.state", TopicSimpleboReceived, "", st.States.Handle, SubscribeOptions{Ordered: true}); err != nil {
		return err
	}
	// A client's events reach the CRM in the order they were published.
	if err := w.crmStage(ctx, PipelineSimplebo, TopicSimpleboEvents, st.CRM, SimpleboCRMEvent, true); err != nil {
		return err
	}
	return w.deadLetters(ctx, PipelineSimplebo, st.Dead)
}

// SimpleboBilling bills Simplébo clients in the monthly file: each client of the directory, as
// its contract dates say (transforms.SimpleboBillingRows), with one configured prestation.
type SimpleboBilling struct {
	Store StateStore
	Item  transforms.CatalogueItem
}

// BillingRows implements BillingSource.
func (s *SimpleboBilling) BillingRows(ctx context.Context, p transforms.Period, rules transforms.BillingRules) ([]transforms.BillingRow, transforms.BillingKind, bool, error) {
	clients, err := ListSimpleboClients(ctx, s.Store)
	if err != nil {
		return nil, transforms.BillingNever, false, fmt.Errorf("simplebo clients: %w", err)
	}
	kind, known := transforms.BillingMonthly, false
	if r, ok := rules.Match(s.Item.Code); ok {
		kind, known = r.Kind, true
	}
	billable := make([]transforms.SimpleboBillable, 0, len(clients))
	for _, c := range clients {
		b := transforms.SimpleboBillable{
			ClientID: c.ClientID, Company: c.Identity.CompanyName, LastName: c.Identity.Lastname,
			FirstName: c.Identity.Firstname, Email: c.Identity.Email,
			Start: c.Contract.BillingStartingDate, End: c.Contract.EndOfContractDate,
			OfferedMonths: c.Contract.NbOfOfferedMonths,
		}
		if b.Start.IsZero() {
			b.Start = c.Contract.ServiceStartingDate
		}
		if c.State == SimpleboSwitchedToFree {
			b.FreeFrom = c.StateOrder.Date
		}
		billable = append(billable, b)
	}
	return transforms.SimpleboBillingRows(p, frtime.Paris(), billable, s.Item, kind), kind, known, nil
}
