package crm_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm"
)

func TestParseFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want crm.Format
		ok   bool
	}{
		{"generic", crm.FormatGeneric, true},
		{"hubspot", crm.FormatHubSpot, true},
		{" HubSpot ", crm.FormatHubSpot, true},
		{"", "", false},
		{"salesforce", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := crm.ParseFormat(tt.in)
			if !tt.ok {
				require.ErrorIs(t, err, crm.ErrUnknownFormat)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// The field names are the contract: CONTRACTS.md, "CRM webhooks (sink)".
func TestWireShapes(t *testing.T) {
	t.Parallel()
	env := crm.Envelope{
		Type:       crm.EventLeadCreated,
		ID:         "evt_1",
		OccurredAt: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Source:     "iciformation",
		Data:       json.RawMessage(`{"email":"a@example.com","raw":{"email":"a@example.com"}}`),
	}
	b, err := json.Marshal(env)
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"lead.created","id":"evt_1","occurred_at":"2025-03-04T05:06:07Z","source":"iciformation",
		"data":{"email":"a@example.com","raw":{"email":"a@example.com"}}}`, string(b))

	b, err = json.Marshal(crm.HubSpotContact{Properties: map[string]string{"email": "a@example.com", "source_id": "evt_1"}})
	require.NoError(t, err)
	require.JSONEq(t, `{"properties":{"email":"a@example.com","source_id":"evt_1"}}`, string(b))
}
