package ecolixsim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, s *Sim, path, key string) (int, http.Header, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL()+path, nil)
	require.NoError(t, err)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), "%s", b)
	return resp.StatusCode, resp.Header, out
}

func TestExportPaginatesInclusively(t *testing.T) {
	t.Parallel()
	s, err := Start(SimConfig{})
	require.NoError(t, err)
	defer s.Close()
	from := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC) // 10:00 Paris
	_, err = s.Generate("devis", 7, from, 3)
	require.NoError(t, err)

	status, _, out := get(t, s, "/api/v1/export/devis?page=2&par_page=3", s.APIKey())
	require.Equal(t, http.StatusOK, status)
	require.EqualValues(t, 2, out["page"])
	require.EqualValues(t, 3, out["pages"])
	require.EqualValues(t, 7, out["total"])
	require.Len(t, out["donnees"], 3)

	// Inclusive: the second instant and after, 4 records.
	_, _, out = get(t, s, "/api/v1/export/devis?modifie_depuis=2026-12-04+10:00:01&par_page=500", s.APIKey())
	require.EqualValues(t, 4, out["total"])
	first := out["donnees"].([]any)[0].(map[string]any)
	require.Equal(t, "2026-12-04 10:00:01", first["date_modification"])

	for _, q := range []string{"par_page=501", "par_page=0", "page=0", "modifie_depuis=hier"} {
		status, _, _ = get(t, s, "/api/v1/export/devis?"+q, s.APIKey())
		require.Equal(t, http.StatusBadRequest, status, q)
	}
	status, _, _ = get(t, s, "/api/v1/export/factures", s.APIKey())
	require.Equal(t, http.StatusNotFound, status)
	status, _, _ = get(t, s, "/api/v1/export/devis", "wrong")
	require.Equal(t, http.StatusUnauthorized, status)
}

// A call past the limit in any sliding window is a 429 with Retry-After, and a breach.
func TestLimitCountsEverySlidingWindow(t *testing.T) {
	t.Parallel()
	s, err := Start(SimConfig{PerMinute: 3, Window: time.Hour})
	require.NoError(t, err)
	defer s.Close()
	for i := range 3 {
		status, _, _ := get(t, s, "/api/v1/export/stocks", s.APIKey())
		require.Equal(t, http.StatusOK, status, "call %d", i+1)
	}
	status, h, _ := get(t, s, "/api/v1/export/stocks", s.APIKey())
	require.Equal(t, http.StatusTooManyRequests, status)
	require.NotEmpty(t, h.Get("Retry-After"))
	require.Equal(t, 1, s.Breaches())
	require.Equal(t, 4, s.MaxInAnyWindow())
	require.Equal(t, http.StatusTooManyRequests, s.Calls()[3].Status)
}

func TestFaults(t *testing.T) {
	t.Parallel()
	s, err := Start(SimConfig{})
	require.NoError(t, err)
	defer s.Close()
	s.FailNext(1, http.StatusServiceUnavailable, 2*time.Second)
	status, h, _ := get(t, s, "/api/v1/export/clients", s.APIKey())
	require.Equal(t, http.StatusServiceUnavailable, status)
	require.Equal(t, "2", h.Get("Retry-After"))
	s.FailPage("clients", 2, http.StatusInternalServerError)
	status, _, _ = get(t, s, "/api/v1/export/clients?page=2", s.APIKey())
	require.Equal(t, http.StatusInternalServerError, status)
	status, _, _ = get(t, s, "/api/v1/export/clients?page=1", s.APIKey())
	require.Equal(t, http.StatusOK, status)
	s.ClearFaults()
	status, _, _ = get(t, s, "/api/v1/export/clients?page=2", s.APIKey())
	require.Equal(t, http.StatusOK, status)
	require.Zero(t, s.Breaches(), "injected faults are not breaches")
}

func TestImportUpsertsOnReference(t *testing.T) {
	t.Parallel()
	s, err := Start(SimConfig{})
	require.NoError(t, err)
	defer s.Close()
	post := func(body string) (int, map[string]any) {
		req, err := http.NewRequest(http.MethodPost, s.URL()+"/api/v1/import/clients", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+s.APIKey())
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return resp.StatusCode, out
	}
	status, out := post(`{"reference":"g-1","nom":"Martin"}`)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, true, out["cree"])
	status, again := post(`{"reference":"g-1","nom":"Martin","ville":"Lyon"}`)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, false, again["cree"])
	require.Equal(t, out["id"], again["id"])
	status, _ = post(`{"nom":"sans reference"}`)
	require.Equal(t, http.StatusBadRequest, status)
	_, _, exp := get(t, s, "/api/v1/export/clients", s.APIKey())
	require.EqualValues(t, 1, exp["total"], "the imported client shows in the export")
}
