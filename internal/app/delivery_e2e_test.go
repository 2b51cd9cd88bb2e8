package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/hashkey"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// countingCRM is a CRM endpoint on loopback that counts the requests it holds at once: a
// crmsim.Receiver (signatures verified, deliveries recorded, faults on demand) behind a counter.
type countingCRM struct {
	*crmsim.Receiver
	url           string
	inFlight, max atomic.Int64
}

func startCountingCRM(t *testing.T, secret string) *countingCRM {
	t.Helper()
	rcv, err := crmsim.New(secret)
	require.NoError(t, err)
	c := &countingCRM{Receiver: rcv}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := c.inFlight.Add(1)
		defer c.inFlight.Add(-1)
		for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
		}
		rcv.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.url = srv.URL + "/hooks/crm"
	return c
}

// postLeads posts n distinct leads from 16 concurrent clients and requires each to be answered 200.
func postLeads(t *testing.T, f *fixture, n int, tag string) map[string]bool {
	t.Helper()
	var (
		mu       sync.Mutex
		ids      = map[string]bool{}
		statuses = map[int]int{}
		wg       sync.WaitGroup
		next     = make(chan int)
	)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				b := leadBody(i, tag)
				status, err := f.tryPost(f.hookURL(), b)
				if err != nil {
					status = -1
				}
				mu.Lock()
				statuses[status]++
				ids[eventIDOf(b)] = true
				mu.Unlock()
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	require.Equal(t, map[int]int{http.StatusOK: n}, statuses)
	return ids
}

// requireDeliveredOnce requires c to have every one of ids exactly once, and nothing else.
func requireDeliveredOnce(t *testing.T, c *countingCRM, ids map[string]bool) {
	t.Helper()
	got := c.UniqueIDs()
	require.Len(t, got, len(ids))
	for id := range ids {
		require.Equal(t, 1, got[id], "event %s delivered %d times", id, got[id])
	}
	require.Len(t, c.Deliveries(), len(ids), "nothing delivered twice")
	require.Zero(t, c.Rejected(), "every signature verified")
}

// concurrencyGauge is passerelle_delivery_concurrency for the endpoint at url.
func (f *fixture) concurrencyGauge(t testing.TB, url string) (float64, bool) {
	t.Helper()
	return metric(f.scrape(t), "passerelle_delivery_concurrency", map[string]string{"endpoint": pipelines.EndpointID(url)})
}

// 300 leads into a CRM that answers in 50 ms: the engine keeps PASSERELLE_CRM_CONCURRENCY requests
// in flight, never more, and every lead arrives once.
func TestDeliveryReachesConcurrency(t *testing.T) {
	t.Parallel()
	const leads, concurrency = 300, 16
	f := newFixture(t, "PASSERELLE_CRM_CONCURRENCY="+strconv.Itoa(concurrency))
	c := startCountingCRM(t, f.Secret)
	c.SetFault(crmsim.Fault{Mode: crmsim.FaultSlow, Delay: 50 * time.Millisecond})
	f.Env = append(f.Env, "PASSERELLE_CRM_URL="+c.url)
	f.start()

	t0 := time.Now()
	ids := postLeads(t, f, leads, "conc")
	t.Logf("posted in %s", time.Since(t0))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, c.WaitForUnique(ctx, leads))
	t.Logf("delivered in %s", time.Since(t0))
	f.waitIdle(t)
	t.Logf("idle in %s", time.Since(t0))

	requireDeliveredOnce(t, c, ids)
	require.Equal(t, int64(concurrency), c.max.Load(), "the CRM saw PASSERELLE_CRM_CONCURRENCY requests at once, never more")
	v, ok := f.concurrencyGauge(t, c.url)
	require.True(t, ok)
	require.Equal(t, float64(concurrency), v)
}

// Two endpoints, one answering 503: the other takes every lead, as many at once as allowed, while
// the first is retried; once it is back, it gets each lead once too.
func TestDeliveryOneEndpointDown(t *testing.T) {
	t.Parallel()
	const leads, concurrency = 300, 16
	f := newFixture(t, "PASSERELLE_CRM_CONCURRENCY="+strconv.Itoa(concurrency), "PASSERELLE_CRM_MAX_ATTEMPTS=1000")
	up, down := startCountingCRM(t, f.Secret), startCountingCRM(t, f.Secret)
	up.SetFault(crmsim.Fault{Mode: crmsim.FaultSlow, Delay: 50 * time.Millisecond})
	down.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusServiceUnavailable})
	f.Env = append(f.Env, "PASSERELLE_CRM_URL="+up.url+","+down.url)
	f.start()

	ids := postLeads(t, f, leads, "down")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, up.WaitForUnique(ctx, leads), "the endpoint that is up takes everything")
	requireDeliveredOnce(t, up, ids)
	require.Equal(t, int64(concurrency), up.max.Load(), "at full concurrency, not held back by the one down")
	require.Empty(t, down.Deliveries())
	require.Positive(t, down.Attempts())

	down.SetFault(crmsim.Fault{})
	require.NoError(t, down.WaitForUnique(ctx, leads), "once back, the other endpoint gets every lead")
	f.waitIdle(t)
	requireDeliveredOnce(t, down, ids)
	requireDeliveredOnce(t, up, ids) // and the first none twice, through all the retries
	require.LessOrEqual(t, up.max.Load(), int64(concurrency))
	require.LessOrEqual(t, down.max.Load(), int64(concurrency))
}

// A storm of 429s lowers the endpoint's concurrency (passerelle_delivery_concurrency); once it
// ends, every lead is delivered once.
func TestDelivery429StormLowersConcurrency(t *testing.T) {
	t.Parallel()
	const concurrency = 16
	f := newFixture(t, "PASSERELLE_CRM_CONCURRENCY="+strconv.Itoa(concurrency), "PASSERELLE_CRM_MAX_ATTEMPTS=1000")
	c := startCountingCRM(t, f.Secret)
	c.SetFault(crmsim.Fault{Mode: crmsim.FaultSlow, Delay: 50 * time.Millisecond})
	f.Env = append(f.Env, "PASSERELLE_CRM_URL="+c.url)
	f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	warm := postLeads(t, f, 20, "warm")
	require.NoError(t, c.WaitForUnique(ctx, len(warm)))
	v, ok := f.concurrencyGauge(t, c.url)
	require.True(t, ok)
	require.Equal(t, float64(concurrency), v, "full concurrency while the CRM is healthy")

	c.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusTooManyRequests})
	storm := postLeads(t, f, 100, "storm")
	var low float64
	require.True(t, testwait.Eventually(30*time.Second, func() bool {
		low, _ = f.concurrencyGauge(t, c.url)
		return low <= concurrency/4
	}), "concurrency %v after 429s, want %v or less", low, concurrency/4)

	c.SetFault(crmsim.Fault{Mode: crmsim.FaultSlow, Delay: 50 * time.Millisecond})
	require.NoError(t, c.WaitForUnique(ctx, len(warm)+len(storm)))
	f.waitIdle(t)
	for id := range warm {
		storm[id] = true
	}
	requireDeliveredOnce(t, c, storm)
	require.LessOrEqual(t, c.max.Load(), int64(concurrency))
}

// A lead whose dedupe key an earlier version stored unkeyed is still a duplicate after the upgrade
// to keyed dedupe keys; the key generated for the purpose is in the data directory, mode 0600.
func TestDedupeKeysSurviveTheHashKeyUpgrade(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	seed := iciformationsim.SeedExample()
	in, err := pipelines.DecodeIciFormation(seed)
	require.NoError(t, err)
	lead, err := transforms.NormalizeLead(in, time.Now())
	require.NoError(t, err)
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(f.DataDir, "passerelle.db"))
	require.NoError(t, err)
	// What the version before stored when it delivered this contact, with another payload.
	require.NoError(t, st.CommitKeys(ctx, "leads", []store.KeyClaim{{Key: transforms.LeadDedupeDigest(lead), EventID: "iciformation_earlier"}},
		time.Now().Add(-time.Minute)))
	require.NoError(t, st.Close())

	f.start()
	status, body := f.post(t, seed)
	require.Equal(t, http.StatusOK, status, "%s", body)
	f.waitStage(t, "normalize", "duplicate", 1)
	f.waitIdle(t)
	require.Empty(t, f.Receiver.Deliveries(), "a duplicate of a lead delivered before the upgrade")

	fi, err := os.Stat(filepath.Join(f.DataDir, hashkey.FileName))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	raw, err := os.ReadFile(filepath.Join(f.DataDir, hashkey.FileName))
	require.NoError(t, err)
	require.Regexp(t, `^[0-9a-f]{64}$`, strings.TrimSpace(string(raw)))
}
