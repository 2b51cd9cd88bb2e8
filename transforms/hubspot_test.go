package transforms

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLeadHubSpotProperties(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		lead Lead
		want map[string]string
	}{
		{
			"full lead",
			Lead{
				EventID: "iciformation_abc", Source: "iciformation", LastName: "Dupont", FirstName: "Jean",
				Title: TitleM, Email: "jean@example.fr", Phone: "+33102030405", PhoneRaw: "0102030405",
				City: "paris", PostalCode: "75001", Course: "Comptabilité", CallbackTime: "après-midi",
				Status: "prospect", Company: "Passerelle SAS", ClientID: "42",
			},
			map[string]string{
				"email": "jean@example.fr", "firstname": "Jean", "lastname": "Dupont", "phone": "+33102030405",
				"city": "paris", "zip": "75001", "salutation": "M.", "company": "Passerelle SAS",
				"hs_lead_status": "prospect", "formation": "Comptabilité", "horaire_rappel": "après-midi",
				"source_id": "iciformation_abc",
			},
		},
		{
			"sparse lead, invalid postal code",
			Lead{EventID: "iciformation_def", Phone: "+33612345678", PostalCodeRaw: "750"},
			map[string]string{"phone": "+33612345678", "zip": "750", "source_id": "iciformation_def"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, LeadHubSpotProperties(tt.lead))
		})
	}
}
