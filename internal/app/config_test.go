package app_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/modules"
)

func TestDefaults(t *testing.T) {
	c, err := app.LoadConfig(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, ":8080", c.HTTPAddr)
	require.Equal(t, "127.0.0.1:9090", c.AdminAddr)
	require.Equal(t, "./data", c.DataDir)
	require.Equal(t, "bearer", config.Get[*modules.LeadsConfig](c, "leads").Auth)
	require.Equal(t, 24*time.Hour, config.Get[*modules.LeadsConfig](c, "leads").DedupeWindow)
	require.Equal(t, "generic", config.Get[*modules.CRMConfig](c, "crm").Format)
	require.Equal(t, "/depot/", config.Get[*modules.BillingConfig](c, "billing").SFTPDir)
	require.Equal(t, "0 6 1 * *", config.Get[*modules.BillingConfig](c, "billing").Schedule)
	require.Empty(t, c.NATS.URL)
}

func TestLoad(t *testing.T) {
	c, err := app.LoadConfig(context.Background(), []string{
		"PASSERELLE_CRM_URL=http://a.example/hook,https://b.example/x",
		"PASSERELLE_CRM_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"PASSERELLE_CRM_FORMAT=hubspot",
		"PASSERELLE_DEDUPE_WINDOW=1h",
		"OTHER=ignored",
	})
	require.NoError(t, err)
	crm := config.Get[*modules.CRMConfig](c, "crm")
	require.Equal(t, []string{"http://a.example/hook", "https://b.example/x"}, crm.URLs)
	require.Equal(t, "hubspot", crm.Format)
	require.Equal(t, time.Hour, config.Get[*modules.LeadsConfig](c, "leads").DedupeWindow)
}

func TestSecretFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte("s3cret\n"), 0o600))
	c, err := app.LoadConfig(context.Background(), []string{"PASSERELLE_ICIFORMATION_TOKEN_FILE=" + path})
	require.NoError(t, err)
	require.Equal(t, "s3cret", config.Get[*modules.LeadsConfig](c, "leads").Token)

	_, err = app.LoadConfig(context.Background(), []string{"PASSERELLE_ICIFORMATION_TOKEN_FILE=/nonexistent/x"})
	require.ErrorContains(t, err, "PASSERELLE_ICIFORMATION_TOKEN_FILE")
	_, err = app.LoadConfig(context.Background(), []string{"PASSERELLE_ICIFORMATION_TOKEN_FILE=" + path, "PASSERELLE_ICIFORMATION_TOKEN=x"})
	require.ErrorContains(t, err, "both set")
}

func TestBadValuesNameTheVariable(t *testing.T) {
	for _, tc := range []struct{ env, want string }{
		{"PASSERELLE_SHUTDOWN_TIMEOUT=soon", "PASSERELLE_SHUTDOWN_TIMEOUT"},
		{"PASSERELLE_CRM_MAX_ATTEMPTS=many", "PASSERELLE_CRM_MAX_ATTEMPTS"},
		{"PASSERELLE_CRM_MAX_ATTEMPTS=0", "PASSERELLE_CRM_MAX_ATTEMPTS"},
		{"PASSERELLE_CRM_FORMAT=xml", "PASSERELLE_CRM_FORMAT"},
		{"PASSERELLE_ICIFORMATION_AUTH=basic", "PASSERELLE_ICIFORMATION_AUTH"},
		{"PASSERELLE_HTTP_ADDR=8080", "PASSERELLE_HTTP_ADDR"},
		{"PASSERELLE_CRM_URL=ftp://x", "PASSERELLE_CRM_URL"},
		{"PASSERELLE_CRM_URL=http://a.example/hook,http://a.example/hook", "PASSERELLE_CRM_URL: an endpoint is listed twice"},
		{"PASSERELLE_BILLING_BOM=perhaps", "PASSERELLE_BILLING_BOM"},
		{"PASSERELLE_SFTP_ADDR=h:22", "PASSERELLE_SFTP_KNOWN_HOSTS"},
		{"PASSERELLE_LOG_LEVEL=loud", "PASSERELLE_LOG_LEVEL"},
		{"PASSERELLE_BILLING_SCHEDULE=every monday", "PASSERELLE_BILLING_SCHEDULE"},
	} {
		t.Run(tc.env, func(t *testing.T) {
			_, err := app.LoadConfig(context.Background(), []string{tc.env})
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestEffectiveMasksSecrets(t *testing.T) {
	c, err := app.LoadConfig(context.Background(), []string{
		"PASSERELLE_ICIFORMATION_TOKEN=tok-123",
		"PASSERELLE_CRM_URL=http://crm.example/hook?key=abc",
		"PASSERELLE_CRM_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
	})
	require.NoError(t, err)
	var all strings.Builder
	for _, kv := range c.Effective() {
		all.WriteString(kv[0] + "=" + kv[1] + "\n")
	}
	out := all.String()
	require.NotContains(t, out, "tok-123")
	require.NotContains(t, out, "key=abc")
	require.NotContains(t, out, "MfKQ9r8")
	require.Contains(t, out, "PASSERELLE_ICIFORMATION_TOKEN=****")
	require.Contains(t, out, "PASSERELLE_HTTP_ADDR=:8080")
}

// The README's configuration table is generated from the struct; this keeps them equal.
func TestReadmeTableIsCurrent(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	require.Contains(t, string(b), config.MarkdownTable(app.Parts(app.Modules())...), "README configuration table is stale: run `go run ./cmd/passerelle config-table` and paste it")
}
