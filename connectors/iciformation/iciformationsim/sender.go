// Package iciformationsim plays Ici Formation: a Sender that posts leads to passerelle's webhook
// the way the partner does, and realistic random leads. The tests and `passerelle sandbox` use
// it; the daemon never imports it.
package iciformationsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/internal/httpapi"
)

// Sender plays Ici Formation: it posts leads to a passerelle endpoint the way the partner does,
// one lead per POST, as application/json, with the token where Auth says.
type Sender struct {
	URL  string
	Auth httpapi.TokenAuth
	// Client defaults to a client with a 10 s timeout.
	Client *http.Client
}

// maxResponse bounds how much of an answer Send reads; ours are a few dozen bytes.
const maxResponse = 1 << 20

// Send posts body as is and returns the status and body of the answer. err is a transport
// failure only: any HTTP status, 200 or not, comes back with a nil err.
func (s *Sender) Send(ctx context.Context, body []byte) (status int, respBody []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return 0, nil, fmt.Errorf("iciformation: build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	s.Auth.SetHeader(req.Header)
	client := s.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("iciformation: post lead: %w", err)
	}
	defer func() { _ = resp.Body.Close() }() // read to the end below; nothing to report on close
	respBody, err = io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("iciformation: read answer: %w", err)
	}
	return resp.StatusCode, respBody, nil
}

// SendLead posts l with the field names of the partner's document (Raw is not sent).
func (s *Sender) SendLead(ctx context.Context, l iciformation.Lead) (int, error) {
	body, err := json.Marshal(l)
	if err != nil {
		return 0, fmt.Errorf("iciformation: encode lead: %w", err)
	}
	status, _, err := s.Send(ctx, body)
	return status, err
}

// Run posts a random lead every interval until ctx is done, reporting each outcome to
// onResult (which may be nil). every <= 0 posts back to back, for load tests.
func (s *Sender) Run(ctx context.Context, every time.Duration, r *rand.Rand, onResult func(status int, err error)) {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		status, err := s.SendLead(ctx, RandomLead(r))
		if ctx.Err() != nil {
			return // an error caused by stopping is not a result
		}
		if onResult != nil {
			onResult(status, err)
		}
		if tick == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
	}
}

// SeedExample returns the example payload of Ici Formation's API document (V2.1), byte for byte.
func SeedExample() []byte {
	return []byte(`{
  "nom": "Doe",
  "prenom": "John",
  "civilite": "M.",
  "tel": "0102030405",
  "email": "john.doe@example.com",
  "ville": "paris",
  "code_postal": "75001",
  "statut": "prospect",
  "horaire_rappel": "après-midi",
  "formation": "Développement Web",
  "client": "XYZ Formations",
  "id_client": "1234"
}`)
}

// RandomLead makes a plausible lead with the mess real deliveries show: phones in every format
// seen, a lost leading zero, overseas numbers, mixed-case emails, now and then no email.
func RandomLead(r *rand.Rand) iciformation.Lead {
	p := pick(r, prenoms)
	civ, prenom := p[0], p[1]
	nom := pick(r, noms)
	c := pick(r, villes)
	l := iciformation.Lead{
		Nom:           nom,
		Prenom:        prenom,
		Civilite:      civ,
		Tel:           randomPhone(r, c.mobile),
		Ville:         c.ville,
		CodePostal:    c.cp,
		Formation:     pick(r, formations),
		HoraireRappel: pick(r, horaires),
		Statut:        pick(r, statuts),
		Client:        "XYZ Formations",
		IDClient:      "1234",
	}
	// The phone is always there, so a lead without email stays usable.
	if r.IntN(20) != 0 {
		l.Email = randomEmail(r, prenom, nom)
	}
	return l
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// randomPhone formats a mobile number starting with prefix ("06", "07", "0692", …) the way
// forms and spreadsheets hand them over.
func randomPhone(r *rand.Rand, prefix string) string {
	d := []byte(prefix)
	for len(d) < 10 {
		d = append(d, byte('0'+r.IntN(10)))
	}
	n := string(d) // 0612345678
	overseas := len(prefix) > 2
	pairs := func(sep string) string {
		var b strings.Builder
		for i := 0; i < 10; i += 2 {
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(n[i : i+2])
		}
		return b.String()
	}
	f := r.IntN(8)
	if overseas && (f == 2 || f == 3) {
		f = 0 // overseas numbers are not +33: nobody writes them so
	}
	switch f {
	case 0:
		return pairs(" ") // 06 12 34 56 78
	case 1:
		return pairs(".") // 06.12.34.56.78
	case 2:
		return "+33 (0)" + n[1:2] + " " + pairs(" ")[3:] // +33 (0)6 12 34 56 78
	case 3:
		return "0033" + n[1:] // 0033612345678
	case 4:
		return n[1:] // a spreadsheet ate the leading zero
	case 5:
		return pairs("-") // 06-12-34-56-78
	default:
		return n
	}
}

func randomEmail(r *rand.Rand, prenom, nom string) string {
	p, n := asciiLower(prenom), asciiLower(nom)
	var local string
	switch r.IntN(4) {
	case 0:
		local = p + "." + n
	case 1:
		local = p[:1] + n + fmt.Sprint(r.IntN(99)+1)
	case 2:
		local = n + "." + p + fmt.Sprint(1960+r.IntN(46))
	default:
		local = p + "_" + n
	}
	e := local + "@" + pick(r, domaines)
	if r.IntN(10) == 0 {
		e = strings.ToUpper(e[:1]) + e[1:] // typed on a phone
	}
	return e
}

// asciiLower makes a name usable in an email address: "Hélène" → "helene", "Le Goff" → "legoff".
func asciiLower(s string) string {
	var b strings.Builder
	for _, c := range strings.ToLower(s) {
		switch {
		case c >= 'a' && c <= 'z', c == '-':
			b.WriteRune(c)
		case strings.ContainsRune("àâä", c):
			b.WriteByte('a')
		case strings.ContainsRune("éèêë", c):
			b.WriteByte('e')
		case strings.ContainsRune("îï", c):
			b.WriteByte('i')
		case strings.ContainsRune("ôö", c):
			b.WriteByte('o')
		case strings.ContainsRune("ùûü", c):
			b.WriteByte('u')
		case c == 'ç':
			b.WriteByte('c')
		}
	}
	return b.String()
}

type ville struct{ ville, cp, mobile string }

var (
	prenoms = [][2]string{
		{"M.", "Jean"}, {"M.", "Mohamed"}, {"M.", "Thomas"}, {"M.", "Nicolas"}, {"M.", "Kévin"},
		{"M.", "Jérôme"}, {"M.", "François"}, {"M.", "Lucas"}, {"M.", "Mamadou"}, {"M.", "Théo"},
		{"Mme", "Marie"}, {"Mme", "Nathalie"}, {"Mme", "Sandrine"}, {"Mme", "Hélène"}, {"Mme", "Fatima"},
		{"Mme", "Camille"}, {"Mme", "Chloé"}, {"Mme", "Inès"}, {"Mme", "Aurélie"}, {"Mme", "Léa"},
	}
	noms = []string{
		"Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy",
		"Moreau", "Lefèvre", "Garnier", "Faure", "Le Goff", "Nguyen", "Benali", "Diallo", "Müller",
		"Hoarau", "Payet", "Jean-Baptiste", "Lopez", "Da Silva", "Gauthier", "Mercier",
	}
	domaines = []string{"gmail.com", "hotmail.fr", "orange.fr", "yahoo.fr", "free.fr", "outlook.fr", "laposte.net", "sfr.fr", "wanadoo.fr"}
	// Mainland mobiles start 06/07; overseas ones have their own prefixes and are not +33.
	villes = []ville{
		{"paris", "75011", "06"}, {"paris", "75018", "07"}, {"lyon", "69003", "06"},
		{"marseille", "13008", "06"}, {"toulouse", "31000", "07"}, {"nice", "06000", "06"},
		{"nantes", "44000", "06"}, {"strasbourg", "67000", "07"}, {"montpellier", "34000", "06"},
		{"bordeaux", "33000", "06"}, {"lille", "59000", "07"}, {"rennes", "35000", "06"},
		{"saint-étienne", "42000", "06"}, {"le havre", "76600", "07"}, {"aix-en-provence", "13100", "06"},
		{"saint-denis", "97400", "0692"}, {"saint-pierre", "97410", "0693"},
		{"pointe-à-pitre", "97110", "0690"}, {"fort-de-france", "97200", "0696"},
		{"cayenne", "97300", "0694"}, {"mamoudzou", "97600", "0639"},
	}
	formations = []string{
		"Développement Web", "Comptabilité", "CAP Petite enfance", "Secrétaire médicale",
		"Assistant(e) de vie aux familles", "Gestion de paie", "Anglais professionnel",
		"BTS MCO", "Infographie", "Auxiliaire de puériculture", "Excel perfectionnement",
		"Titre professionnel Vendeur conseil", "Esthétique", "Permis CACES R489",
	}
	horaires = []string{"après-midi", "matin", "14H-16H", "9H-12H", "18H-20H", "12H-14H", "indifférent", "soir", ""}
	statuts  = []string{
		"prospect", "Demandeur d'emploi", "Salarié(e) du privé", "Salarié(e) du public",
		"Indépendant(e)", "Étudiant(e)", "En reconversion", "Retraité(e)",
	}
)
