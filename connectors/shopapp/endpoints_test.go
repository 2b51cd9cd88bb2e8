package shopapp_test

import (
	"context"
	"testing"
	"time"

	"github.com/passerelle/passerelle/connectors/shopapp"

	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/frtime"
)

// TestEveryEndpoint walks an interface through its life with every method of the client.
func TestEveryEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock(t, "2024-01-15 10:00:00")
	sim, c := start(t, shopappsim.Config{Now: clock.Now}, shopapp.Config{}, nil)

	tok, err := c.Token(ctx)
	require.NoError(t, err)
	require.Equal(t, "bearer", tok.TokenType)
	require.Equal(t, 3600, tok.ExpiresIn)
	require.NotEmpty(t, tok.AccessToken)

	codes, err := c.Prestations(ctx)
	require.NoError(t, err)
	require.Contains(t, codes, "IN-BTQST-S")
	require.Contains(t, codes, "MO-ARTCRITERES-S")

	e, err := c.Prestation(ctx, "IN-BTQST-S")
	require.NoError(t, err)
	require.Equal(t, "IN-BTQST-S", e.Code)
	require.NotEmpty(t, e.Name)
	require.NotEmpty(t, e.ShortDescription)
	require.NotEmpty(t, e.LongDescription)
	require.InDelta(t, 490.0, e.Price, 1e-9)
	require.Equal(t, int64(49000), e.PriceCents)
	require.Equal(t, []string{"IN-BTQZ-AMM", "IN-BTQZ-AMA"}, e.Associated)

	e, err = c.Prestation(ctx, "IN-BTQZ-AMM")
	require.NoError(t, err)
	require.Equal(t, int64(5990), e.PriceCents)

	keys, err := c.Interfaces(ctx)
	require.NoError(t, err)
	require.Empty(t, keys)

	key, err := c.CreateInterface(ctx, boutique("crm-1", "MO-ARTCRITERES-S"))
	require.NoError(t, err)
	require.Len(t, key, 36)

	keys, err = c.Interfaces(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{key}, keys)

	d, err := c.Interface(ctx, key)
	require.NoError(t, err)
	require.Equal(t, shopapp.StatusInstalling, d.Status)
	require.Equal(t, "2024-01-15 10:00:00", frtime.Format(d.Created.Time))
	require.NotEmpty(t, d.FormURL)
	require.Empty(t, d.URL)
	require.True(t, d.DeletionDate.IsZero())

	require.NoError(t, sim.AdvanceInstall(key))
	d, err = c.Interface(ctx, key)
	require.NoError(t, err)
	require.Equal(t, shopapp.StatusActive, d.Status)
	require.Equal(t, "https://atelier-lefevre.shop-application.io", d.URL)
	require.Equal(t, "https://atelier-lefevre.shop-application.io/superadmin/", d.AdminURL)
	require.Empty(t, d.FormURL)

	codes, err = c.InterfacePrestations(ctx, key)
	require.NoError(t, err)
	require.Equal(t, []string{"IN-BTQST-S", "IN-BTQZ-AMM", "MO-ARTCRITERES-S"}, codes)

	occ, err := c.InterfacePrestation(ctx, key, "IN-BTQZ-AMM")
	require.NoError(t, err)
	require.Len(t, occ, 1)
	require.Equal(t, "IN-BTQZ-AMM", occ[0].Code)
	require.False(t, occ[0].Cancelled)
	require.True(t, occ[0].CancelledAt.IsZero())
	require.Len(t, occ[0].Reference, 13)
	require.Equal(t, "2024-01-15 10:00:00", occ[0].Created.String())

	clock.Advance(time.Hour)
	added, err := c.AddPrestations(ctx, key, []string{"MO-CAISSE-M", "MO-SEO-M"})
	require.NoError(t, err)
	require.Len(t, added, 2)
	require.Equal(t, "MO-CAISSE-M", added[0].Code)
	require.NotEqual(t, added[0].Reference, added[1].Reference)

	occ, err = c.InterfacePrestation(ctx, key, added[0].Reference)
	require.NoError(t, err)
	require.Len(t, occ, 1)
	require.Equal(t, "2024-01-15 11:00:00", occ[0].Created.String())

	cancelled, err := c.CancelPrestation(ctx, key, "MO-CAISSE-M")
	require.NoError(t, err)
	require.Equal(t, []shopapp.AddedPrestation{{Code: "MO-CAISSE-M", Reference: added[0].Reference}}, cancelled)

	del, err := c.DeleteInterface(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "2024-04-14 11:00:00", frtime.Format(del))

	re, err := c.ReactivateInterface(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "2024-01-15 11:00:00", frtime.Format(re))

	d, err = c.Interface(ctx, key)
	require.NoError(t, err)
	require.Equal(t, shopapp.StatusActive, d.Status)
	require.True(t, d.DeletionDate.IsZero())

	for _, route := range shopapp.Routes() {
		require.Positive(t, sim.Calls()[route], "route %s never called", route)
	}
}

func TestCreateRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		codes []string
		guid  string
		ok    bool
	}{
		{name: "setup with its subscription", codes: []string{"IN-BTQST-S", "IN-BTQZ-AMM"}, ok: true},
		{name: "with options", codes: []string{"IN-BTQST-S", "IN-BTQZ-AMA", "MO-CAISSE-M", "MO-ARTCRITERES-S", "MO-NDD-A"}, ok: true},
		{name: "same option twice", codes: []string{"IN-VITRINE-S", "IN-VITZ-AMM", "MO-TRADUCTION-S", "MO-TRADUCTION-S"}, ok: true},
		{name: "zero setup", codes: []string{"IN-BTQZ-AMM", "MO-TRADUCTION-S"}},
		{name: "two setups", codes: []string{"IN-BTQST-S", "IN-VITRINE-S", "IN-BTQZ-AMM", "IN-VITZ-AMM"}},
		{name: "same setup twice", codes: []string{"IN-BTQST-S", "IN-BTQST-S", "IN-BTQZ-AMM"}},
		{name: "unknown code", codes: []string{"IN-BTQST-S", "IN-BTQZ-AMM", "MO-NOPE-S"}},
		{name: "setup without the subscription it requires", codes: []string{"IN-BTQST-S"}},
		{name: "subscription of another setup", codes: []string{"IN-BTQST-S", "IN-VITZ-AMM"}},
		{name: "associated option alone", codes: []string{"IN-VITRINE-S", "IN-VITZ-AMM", "MO-CAISSE-M"}},
		{name: "associated option with one of its associates", codes: []string{"IN-VITRINE-S", "IN-VITZ-AMM", "MO-ECOMMERCE-S"}, ok: true},
		{name: "no prestation", codes: nil},
		{name: "no guid", codes: []string{"IN-BTQST-S", "IN-BTQZ-AMM"}, guid: "-"},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
			req := boutique("crm-" + tt.name)
			req.Prestations = tt.codes
			if tt.guid == "-" {
				req.GUID = ""
			}
			key, err := c.CreateInterface(ctx, req)
			if tt.ok {
				require.NoError(t, err)
				got, ok := sim.Interface(key)
				require.True(t, ok)
				require.Len(t, got.Prestations, len(tt.codes))
				return
			}
			requireAPIError(t, err, 400, shopapp.RouteCreateInterface)
			require.ErrorIs(t, err, shopapp.ErrBadRequest)
			require.False(t, shopapp.IsRetryable(err))
			require.Empty(t, sim.Interfaces(), "a refused order created an interface")
			require.Equal(t, 1, sim.Calls()[shopapp.RouteCreateInterface], "a 400 was retried")
		})
	}
}

func TestAddRules(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, sim *shopappsim.Sim, c *shopapp.Client, key string)
		codes   []string
		ok      bool
	}{
		{name: "option", codes: []string{"MO-TRADUCTION-S"}, ok: true},
		{name: "associate already on the interface", codes: []string{"MO-CAISSE-M"}, ok: true},
		{name: "second subscription, its setup on the interface", codes: []string{"IN-BTQZ-AMA"}, ok: true},
		{name: "setup refused", codes: []string{"IN-VITRINE-S"}},
		{name: "setup refused among others", codes: []string{"MO-SEO-M", "IN-BTQST-S"}},
		{name: "associate neither in order nor on the interface", codes: []string{"MO-ECOMMERCE-S"}},
		{name: "unknown code", codes: []string{"MO-INCONNU-M"}},
		{
			name: "associate cancelled on the interface does not count", codes: []string{"MO-CAISSE-M"},
			prepare: func(t *testing.T, _ *shopappsim.Sim, c *shopapp.Client, key string) {
				_, err := c.CancelPrestation(context.Background(), key, "IN-BTQZ-AMM")
				require.NoError(t, err)
			},
		},
		{
			name: "associate in the same order", codes: []string{"IN-BTQZ-AMA", "MO-CAISSE-M"}, ok: true,
			prepare: func(t *testing.T, _ *shopappsim.Sim, c *shopapp.Client, key string) {
				_, err := c.CancelPrestation(context.Background(), key, "IN-BTQZ-AMM")
				require.NoError(t, err)
			},
		},
		{
			name: "deactivated interface", codes: []string{"MO-SEO-M"},
			prepare: func(t *testing.T, sim *shopappsim.Sim, _ *shopapp.Client, key string) {
				require.NoError(t, sim.SetStatus(key, shopapp.StatusDeactivated))
			},
		},
		{
			name: "deleted interface", codes: []string{"MO-SEO-M"},
			prepare: func(t *testing.T, sim *shopappsim.Sim, _ *shopapp.Client, key string) {
				require.NoError(t, sim.SetStatus(key, shopapp.StatusDeleted))
			},
		},
		{
			name: "installing interface", codes: []string{"MO-SEO-M"}, ok: true,
			prepare: func(t *testing.T, sim *shopappsim.Sim, _ *shopapp.Client, key string) {
				require.NoError(t, sim.SetStatus(key, shopapp.StatusInstalling))
			},
		},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
			key, err := c.CreateInterface(ctx, boutique("crm-1"))
			require.NoError(t, err)
			require.NoError(t, sim.AdvanceInstall(key))
			if tt.prepare != nil {
				tt.prepare(t, sim, c, key)
			}
			before, _ := sim.Interface(key)
			added, err := c.AddPrestations(ctx, key, tt.codes)
			after, _ := sim.Interface(key)
			if tt.ok {
				require.NoError(t, err)
				require.Len(t, added, len(tt.codes))
				for k, a := range added {
					require.Equal(t, tt.codes[k], a.Code)
					require.NotEmpty(t, a.Reference)
				}
				require.Len(t, after.Prestations, len(before.Prestations)+len(tt.codes))
				return
			}
			requireAPIError(t, err, 400, shopapp.RouteAddPrestations)
			require.Equal(t, before.Prestations, after.Prestations, "a refused order changed the interface")
		})
	}
	t.Run("nothing to add", func(t *testing.T) {
		t.Parallel()
		_, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
		_, err := c.AddPrestations(ctx, "k", nil)
		var arg *shopapp.ArgumentError
		require.ErrorAs(t, err, &arg)
	})
}

func TestAddWithFormURL(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
	req := boutique("crm-1")
	req.Prestations = []string{"IN-VITRINE-S", "IN-VITZ-AMM"}
	key, err := c.CreateInterface(ctx, req)
	require.NoError(t, err)
	require.NoError(t, sim.AdvanceInstall(key))
	added, err := c.AddPrestations(ctx, key, []string{"MO-ECOMMERCE-S"})
	require.NoError(t, err)
	require.Len(t, added, 1)
	require.NotEmpty(t, added[0].FormURL)
	occ, err := c.InterfacePrestation(ctx, key, "MO-ECOMMERCE-S")
	require.NoError(t, err)
	require.Equal(t, added[0].FormURL, occ[0].FormURL)
}

func TestDeleteAndReactivate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, at, wantDeletion, wantCut string
	}{
		{name: "winter", at: "2024-01-15 10:00:00", wantDeletion: "2024-04-14 10:00:00", wantCut: "2024-02-01 00:00:00"},
		{name: "across the spring change keeps the wall clock", at: "2024-03-10 10:00:00", wantDeletion: "2024-06-08 10:00:00", wantCut: "2024-04-01 00:00:00"},
		{name: "december cuts on new year", at: "2024-12-31 23:59:59", wantDeletion: "2025-03-31 23:59:59", wantCut: "2025-01-01 00:00:00"},
		{name: "leap year", at: "2024-02-29 08:00:00", wantDeletion: "2024-05-29 08:00:00", wantCut: "2024-03-01 00:00:00"},
	}
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newClock(t, tt.at)
			sim, c := start(t, shopappsim.Config{Now: clock.Now}, shopapp.Config{}, nil)
			key, err := c.CreateInterface(ctx, boutique("crm-1"))
			require.NoError(t, err)
			require.NoError(t, sim.AdvanceInstall(key))

			del, err := c.DeleteInterface(ctx, key)
			require.NoError(t, err)
			require.Equal(t, tt.wantDeletion, frtime.Format(del))
			got, _ := sim.Interface(key)
			require.Equal(t, shopapp.StatusDeactivated, got.Status)
			require.Equal(t, tt.wantCut, frtime.Format(got.AccessCut))

			d, err := c.Interface(ctx, key)
			require.NoError(t, err)
			require.Equal(t, shopapp.StatusDeactivated, d.Status)
			require.True(t, del.Equal(d.DeletionDate.Time))
			require.NotEmpty(t, d.AdminURL, "access lasts until the cut")

			// Asking again answers the same date, so that a retried request does not fail.
			again, err := c.DeleteInterface(ctx, key)
			require.NoError(t, err)
			require.True(t, del.Equal(again))

			clock.Advance(got.AccessCut.Sub(clock.Now()))
			d, err = c.Interface(ctx, key)
			require.NoError(t, err)
			require.Equal(t, shopapp.StatusDeactivated, d.Status)
			require.Empty(t, d.AdminURL, "access is cut on the 1st of the next month")
			require.Empty(t, d.URL)

			re, err := c.ReactivateInterface(ctx, key)
			require.NoError(t, err)
			require.True(t, clock.Now().Equal(re))
			d, err = c.Interface(ctx, key)
			require.NoError(t, err)
			require.Equal(t, shopapp.StatusActive, d.Status)
			require.NotEmpty(t, d.AdminURL)

			// Deleted for good once the date passes: no way back.
			_, err = c.DeleteInterface(ctx, key)
			require.NoError(t, err)
			clock.Advance(91 * 24 * time.Hour)
			d, err = c.Interface(ctx, key)
			require.NoError(t, err)
			require.Equal(t, shopapp.StatusDeleted, d.Status)
			require.False(t, d.DeletionDate.IsZero())
			_, err = c.ReactivateInterface(ctx, key)
			requireAPIError(t, err, 400, shopapp.RouteReactivateInterface)
			_, err = c.DeleteInterface(ctx, key)
			requireAPIError(t, err, 400, shopapp.RouteDeleteInterface)
		})
	}
}

func TestReactivateOnlyFromDeactivated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, st := range []shopapp.Status{shopapp.StatusDeleted, shopapp.StatusActive, shopapp.StatusDeactivated, shopapp.StatusInstalling} {
		t.Run(st.String(), func(t *testing.T) {
			t.Parallel()
			sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
			key, err := c.CreateInterface(ctx, boutique("crm-1"))
			require.NoError(t, err)
			require.NoError(t, sim.SetStatus(key, st))
			_, err = c.ReactivateInterface(ctx, key)
			if st == shopapp.StatusDeactivated {
				require.NoError(t, err)
				got, _ := sim.Interface(key)
				require.Equal(t, shopapp.StatusActive, got.Status)
				return
			}
			requireAPIError(t, err, 400, shopapp.RouteReactivateInterface)
			got, _ := sim.Interface(key)
			require.Equal(t, st, got.Status)
		})
	}
}

func TestCancelByReferenceOrCode(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock(t, "2024-06-01 09:00:00")
	sim, c := start(t, shopappsim.Config{Now: clock.Now}, shopapp.Config{}, nil)
	key, err := c.CreateInterface(ctx, boutique("crm-1", "MO-SEO-M"))
	require.NoError(t, err)
	require.NoError(t, sim.AdvanceInstall(key))
	more, err := c.AddPrestations(ctx, key, []string{"MO-SEO-M", "MO-SEO-M"})
	require.NoError(t, err)

	occ, err := c.InterfacePrestation(ctx, key, "MO-SEO-M")
	require.NoError(t, err)
	require.Len(t, occ, 3)
	refs := map[string]bool{}
	for _, o := range occ {
		refs[o.Reference] = true
	}
	require.Len(t, refs, 3, "references are unique")

	clock.Advance(time.Minute)
	got, err := c.CancelPrestation(ctx, key, more[0].Reference)
	require.NoError(t, err)
	require.Equal(t, []shopapp.AddedPrestation{{Code: "MO-SEO-M", Reference: more[0].Reference}}, got)

	occ, err = c.InterfacePrestation(ctx, key, "MO-SEO-M")
	require.NoError(t, err)
	require.Len(t, occ, 3, "cancelled occurrences stay listed")
	active := 0
	for _, o := range occ {
		if o.Reference == more[0].Reference {
			require.True(t, o.Cancelled)
			require.Equal(t, "2024-06-01 09:01:00", o.CancelledAt.String())
		} else {
			require.False(t, o.Cancelled)
			active++
		}
	}
	require.Equal(t, 2, active, "cancelling by reference cancels that occurrence only")

	got, err = c.CancelPrestation(ctx, key, "MO-SEO-M")
	require.NoError(t, err)
	require.Len(t, got, 2, "cancelling by code cancels every active occurrence")
	require.NotContains(t, got, shopapp.AddedPrestation{Code: "MO-SEO-M", Reference: more[0].Reference})

	got, err = c.CancelPrestation(ctx, key, "MO-SEO-M")
	require.NoError(t, err)
	require.Empty(t, got, "nothing left to cancel")

	codes, err := c.InterfacePrestations(ctx, key)
	require.NoError(t, err)
	require.Contains(t, codes, "MO-SEO-M")

	_, err = c.CancelPrestation(ctx, key, "0123456789abc")
	requireAPIError(t, err, 400, shopapp.RouteCancelPrestation)
	_, err = c.InterfacePrestation(ctx, key, "MO-TRADUCTION-S")
	requireAPIError(t, err, 400, shopapp.RouteInterfacePrestation)
}

func TestCreateIsIdempotentOnGUID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sim, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
	first, err := c.CreateInterface(ctx, boutique("crm-42"))
	require.NoError(t, err)
	again, err := c.CreateInterface(ctx, boutique("crm-42", "MO-SEO-M"))
	require.NoError(t, err)
	require.Equal(t, first, again)
	other, err := c.CreateInterface(ctx, boutique("crm-43"))
	require.NoError(t, err)
	require.NotEqual(t, first, other)
	require.Equal(t, []string{first, other}, sim.Interfaces())
	got, _ := sim.Interface(first)
	require.Len(t, got.Prestations, 2, "the second order changed nothing")
}

func TestUnknownKeysAndCodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, c := start(t, shopappsim.Config{}, shopapp.Config{}, nil)
	calls := []struct {
		route string
		call  func() error
	}{
		{shopapp.RouteInterface, func() error { _, err := c.Interface(ctx, "nope"); return err }},
		{shopapp.RouteDeleteInterface, func() error { _, err := c.DeleteInterface(ctx, "nope"); return err }},
		{shopapp.RouteReactivateInterface, func() error { _, err := c.ReactivateInterface(ctx, "nope"); return err }},
		{shopapp.RouteInterfacePrestations, func() error { _, err := c.InterfacePrestations(ctx, "nope"); return err }},
		{shopapp.RouteInterfacePrestation, func() error { _, err := c.InterfacePrestation(ctx, "nope", "MO-SEO-M"); return err }},
		{shopapp.RouteAddPrestations, func() error { _, err := c.AddPrestations(ctx, "nope", []string{"MO-SEO-M"}); return err }},
		{shopapp.RouteCancelPrestation, func() error { _, err := c.CancelPrestation(ctx, "nope", "MO-SEO-M"); return err }},
		{shopapp.RoutePrestation, func() error { _, err := c.Prestation(ctx, "MO-NOPE"); return err }},
	}
	for _, tc := range calls {
		api := requireAPIError(t, tc.call(), 400, tc.route)
		require.NotContains(t, api.Endpoint, "nope", "the endpoint is a template, not the path")
	}
	var arg *shopapp.ArgumentError
	_, err := c.Interface(ctx, "..")
	require.ErrorAs(t, err, &arg)
	_, err = c.Interface(ctx, "")
	require.ErrorAs(t, err, &arg)
}

func TestInstallDelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock(t, "2024-06-01 09:00:00")
	_, c := start(t, shopappsim.Config{Now: clock.Now, InstallDelay: 4 * time.Hour, TokenTTL: 24 * time.Hour}, shopapp.Config{}, nil)
	key, err := c.CreateInterface(ctx, boutique("crm-1"))
	require.NoError(t, err)
	clock.Advance(4*time.Hour - time.Second)
	d, err := c.Interface(ctx, key)
	require.NoError(t, err)
	require.Equal(t, shopapp.StatusInstalling, d.Status)
	clock.Advance(time.Second)
	d, err = c.Interface(ctx, key)
	require.NoError(t, err)
	require.Equal(t, shopapp.StatusActive, d.Status)
}
