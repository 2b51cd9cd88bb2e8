package shopappsim

import (
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/passerelle/passerelle/connectors/shopapp"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/internal/frtime"
)

// simIface is one interface of the simulator.
type simIface struct {
	key, guid  string
	status     shopapp.Status
	created    time.Time
	installAt  time.Time // installing becomes active then; zero: only by AdvanceInstall
	deletion   time.Time // date_suppression, once requested
	accessCut  time.Time // access cut, the 1st of the month after the request
	customer   shopapp.Customer
	subdomain  string
	occurrence []*simOcc
}

type simOcc struct {
	code, ref string
	created   time.Time
	cancelled time.Time // zero: active
	formURL   string
}

// settle applies what time did since the last look: installation done, deletion due.
func (i *simIface) settle(now time.Time) {
	if i.status == shopapp.StatusInstalling && !i.installAt.IsZero() && !now.Before(i.installAt) {
		i.status = shopapp.StatusActive
	}
	if i.status == shopapp.StatusDeactivated && !now.Before(i.deletion) {
		i.status = shopapp.StatusDeleted
	}
}

func (i *simIface) detail(now time.Time) shopapp.InterfaceDetail {
	d := shopapp.InterfaceDetail{Created: frtime.Time{Time: i.created}, Status: i.status}
	site := "https://" + i.subdomain + ".shop-application.io"
	switch {
	case i.status == shopapp.StatusInstalling:
		d.FormURL = "https://formulaire.shop-application.io/projet/" + i.key
	case i.status == shopapp.StatusActive, i.status == shopapp.StatusDeactivated && now.Before(i.accessCut):
		d.URL, d.AdminURL = site, site+"/superadmin/"
	}
	if i.status == shopapp.StatusDeactivated || i.status == shopapp.StatusDeleted {
		d.DeletionDate = frtime.Time{Time: i.deletion}
	}
	return d
}

// codes lists each code once, in the order first ordered, cancelled ones included so that a
// poller sees the cancellation.
func (i *simIface) codes() []string {
	out := []string{}
	for _, o := range i.occurrence {
		if !slices.Contains(out, o.code) {
			out = append(out, o.code)
		}
	}
	return out
}

// find returns the occurrences of a code, or the one occurrence of a reference_unique.
func (i *simIface) find(codeOrRef string) []*simOcc {
	var out []*simOcc
	for _, o := range i.occurrence {
		if o.code == codeOrRef {
			out = append(out, o)
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, o := range i.occurrence {
		if o.ref == codeOrRef {
			return []*simOcc{o}
		}
	}
	return nil
}

// has reports whether an occurrence of one of codes is active on the interface.
func (i *simIface) has(codes []string) bool {
	for _, o := range i.occurrence {
		if o.cancelled.IsZero() && slices.Contains(codes, o.code) {
			return true
		}
	}
	return false
}

func (o *simOcc) wire() shopapp.PrestationOccurrence {
	return shopapp.PrestationOccurrence{
		Code: o.code, Created: frtime.Time{Time: o.created}, Cancelled: !o.cancelled.IsZero(),
		CancelledAt: frtime.Time{Time: o.cancelled}, Reference: o.ref, FormURL: o.formURL,
	}
}

func (o *simOcc) added() shopapp.AddedPrestation {
	return shopapp.AddedPrestation{Code: o.code, Reference: o.ref, FormURL: o.formURL}
}

// lookup finds an interface and settles it. s.mu is held.
func (s *Sim) lookup(key string, now time.Time) (*simIface, *simError) {
	i, ok := s.ifaces[key]
	if !ok {
		return nil, badRequest("interface inconnue : %s", key)
	}
	i.settle(now)
	return i, nil
}

// checkOrder applies the document's rules to the codes of an order: all known; exactly one setup
// when creating, none when adding; a prestation with associated ones needs one of them in the
// order or, when adding, active on the interface i.
func (s *Sim) checkOrder(codes []string, creating bool, i *simIface) *simError {
	if len(codes) == 0 {
		return badRequest("aucune prestation commandée")
	}
	setups := 0
	for _, c := range codes {
		if _, ok := s.catalogue[c]; !ok {
			return badRequest("prestation inconnue : %s", c)
		}
		if shopapp.IsSetup(c) {
			setups++
			if !creating {
				return badRequest("la prestation de setup %s ne peut pas être ajoutée à une interface existante", c)
			}
		}
	}
	if creating && setups != 1 {
		return badRequest("la commande doit contenir une et une seule prestation de setup (IN-XXX-S), elle en contient %d", setups)
	}
	for _, c := range codes {
		assoc := s.catalogue[c].Associated
		if len(assoc) == 0 || slices.ContainsFunc(codes, func(o string) bool { return slices.Contains(assoc, o) }) {
			continue
		}
		if i != nil && i.has(assoc) {
			continue
		}
		return badRequest("la prestation %s requiert l'une des prestations %s", c, strings.Join(assoc, ", "))
	}
	return nil
}

// create handles POST /interfaces. s.mu is held.
func (s *Sim) create(now time.Time, req shopapp.CreateRequest) (string, *simError) {
	if req.GUID == "" {
		return "", badRequest("le paramètre guid est requis")
	}
	if key, ok := s.byGUID[req.GUID]; ok {
		return key, nil // the same order sent again
	}
	if err := s.checkOrder(req.Prestations, true, nil); err != nil {
		return "", err
	}
	i := s.insert(s.rng, now, req)
	return i.key, nil
}

// insert adds an installing interface for a valid order. s.mu is held.
func (s *Sim) insert(r *rand.Rand, now time.Time, req shopapp.CreateRequest) *simIface {
	i := &simIface{
		key:       s.newKey(r),
		guid:      req.GUID,
		status:    shopapp.StatusInstalling,
		created:   now,
		customer:  req.Client,
		subdomain: subdomain(req),
	}
	if s.cfg.InstallDelay > 0 {
		i.installAt = now.Add(s.cfg.InstallDelay)
	}
	for _, c := range req.Prestations {
		i.occurrence = append(i.occurrence, &simOcc{code: c, ref: s.newRef(r), created: now})
	}
	if i.subdomain == "" {
		i.subdomain = "site-" + i.key[:8]
	}
	s.ifaces[i.key] = i
	s.keys = append(s.keys, i.key)
	s.byGUID[i.guid] = i.key
	return i
}

// add handles POST /interfaces/{cle}/prestations. s.mu is held.
func (s *Sim) add(now time.Time, key string, codes []string) ([]shopapp.AddedPrestation, *simError) {
	i, err := s.lookup(key, now)
	if err != nil {
		return nil, err
	}
	if i.status != shopapp.StatusActive && i.status != shopapp.StatusInstalling {
		return nil, badRequest("l'interface est %s : aucune prestation ne peut y être ajoutée", statusFR(i.status))
	}
	if err := s.checkOrder(codes, false, i); err != nil {
		return nil, err
	}
	out := make([]shopapp.AddedPrestation, 0, len(codes))
	for _, c := range codes {
		o := &simOcc{code: c, ref: s.newRef(s.rng), created: now}
		if needsForm(c) {
			o.formURL = "https://formulaire.shop-application.io/module/" + o.ref
		}
		i.occurrence = append(i.occurrence, o)
		out = append(out, o.added())
	}
	return out, nil
}

// cancel handles DELETE /interfaces/{cle}/prestations/{code}: every active occurrence of a code,
// or the one of a reference_unique. Those already cancelled are not listed again. s.mu is held.
func (s *Sim) cancel(now time.Time, key, codeOrRef string) ([]shopapp.AddedPrestation, *simError) {
	i, err := s.lookup(key, now)
	if err != nil {
		return nil, err
	}
	if i.status == shopapp.StatusDeleted {
		return nil, badRequest("l'interface est supprimée")
	}
	occ := i.find(codeOrRef)
	if len(occ) == 0 {
		return nil, badRequest("prestation %s absente de l'interface", codeOrRef)
	}
	out := []shopapp.AddedPrestation{}
	for _, o := range occ {
		if o.cancelled.IsZero() {
			o.cancelled = now
			out = append(out, o.added())
		}
	}
	return out, nil
}

// deleteInterface handles DELETE /interfaces/{cle}. s.mu is held.
func (s *Sim) deleteInterface(now time.Time, key string) (map[string]frtime.Time, *simError) {
	i, err := s.lookup(key, now)
	if err != nil {
		return nil, err
	}
	switch i.status {
	case shopapp.StatusDeleted:
		return nil, badRequest("l'interface est déjà supprimée")
	case shopapp.StatusActive, shopapp.StatusInstalling:
		i.requestDeletion(now)
	}
	return map[string]frtime.Time{"date_suppression": {Time: i.deletion}}, nil
}

// requestDeletion deactivates: deletion 90 days later (calendar days, Paris wall clock), access
// cut at midnight on the 1st of the next month.
func (i *simIface) requestDeletion(now time.Time) {
	p := now.In(frtime.Paris())
	i.status = shopapp.StatusDeactivated
	i.deletion = p.AddDate(0, 0, 90)
	i.accessCut = time.Date(p.Year(), p.Month()+1, 1, 0, 0, 0, 0, frtime.Paris())
}

// reactivate handles POST /interfaces/{cle}. s.mu is held.
func (s *Sim) reactivate(now time.Time, key string) (map[string]frtime.Time, *simError) {
	i, err := s.lookup(key, now)
	if err != nil {
		return nil, err
	}
	switch i.status {
	case shopapp.StatusDeactivated:
		i.status, i.deletion, i.accessCut = shopapp.StatusActive, time.Time{}, time.Time{}
		return map[string]frtime.Time{"date_reactivation": {Time: now}}, nil
	case shopapp.StatusDeleted:
		return nil, badRequest("l'interface a été définitivement supprimée")
	}
	return nil, badRequest("aucune demande de suppression n'a été enregistrée pour cette interface")
}

func statusFR(st shopapp.Status) string {
	switch st {
	case shopapp.StatusDeleted:
		return "supprimée"
	case shopapp.StatusActive:
		return "active"
	case shopapp.StatusDeactivated:
		return "désactivée"
	case shopapp.StatusInstalling:
		return "en cours d'installation"
	}
	return "dans un statut inconnu"
}

// newKey draws a UUID v4 from r, so that Seed is reproducible. s.mu is held.
func (s *Sim) newKey(r *rand.Rand) string {
	for {
		var b [16]byte
		for k := range b {
			b[k] = byte(r.Uint32())
		}
		b[6] = b[6]&0x0f | 0x40 // version 4
		b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
		key := uuid.UUID(b).String()
		if _, taken := s.ifaces[key]; !taken {
			return key
		}
	}
}

// newRef draws a reference_unique, 13 hex digits like the document's (PHP uniqid), unique in the
// simulator. s.mu is held.
func (s *Sim) newRef(r *rand.Rand) string {
	for {
		var b [7]byte
		for k := range b {
			b[k] = byte(r.Uint32())
		}
		ref := hex.EncodeToString(b[:])[:13]
		if !s.refs[ref] {
			s.refs[ref] = true
			return ref
		}
	}
}

// subdomain is sous_domaine, else the company or the name, made a DNS label.
func subdomain(req shopapp.CreateRequest) string {
	for _, v := range []string{req.Subdomain, req.Client.Company, req.Client.LastName} {
		if l := dnsLabel(v); l != "" {
			return l
		}
	}
	return ""
}

func dnsLabel(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch r = unaccent(r); {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		default:
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
				dash = true
			}
		}
	}
	out := strings.TrimSuffix(b.String(), "-")
	if len(out) > 63 {
		out = strings.TrimSuffix(out[:63], "-")
	}
	return out
}

// unaccent folds the accented letters of French names.
func unaccent(r rune) rune {
	switch r {
	case 'à', 'â', 'ä':
		return 'a'
	case 'ç':
		return 'c'
	case 'é', 'è', 'ê', 'ë':
		return 'e'
	case 'î', 'ï':
		return 'i'
	case 'ô', 'ö':
		return 'o'
	case 'ù', 'û', 'ü':
		return 'u'
	case 'ÿ':
		return 'y'
	}
	return r
}

// Interface is the simulator's whole state of one interface, for tests.
type Interface struct {
	Key, GUID    string
	Status       shopapp.Status
	Created      time.Time
	DeletionDate time.Time // zero unless deletion was requested
	AccessCut    time.Time // zero unless deletion was requested
	Customer     shopapp.Customer
	Subdomain    string
	Prestations  []shopapp.PrestationOccurrence
}

// Interface returns the state of an interface, settled at the simulator's current time.
func (s *Sim) Interface(key string) (Interface, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, err := s.lookup(key, s.now())
	if err != nil {
		return Interface{}, false
	}
	out := Interface{
		Key: i.key, GUID: i.guid, Status: i.status, Created: i.created, DeletionDate: i.deletion,
		AccessCut: i.accessCut, Customer: i.customer, Subdomain: i.subdomain,
	}
	for _, o := range i.occurrence {
		out.Prestations = append(out.Prestations, o.wire())
	}
	return out, true
}
