package ecolix_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/ecolix/ecolixsim"
	"github.com/passerelle/passerelle/internal/httpclient"
)

func TestExportReadsIDsAsNumbersOrStrings(t *testing.T) {
	t.Parallel()
	sim := startSim(t, ecolixsim.SimConfig{})
	require.NoError(t, sim.Put("devis",
		map[string]any{"id": 42, "date_modification": "2026-12-04 15:00:00", "montant": 10.5},
		map[string]any{"id": "D-7", "date_modification": "2026-12-04 15:00:01"},
	))
	c := newClient(t, sim, nil, nil)

	p, err := c.Export(context.Background(), "devis", time.Time{}, 1)
	require.NoError(t, err)
	require.Equal(t, 1, p.Page)
	require.Equal(t, 1, p.Pages)
	require.Equal(t, 2, p.Total)
	require.Len(t, p.Records, 2)
	require.Equal(t, "42", p.Records[0].ID)
	require.Equal(t, "D-7", p.Records[1].ID)
	require.True(t, p.Records[0].Modified.Equal(t0), "15:00 Paris is 14:00 UTC, got %s", p.Records[0].Modified)
	var raw map[string]any
	require.NoError(t, json.Unmarshal(p.Records[0].Raw, &raw))
	require.Equal(t, 10.5, raw["montant"], "the record is kept as received")

	// modifie_depuis is inclusive and written as a Paris wall-clock time.
	p, err = c.Export(context.Background(), "devis", p.Records[1].Modified, 1)
	require.NoError(t, err)
	require.Len(t, p.Records, 1)
	require.Equal(t, "D-7", p.Records[0].ID)
}

func TestErrorsFollowTheOutcomeTable(t *testing.T) {
	t.Parallel()
	sim := startSim(t, ecolixsim.SimConfig{})
	c := newClient(t, sim, nil, nil)
	ctx := context.Background()

	for _, tc := range []struct {
		status  int
		want    httpclient.Outcome
		attempt int
	}{
		{http.StatusBadRequest, httpclient.Permanent, 1},
		{http.StatusGone, httpclient.Gone, 1},
		{http.StatusServiceUnavailable, httpclient.Retry, 3}, // RetryMax 2
	} {
		sim.FailNext(3, tc.status, 0)
		_, err := c.Export(ctx, "stocks", time.Time{}, 1)
		var he *httpclient.Error
		require.ErrorAs(t, err, &he, "status %d", tc.status)
		require.Equal(t, tc.want, he.Outcome, "status %d", tc.status)
		require.Equal(t, tc.status, he.Status)
		require.Equal(t, tc.attempt, he.Attempts, "status %d", tc.status)
		require.Equal(t, "ecolix", he.Connector)
		require.Equal(t, "GET /api/v1/export/stocks", he.Endpoint)
		require.Equal(t, "panne simulée", he.Message)
		sim.ClearFaults()
	}

	bad := newClient(t, sim, nil, func(c *ecolix.Config) { c.APIKey = "wrong-key-s3cr3t" })
	_, err := bad.Export(ctx, "clients", time.Time{}, 1)
	require.True(t, httpclient.IsPermanent(err), "401 is permanent: %v", err)
	require.NotContains(t, err.Error(), "s3cr3t")

	_, err = c.Export(ctx, "factures", time.Time{}, 1)
	require.True(t, httpclient.IsPermanent(err), "an unknown resource is refused before any call")
	_, err = c.ImportClient(ctx, ecolix.ClientImport{Nom: "X"})
	require.True(t, httpclient.IsPermanent(err), "an import without reference is refused before any call")
}

func TestTransportErrorsHideTheURL(t *testing.T) {
	t.Parallel()
	sim := startSim(t, ecolixsim.SimConfig{})
	url := sim.URL()
	sim.Close() // nothing listens any more
	c, err := ecolix.New(ecolix.Config{BaseURL: url, APIKey: "k", Retries: -1}, ecolix.NewBudgetWindow(1000, time.Second), nil)
	require.NoError(t, err)
	_, err = c.Export(context.Background(), "clients", t0, 1)
	require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(err))
	require.NotContains(t, err.Error(), "modifie_depuis", "the query stays out of errors")
}

func TestImportClientUpsertsOnReference(t *testing.T) {
	t.Parallel()
	sim := startSim(t, ecolixsim.SimConfig{})
	reg := prometheus.NewRegistry()
	m := ecolix.NewMetrics(reg)
	c := newClient(t, sim, nil, func(c *ecolix.Config) { c.Metrics = m })
	ctx := context.Background()
	in := ecolix.ClientImport{Reference: "guid-1", Societe: "ACME", Nom: "Martin", Email: "m@example.com", Telephone: "+33612345678"}

	first, err := c.ImportClient(ctx, in)
	require.NoError(t, err)
	require.True(t, first.Cree)
	require.NotEmpty(t, first.ID)
	in.Ville = "Lyon"
	again, err := c.ImportClient(ctx, in)
	require.NoError(t, err)
	require.False(t, again.Cree, "the second import updates")
	require.Equal(t, first.ID, again.ID)
	id, ok := sim.Imported("guid-1")
	require.True(t, ok)
	require.Equal(t, first.ID, id)
	require.Equal(t, 2.0, counter(t, reg, "passerelle_ecolix_calls_total", "delivered", "import_clients"))
}

// A 429's Retry-After is honoured by the call that got it and holds every other caller too.
func TestRetryAfterPausesEveryCaller(t *testing.T) {
	t.Parallel()
	sim := startSim(t, ecolixsim.SimConfig{})
	budget := ecolix.NewBudgetWindow(100, time.Second)
	c := newClient(t, sim, budget, nil)
	generate(t, sim, "articles", 3, t0, 1)
	sim.FailNext(1, http.StatusTooManyRequests, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first := make(chan error, 1)
	go func() {
		_, err := c.Export(ctx, "articles", time.Time{}, 1)
		first <- err
	}()
	require.Eventually(t, func() bool { return budget.Paused() > 0 }, 5*time.Second, time.Millisecond, "the 429 pauses the budget")
	_, err := c.Export(ctx, "devis", time.Time{}, 1)
	require.NoError(t, err, "the other caller waits, then succeeds")
	require.NoError(t, <-first, "the first call retries after the pause")

	calls := sim.Calls()
	require.Len(t, calls, 3)
	require.Equal(t, http.StatusTooManyRequests, calls[0].Status)
	for _, c := range calls[1:] {
		require.GreaterOrEqual(t, c.At.Sub(calls[0].At), time.Second, "%s came %s after the 429", c.Resource, c.At.Sub(calls[0].At))
	}
	require.Zero(t, sim.Breaches())
}

// A Retry-After longer than the call may wait ends it at once, retryable, with the wait; the
// budget stays paused for everyone.
func TestLongRetryAfterReturnsAndKeepsTheBudgetPaused(t *testing.T) {
	t.Parallel()
	sim := startSim(t, ecolixsim.SimConfig{})
	budget := ecolix.NewBudgetWindow(100, time.Second)
	c := newClient(t, sim, budget, nil)
	sim.FailNext(1, http.StatusTooManyRequests, time.Minute)

	_, err := c.Export(context.Background(), "clients", time.Time{}, 1)
	require.Equal(t, httpclient.Retry, httpclient.OutcomeOf(err))
	d, ok := httpclient.RetryAfterOf(err)
	require.True(t, ok)
	require.Equal(t, time.Minute, d)
	require.Greater(t, budget.Paused(), 50*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = c.Export(ctx, "clients", time.Time{}, 1)
	require.ErrorIs(t, err, context.DeadlineExceeded, "a caller cannot pass the pause")
	require.Equal(t, 1, sim.CallCount())
}

// The contractual limit holds over any sliding window with every resource pulling and imports
// running at once: the simulator answers 429 and counts a breach for any call past it.
func TestBudgetIsNeverExceededAcrossResourcesAndImports(t *testing.T) {
	t.Parallel()
	const perWindow, window = 20, 2 * time.Second
	sim := startSim(t, ecolixsim.SimConfig{PerMinute: perWindow, Window: window})
	budget := ecolix.NewBudgetWindow(perWindow, window)
	c := newClient(t, sim, budget, func(c *ecolix.Config) { c.PerPage = 10 })
	for _, r := range ecolix.Resources() {
		generate(t, sim, r, 1000, t0, 3)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	errs := make(chan error, 8)
	for _, r := range ecolix.Resources() {
		go func() {
			_, _, err := c.Pull(ctx, r, ecolix.Cursor{})
			errs <- err
		}()
	}
	for w := range 2 {
		go func() {
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := c.ImportClient(ctx, ecolix.ClientImport{Reference: fmt.Sprintf("g-%d-%d", w, i)}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	// Past two windows of saturation, every window has been exercised at the limit.
	require.Eventually(t, func() bool { return sim.CallCount() >= 2*perWindow+5 }, 20*time.Second, 10*time.Millisecond)
	cancel()
	for range 7 {
		if err := <-errs; err != nil {
			require.ErrorIs(t, err, context.Canceled)
		}
	}
	if sim.Breaches() > 0 {
		calls := sim.Calls()
		for i, c := range calls {
			t.Logf("%3d %8s %-15s %d %d", i, c.At.Sub(calls[0].At).Round(time.Millisecond), c.Resource, c.Page, c.Status)
		}
	}
	require.Zero(t, sim.Breaches(), "calls past the limit")
	require.LessOrEqual(t, sim.MaxInAnyWindow(), perWindow)
	require.GreaterOrEqual(t, sim.MaxInAnyWindow(), perWindow-1, "the budget uses what it is given")
	resources := map[string]bool{}
	for _, call := range sim.Calls() {
		resources[call.Resource] = true
	}
	require.Len(t, resources, 6, "every resource and the import shared the budget")
}

// Property-style: over several page sizes and tie patterns, a sequence of pulls with records
// added at the cursor's very second and records edited in between receives every version exactly
// once, with no call past the last page.
func TestPullNeitherLosesNorRepeatsTies(t *testing.T) {
	t.Parallel()
	for _, perPage := range []int{1, 2, 3, 5, 7, 10, 500} {
		for _, perInstant := range []int{1, 4, 13} {
			t.Run(fmt.Sprintf("par_page=%d/ties=%d", perPage, perInstant), func(t *testing.T) {
				t.Parallel()
				sim := startSim(t, ecolixsim.SimConfig{})
				c := newClient(t, sim, nil, func(c *ecolix.Config) { c.PerPage = perPage })
				ctx := context.Background()
				got := map[string]int{} // id@unix seconds → times received
				key := func(id string, at time.Time) string { return fmt.Sprintf("%s@%d", id, at.Unix()) }
				pull := func(cur ecolix.Cursor) ecolix.Cursor {
					t.Helper()
					recs, next, err := c.Pull(ctx, "commandes", cur)
					require.NoError(t, err)
					for _, r := range recs {
						got[key(r.ID, r.Modified)]++
					}
					return next
				}

				ids := generate(t, sim, "commandes", 37, t0, perInstant)
				versions := map[string]time.Time{}
				for i, id := range ids {
					versions[id] = t0.Add(time.Duration(i/perInstant) * time.Second)
				}
				cur := pull(ecolix.Cursor{})

				// Written later in the cursor's very second, and edits moving old records to it.
				last := cur.Since
				more := generate(t, sim, "commandes", 3, last, 3)
				for _, id := range more {
					versions[id] = last
				}
				require.NoError(t, sim.Touch("commandes", last, ids[0], ids[1]))
				versions[ids[0]], versions[ids[1]] = last, last
				cur = pull(cur)

				// Edits one second on, then a pull with nothing new.
				require.NoError(t, sim.Touch("commandes", last.Add(time.Second), ids[2]))
				versions[ids[2]] = last.Add(time.Second)
				cur = pull(cur)
				cur = pull(cur)

				// Every current version came exactly once; older versions of edited records came at
				// most once each.
				for id, at := range versions {
					require.Equal(t, 1, got[key(id, at)], "record %s at %s", id, at)
				}
				for k, n := range got {
					require.Equal(t, 1, n, "%s received %d times", k, n)
				}
				require.Len(t, got, 37+3+3, "37 + 3 new + 3 edits")
				require.True(t, cur.Since.Equal(last.Add(time.Second)))
			})
		}
	}
}

// No call past the last page: ceil(N / par_page) calls, one for an empty export.
func TestPullCallsEachPageOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ n, perPage, want int }{{0, 10, 1}, {9, 10, 1}, {10, 10, 1}, {11, 10, 2}, {100, 7, 15}} {
		sim := startSim(t, ecolixsim.SimConfig{})
		c := newClient(t, sim, nil, func(c *ecolix.Config) { c.PerPage = tc.perPage })
		if tc.n > 0 {
			generate(t, sim, "clients", tc.n, t0, 4)
		}
		recs, _, err := c.Pull(context.Background(), "clients", ecolix.Cursor{})
		require.NoError(t, err)
		require.Len(t, recs, tc.n)
		require.Equal(t, tc.want, sim.CallCount(), "%d records by %d", tc.n, tc.perPage)
	}
}

// A pull failing part-way returns nothing and leaves the cursor; the next one takes everything.
func TestPullFailingPartWayCommitsNothing(t *testing.T) {
	t.Parallel()
	sim := startSim(t, ecolixsim.SimConfig{})
	c := newClient(t, sim, nil, func(c *ecolix.Config) { c.PerPage = 10 })
	generate(t, sim, "devis", 35, t0, 2)
	cur := ecolix.Cursor{Since: t0.Add(-time.Hour)}
	sim.FailPage("devis", 3, http.StatusInternalServerError)

	recs, next, err := c.Pull(context.Background(), "devis", cur)
	require.Error(t, err)
	require.Contains(t, err.Error(), "page 3")
	require.Nil(t, recs)
	require.Equal(t, cur, next)
	require.GreaterOrEqual(t, sim.CallCount(), 1+3, "page 1, then page 3 three times, and whatever ran beside it")

	sim.ClearFaults()
	recs, next, err = c.Pull(context.Background(), "devis", next)
	require.NoError(t, err)
	require.Len(t, recs, 35)
	require.True(t, next.Since.Equal(t0.Add(17*time.Second)))
}

// A restart resumes from the stored cursor: nothing again, only what changed since.
func TestPullResumesFromAStoredCursor(t *testing.T) {
	t.Parallel()
	sim := startSim(t, ecolixsim.SimConfig{})
	c := newClient(t, sim, nil, func(c *ecolix.Config) { c.PerPage = 4 })
	generate(t, sim, "clients", 10, t0, 5)
	recs, cur, err := c.Pull(context.Background(), "clients", ecolix.Cursor{})
	require.NoError(t, err)
	require.Len(t, recs, 10)
	stored, err := json.Marshal(cur)
	require.NoError(t, err)

	// A new process: a new client, the cursor read back.
	c2 := newClient(t, sim, nil, func(c *ecolix.Config) { c.PerPage = 4 })
	var back ecolix.Cursor
	require.NoError(t, json.Unmarshal(stored, &back))
	recs, _, err = c2.Pull(context.Background(), "clients", back)
	require.NoError(t, err)
	require.Empty(t, recs)
	added := generate(t, sim, "clients", 2, back.Since, 2)
	recs, _, err = c2.Pull(context.Background(), "clients", back)
	require.NoError(t, err)
	got := []string{}
	for _, r := range recs {
		got = append(got, r.ID)
	}
	slices.Sort(got)
	require.Equal(t, added, got)
}

func TestConfigIsChecked(t *testing.T) {
	t.Parallel()
	b := ecolix.NewBudget(60)
	for _, cfg := range []ecolix.Config{
		{BaseURL: "", APIKey: "k"},
		{BaseURL: "ftp://x", APIKey: "k"},
		{BaseURL: "https://u:p@x", APIKey: "k"},
		{BaseURL: "https://x"},
		{BaseURL: "https://x", APIKey: "k", PerPage: 501},
	} {
		_, err := ecolix.New(cfg, b, nil)
		require.Error(t, err, "%+v", cfg)
		require.False(t, strings.Contains(err.Error(), "u:p"))
	}
	_, err := ecolix.New(ecolix.Config{BaseURL: "https://x", APIKey: "k"}, nil, nil)
	require.Error(t, err, "no budget")
}

// Retries take budget tokens too: three attempts of one call are spaced like three calls.
func TestRetriesTakeBudgetTokens(t *testing.T) {
	t.Parallel()
	sim := startSim(t, ecolixsim.SimConfig{})
	budget := ecolix.NewBudgetWindow(10, 900*time.Millisecond) // 100 ms apart
	reg := prometheus.NewRegistry()
	c := newClient(t, sim, budget, func(c *ecolix.Config) {
		c.RetryWaitMin, c.RetryWaitMax = time.Millisecond, 2*time.Millisecond
		c.Metrics = ecolix.NewMetrics(reg)
	})
	generate(t, sim, "stocks", 4, t0, 2)
	sim.FailNext(2, http.StatusBadGateway, 0)

	recs, _, err := c.Pull(context.Background(), "stocks", ecolix.Cursor{})
	require.NoError(t, err)
	require.Len(t, recs, 4)
	calls := sim.Calls()
	require.Len(t, calls, 3)
	for i := 1; i < len(calls); i++ {
		// Without a token a retry would follow in ~2 ms; half an interval leaves room for jitter.
		require.GreaterOrEqual(t, calls[i].At.Sub(calls[i-1].At), budget.Interval()/2, "attempt %d", i+1)
	}
	require.Equal(t, 1.0, counter(t, reg, "passerelle_ecolix_calls_total", "delivered", "stocks"))
	require.Equal(t, 4.0, counter(t, reg, "passerelle_ecolix_records_pulled_total", "stocks"))
	require.Equal(t, 3.0, counter(t, reg, "passerelle_ecolix_budget_wait_seconds"), "one wait per attempt")
}

// The known window of offset paging: a record edited between two pages pulls another back
// across the boundary. The pull cannot see the missed record, but it sees the edited one twice
// and counts a torn pull.
func TestPullCountsATornPull(t *testing.T) {
	t.Parallel()
	// The hook runs on the server's goroutines: it reaches the test through synchronised values.
	var ref atomic.Pointer[ecolixsim.Sim]
	editErr := make(chan error, 1)
	sim := startSim(t, ecolixsim.SimConfig{OnExport: func(resource string, page int) {
		if page == 2 {
			editErr <- ref.Load().Touch(resource, t0.Add(time.Hour), "1")
		}
	}})
	ref.Store(sim)
	reg := prometheus.NewRegistry()
	c := newClient(t, sim, nil, func(c *ecolix.Config) {
		c.PerPage, c.PullConcurrency, c.Metrics = 2, 1, ecolix.NewMetrics(reg)
	})
	generate(t, sim, "devis", 6, t0, 1) // ids 1..6, one second apart

	recs, _, err := c.Pull(context.Background(), "devis", ecolix.Cursor{})
	require.NoError(t, err)
	require.NoError(t, <-editErr)
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	require.Equal(t, []string{"2", "4", "5", "6", "1"}, ids, "3 slid onto page 1, already read")
	require.Equal(t, 1.0, counter(t, reg, "passerelle_ecolix_torn_pulls_total", "devis"))
}
