package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

// shopappCmd runs provisioning commands against Shop Application directly, recording what
// creation needs (the guid's key, the client details for billing) in the state store.
func shopappCmd(ctx context.Context, args []string, stdout io.Writer) error {
	const use = "usage: passerelle shopapp create --guid G --prestations IN-X-S,… [--company C --lastname N --firstname P --email E …]\n" +
		"       passerelle shopapp delete|reactivate --key K\n" +
		"       passerelle shopapp add-prestations --key K --prestations A,B\n" +
		"       passerelle shopapp cancel-prestation --key K --prestation CODE_OR_REFERENCE"
	if len(args) == 0 {
		return usagef("%s", use)
	}
	cmd := pipelines.ProvisionCommand{Op: args[0]}
	fs := flag.NewFlagSet("shopapp "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var prestations string
	fs.StringVar(&cmd.GUID, "guid", "", "our id for the interface (creation is idempotent on it)")
	fs.StringVar(&cmd.Key, "key", "", "the interface key (sa_key)")
	fs.StringVar(&prestations, "prestations", "", "prestation codes, comma separated")
	fs.StringVar(&cmd.CodeOrRef, "prestation", "", "prestation code or reference_unique to cancel")
	fs.StringVar(&cmd.Subdomain, "subdomain", "", "sous_domaine")
	c := &cmd.Client
	for name, p := range map[string]*string{"company": &c.Company, "lastname": &c.LastName, "firstname": &c.FirstName, "email": &c.Email,
		"phone": &c.Phone, "address": &c.Address, "postal-code": &c.PostalCode, "city": &c.City, "country": &c.Country, "rcs": &c.RCS, "ape": &c.APE} {
		fs.StringVar(p, name, "", "client "+name)
	}
	switch cmd.Op {
	case pipelines.OpCreate, pipelines.OpDelete, pipelines.OpReactivate, pipelines.OpAddPrestations, pipelines.OpCancelPrestation:
	default:
		return usagef("unknown shopapp command %q\n%s", cmd.Op, use)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return usagef("%v\n%s", err, use)
	}
	if prestations != "" {
		cmd.Prestations = strings.Split(prestations, ",")
	}
	cfg, err := loadConfig(ctx)
	if err != nil {
		return err
	}
	if cfg.ShopApp.URL == "" {
		return usagef("PASSERELLE_SHOPAPP_URL is empty: set it with PASSERELLE_SHOPAPP_CLIENT_ID and PASSERELLE_SHOPAPP_CLIENT_SECRET")
	}
	reg := prometheus.NewRegistry()
	client, err := app.NewShopAppClient(cfg, httpclient.NewMetrics(reg), shopapp.NewMetrics(reg))
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, app.StoreDSN(cfg))
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := (&pipelines.Provisioner{API: client, Store: st}).Execute(ctx, cmd)
	if err != nil {
		if errors.Is(err, pipelines.ErrBadCommand) {
			return usagef("%v\n%s", err, use)
		}
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(res); err != nil {
		return fmt.Errorf("print result: %w", err)
	}
	return nil
}
