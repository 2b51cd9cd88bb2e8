package transforms

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLeadHubSpotProperties(t *testing.T) {
	tests := []struct {
		name string
		in   Lead
		want map[string]string
	}{
		{"full", Lead{EventID: "iciformation_x", Email: "a@b.fr", FirstName: "John", LastName: "Doe", Phone: "+33102030405",
			City: "paris", PostalCode: "75001", Title: "M.", Company: "XYZ", Course: "Web", CallbackTime: "après-midi"},
			map[string]string{"email": "a@b.fr", "firstname": "John", "lastname": "Doe", "phone": "+33102030405", "city": "paris",
				"zip": "75001", "salutation": "M.", "company": "XYZ", "hs_lead_status": "NEW", "formation": "Web",
				"horaire_rappel": "après-midi", "source_id": "iciformation_x"}},
		{"empty fields left out", Lead{EventID: "e", Phone: "+33612345678"},
			map[string]string{"phone": "+33612345678", "hs_lead_status": "NEW", "source_id": "e"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, LeadHubSpotProperties(tc.in))
		})
	}
}
