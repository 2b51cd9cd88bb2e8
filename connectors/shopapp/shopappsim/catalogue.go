package shopappsim

import (
	"strings"

	"github.com/passerelle/passerelle/connectors/shopapp"
)

// DefaultCatalogue is the simulator's catalogue when Config.Catalogue is empty: setups, the
// subscriptions they go with, and options, with realistic prices before tax.
func DefaultCatalogue() []shopapp.CatalogueEntry {
	shop := []string{"IN-BTQZ-AMM", "IN-BTQZ-AMA"}
	vitrine := []string{"IN-VITZ-AMM", "IN-VITZ-AMA"}
	entries := []shopapp.CatalogueEntry{
		{Code: "IN-BTQST-S", Name: "Installation boutique en ligne Standard", Price: 490,
			ShortDescription: "Mise en place d'une boutique en ligne connectée à Cegid.",
			LongDescription:  "<p>Installation de la boutique, reprise du catalogue Cegid et paramétrage des moyens de paiement.</p>",
			Associated:       shop},
		{Code: "IN-VITRINE-S", Name: "Installation site vitrine", Price: 290,
			ShortDescription: "Mise en place d'un site vitrine.",
			LongDescription:  "<p>Installation d'un site vitrine avec pages magasin et formulaire de contact.</p>",
			Associated:       vitrine},
		{Code: "IN-CAISSE-S", Name: "Installation caisse connectée", Price: 390,
			ShortDescription: "Mise en place de la caisse connectée à Cegid.",
			LongDescription:  "<p>Installation et formation à la caisse connectée.</p>",
			Associated:       []string{"IN-CAISSE-AMM"}},
		{Code: "IN-BTQZ-AMM", Name: "Abonnement boutique mensuel", Price: 59.9,
			ShortDescription: "Hébergement, maintenance et support de la boutique, au mois.",
			LongDescription:  "<p>Abonnement mensuel sans engagement.</p>",
			Associated:       []string{"IN-BTQST-S"}},
		{Code: "IN-BTQZ-AMA", Name: "Abonnement boutique annuel", Price: 599,
			ShortDescription: "Hébergement, maintenance et support de la boutique, à l'année.",
			LongDescription:  "<p>Abonnement annuel, deux mois offerts.</p>",
			Associated:       []string{"IN-BTQST-S"}},
		{Code: "IN-VITZ-AMM", Name: "Abonnement site vitrine mensuel", Price: 29.9,
			ShortDescription: "Hébergement et maintenance du site vitrine, au mois.",
			LongDescription:  "<p>Abonnement mensuel sans engagement.</p>",
			Associated:       []string{"IN-VITRINE-S"}},
		{Code: "IN-VITZ-AMA", Name: "Abonnement site vitrine annuel", Price: 299,
			ShortDescription: "Hébergement et maintenance du site vitrine, à l'année.",
			LongDescription:  "<p>Abonnement annuel, deux mois offerts.</p>",
			Associated:       []string{"IN-VITRINE-S"}},
		{Code: "IN-CAISSE-AMM", Name: "Abonnement caisse mensuel", Price: 39.9,
			ShortDescription: "Licence et support de la caisse connectée, au mois.",
			LongDescription:  "<p>Abonnement mensuel par poste de caisse.</p>",
			Associated:       []string{"IN-CAISSE-S"}},
		{Code: "MO-ARTCRITERES-S", Name: "Module critères articles", Price: 150,
			ShortDescription: "Filtres de recherche par critères articles Cegid.",
			LongDescription:  "<p>Recherche à facettes sur les critères articles (taille, couleur, matière).</p>",
			Associated:       []string{"IN-BTQST-S"}},
		{Code: "MO-CAISSE-M", Name: "Module click & collect caisse", Price: 19.9,
			ShortDescription: "Retrait en magasin synchronisé avec la caisse, au mois.",
			LongDescription:  "<p>Réservation en ligne et retrait en magasin, stock magasin en temps réel.</p>",
			Associated:       shop},
		{Code: "MO-ECOMMERCE-S", Name: "Ajout module e-commerce", Price: 350,
			ShortDescription: "Transforme un site vitrine en boutique en ligne.",
			LongDescription:  "<p>Ajout du panier, du paiement et de la synchronisation des stocks.</p>",
			Associated:       []string{"IN-VITRINE-S"}},
		{Code: "MO-TRADUCTION-S", Name: "Traduction d'une langue", Price: 80,
			ShortDescription: "Une langue supplémentaire pour le site.",
			LongDescription:  "<p>Traduction de l'interface et des pages fixes.</p>"},
		{Code: "MO-NDD-A", Name: "Nom de domaine", Price: 12.5,
			ShortDescription: "Réservation et renouvellement d'un nom de domaine, à l'année.",
			LongDescription:  "<p>Nom de domaine en .fr ou .com, DNS et certificat inclus.</p>"},
		{Code: "MO-SEO-M", Name: "Pack référencement", Price: 24.99,
			ShortDescription: "Suivi du référencement naturel, au mois.",
			LongDescription:  "<p>Audit initial puis rapport mensuel de positionnement.</p>"},
	}
	for i := range entries {
		entries[i].PriceCents, _ = shopapp.Cents(entries[i].Price)
	}
	return entries
}

// needsForm tells which prestations come with a project form to fill in (url_formulaire): the
// setups, while the interface is installing, and the e-commerce module added to a site.
func needsForm(code string) bool {
	return shopapp.IsSetup(code) || strings.Contains(code, "ECOMMERCE")
}
