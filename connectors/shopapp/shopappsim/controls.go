package shopappsim

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/passerelle/passerelle/connectors/shopapp"
)

// Interfaces lists the keys of the simulator's interfaces, in creation order.
func (s *Sim) Interfaces() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.keys)
}

// SetStatus writes an interface's status directly, with the dates it implies: a deletion request
// today for shopapp.StatusDeactivated, a deletion done today for StatusDeleted (unless already set).
func (s *Sim) SetStatus(key string, st shopapp.Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	i, serr := s.lookup(key, now)
	if serr != nil {
		return fmt.Errorf("shopapp simulator: %s", serr.msg)
	}
	switch st {
	case shopapp.StatusActive:
		i.status, i.deletion, i.accessCut = shopapp.StatusActive, time.Time{}, time.Time{}
	case shopapp.StatusInstalling:
		i.status, i.deletion, i.accessCut, i.installAt = shopapp.StatusInstalling, time.Time{}, time.Time{}, time.Time{}
		if s.cfg.InstallDelay > 0 {
			i.installAt = now.Add(s.cfg.InstallDelay)
		}
	case shopapp.StatusDeactivated:
		i.requestDeletion(now)
	case shopapp.StatusDeleted:
		i.status = shopapp.StatusDeleted
		if i.deletion.IsZero() || i.deletion.After(now) {
			i.deletion = now
		}
		if i.accessCut.IsZero() || i.accessCut.After(now) {
			i.accessCut = now
		}
	default:
		return fmt.Errorf("shopapp simulator: no status %d", int(st))
	}
	return nil
}

// AdvanceInstall ends the installation of an installing interface, which becomes active.
func (s *Sim) AdvanceInstall(key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, serr := s.lookup(key, s.now())
	if serr != nil {
		return fmt.Errorf("shopapp simulator: %s", serr.msg)
	}
	if i.status != shopapp.StatusInstalling {
		return fmt.Errorf("shopapp simulator: interface %s is %s, not installing", key, i.status)
	}
	i.status = shopapp.StatusActive
	return nil
}

// Seed creates n interfaces in varied states over the last three years, by direct writes: about
// 70 % active, 8 % installing, 12 % deactivated, 10 % deleted, some with options added later and
// prestations cancelled. The same r gives the same interfaces.
func (s *Sim) Seed(n int, r *rand.Rand) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	const threeYears = 3 * 365 * 24 * time.Hour
	for range n {
		order := s.randomOrder(r)
		if order == nil {
			return // a catalogue without any valid order
		}
		p := r.IntN(100)
		age := time.Duration(r.Int64N(int64(threeYears)))
		if p >= 70 && p < 78 {
			age = time.Duration(r.Int64N(int64(48 * time.Hour))) // still installing: recent
		}
		created := now.Add(-age).Truncate(time.Second)
		i := s.insert(r, created, shopapp.CreateRequest{
			GUID: s.newGUID(r), Prestations: order, Client: randomCustomer(r),
		})
		i.installAt = time.Time{}
		if r.IntN(3) == 0 {
			if code := s.randomAddition(r, i); code != "" {
				s.appendOcc(r, i, code, between(r, created, now))
			}
		}
		switch {
		case p < 70:
			i.status = shopapp.StatusActive
		case p < 78:
			if s.cfg.InstallDelay > 0 {
				i.installAt = created.Add(s.cfg.InstallDelay)
			}
		case p < 90 || now.Sub(created) < 91*24*time.Hour:
			from := now.Add(-89 * 24 * time.Hour)
			if created.After(from) {
				from = created
			}
			i.requestDeletion(between(r, from, now))
		default:
			i.requestDeletion(between(r, created, now.Add(-91*24*time.Hour)))
			i.status = shopapp.StatusDeleted
		}
		if i.status != shopapp.StatusInstalling && r.IntN(7) == 0 {
			if o := randomActiveOption(r, i); o != nil {
				o.cancelled = between(r, o.created, now)
			}
		}
	}
}

// Mutate applies one random realistic change, for the sandbox: a new order, an installation
// done, a deletion requested, a reactivation, a deletion done, an option added or cancelled.
func (s *Sim) Mutate(r *rand.Rand) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for range 8 { // an action may find no interface to apply to: draw another
		p := r.IntN(100)
		if p < 20 || len(s.keys) == 0 {
			if order := s.randomOrder(r); order != nil {
				i := s.insert(r, now, shopapp.CreateRequest{GUID: s.newGUID(r), Prestations: order, Client: randomCustomer(r)})
				if s.cfg.InstallDelay > 0 {
					i.installAt = now.Add(s.cfg.InstallDelay)
				}
			}
			return
		}
		switch {
		case p < 35:
			if i := s.pick(r, now, shopapp.StatusInstalling); i != nil {
				i.status = shopapp.StatusActive
				return
			}
		case p < 45:
			if i := s.pick(r, now, shopapp.StatusActive); i != nil {
				i.requestDeletion(now)
				return
			}
		case p < 50:
			if i := s.pick(r, now, shopapp.StatusDeactivated); i != nil {
				i.status, i.deletion, i.accessCut = shopapp.StatusActive, time.Time{}, time.Time{}
				return
			}
		case p < 55:
			if i := s.pick(r, now, shopapp.StatusDeactivated); i != nil {
				i.status, i.deletion = shopapp.StatusDeleted, now
				return
			}
		case p < 80:
			if i := s.pick(r, now, shopapp.StatusActive); i != nil {
				if code := s.randomAddition(r, i); code != "" {
					s.appendOcc(r, i, code, now)
					return
				}
			}
		default:
			if i := s.pick(r, now, shopapp.StatusActive); i != nil {
				if o := randomActiveOption(r, i); o != nil {
					o.cancelled = now
					return
				}
			}
		}
	}
}

// pick draws interfaces until one has the status wanted; nil after a few misses. s.mu is held.
func (s *Sim) pick(r *rand.Rand, now time.Time, st shopapp.Status) *simIface {
	for range 64 {
		i := s.ifaces[s.keys[r.IntN(len(s.keys))]]
		i.settle(now)
		if i.status == st {
			return i
		}
	}
	return nil
}

// randomOrder draws a valid creation order: a setup, one of its subscriptions, maybe options.
// s.mu is held.
func (s *Sim) randomOrder(r *rand.Rand) []string {
	var setups []string
	for _, c := range s.codes {
		if shopapp.IsSetup(c) {
			setups = append(setups, c)
		}
	}
	if len(setups) == 0 {
		return nil
	}
	for range 8 {
		setup := setups[r.IntN(len(setups))]
		order := []string{setup}
		if assoc := s.catalogue[setup].Associated; len(assoc) > 0 {
			order = append(order, assoc[r.IntN(len(assoc))])
		}
		for _, c := range s.codes {
			if s.isOption(c) && r.IntN(4) == 0 {
				if s.checkOrder(append(slices.Clone(order), c), true, nil) == nil {
					order = append(order, c)
				}
			}
		}
		if s.checkOrder(order, true, nil) == nil {
			return order
		}
	}
	return nil
}

// isOption: neither a setup nor the subscription of one.
func (s *Sim) isOption(code string) bool {
	if shopapp.IsSetup(code) {
		return false
	}
	for _, c := range s.codes {
		if shopapp.IsSetup(c) && slices.Contains(s.catalogue[c].Associated, code) {
			return false
		}
	}
	return true
}

// randomAddition draws an option the interface can take, "" if none. s.mu is held.
func (s *Sim) randomAddition(r *rand.Rand, i *simIface) string {
	var ok []string
	for _, c := range s.codes {
		if s.isOption(c) && s.checkOrder([]string{c}, false, i) == nil {
			ok = append(ok, c)
		}
	}
	if len(ok) == 0 {
		return ""
	}
	return ok[r.IntN(len(ok))]
}

func (s *Sim) appendOcc(r *rand.Rand, i *simIface, code string, at time.Time) {
	o := &simOcc{code: code, ref: s.newRef(r), created: at}
	if needsForm(code) {
		o.formURL = "https://formulaire.shop-application.io/module/" + o.ref
	}
	i.occurrence = append(i.occurrence, o)
}

func (s *Sim) newGUID(r *rand.Rand) string {
	for {
		g := fmt.Sprintf("crm-%016x", r.Uint64())
		if _, taken := s.byGUID[g]; !taken {
			return g
		}
	}
}

// randomActiveOption draws an active occurrence that is not a setup, nil if none.
func randomActiveOption(r *rand.Rand, i *simIface) *simOcc {
	var ok []*simOcc
	for _, o := range i.occurrence {
		if o.cancelled.IsZero() && !shopapp.IsSetup(o.code) {
			ok = append(ok, o)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	return ok[r.IntN(len(ok))]
}

// between draws a time in [from, to], to the second.
func between(r *rand.Rand, from, to time.Time) time.Time {
	if !to.After(from) {
		return from
	}
	return from.Add(time.Duration(r.Int64N(int64(to.Sub(from)) + 1))).Truncate(time.Second)
}

func randomCustomer(r *rand.Rand) shopapp.Customer {
	first := []string{"Camille", "Léa", "Hugo", "Chloé", "Louis", "Inès", "Jules", "Manon", "Arthur", "Zoé"}
	last := []string{"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Lefèvre", "Moreau"}
	shops := []string{"Boutique", "Atelier", "Maison", "Comptoir", "Galerie", "Épicerie fine"}
	towns := []struct{ city, zip string }{
		{"Paris", "75011"}, {"Lyon", "69002"}, {"Marseille", "13001"}, {"Nantes", "44000"},
		{"Bordeaux", "33000"}, {"Lille", "59000"}, {"Saint-Denis", "97400"}, {"Rennes", "35000"},
	}
	f, l, t := first[r.IntN(len(first))], last[r.IntN(len(last))], towns[r.IntN(len(towns))]
	return shopapp.Customer{
		LastName: l, FirstName: f,
		Company:    shops[r.IntN(len(shops))] + " " + l,
		Address:    fmt.Sprintf("%d rue de la République", 1+r.IntN(120)),
		PostalCode: t.zip, City: t.city, Country: "France",
		Phone: fmt.Sprintf("06%08d", r.IntN(100000000)),
		Email: fmt.Sprintf("%s.%s%d@example.com", dnsLabel(f), dnsLabel(l), r.IntN(1000)),
		RCS:   fmt.Sprintf("RCS %s %09d", t.city, r.IntN(1000000000)),
		APE:   "4791A",
	}
}
