package transforms

// LeadHubSpotProperties maps a lead to the contact properties of the CRM
// sink's hubspot format (CONTRACTS.md, CRM webhooks): HubSpot's own property
// names where they exist, custom ones (formation, horaire_rappel, source_id)
// otherwise. Empty values are left out, since an empty property sent to
// HubSpot clears what the contact already had.
func LeadHubSpotProperties(l Lead) map[string]string {
	zip := l.PostalCode
	if zip == "" {
		zip = l.PostalCodeRaw // what the prospect typed beats nothing for a salesperson
	}
	props := map[string]string{
		"email":          l.Email,
		"firstname":      l.FirstName,
		"lastname":       l.LastName,
		"phone":          l.Phone,
		"city":           l.City,
		"zip":            zip,
		"salutation":     l.Title,
		"company":        l.Company,
		"hs_lead_status": l.Status,
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
