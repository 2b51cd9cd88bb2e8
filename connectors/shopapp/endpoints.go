package shopapp

import (
	"context"
	"time"

	"github.com/passerelle/passerelle/internal/frtime"
)

// Interfaces lists the keys of every interface, deleted ones included.
func (c *Client) Interfaces(ctx context.Context) ([]string, error) {
	var keys []string
	err := c.call(ctx, RouteInterfaces, []string{"interfaces"}, nil, &keys)
	return keys, err
}

// Interface returns the details of one interface: status, URLs, dates.
func (c *Client) Interface(ctx context.Context, key string) (InterfaceDetail, error) {
	var d InterfaceDetail
	err := c.call(ctx, RouteInterface, []string{"interfaces", key}, nil, &d)
	return d, err
}

// CreateInterface orders a new interface and returns its sa_key. The order needs exactly one
// setup prestation (IN-…-S) and, for each prestation that has associated ones, one of those.
func (c *Client) CreateInterface(ctx context.Context, req CreateRequest) (string, error) {
	var out struct {
		Key string `json:"sa_key"`
	}
	if err := c.call(ctx, RouteCreateInterface, []string{"interfaces"}, req, &out); err != nil {
		return "", err
	}
	if out.Key == "" {
		return "", &APIError{Status: 200, Message: "no sa_key in the answer", Endpoint: RouteCreateInterface}
	}
	return out.Key, nil
}

// DeleteInterface asks for the deletion of an interface and returns the date it will be deleted
// (90 days later; access is cut on the 1st of the next month). Until then it can be reactivated.
func (c *Client) DeleteInterface(ctx context.Context, key string) (time.Time, error) {
	var out struct {
		Date frtime.Time `json:"date_suppression"`
	}
	err := c.call(ctx, RouteDeleteInterface, []string{"interfaces", key}, nil, &out)
	return out.Date.Time, err
}

// ReactivateInterface cancels a deletion request and returns the date of the reactivation.
func (c *Client) ReactivateInterface(ctx context.Context, key string) (time.Time, error) {
	var out struct {
		Date frtime.Time `json:"date_reactivation"`
	}
	err := c.call(ctx, RouteReactivateInterface, []string{"interfaces", key}, nil, &out)
	return out.Date.Time, err
}

// InterfacePrestations lists the codes of the prestations of an interface.
func (c *Client) InterfacePrestations(ctx context.Context, key string) ([]string, error) {
	var codes []string
	err := c.call(ctx, RouteInterfacePrestations, []string{"interfaces", key, "prestations"}, nil, &codes)
	return codes, err
}

// InterfacePrestation returns the occurrences of a prestation on an interface, by code (all of
// them) or by reference_unique (that one).
func (c *Client) InterfacePrestation(ctx context.Context, key, codeOrRef string) ([]PrestationOccurrence, error) {
	var occ []PrestationOccurrence
	err := c.call(ctx, RouteInterfacePrestation, []string{"interfaces", key, "prestations", codeOrRef}, nil, &occ)
	return occ, err
}

// AddPrestations orders prestations for an existing interface (no setup among them) and returns
// the occurrences created. Adding is not idempotent, so it is retried only when the request surely
// was not processed (429, 503, connection refused), never on a 500 or a timeout: a duplicate
// occurrence would be billed.
func (c *Client) AddPrestations(ctx context.Context, key string, codes []string) ([]AddedPrestation, error) {
	if len(codes) == 0 {
		return nil, &ArgumentError{Endpoint: RouteAddPrestations, Reason: "no prestation to add"}
	}
	body := struct {
		Prestations []string `json:"prestations"`
	}{codes}
	var added []AddedPrestation
	ctx = context.WithValue(ctx, singleShotKey{}, true)
	err := c.call(ctx, RouteAddPrestations, []string{"interfaces", key, "prestations"}, body, &added)
	return added, err
}

// CancelPrestation cancels a prestation of an interface: every active occurrence when given a code,
// only that one when given a reference_unique. It returns the occurrences cancelled.
func (c *Client) CancelPrestation(ctx context.Context, key, codeOrRef string) ([]AddedPrestation, error) {
	var out []AddedPrestation
	err := c.call(ctx, RouteCancelPrestation, []string{"interfaces", key, "prestations", codeOrRef}, nil, &out)
	return out, err
}

// Prestations lists the codes of the catalogue.
func (c *Client) Prestations(ctx context.Context) ([]string, error) {
	var codes []string
	err := c.call(ctx, RoutePrestations, []string{"prestations"}, nil, &codes)
	return codes, err
}

// Prestation returns a catalogue entry, with its price also in integer cents.
func (c *Client) Prestation(ctx context.Context, code string) (CatalogueEntry, error) {
	var e CatalogueEntry
	if err := c.call(ctx, RoutePrestation, []string{"prestation", code}, nil, &e); err != nil {
		return CatalogueEntry{}, err
	}
	if e.Code == "" {
		e.Code = code // the document's field list omits it, its example has it
	}
	return e, nil
}
