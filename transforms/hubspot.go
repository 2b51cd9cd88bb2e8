package transforms

// LeadHubSpotProperties maps a lead to HubSpot contact properties: HubSpot's own names where they
// exist, custom ones (formation, horaire_rappel, source_id) otherwise. Empty values are left out
// so an update never blanks a field the sales team filled in.
func LeadHubSpotProperties(l Lead) map[string]string {
	props := map[string]string{
		"email":          l.Email,
		"firstname":      l.FirstName,
		"lastname":       l.LastName,
		"phone":          l.Phone,
		"city":           l.City,
		"zip":            l.PostalCode,
		"salutation":     l.Title,
		"company":        l.Company,
		"hs_lead_status": "NEW",
		"formation":      l.Course,
		"horaire_rappel": l.CallbackTime,
		"source_id":      l.EventID,
	}
	for k, v := range props {
		if v == "" {
			delete(props, k)
		}
	}
	return props
}
