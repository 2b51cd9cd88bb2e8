package simplebosim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/internal/httpapi"
)

// Encoding is how SendEvent encodes an event.
type Encoding int

// The encodings: a form is what Simplébo sends.
const (
	Form Encoding = iota
	Multipart
	JSON
)

type sendOptions struct {
	enc  Encoding
	auth *httpapi.TokenAuth
}

// SendOption changes how SendEvent posts.
type SendOption func(*sendOptions)

// WithEncoding posts the event as a multipart form or JSON rather than a form.
func WithEncoding(e Encoding) SendOption { return func(o *sendOptions) { o.enc = e } }

// WithAuth adds the token the way a.Scheme says.
func WithAuth(a httpapi.TokenAuth) SendOption { return func(o *sendOptions) { o.auth = &a } }

// maxResponse bounds what SendEvent reads of an answer; ours are a few dozen bytes.
const maxResponse = 1 << 20

// Encode is the body and content type of ev as SendEvent posts it.
func Encode(ev simplebo.Event, e Encoding) (body []byte, contentType string, err error) {
	switch e {
	case Form:
		return []byte(ev.Values().Encode()), "application/x-www-form-urlencoded", nil
	case JSON:
		f := map[string]string{}
		for k, v := range ev.Values() {
			f[k] = v[0]
		}
		b, err := json.Marshal(f)
		return b, "application/json", err
	case Multipart:
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		vals := ev.Values()
		keys := make([]string, 0, len(vals))
		for k := range vals {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := mw.WriteField(k, vals.Get(k)); err != nil {
				return nil, "", err
			}
		}
		if err := mw.Close(); err != nil {
			return nil, "", err
		}
		return buf.Bytes(), mw.FormDataContentType(), nil
	}
	return nil, "", fmt.Errorf("simplebosim: unknown encoding %d", e)
}

// SendEvent posts ev to webhookURL as Simplébo does (a form, one event per request) and
// returns the status answered. err is a transport failure only: any status comes back with a
// nil err.
func (s *Sim) SendEvent(ctx context.Context, webhookURL string, ev simplebo.Event, opts ...SendOption) (int, error) {
	var o sendOptions
	for _, opt := range opts {
		opt(&o)
	}
	body, ct, err := Encode(ev, o.enc)
	if err != nil {
		return 0, fmt.Errorf("simplebosim: encode event: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, webhookURL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("simplebosim: build request: %w", err)
	}
	req.Header.Set("Content-Type", ct)
	if o.auth != nil {
		o.auth.SetHeader(req.Header)
	}
	resp, err := s.sender.Do(req)
	if err != nil {
		return 0, fmt.Errorf("simplebosim: post event: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponse)) // lets the connection be reused
	return resp.StatusCode, nil
}

// SendEvents posts evs one after the other, stopping at the first that is not answered 200.
func (s *Sim) SendEvents(ctx context.Context, webhookURL string, evs []simplebo.Event, opts ...SendOption) error {
	for i, ev := range evs {
		status, err := s.SendEvent(ctx, webhookURL, ev, opts...)
		if err != nil {
			return fmt.Errorf("event %d of %d: %w", i+1, len(evs), err)
		}
		if status != http.StatusOK {
			return fmt.Errorf("simplebosim: event %d of %d (type %d) answered %d", i+1, len(evs), ev.Type, status)
		}
	}
	return nil
}

// SnapshotFor is a made-up client for an id, the same every time.
func SnapshotFor(clientID string) simplebo.Snapshot {
	return simplebo.Snapshot{
		ClientID:     clientID,
		Lastname:     "Martin",
		Firstname:    "Claire",
		ClientTitle:  "Mme",
		CompanyName:  "Boulangerie " + clientID,
		SIRET:        "73282932000074",
		Email:        "contact+" + clientID + "@example.com",
		PhoneNumber1: "0612345678",
		Address1:     "12 rue des Lilas",
		Zipcode:      "69003",
		City:         "Lyon",
		Country:      "FR",
	}
}

// The chain's timing, from the lead's creation.
const (
	daysToService = 14
	offeredMonths = 1
	paidMonths    = 12
	monthsToFree  = 6
)

// DefaultChain is a client's usual life: lead created, service activated, billing started,
// contract ended.
func DefaultChain() []simplebo.EventCode {
	return []simplebo.EventCode{simplebo.LeadCreated, simplebo.ServiceActivated, simplebo.BillingStarted, simplebo.ContractEnded}
}

// EventsFor is the webhooks Simplébo sends through a client's life, in order, starting with a
// lead created on start (a date; its time of day is dropped): codes default to DefaultChain,
// and SwitchedToFree or any unknown code may be given too. Each event carries the dates known
// when it is sent: the service starts 14 days after the lead, billing after one offered month,
// the contract ends after twelve paid months, a switch to free comes six months into billing.
func EventsFor(clientID string, start time.Time, codes ...simplebo.EventCode) []simplebo.Event {
	if len(codes) == 0 {
		codes = DefaultChain()
	}
	lead := time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, time.UTC)
	service := lead.AddDate(0, 0, daysToService)
	billing := service.AddDate(0, offeredMonths, 0)
	cur := simplebo.Event{Client: SnapshotFor(clientID), LeadCreationDate: lead}
	out := make([]simplebo.Event, 0, len(codes))
	for _, c := range codes {
		switch c {
		case simplebo.ServiceActivated:
			cur.ServiceStartingDate = service
			cur.NbOfOfferedMonths = offeredMonths
		case simplebo.BillingStarted:
			cur.ServiceStartingDate, cur.BillingStartingDate = service, billing
			cur.NbOfOfferedMonths, cur.NbOfPaidMonths = offeredMonths, paidMonths
		case simplebo.ContractEnded:
			cur.EndOfContractDate = billing.AddDate(0, paidMonths, 0)
			cur.UnsubscriptionReason = "fin de contrat"
		case simplebo.SwitchedToFree:
			cur.EndOfContractDate = billing.AddDate(0, monthsToFree, 0)
			cur.UnsubscriptionReason = "passage en offre gratuite"
		}
		ev := cur
		ev.Type = c
		ev.TypeRaw = strconv.Itoa(int(c))
		out = append(out, ev)
	}
	return out
}

// Scramble returns evs with dups extra copies of events picked at random, in a random order:
// deliveries as Simplébo may make them, repeated and out of order.
func Scramble(evs []simplebo.Event, r *rand.Rand, dups int) []simplebo.Event {
	out := append([]simplebo.Event(nil), evs...)
	for range dups {
		if len(evs) == 0 {
			break
		}
		out = append(out, evs[r.IntN(len(evs))])
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
