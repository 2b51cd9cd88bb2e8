// Command gen writes testdata/replay, the backfill sets `passerelle replay` and the tests read:
// deterministic (a fixed seed), so that a re-run rewrites the same bytes.
//
//	go run ./internal/journal/internal/gen -out testdata/replay
//
// Names, emails and phone numbers are invented. The emails use exemple.* domains; the phone
// numbers are random and may belong to someone, which is why the README warns against replaying
// these sets into production sinks.
package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	out := flag.String("out", "testdata/replay", "directory to write")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	g := &gen{r: rand.New(rand.NewPCG(2026, 1120))}
	files := map[string][]byte{
		"iciformation/2026-11-20.jsonl":   g.iciFormation(),
		"simplebo/2026-11.jsonl":          g.simplebo(),
		"shopapp/snapshots-2026-11.jsonl": g.shopapp(),
		"ecolix/clients.json":             nil, // below: JSON and CSV share their records
		"ecolix/clients_2026-11-20.csv":   nil,
		"README.md":                       nil,
	}
	clients := g.ecolixClients()
	var err error
	if files["ecolix/clients.json"], err = ecolixJSON(clients); err != nil {
		return err
	}
	if files["ecolix/clients_2026-11-20.csv"], err = ecolixCSV(clients); err != nil {
		return err
	}
	files["README.md"] = []byte(g.readme(len(clients)))
	for name, b := range files {
		path := filepath.Join(out, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

type gen struct {
	r *rand.Rand
	// counts for the README
	ici struct{ total, unique, exact, near, noContact, notObject, malformed, overseas int }
	sb  struct{ total, clients, repeats, reversed int }
	sa  struct{ total, interfaces int }
	ec  struct{ ties int }
}

func (g *gen) pick(s []string) string { return s[g.r.IntN(len(s))] }
func (g *gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.r.IntN(10))
	}
	return string(b)
}

var (
	lastNames = []string{"Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard", "Durand", "Dubois", "Moreau", "Laurent",
		"Simon", "Michel", "Lefèvre", "Leroy", "Roux", "David", "Bertrand", "Morel", "Fournier", "Girard", "Bonnet", "Dupont",
		"Lambert", "Fontaine", "Rousseau", "Vincent", "Muller", "Lefebvre", "Faure", "André", "Mercier", "Blanc", "Guérin",
		"Boyer", "Garnier", "Chevalier", "François", "Legrand", "Gauthier", "Garcia", "Perrin", "Robin", "Clément", "Morin",
		"Nicolas", "Henry", "Roussel", "Mathieu", "Gautier", "Masson", "Le Gall", "N'Diaye", "Da Silva", "Nguyen", "Hoarau",
		"Payet", "Grondin", "Rivière", "Jean-Baptiste", "Saint-Cyr"}
	firstF = []string{"Camille", "Léa", "Manon", "Chloé", "Emma", "Inès", "Sarah", "Julie", "Laura", "Anaïs", "Marie",
		"Océane", "Élodie", "Nathalie", "Sandrine", "Isabelle", "Aurélie", "Fatou", "Maëlys", "Zoé"}
	firstM = []string{"Lucas", "Hugo", "Thomas", "Nicolas", "Julien", "Maxime", "Alexandre", "Kévin", "Mathis", "Théo",
		"Antoine", "Romain", "Sébastien", "Jérôme", "Mehdi", "Yannick", "Loïc", "Jean-Marc", "Noé", "Gaël"}
	// cities: lower-case as the partner sends them, with their postal code
	cities = [][2]string{{"paris", "75011"}, {"paris", "75018"}, {"lyon", "69003"}, {"marseille", "13005"},
		{"toulouse", "31000"}, {"nice", "06000"}, {"nantes", "44000"}, {"strasbourg", "67000"}, {"montpellier", "34000"},
		{"bordeaux", "33000"}, {"lille", "59000"}, {"rennes", "35000"}, {"reims", "51100"}, {"saint-étienne", "42000"},
		{"le havre", "76600"}, {"grenoble", "38000"}, {"dijon", "21000"}, {"angers", "49000"}, {"nîmes", "30000"},
		{"clermont-ferrand", "63000"}, {"bourg-en-bresse", "01000"}, {"ajaccio", "20000"}, {"bastia", "20200"},
		{"aix-en-provence", "13100"}, {"brest", "29200"}, {"limoges", "87000"}, {"tours", "37000"}, {"amiens", "80000"},
		{"metz", "57000"}, {"besançon", "25000"}, {"perpignan", "66000"}, {"orléans", "45000"}, {"caen", "14000"},
		{"mulhouse", "68100"}, {"rouen", "76000"}, {"argenteuil", "95100"}, {"saint-denis", "93200"}, {"laval", "53000"}}
	// overseas departments: cities, mobile and fixed prefixes
	overseas = []struct {
		cities        [][2]string
		mobile, fixed []string
	}{
		{[][2]string{{"saint-denis", "97400"}, {"saint-pierre", "97410"}, {"le tampon", "97430"}, {"saint-paul", "97460"}}, []string{"0692", "0693"}, []string{"0262"}},
		{[][2]string{{"pointe-à-pitre", "97110"}, {"les abymes", "97139"}, {"baie-mahault", "97122"}}, []string{"0690", "0691"}, []string{"0590"}},
		{[][2]string{{"fort-de-france", "97200"}, {"le lamentin", "97232"}, {"schœlcher", "97233"}}, []string{"0696", "0697"}, []string{"0596"}},
		{[][2]string{{"cayenne", "97300"}, {"kourou", "97310"}}, []string{"0694"}, []string{"0594"}},
		{[][2]string{{"mamoudzou", "97600"}}, []string{"0639"}, []string{"0269"}},
	}
	formations = []string{"BTS Comptabilité et gestion", "CAP Accompagnant éducatif petite enfance", "Titre professionnel Secrétaire assistant",
		"Bac pro Commerce", "BTS Management commercial opérationnel", "Formation Aide-soignant", "CAP Esthétique cosmétique parfumerie",
		"Titre professionnel Développeur web et web mobile", "BTS Négociation et digitalisation de la relation client",
		"Formation Auxiliaire de puériculture", "Titre professionnel Assistant de vie aux familles", "CAP Pâtissier",
		"Licence professionnelle Ressources humaines", "Formation Préparateur en pharmacie", "Permis CACES R489"}
	statuts  = []string{"Demandeur d'emploi", "Demandeur d'emploi", "Salarié(e) du privé", "Salarié(e) du public", "Indépendant(e)", "Étudiant(e)", "En reconversion", "prospect"}
	horaires = []string{"après-midi", "matin", "14H-16H", "9h-12h", "Entre 12h et 14h", "soir", "Peu importe", "18h-19h30", ""}
	domains  = []string{"exemple.fr", "exemple.com", "courriel.exemple.net", "mail.exemple.org", "exemple-fai.fr"}
)

func (g *gen) person() (civ, first, last string) {
	last = g.pick(lastNames)
	if g.r.IntN(2) == 0 {
		return "Mme", g.pick(firstF), last
	}
	return "M.", g.pick(firstM), last
}

func ascii(s string) string {
	r := strings.NewReplacer("é", "e", "è", "e", "ë", "e", "ê", "e", "ï", "i", "î", "i", "ç", "c", "à", "a", "ô", "o", "œ", "oe",
		"É", "e", "ü", "u", " ", "", "'", "")
	return strings.ToLower(r.Replace(s))
}

func (g *gen) email(first, last string) string {
	switch g.r.IntN(5) {
	case 0:
		return ascii(first)[:1] + ascii(last) + strconv.Itoa(g.r.IntN(99)) + "@" + g.pick(domains)
	case 1:
		return ascii(first) + "_" + ascii(last) + "@" + g.pick(domains)
	default:
		return ascii(first) + "." + ascii(last) + "@" + g.pick(domains)
	}
}

// spaced writes a 10-digit number as "06 12 34 56 78".
func spaced(n, sep string) string {
	var b strings.Builder
	for i := 0; i < len(n); i += 2 {
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(n[i:min(i+2, len(n))])
	}
	return b.String()
}

// phone returns a mainland number in one of the shapes seen in the wild; as a JSON value, since
// some arrive as numbers.
func (g *gen) phone() any {
	prefix := "06"
	switch g.r.IntN(10) {
	case 0, 1:
		prefix = "07"
	case 2:
		prefix = "0" + strconv.Itoa(1+g.r.IntN(5)) // landline
	}
	n := prefix + g.digits(8)
	switch k := g.r.IntN(100); {
	case k < 45:
		return n
	case k < 58:
		return spaced(n, " ")
	case k < 64:
		return spaced(n, ".")
	case k < 69:
		return "+33 (0)" + n[1:2] + " " + spaced(n[2:], " ")
	case k < 73:
		return "0033" + n[1:]
	case k < 78:
		return "+33" + n[1:]
	case k < 85:
		return n[1:] // a spreadsheet lost the leading zero
	case k < 92:
		v, _ := strconv.Atoi(n[1:]) // sent as a number: the zero is lost too
		return v
	default:
		return spaced(n, "-")
	}
}

// obj is a JSON object that keeps its keys in insertion order, as partners' PHP writes them.
type obj struct {
	keys []string
	m    map[string]any
}

func newObj(kv ...any) *obj {
	o := &obj{m: map[string]any{}}
	for i := 0; i < len(kv); i += 2 {
		o.set(kv[i].(string), kv[i+1])
	}
	return o
}

func (o *obj) set(k string, v any) {
	if _, ok := o.m[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.m[k] = v
}

func (o *obj) get(k string) any { return o.m[k] }

func (o *obj) del(k string) {
	delete(o.m, k)
	o.keys = slices.DeleteFunc(o.keys, func(s string) bool { return s == k })
}

func (o *obj) clone() *obj {
	c := &obj{keys: slices.Clone(o.keys), m: make(map[string]any, len(o.m))}
	for k, v := range o.m {
		c.m[k] = v
	}
	return c
}

func (o *obj) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range o.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(bytes.TrimSuffix(line(o.m[k]), []byte("\n")))
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

type lead = *obj

func (g *gen) lead() (lead, bool) {
	civ, first, last := g.person()
	c := cities[g.r.IntN(len(cities))]
	l := newObj("nom", last, "prenom", first, "civilite", civ, "tel", nil, "email", nil, "ville", "", "code_postal", "",
		"formation", g.pick(formations), "horaire_rappel", g.pick(horaires), "statut", g.pick(statuts),
		"client", "Horizon Compétences", "id_client", "4521")
	overseasLead := g.r.IntN(100) < 9
	if overseasLead {
		o := overseas[g.r.IntN(len(overseas))]
		c = o.cities[g.r.IntN(len(o.cities))]
		var n string
		if g.r.IntN(4) == 0 {
			n = g.pick(o.fixed) + g.digits(6)
		} else {
			n = g.pick(o.mobile) + g.digits(6)
		}
		switch g.r.IntN(3) {
		case 0:
			l.set("tel", spaced(n, " "))
		default:
			l.set("tel", n)
		}
	} else {
		l.set("tel", g.phone())
	}
	l.set("ville", c[0])
	l.set("code_postal", c[1])
	switch k := g.r.IntN(100); {
	case k < 80:
		l.set("email", g.email(first, last))
	case k < 85:
		e := g.email(first, last)
		l.set("email", "  "+strings.ToUpper(e[:1])+e[1:]+" ")
	case k < 90:
		l.set("email", "")
	case k < 94:
		l.set("email", nil)
	default:
		l.del("email")
	}
	switch k := g.r.IntN(100); {
	case k < 4:
		n, _ := strconv.Atoi(c[1]) // a number: 01000 becomes 1000
		l.set("code_postal", n)
	case k < 6:
		l.set("ville", strings.ToUpper(c[0]))
	case k < 9:
		l.set("id_client", 4521)
	case k < 12:
		l.set("id_client", "4522") // a second account
	case k < 14:
		l.del("civilite")
	case k < 16:
		l.set("civilite", nil)
	}
	if g.r.IntN(100) < 10 {
		switch g.r.IntN(3) {
		case 0:
			l.set("utm_source", "google")
			l.set("utm_campaign", "rentree-2026")
		case 1:
			l.set("consentement", true)
		default:
			l.set("commentaire", "Rappeler après 17h, "+g.pick([]string{"merci", "urgent", "financement CPF"}))
		}
	}
	return l, overseasLead
}

func line(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err) // generated values always encode
	}
	return b.Bytes()
}

func (g *gen) iciFormation() []byte {
	const unique, exact, near = 262, 18, 8
	var lines [][]byte
	var leads []lead
	for range unique {
		l, o := g.lead()
		if o {
			g.ici.overseas++
		}
		leads = append(leads, l)
		lines = append(lines, line(l))
	}
	// No usable contact: rejected by the decoder, as live.
	noContact := []lead{
		newObj("nom", "Bonnet", "prenom", "Inès", "civilite", "Mme", "tel", "", "email", "", "ville", "lyon", "code_postal", "69003", "formation", formations[0], "client", "Horizon Compétences", "id_client", "4521"),
		newObj("nom", "Roux", "prenom", "Théo", "civilite", "M.", "ville", "nantes", "code_postal", "44000", "formation", formations[3], "client", "Horizon Compétences", "id_client", "4521"),
		newObj("nom", "Garnier", "prenom", "Zoé", "tel", "12", "email", "zoe.garnier@", "ville", "caen", "code_postal", "14000", "formation", formations[5], "id_client", "4521"),
		newObj("nom", "Perrin", "prenom", "Loïc", "tel", nil, "email", "non communiqué", "ville", "metz", "code_postal", "57000", "formation", formations[7], "id_client", "4521"),
		newObj("nom", "", "prenom", "", "tel", "00 00 00 00", "email", "@", "formation", formations[1], "id_client", "4521"),
		newObj("nom", "Test", "prenom", "Test", "tel", 0, "email", "test", "id_client", "4521"),
	}
	for _, l := range noContact {
		lines = append(lines, line(l))
	}
	notObject := []string{`["Durand","Léa","0612345678"]` + "\n", `"lead"` + "\n", "null\n"}
	malformed := []string{
		`{"nom":"Petit","prenom":"Hugo","tel":"06 1` + "\n", // cut by the sender
		`{'nom': 'Faure', 'tel': '0611223344'}` + "\n",      // not JSON quotes
		`{"nom":"Morel","prenom":"Anaïs","tel":"0712345678",}` + "\n",
	}
	for _, s := range notObject {
		lines = append(lines, []byte(s))
	}
	for _, s := range malformed {
		lines = append(lines, []byte(s))
	}
	g.r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	insertAfter := func(orig, dup []byte) {
		at := slices.IndexFunc(lines, func(l []byte) bool { return bytes.Equal(l, orig) })
		pos := at + 1 + g.r.IntN(len(lines)-at)
		lines = slices.Insert(lines, pos, dup)
	}
	// The partner resends (no 200 seen, or a retry of its own): the very same body later.
	for range exact {
		l := line(leads[g.r.IntN(len(leads))])
		insertAfter(l, l)
	}
	// The same person, training and account again, worded differently: a dedupe key match.
	for range near {
		i := g.r.IntN(len(leads))
		orig := line(leads[i])
		d := leads[i].clone()
		d.set("horaire_rappel", g.pick(horaires[:len(horaires)-1])+" (2e demande)")
		if s, ok := d.get("ville").(string); ok && s != "" {
			d.set("ville", strings.ToUpper(s[:1])+s[1:])
		}
		insertAfter(orig, line(d))
	}
	g.ici.unique, g.ici.exact, g.ici.near = unique, exact, near
	g.ici.noContact, g.ici.notObject, g.ici.malformed = len(noContact), len(notObject), len(malformed)
	g.ici.total = len(lines)
	return bytes.Join(lines, nil)
}

// siret returns a 14-digit SIRET passing the Luhn check, or failing it when bad.
func (g *gen) siret(bad bool) string {
	for {
		s := g.digits(13)
		for d := 0; d < 10; d++ {
			c := s + strconv.Itoa(d)
			if luhn(c) != bad {
				return c
			}
		}
	}
}

func luhn(s string) bool {
	sum := 0
	for i := range len(s) {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

type sbEvent struct {
	at     time.Time
	client int
	body   *obj
}

// Simplébo's webhook fields, in the public document's order.
var (
	sbDates    = []string{"lead_creation_date", "service_starting_date", "billing_starting_date", "end_of_contract_date", "unsubscription_reason", "nb_of_paid_months", "nb_of_offered_months", "nb_of_options"}
	sbSnapshot = []string{"client_id", "lastname", "firstname", "client_title", "company_name", "siret", "email", "phone_number1", "phone_number2", "address1", "address2", "zipcode", "city", "country"}
)

func (g *gen) simplebo() []byte {
	const clients = 20
	var events []sbEvent
	day := func(t time.Time) string { return t.Format("2006-01-02") }
	businesses := []string{"Boulangerie", "Garage", "Salon de coiffure", "Cabinet infirmier", "Fleuriste", "Plomberie",
		"Auto-école", "Restaurant", "Librairie", "Institut de beauté"}
	reasons := []string{"Cessation d'activité", "Trop cher", "Site réalisé en interne", ""}
	for c := range clients {
		civ, first, last := g.person()
		city := cities[g.r.IntN(len(cities))]
		snap := map[string]string{
			"client_id": fmt.Sprintf("HZ-2026-%04d", 101+c), "lastname": last, "firstname": first, "client_title": civ,
			"company_name": g.pick(businesses) + " " + last, "siret": g.siret(c%7 == 3), "email": g.email(first, last),
			"phone_number1": spaced("06"+g.digits(8), " "), "phone_number2": "", "address1": strconv.Itoa(1+g.r.IntN(120)) + " " +
				g.pick([]string{"rue de la République", "avenue Jean Jaurès", "place du Marché", "boulevard Victor Hugo", "chemin des Vignes"}),
			"address2": "", "zipcode": city[1], "city": strings.ToUpper(city[0][:1]) + city[0][1:], "country": "France",
		}
		if c%4 == 0 {
			snap["phone_number2"] = "0" + strconv.Itoa(1+g.r.IntN(5)) + g.digits(8)
		}
		if c%5 == 1 {
			snap["address2"] = "Bâtiment " + string(rune('A'+g.r.IntN(4)))
		}
		// A few clients started in October: their first events are not in November's file.
		lead := time.Date(2026, 11, 1+g.r.IntN(10), 9+g.r.IntN(9), g.r.IntN(60), 0, 0, time.UTC)
		if c%6 == 5 {
			lead = lead.AddDate(0, 0, -14)
		}
		dates := map[string]string{"lead_creation_date": day(lead), "service_starting_date": "", "billing_starting_date": "",
			"end_of_contract_date": "", "unsubscription_reason": "", "nb_of_paid_months": "0", "nb_of_offered_months": "0", "nb_of_options": "0"}
		emit := func(t time.Time, typ string) {
			b := newObj("event_type", typ)
			for _, k := range sbDates {
				b.set(k, dates[k])
			}
			for _, k := range sbSnapshot {
				b.set(k, snap[k])
			}
			events = append(events, sbEvent{at: t, client: c, body: b})
		}
		emit(lead, "0")
		if c >= 16 {
			continue // a mockup still waiting
		}
		active := lead.AddDate(0, 0, 2+g.r.IntN(5))
		dates["service_starting_date"] = day(active)
		dates["nb_of_options"] = strconv.Itoa(g.r.IntN(3))
		emit(active, "1")
		if c == 2 || c == 9 {
			snap["phone_number1"] = "07 " + spaced(g.digits(8), " ") // the client changed phones
		}
		if c >= 13 {
			continue
		}
		billing := active.AddDate(0, 0, 7+g.r.IntN(5)) // after the trial week
		dates["billing_starting_date"] = day(billing)
		dates["nb_of_paid_months"] = "1"
		emit(billing, "3")
		switch c % 6 {
		case 1, 3:
			end := billing.AddDate(0, 0, 3+g.r.IntN(5))
			dates["end_of_contract_date"] = day(end)
			dates["unsubscription_reason"] = g.pick(reasons)
			emit(end, "2")
		case 4:
			dates["nb_of_offered_months"] = "2"
			emit(billing.AddDate(0, 0, 3), "4")
		}
	}
	// Only what arrived in November; October's events are the clients' past.
	events = slices.DeleteFunc(events, func(e sbEvent) bool { return e.at.Month() != time.November })
	slices.SortStableFunc(events, func(a, b sbEvent) int { return a.at.Compare(b.at) })
	// Out of order: for a few clients the later state arrives first.
	reversed := 0
	for i := 0; i+1 < len(events) && reversed < 4; i++ {
		if events[i].client%5 != 2 {
			continue
		}
		for j := i + 1; j < len(events); j++ {
			if events[j].client == events[i].client {
				events[i], events[j] = events[j], events[i]
				reversed++
				break
			}
		}
	}
	var out [][]byte
	for _, e := range events {
		out = append(out, line(e.body))
	}
	// Repeats: the same delivery again, a little later.
	const repeats = 8
	for range repeats {
		i := g.r.IntN(len(out))
		out = slices.Insert(out, min(len(out), i+1+g.r.IntN(4)), out[i])
	}
	g.sb.total, g.sb.clients, g.sb.repeats, g.sb.reversed = len(out), clients, repeats, reversed
	return bytes.Join(out, nil)
}

const partnerLayout = "2006-01-02 15:04:05"

type presta struct {
	Code            string `json:"code"`
	DateCreation    string `json:"date_creation"`
	Resilie         bool   `json:"resilie"`
	DateResiliation string `json:"date_resiliation"`
	ReferenceUnique string `json:"reference_unique"`
}

type iface struct {
	Cle               string   `json:"cle"`
	DateCreation      string   `json:"date_creation"`
	Statut            any      `json:"statut"`
	URL               string   `json:"url,omitempty"`
	URLAdministration string   `json:"url_administration,omitempty"`
	URLFormulaire     string   `json:"url_formulaire,omitempty"`
	DateSuppression   string   `json:"date_suppression"`
	Prestations       []presta `json:"prestations"`
}

type observation struct {
	at    time.Time
	iface int
	b     []byte
}

func (g *gen) shopapp() []byte {
	const n = 24
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic(err)
	}
	setups := [][2]string{{"IN-BTQST-S", "IN-BTQZ-AMM"}, {"IN-BTQST-S", "IN-BTQZ-AMA"}, {"IN-VITRINE-S", "IN-VITZ-AMM"},
		{"IN-VITRINE-S", "IN-VITZ-AMA"}, {"IN-CAISSE-S", "IN-CAISSE-AMM"}}
	uniq := func() string { return fmt.Sprintf("%08x%05x", 0x691e0000+g.r.IntN(0x10000), g.r.IntN(0x100000)) }
	var obs []observation
	for i := range n {
		sub := ascii(g.pick(lastNames)) + "-" + ascii(cities[g.r.IntN(len(cities))][0])
		created := time.Date(2026, 10, 28+g.r.IntN(25), 8+g.r.IntN(10), g.r.IntN(60), g.r.IntN(60), 0, paris)
		if i == 5 {
			created = time.Date(2026, 10, 25, 2, 30, 0, 0, paris) // the hour that happens twice
		}
		s := setups[g.r.IntN(len(setups))]
		f := iface{Cle: uniq(), DateCreation: created.Format(partnerLayout), Statut: 3, DateSuppression: "",
			URLFormulaire: "https://formulaire.exemple-shopapp.fr/projet/" + uniq(),
			Prestations: []presta{
				{Code: s[0], DateCreation: created.Format(partnerLayout), ReferenceUnique: uniq()},
				{Code: s[1], DateCreation: created.Format(partnerLayout), ReferenceUnique: uniq()},
			}}
		see := func(t time.Time) {
			// The partner's PHP sometimes sends the statut as a string.
			v := f
			if i%6 == 2 {
				v.Statut = fmt.Sprint(f.Statut)
			}
			v.Prestations = slices.Clone(f.Prestations)
			obs = append(obs, observation{t, i, line(v)})
		}
		t := created.Add(10 * time.Minute)
		see(t)
		see(t.Add(4 * time.Hour)) // unchanged: a replay publishes nothing for it
		if i%8 == 7 {
			continue // still installing at the month's end
		}
		t = t.AddDate(0, 0, 2+g.r.IntN(5))
		f.Statut, f.URLFormulaire = 1, ""
		f.URL = "https://" + sub + ".exemple-boutique.fr"
		f.URLAdministration = f.URL + "/admin"
		see(t)
		if i%3 == 0 {
			t = t.AddDate(0, 0, 1+g.r.IntN(6))
			mod := "MO-ARTCRITERES-S"
			if s[0] == "IN-VITRINE-S" {
				mod = "MO-ECOMMERCE-S"
			}
			f.Prestations = append(f.Prestations, presta{Code: mod, DateCreation: t.Format(partnerLayout), ReferenceUnique: uniq()})
			see(t)
			if i%9 == 0 { // the module cancelled a few days later
				t = t.AddDate(0, 0, 3)
				f.Prestations[2].Resilie, f.Prestations[2].DateResiliation = true, t.Format(partnerLayout)
				see(t)
			}
		}
		if i%5 == 4 {
			// Deletion requested: access cut on the 1st of next month, deletion 90 days after.
			t = t.AddDate(0, 0, 2+g.r.IntN(4))
			f.Statut = 2
			f.DateSuppression = t.AddDate(0, 0, 90).Format(partnerLayout)
			see(t)
			if i == 9 { // reactivated before the deletion
				t = t.AddDate(0, 0, 2)
				f.Statut, f.DateSuppression = 1, "0000-00-00 00:00:00"
				see(t)
			}
		}
	}
	// October's history collapses to what the month's first poll sees.
	firstPoll := time.Date(2026, 11, 1, 0, 5, 0, 0, paris)
	obs = slices.DeleteFunc(obs, func(o observation) bool { return o.at.Month() == time.December })
	for i := range obs {
		if obs[i].at.Before(firstPoll) {
			obs[i].at = firstPoll
		}
	}
	// An interface's observations are consecutive: of those stamped firstPoll, keep its last.
	obs = slices.DeleteFunc(obs, func(o observation) bool { return o.at.IsZero() })
	for i := 0; i+1 < len(obs); i++ {
		if obs[i].at.Equal(firstPoll) && obs[i+1].at.Equal(firstPoll) && obs[i].iface == obs[i+1].iface {
			obs[i].at = time.Time{}
		}
	}
	obs = slices.DeleteFunc(obs, func(o observation) bool { return o.at.IsZero() })
	slices.SortStableFunc(obs, func(a, b observation) int { return a.at.Compare(b.at) })
	var out [][]byte
	for _, o := range obs {
		out = append(out, o.b)
	}
	g.sa.total, g.sa.interfaces = len(out), n
	return bytes.Join(out, nil)
}

type ecolixClient struct {
	ID               int    `json:"id"`
	Reference        string `json:"reference"`
	Societe          string `json:"societe"`
	Nom              string `json:"nom"`
	Prenom           string `json:"prenom"`
	Email            string `json:"email"`
	Telephone        string `json:"telephone"`
	Adresse          string `json:"adresse"`
	CodePostal       string `json:"code_postal"`
	Ville            string `json:"ville"`
	DateModification string `json:"date_modification"`
}

var ecolixFields = []string{"id", "reference", "societe", "nom", "prenom", "email", "telephone", "adresse", "code_postal", "ville", "date_modification"}

func (g *gen) ecolixClients() []ecolixClient {
	const n = 42
	var cs []ecolixClient
	t := time.Date(2026, 11, 20, 7, 12, 5, 0, time.UTC)
	companies := []string{"SARL", "SAS", "EURL", "SCI"}
	for i := range n {
		_, first, last := g.person()
		c := cities[g.r.IntN(len(cities))]
		ref := fmt.Sprintf("%08x-%04x-4%03x-a%03x-%012x", g.r.Uint32(), g.r.IntN(0x10000), g.r.IntN(0x1000), g.r.IntN(0x1000), g.r.Uint64()&0xffffffffffff)
		if i%9 == 4 {
			ref = "" // created in the ERP directly, not one of our clients
		}
		cl := ecolixClient{ID: 10230 + i*7 + g.r.IntN(5), Reference: ref, Societe: g.pick(companies) + " " + last + " " + g.pick([]string{"Distribution", "et Fils", "Conseil", "Bâtiment", "Services"}),
			Nom: strings.ToUpper(last), Prenom: first, Email: g.email(first, last), Telephone: spaced("0"+strconv.Itoa(1+g.r.IntN(7))+g.digits(8), " "),
			Adresse:    strconv.Itoa(1+g.r.IntN(200)) + " " + g.pick([]string{"rue Nationale", "ZA des Landes", "avenue de la Gare", "quai des Chartrons"}),
			CodePostal: c[1], Ville: strings.ToUpper(c[0])}
		switch i {
		case 3:
			cl.Societe = `Boulangerie "Au Bon Pain"; Lefèvre & Fils` // a separator and quotes inside a field
		case 11:
			cl.Societe = "=HYPERLINK(\"http://exemple.invalid\",\"cliquez\")" // a formula: data, never evaluated
		case 17:
			cl.Email, cl.Telephone = "", ""
		case 23:
			cl.Adresse = "Lieu-dit Les Combes\nRoute de Saint-Flour" // a line break inside a field
		}
		// Ties: a batch update stamps several records with the same second.
		if i < 15 || i > 19 {
			t = t.Add(time.Duration(1+g.r.IntN(900)) * time.Second)
		}
		cl.DateModification = t.Format(partnerLayout)
		cs = append(cs, cl)
	}
	slices.SortStableFunc(cs, func(a, b ecolixClient) int {
		if c := strings.Compare(a.DateModification, b.DateModification); c != 0 {
			return c
		}
		return a.ID - b.ID
	})
	for i := 0; i < len(cs); {
		j := i
		for j < len(cs) && cs[j].DateModification == cs[i].DateModification {
			j++
		}
		g.ec.ties = max(g.ec.ties, j-i)
		i = j
	}
	return cs
}

// ecolixJSON writes the export page on one line, as the poller receives and journals it.
func ecolixJSON(cs []ecolixClient) ([]byte, error) {
	return line(map[string]any{"donnees": cs, "page": 1, "pages": 1, "total": len(cs)}), nil
}

func ecolixCSV(cs []ecolixClient) ([]byte, error) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Comma = ';'
	w.UseCRLF = true
	if err := w.Write(ecolixFields); err != nil {
		return nil, err
	}
	for _, c := range cs {
		if err := w.Write([]string{strconv.Itoa(c.ID), c.Reference, c.Societe, c.Nom, c.Prenom, c.Email, c.Telephone,
			c.Adresse, c.CodePostal, c.Ville, c.DateModification}); err != nil {
			return nil, err
		}
	}
	w.Flush()
	return b.Bytes(), w.Error()
}

func (g *gen) readme(ecolix int) string {
	i, s, a := g.ici, g.sb, g.sa
	return fmt.Sprintf(`# Backfill sets for `+"`passerelle replay`"+`

Realistic inputs for every source, one record's body per line as the partner sends it (read them with
`+"`journal.Reader.ReadRaw`"+`). Generated by `+"`go run ./internal/journal/internal/gen -out testdata/replay`"+`
(fixed seed: a re-run writes the same bytes); edit the generator, not the files.

People, companies and addresses are invented; emails use exemple.* domains. **Phone numbers are random
and may belong to real people: replay these sets into the sandbox's simulators, never into production
sinks** (an SMS sink would text them).

| file | holds | exercises |
|---|---|---|
| `+"`iciformation/2026-11-20.jsonl`"+` | %d lines: a day of Ici Formation lead webhooks (the fields of CONTRACTS.md "Ici Formation") | %d distinct leads, %d of them overseas (0692/0693/0262 Réunion, 0690/0691/0590 Guadeloupe, 0696/0697/0596 Martinique, 0694/0594 Guyane, 0639/0269 Mayotte); phones with spaces, dots, dashes, `+"`+33 (0)6…`"+`, `+"`0033…`"+`, `+"`+33…`"+`, 9 digits (a lost leading zero) and JSON numbers; emails padded or capitalised, empty, null or absent; postal codes as numbers (01000 → 1000); `+"`id_client`"+` as a number or a second account; unknown extra fields; %d exact resends and %d near-duplicates (same contact, training and account, other wording) that dedupe must drop; %d leads with no usable contact (rejected as live: 400); %d lines that are JSON but not objects (passed on by ReadRaw, rejected by the decoder); %d malformed JSON lines (reported by ReadRaw with file and line, skipped) |
| `+"`simplebo/2026-11.jsonl`"+` | %d lines: Simplébo webhook bodies received in November, each form decoded to a JSON object of strings (`+"`event_type`"+`, the dates, the counters, the client snapshot) | %d clients through their states (0 lead created, 1 activated, 3 billing started, 2 contract ended, 4 switched to free), some started in October; missing dates empty; SIRETs failing their checksum (warn, don't reject); a client changing phone numbers; %d deliveries repeated; %d pairs where a client's later state arrives first (never move a state backwards) |
| `+"`shopapp/snapshots-2026-11.jsonl`"+` | %d lines: Shop Application interfaces as the poller sees them in November (`+"`GET /interfaces/{cle}`"+` plus `+"`cle`"+` and its `+"`prestations`"+`) | %d interfaces: installing (3) with a form URL, active (1), a module added then cancelled, deletion requested (2) with its `+"`date_suppression`"+`, one reactivated (the PHP zero date `+"`0000-00-00 00:00:00`"+` for "none"); `+"`statut`"+` sometimes a string; an interface created at 02:30 on 2026-10-25, an hour Paris lives twice; unchanged observations repeated (nothing to publish) |
| `+"`ecolix/clients.json`"+` | one line: an Ecolix `+"`clients`"+` export page, `+"`{\"donnees\":[…],\"page\":1,\"pages\":1,\"total\":%d}`"+` (view it with `+"`jq .`"+`) | records sorted by `+"`date_modification`"+` then `+"`id`"+`, %d stamped with the same second (cursor ties); clients without `+"`reference`"+` (created in the ERP, not ours); a client without email or phone |
| `+"`ecolix/clients_2026-11-20.csv`"+` | the same %d clients as a file-mode export: `+"`;`"+`, UTF-8, header row with the JSON field names, CRLF line ends | quoted fields holding `+"`;`"+`, quotes and a line break; a company name that is a spreadsheet formula (data to neutralise, never evaluate) |
`, i.total, i.unique, i.overseas, i.exact, i.near, i.noContact, i.notObject, i.malformed,
		s.total, s.clients, s.repeats, s.reversed, a.total, a.interfaces, ecolix, g.ec.ties, ecolix)
}
