package app_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// With PASSERELLE_ADMIN_TOKEN set, the admin API wants it; metrics and probes stay open.
func TestAdminToken(t *testing.T) {
	t.Parallel()
	_, _, f := startApp(t, "PASSERELLE_ADMIN_TOKEN=adm-s3cret")

	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/admin/dlq", "", http.StatusUnauthorized},
		{"/admin/dlq", "Bearer wrong", http.StatusUnauthorized},
		{"/admin/dlq", "Bearer adm-s3cret", http.StatusOK},
		{"/admin/billing", "", http.StatusUnauthorized},
		{"/metrics", "", http.StatusOK},
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
	} {
		req, err := http.NewRequest(http.MethodGet, f.admin()+tc.path, nil)
		require.NoError(t, err)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := httpClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, tc.want, resp.StatusCode, "%s with %q", tc.path, tc.auth)
	}
}
