package app_test

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/hashkey"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/transforms"
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

// Dedupe keys older than the window are pruned at start (and hourly); recent ones stay. They were
// stored unkeyed (as before PASSERELLE_HASH_KEY): the daemon rewrote them with its key first.
func TestOldDedupeKeysArePruned(t *testing.T) {
	t.Parallel()
	const hashKey = "a-test-hash-key-of-some-length"
	f := newFixture(t, "PASSERELLE_DEDUPE_WINDOW=1h", "PASSERELLE_HASH_KEY="+hashKey)
	keyed := func(digest string) string {
		return transforms.KeyedDedupeKey(hashkey.Derive([]byte(hashKey), hashkey.PurposeDedupe), digest)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(f.DataDir, "passerelle.db"))
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, st.CommitKeys(ctx, "leads", []store.KeyClaim{{Key: "old", EventID: "evt-old"}}, now.Add(-2*time.Hour)))
	require.NoError(t, st.CommitKeys(ctx, "leads", []store.KeyClaim{{Key: "recent", EventID: "evt-recent"}}, now.Add(-time.Minute)))
	require.NoError(t, st.Close())

	a := f.start()
	require.True(t, testwait.Eventually(10*time.Second, func() bool {
		seen, err := a.Store.SeenKeys(ctx, "leads", []string{keyed("old")}, time.Time{})
		return err == nil && len(seen) == 0
	}), "the old key was never pruned")
	seen, err := a.Store.SeenKeys(ctx, "leads", []string{keyed("recent"), "recent"}, time.Time{})
	require.NoError(t, err)
	require.Equal(t, map[string]string{keyed("recent"): "evt-recent"}, seen, "a key inside the window stays, keyed")
}

// A collector whose source fails (here the store, closed under the daemon) drops its own series
// from the scrape, counted as an error; the other metrics are still served.
func TestMetricsSurviveAFailingCollector(t *testing.T) {
	t.Parallel()
	a, _, f := startApp(t)
	_, ok := metric(f.scrape(t), "passerelle_dead_letters", map[string]string{"pipeline": "leads"})
	require.True(t, ok)

	require.NoError(t, a.Store.Close())
	scrape := f.scrape(t)
	_, ok = metric(scrape, "passerelle_dead_letters", map[string]string{"pipeline": "leads"})
	require.False(t, ok, "the dead-letter gauge cannot be read from a closed store")
	_, ok = metric(scrape, "passerelle_stage_backlog_messages", map[string]string{"pipeline": "leads", "stage": "normalize"})
	require.True(t, ok, "the broker's series are still served")
	// Counted as the scrape is served: the next one shows it.
	errs, ok := metric(f.scrape(t), "promhttp_metric_handler_errors_total", map[string]string{"cause": "gathering"})
	require.True(t, ok)
	require.Positive(t, errs)
}
