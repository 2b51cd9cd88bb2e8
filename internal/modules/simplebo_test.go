package modules_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/config"
	"github.com/passerelle/passerelle/internal/modules"
)

func loadSimplebo(t *testing.T, env ...string) (config.Config, error) {
	t.Helper()
	return config.LoadFrom(context.Background(), env, config.Part{Name: "simplebo", Section: &modules.SimpleboConfig{}})
}

func TestSimpleboConfigNamesEachBadVariable(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string
	}{
		{"bad URL", []string{"PASSERELLE_SIMPLEBO_URL=ftp://x"}, []string{"PASSERELLE_SIMPLEBO_URL"}},
		{"token without partner", []string{"PASSERELLE_SIMPLEBO_TOKEN=t"}, []string{"PASSERELLE_SIMPLEBO_PARTNER_CODE", "PASSERELLE_SIMPLEBO_PARTNER:"}},
		{"token with a quote", []string{`PASSERELLE_SIMPLEBO_TOKEN=a"b`, "PASSERELLE_SIMPLEBO_PARTNER_CODE=P", "PASSERELLE_SIMPLEBO_PARTNER=p"}, []string{"PASSERELLE_SIMPLEBO_TOKEN"}},
		{"short secret", []string{"PASSERELLE_SIMPLEBO_WEBHOOK_SECRET=abc"}, []string{"PASSERELLE_SIMPLEBO_WEBHOOK_SECRET", "at least 16"}},
		{"secret with a slash", []string{"PASSERELLE_SIMPLEBO_WEBHOOK_SECRET=abcdefgh/ijklmnopq"}, []string{"PASSERELLE_SIMPLEBO_WEBHOOK_SECRET", "one URL path segment"}},
		{"unknown scheme", []string{"PASSERELLE_SIMPLEBO_WEBHOOK_AUTH=basic", "PASSERELLE_SIMPLEBO_WEBHOOK_TOKEN=x"}, []string{"PASSERELLE_SIMPLEBO_WEBHOOK_AUTH", "unknown auth scheme"}},
		{"scheme without token", []string{"PASSERELLE_SIMPLEBO_WEBHOOK_AUTH=bearer"}, []string{"PASSERELLE_SIMPLEBO_WEBHOOK_TOKEN"}},
		{"token without scheme", []string{"PASSERELLE_SIMPLEBO_WEBHOOK_TOKEN=x"}, []string{"PASSERELLE_SIMPLEBO_WEBHOOK_AUTH"}},
		{"bad event map", []string{"PASSERELLE_SIMPLEBO_EVENT_MAP=0=lead,1=service_activated"}, []string{"PASSERELLE_SIMPLEBO_EVENT_MAP", "unknown state"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSimplebo(t, tc.env...)
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestSimpleboConfigEnabledSaysWhy(t *testing.T) {
	m := &modules.Simplebo{}
	for _, tc := range []struct {
		name string
		env  []string
		on   bool
		why  []string
	}{
		{"off", nil, false, []string{"PASSERELLE_SIMPLEBO_TOKEN", "PASSERELLE_SIMPLEBO_WEBHOOK_SECRET"}},
		{"API only", []string{"PASSERELLE_SIMPLEBO_TOKEN=t", "PASSERELLE_SIMPLEBO_PARTNER_CODE=P", "PASSERELLE_SIMPLEBO_PARTNER=p"},
			true, []string{"provisioning through https://api.www.simplebo.fr/"}},
		{"webhook only", []string{"PASSERELLE_SIMPLEBO_WEBHOOK_SECRET=0123456789abcdef0123"}, true, []string{"webhook POST /webhooks/simplebo/<secret> (secret path only)"}},
		{"webhook with token", []string{"PASSERELLE_SIMPLEBO_WEBHOOK_SECRET=0123456789abcdef0123", "PASSERELLE_SIMPLEBO_WEBHOOK_AUTH=token", "PASSERELLE_SIMPLEBO_WEBHOOK_TOKEN=x"},
			true, []string{"secret path and token token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadSimplebo(t, tc.env...)
			require.NoError(t, err)
			on, why := m.Enabled(cfg)
			require.Equal(t, tc.on, on)
			for _, w := range tc.why {
				require.Contains(t, why, w)
			}
			require.NotContains(t, why, "0123456789abcdef", "the secret is not printed")
		})
	}
}
