package pipelines_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
)

// nsGUIDs is pipelines' nsShopAppGUIDs.
const nsGUIDs = "shopapp.guids"

type provisionEnv struct {
	sim   *shopappsim.Sim
	clk   *testClock
	store *store.Store
	prov  *pipelines.Provisioner
}

func newProvisionEnv(t *testing.T) *provisionEnv {
	t.Helper()
	clk := newTestClock(parisTime(t, "2026-10-15 10:00"))
	sim := startSim(t, clk)
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	return &provisionEnv{sim: sim, clk: clk, store: st, prov: &pipelines.Provisioner{API: newSimClient(t, sim, 0), Store: st}}
}

// handle runs the shopapp.provision stage on a command.
func (e *provisionEnv) handle(t *testing.T, payload []byte) error {
	t.Helper()
	out, err := e.prov.Handle(message.NewMessage("cmd-1", payload))
	require.Empty(t, out)
	return err
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

var provClient = shopapp.Customer{
	LastName: "Dupont", FirstName: "Marie", Company: "Boutique Dupont", Address: "3 rue de la Paix",
	PostalCode: "75002", City: "Paris", Country: "France", Phone: "0102030405", Email: "marie@example.fr",
	RCS: "RCS Paris 123456789", APE: "4791A",
}

func TestProvisionerCreateIsIdempotentOnGUID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newProvisionEnv(t)
	cmd := pipelines.ProvisionCommand{Op: pipelines.OpCreate, GUID: "crm-42", Prestations: []string{"IN-BTQST-S", "IN-BTQZ-AMM"},
		Client: provClient, Subdomain: "boutique-dupont"}

	out, err := e.prov.Execute(ctx, cmd)
	require.NoError(t, err)
	key := out.(map[string]string)["sa_key"]
	require.NotEmpty(t, key)
	si, ok := e.sim.Interface(key)
	require.True(t, ok)
	require.Equal(t, "crm-42", si.GUID)
	require.Equal(t, provClient, si.Customer)
	require.Equal(t, "boutique-dupont", si.Subdomain)
	require.Equal(t, shopapp.StatusInstalling, si.Status)

	// The client details are kept for the billing file, the guid for idempotency.
	c, ok, err := e.store.ClientByKey(ctx, store.KeySAKey, key)
	require.NoError(t, err)
	require.True(t, ok, "the client is in the directory under its sa_key")
	require.Equal(t, map[string][]string{store.KeyGUID: {"crm-42"}, store.KeySAKey: {key}}, c.Keys)
	got := map[string]string{}
	for f, v := range c.Fields {
		got[f] = v.Value
		require.Equal(t, "shopapp create", v.Source, f)
	}
	require.Equal(t, map[string]string{store.FieldCompany: provClient.Company, store.FieldLastName: provClient.LastName,
		store.FieldFirstName: provClient.FirstName, store.FieldEmail: provClient.Email, store.FieldPhone: provClient.Phone,
		store.FieldAddress: provClient.Address, store.FieldPostalCode: provClient.PostalCode, store.FieldCity: provClient.City}, got)

	// Again: same key, and no second order.
	again, err := e.prov.Execute(ctx, cmd)
	require.NoError(t, err)
	require.Equal(t, key, again.(map[string]string)["sa_key"])
	require.Equal(t, 1, e.sim.Calls()[shopapp.RouteCreateInterface], "one POST /interfaces")
	require.Len(t, e.sim.Interfaces(), 1)

	// Through the stage, redelivered: still one interface.
	require.NoError(t, e.handle(t, mustJSON(t, cmd)))
	require.NoError(t, e.handle(t, mustJSON(t, cmd)))
	require.Equal(t, 1, e.sim.Calls()[shopapp.RouteCreateInterface])
	require.Len(t, e.sim.Interfaces(), 1)
}

func TestProvisionerCreateRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newProvisionEnv(t)
	for name, codes := range map[string][]string{
		"two setups":             {"IN-BTQST-S", "IN-VITRINE-S", "IN-BTQZ-AMM", "IN-VITZ-AMM"},
		"no setup":               {"MO-TRADUCTION-S"},
		"unknown code":           {"IN-BTQST-S", "IN-BTQZ-AMM", "XX-NOPE"},
		"associated one missing": {"IN-BTQST-S"},
	} {
		cmd := pipelines.ProvisionCommand{Op: pipelines.OpCreate, GUID: "crm-" + name, Prestations: codes, Client: provClient}
		_, err := e.prov.Execute(ctx, cmd)
		var apiErr *shopapp.APIError
		require.ErrorAs(t, err, &apiErr, name)
		require.Equal(t, 400, apiErr.Status, name)
		require.ErrorIs(t, err, shopapp.ErrBadRequest, name)
		require.NotErrorIs(t, err, pipelines.ErrBadCommand, name)
		_, ok, err := e.store.GetState(ctx, nsGUIDs, cmd.GUID)
		require.NoError(t, err)
		require.False(t, ok, "%s: a refused order records no guid", name)

		// The stage dead-letters it: the same order would be refused again.
		err = e.handle(t, mustJSON(t, cmd))
		require.True(t, pipelines.IsPermanent(err), "%s: %v", name, err)
	}
	require.Empty(t, e.sim.Interfaces())
}

func TestProvisionerLifecycle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newProvisionEnv(t)
	out, err := e.prov.Execute(ctx, pipelines.ProvisionCommand{Op: pipelines.OpCreate, GUID: "crm-1", Prestations: []string{"IN-BTQST-S", "IN-BTQZ-AMM"}, Client: provClient})
	require.NoError(t, err)
	key := out.(map[string]string)["sa_key"]
	require.NoError(t, e.sim.AdvanceInstall(key))

	// Additions: the same code twice is two occurrences.
	e.clk.Advance(time.Hour)
	out, err = e.prov.Execute(ctx, pipelines.ProvisionCommand{Op: pipelines.OpAddPrestations, Key: key, Prestations: []string{"MO-TRADUCTION-S", "MO-TRADUCTION-S", "MO-SEO-M"}})
	require.NoError(t, err)
	added := out.([]shopapp.AddedPrestation)
	require.Len(t, added, 3)
	require.NotEqual(t, added[0].Reference, added[1].Reference)

	// Cancel one occurrence by its reference: the other stays.
	out, err = e.prov.Execute(ctx, pipelines.ProvisionCommand{Op: pipelines.OpCancelPrestation, Key: key, CodeOrRef: added[0].Reference})
	require.NoError(t, err)
	require.Equal(t, []shopapp.AddedPrestation{{Code: "MO-TRADUCTION-S", Reference: added[0].Reference}}, out)
	cancelled := map[string]bool{}
	si, _ := e.sim.Interface(key)
	for _, p := range si.Prestations {
		cancelled[p.Reference] = p.Cancelled
	}
	require.True(t, cancelled[added[0].Reference])
	require.False(t, cancelled[added[1].Reference])
	require.False(t, cancelled[added[2].Reference])

	// Cancel by code: the remaining occurrences of the code.
	out, err = e.prov.Execute(ctx, pipelines.ProvisionCommand{Op: pipelines.OpCancelPrestation, Key: key, CodeOrRef: "MO-SEO-M"})
	require.NoError(t, err)
	require.Equal(t, []shopapp.AddedPrestation{{Code: "MO-SEO-M", Reference: added[2].Reference}}, out)

	// Deletion: 90 days later, Paris calendar.
	out, err = e.prov.Execute(ctx, pipelines.ProvisionCommand{Op: pipelines.OpDelete, Key: key})
	require.NoError(t, err)
	del := out.(map[string]time.Time)["date_suppression"]
	require.True(t, del.Equal(parisTime(t, "2027-01-13 11:00")), "date_suppression %s", del)
	si, _ = e.sim.Interface(key)
	require.Equal(t, shopapp.StatusDeactivated, si.Status)

	// Reactivation.
	e.clk.Advance(24 * time.Hour)
	out, err = e.prov.Execute(ctx, pipelines.ProvisionCommand{Op: pipelines.OpReactivate, Key: key})
	require.NoError(t, err)
	require.True(t, out.(map[string]time.Time)["date_reactivation"].Equal(e.clk.Now()))
	si, _ = e.sim.Interface(key)
	require.Equal(t, shopapp.StatusActive, si.Status)

	// Reactivating an active interface is refused (400), and the stage dead-letters it.
	err = e.handle(t, mustJSON(t, pipelines.ProvisionCommand{Op: pipelines.OpReactivate, Key: key}))
	require.True(t, pipelines.IsPermanent(err), "%v", err)
	require.ErrorIs(t, err, shopapp.ErrBadRequest)

	// The stage runs the same commands.
	require.NoError(t, e.handle(t, mustJSON(t, pipelines.ProvisionCommand{Op: pipelines.OpDelete, Key: key})))
	si, _ = e.sim.Interface(key)
	require.Equal(t, shopapp.StatusDeactivated, si.Status)
}

func TestProvisionerBadCommands(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newProvisionEnv(t)
	for name, cmd := range map[string]pipelines.ProvisionCommand{
		"unknown op":                 {Op: "explode", Key: "k"},
		"no op":                      {},
		"create without guid":        {Op: pipelines.OpCreate, Prestations: []string{"IN-BTQST-S", "IN-BTQZ-AMM"}},
		"create without prestations": {Op: pipelines.OpCreate, GUID: "g"},
		"delete without key":         {Op: pipelines.OpDelete},
		"reactivate without key":     {Op: pipelines.OpReactivate},
		"add without key":            {Op: pipelines.OpAddPrestations, Prestations: []string{"MO-SEO-M"}},
		"add without prestations":    {Op: pipelines.OpAddPrestations, Key: "k"},
		"cancel without code or ref": {Op: pipelines.OpCancelPrestation, Key: "k"},
		"cancel without key":         {Op: pipelines.OpCancelPrestation, CodeOrRef: "MO-SEO-M"},
	} {
		_, err := e.prov.Execute(ctx, cmd)
		require.ErrorIs(t, err, pipelines.ErrBadCommand, name)
		err = e.handle(t, mustJSON(t, cmd))
		require.True(t, pipelines.IsPermanent(err), "%s: %v", name, err)
	}
	require.Empty(t, e.sim.Calls(), "a bad command calls nothing")

	for name, payload := range map[string]string{
		"not JSON":       "{op: create",
		"wrong types":    `{"op": 3}`,
		"key not a path": `{"op": "delete", "key": ".."}`,
	} {
		err := e.handle(t, []byte(payload))
		require.Error(t, err, name)
		require.True(t, pipelines.IsPermanent(err), "%s: %v", name, err)
	}
}

// TestProvisionerHandleTransient: an outage is not the command's fault: the stage asks for a
// redelivery instead of dead-lettering.
func TestProvisionerHandleTransient(t *testing.T) {
	t.Parallel()
	e := newProvisionEnv(t)
	e.sim.SetFault(shopappsim.Fault{Status: 503, Route: shopapp.RouteAddPrestations})
	err := e.handle(t, mustJSON(t, pipelines.ProvisionCommand{Op: pipelines.OpAddPrestations, Key: "k", Prestations: []string{"MO-SEO-M"}}))
	require.Error(t, err)
	require.ErrorIs(t, err, shopapp.ErrServer)
	require.False(t, pipelines.IsPermanent(err))

	e.sim.SetFault(shopappsim.Fault{Status: 500, Route: shopapp.RouteCreateInterface})
	err = e.handle(t, mustJSON(t, pipelines.ProvisionCommand{Op: pipelines.OpCreate, GUID: "g", Prestations: []string{"IN-BTQST-S", "IN-BTQZ-AMM"}}))
	require.False(t, pipelines.IsPermanent(err), "%v", err)
	require.True(t, errors.Is(err, shopapp.ErrServer), "%v", err)
	_, ok, gerr := e.store.GetState(context.Background(), nsGUIDs, "g")
	require.NoError(t, gerr)
	require.False(t, ok)

	// Once the server is back, the redelivery creates it.
	e.sim.ClearFault()
	require.NoError(t, e.handle(t, mustJSON(t, pipelines.ProvisionCommand{Op: pipelines.OpCreate, GUID: "g", Prestations: []string{"IN-BTQST-S", "IN-BTQZ-AMM"}})))
	require.Len(t, e.sim.Interfaces(), 1)
}
