package iciformation_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/httpclient"
)

func startAPI(t *testing.T) *iciformationsim.API {
	t.Helper()
	api, err := iciformationsim.StartAPI("k-1")
	require.NoError(t, err)
	t.Cleanup(api.Close)
	return api
}

func TestClientLeads(t *testing.T) {
	t.Parallel()
	api := startAPI(t)
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	day := time.Date(2026, 11, 20, 10, 0, 0, 0, paris)
	in := `{"nom":"Doe","prenom":"Jane","tel":"0612345678","email":"jane@exemple.com","formation":"CAP <Pâtissier> & co","id_client":1234}`
	api.Add([]byte(in), day)
	api.Add([]byte(`{"nom":"Old","email":"old@exemple.com"}`), day.AddDate(0, 0, -3))
	api.Add([]byte(`["not","an","object"]`), day)

	c, err := iciformation.NewClient(iciformation.ClientConfig{URL: api.URL(), Key: "k-1"}, nil)
	require.NoError(t, err)
	got, err := c.Leads(context.Background(), day.AddDate(0, 0, -1), day, paris)
	require.NoError(t, err)
	require.Len(t, got, 1, "the day range, objects only")
	require.True(t, got[0].Created.Equal(day), "date_creation %s, want %s", got[0].Created, day)
	var want, have map[string]any
	require.NoError(t, json.Unmarshal([]byte(in), &want))
	require.NoError(t, json.Unmarshal(got[0].Body, &have))
	require.Equal(t, want, have, "the body is the webhook's: date_creation dropped, nothing else changed")
	require.NotContains(t, string(got[0].Body), "date_creation")
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	now := time.Now()
	tests := []struct {
		name       string
		key        string
		setup      func(*iciformationsim.API)
		outcome    httpclient.Outcome
		status     int
		retryAfter time.Duration
		calls      int
	}{
		{name: "bad key is permanent, not retried", key: "wrong", outcome: httpclient.Permanent, status: http.StatusUnauthorized, calls: 1},
		{name: "revoked key is permanent, not retried", key: "k-1", setup: func(a *iciformationsim.API) { a.Forbid(true) }, outcome: httpclient.Permanent, status: http.StatusForbidden, calls: 1},
		{name: "a long Retry-After ends the call with it", key: "k-1", setup: func(a *iciformationsim.API) { a.Throttle(1, 90*time.Second) }, outcome: httpclient.Retry, status: http.StatusTooManyRequests, retryAfter: 90 * time.Second, calls: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			api := startAPI(t)
			if tt.setup != nil {
				tt.setup(api)
			}
			c, err := iciformation.NewClient(iciformation.ClientConfig{URL: api.URL(), Key: tt.key}, nil)
			require.NoError(t, err)
			_, err = c.Leads(context.Background(), now, now, time.UTC)
			var he *httpclient.Error
			require.True(t, errors.As(err, &he), "error %v is not an *httpclient.Error", err)
			require.Equal(t, tt.outcome, he.Outcome)
			require.Equal(t, tt.status, he.Status)
			require.Equal(t, tt.retryAfter, he.RetryAfter)
			require.Equal(t, iciformation.RouteLeads, he.Endpoint)
			require.NotContains(t, err.Error(), "k-1", "the key never appears in errors")
			require.Equal(t, tt.calls, api.Calls())
		})
	}

	t.Run("a short Retry-After is waited within the call", func(t *testing.T) {
		t.Parallel()
		api := startAPI(t)
		api.Throttle(1, time.Second)
		c, err := iciformation.NewClient(iciformation.ClientConfig{URL: api.URL(), Key: "k-1"}, nil)
		require.NoError(t, err)
		_, err = c.Leads(context.Background(), now, now, time.UTC)
		require.NoError(t, err)
		require.Equal(t, 2, api.Calls())
	})
}

func TestDecodePolled(t *testing.T) {
	t.Parallel()
	_, err := iciformation.DecodePolled([]byte(`{"not":"an array"}`))
	require.ErrorIs(t, err, iciformation.ErrMalformed)
	got, err := iciformation.DecodePolled([]byte(`[{"nom":"A","date_creation":"2026-11-20 10:00:00+01:00"},1,null]`))
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.JSONEq(t, `{"nom":"A"}`, string(got[0].Body))
	require.Equal(t, time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC), got[0].Created.UTC())
}
