package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/connectors/iciformation/iciformationsim"
	"github.com/passerelle/passerelle/internal/app"
	"github.com/passerelle/passerelle/internal/broker/brokertest"
	"github.com/passerelle/passerelle/internal/redact/redacttest"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
)

// The seed's example lead, posted as Ici Formation posts it, reaches the CRM signed, once, in the
// generic envelope or as HubSpot contact properties.
func TestSeedLeadReachesCRM(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"generic", "hubspot"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			_, _, f := startApp(t, "PASSERELLE_CRM_FORMAT="+format)
			checkSeedDelivered(t, f, format)
		})
	}
}

// The same path on an external JetStream server instead of the embedded one.
func TestSeedLeadReachesCRMExternalNATS(t *testing.T) {
	t.Parallel()
	url := brokertest.ExternalURL(t)
	id := fmt.Sprintf("%d", rand.Uint64())
	stream := "PASSERELLE_E2E_" + id
	// Registered before the app's own cleanup, so it runs after the app stopped.
	t.Cleanup(func() { brokertest.DeleteStream(t, url, stream) })
	a, _, f := startApp(t, "PASSERELLE_NATS_URL="+url, "PASSERELLE_NATS_STREAM="+stream, "PASSERELLE_NATS_SUBJECT_PREFIX=e2e"+id)
	require.Equal(t, url, a.Cfg.NATS.URL)
	checkSeedDelivered(t, f, "generic")
}

func checkSeedDelivered(t *testing.T, f *fixture, format string) {
	t.Helper()
	rcv := f.Receiver
	status, body := f.post(t, iciformationsim.SeedExample())
	require.Equal(t, http.StatusOK, status)
	require.Empty(t, body, "the seed wants an empty body on success")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rcv.WaitForUnique(ctx, 1))
	f.waitStage(t, "crm", "out", 1)
	f.waitIdle(t) // a duplicate would have been delivered by now
	ds := rcv.Deliveries()
	require.Len(t, ds, 1, "exactly one delivery")
	require.Zero(t, rcv.Rejected(), "the receiver verified every signature")
	d := ds[0]
	require.NoError(t, stdwebhook.Verify(f.Secret, d.Header, d.Body, time.Now()))
	require.Equal(t, "application/json", d.Header.Get("Content-Type"))
	wantID := eventIDOf(iciformationsim.SeedExample())
	require.Equal(t, wantID, d.ID)

	switch format {
	case "generic":
		var env struct {
			Type       string                     `json:"type"`
			ID         string                     `json:"id"`
			OccurredAt time.Time                  `json:"occurred_at"`
			Source     string                     `json:"source"`
			Data       map[string]json.RawMessage `json:"data"`
		}
		require.NoError(t, json.Unmarshal(d.Body, &env), "%s", d.Body)
		require.Equal(t, "lead.created", env.Type)
		require.Equal(t, d.ID, env.ID, "webhook-id is the envelope id")
		require.Equal(t, "iciformation", env.Source)
		require.WithinDuration(t, time.Now(), env.OccurredAt, time.Minute)
		str := func(k string) string {
			var s string
			require.NoError(t, json.Unmarshal(env.Data[k], &s), "data.%s in %s", k, d.Body)
			return s
		}
		require.Equal(t, "+33102030405", str("phone"))
		require.Equal(t, "john.doe@example.com", str("email"))
		require.Equal(t, "75001", str("postal_code"))
		require.Equal(t, "M.", str("title"))
		require.Equal(t, "Doe", str("last_name"))
		require.Equal(t, "John", str("first_name"))
		require.JSONEq(t, string(iciformationsim.SeedExample()), string(env.Data["raw"]), "raw is the lead as received")
	case "hubspot":
		var hs struct {
			Properties map[string]string `json:"properties"`
		}
		require.NoError(t, json.Unmarshal(d.Body, &hs), "%s", d.Body)
		require.NotEmpty(t, hs.Properties["hs_lead_status"])
		delete(hs.Properties, "hs_lead_status") // its mapping is the transform's business
		require.Equal(t, map[string]string{
			"email": "john.doe@example.com", "firstname": "John", "lastname": "Doe", "phone": "+33102030405",
			"city": "paris", "zip": "75001", "salutation": "M.", "company": "XYZ Formations",
			"formation": "Développement Web", "horaire_rappel": "après-midi", "source_id": wantID,
		}, hs.Properties)
	}
}

// Each kind of bad request gets its status and a JSON error, and nothing of it is published.
func TestBadRequestsAreRejected(t *testing.T) {
	t.Parallel()
	_, rcv, f := startApp(t)
	url := f.hookURL()
	bearer := "Bearer " + f.Token
	big := append([]byte(`{"nom":"`), bytes.Repeat([]byte("x"), 65<<10)...)
	big = append(big, `","email":"big@example.com"}`...)
	noContact := []byte(`{"nom":"Doe","email":"not-an-email","tel":"12","formation":"X","id_client":"1"}`)
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
		want   int
	}{
		{"no auth", jsonHeader(""), leadBody(900, "bad"), http.StatusUnauthorized},
		{"wrong token", jsonHeader("Bearer nope"), leadBody(901, "bad"), http.StatusUnauthorized},
		{"text/plain", http.Header{"Content-Type": {"text/plain"}, "Authorization": {bearer}}, leadBody(902, "bad"), http.StatusUnsupportedMediaType},
		{"over 64 KiB", jsonHeader(bearer), big, http.StatusRequestEntityTooLarge},
		{"malformed JSON", jsonHeader(bearer), []byte(`{"nom": "Doe",`), http.StatusBadRequest},
		{"JSON array", jsonHeader(bearer), []byte(`[` + string(leadBody(903, "bad")) + `]`), http.StatusBadRequest},
		{"no usable contact", jsonHeader(bearer), noContact, http.StatusBadRequest},
	} {
		status, body := postRaw(t, url, tc.header, tc.body)
		require.Equal(t, tc.want, status, "%s: %s", tc.name, body)
		var e struct {
			Error   *bool   `json:"error"`
			Message *string `json:"message"`
		}
		require.NoError(t, json.Unmarshal(body, &e), "%s: %s", tc.name, body)
		require.NotNil(t, e.Error, tc.name)
		require.True(t, *e.Error, tc.name)
		require.NotNil(t, e.Message, tc.name)
		require.NotEmpty(t, *e.Message, tc.name)
	}

	valid := [][]byte{leadBody(1, "ok"), leadBody(2, "ok")}
	for _, b := range valid {
		status, body := f.post(t, b)
		require.Equal(t, http.StatusOK, status, "%s", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rcv.WaitForUnique(ctx, len(valid)))
	f.waitStage(t, "crm", "out", float64(len(valid)))
	f.waitIdle(t)

	require.Equal(t, float64(len(valid)), f.stageCount(t, "ingest", "out"), "only accepted posts are published")
	require.Equal(t, float64(len(valid)), f.stageCount(t, "normalize", "in"))
	// The lead with no usable contact is the partner's bad data: rejected, not a failure of ours
	// (StageFailing must not fire on it).
	require.Equal(t, float64(1), f.stageCount(t, "ingest", "rejected"))
	require.Equal(t, float64(0), f.stageCount(t, "ingest", "failed"))
	got := rcv.UniqueIDs()
	require.Len(t, got, len(valid))
	for _, b := range valid {
		require.Equal(t, 1, got[eventIDOf(b)])
	}
}

// A lead sent twice is delivered once; another lead with the same contact, formation and id_client
// inside the window is dropped as a duplicate.
func TestDuplicateLeads(t *testing.T) {
	t.Parallel()
	_, rcv, f := startApp(t)
	seed := iciformationsim.SeedExample()
	for range 2 {
		status, body := f.post(t, seed)
		require.Equal(t, http.StatusOK, status, "%s", body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rcv.WaitForUnique(ctx, 1))
	// The dedupe key is committed once the CRM has the lead, which the crm stage counts as out.
	f.waitStage(t, "crm", "out", 1)

	variant := map[string]any{}
	require.NoError(t, json.Unmarshal(seed, &variant))
	variant["nom"], variant["prenom"], variant["tel"], variant["ville"] = "Doe-Martin", "Johnny", "06 11 22 33 44", "lyon"
	variant["email"] = "John.Doe@Example.com" // the same address, typed differently
	vb, err := json.Marshal(variant)
	require.NoError(t, err)
	require.NotEqual(t, eventIDOf(seed), eventIDOf(vb))
	status, body := f.post(t, vb)
	require.Equal(t, http.StatusOK, status, "%s", body)
	f.waitStage(t, "normalize", "duplicate", 1)
	f.waitIdle(t) // had the duplicate gone on, the CRM would have it now

	require.Equal(t, map[string]int{eventIDOf(seed): 1}, rcv.UniqueIDs())
	require.Len(t, rcv.Deliveries(), 1)
	require.Equal(t, float64(1), f.stageCount(t, "normalize", "duplicate"))
	require.Equal(t, float64(1), f.stageCount(t, "crm", "out"))
}

// A burst of concurrent posts: the stages yield to it (PASSERELLE_STAGE_YIELD), every lead is
// answered 200, and once the burst is over every one of them reaches the CRM, once.
func TestBurstIsDeliveredAfterTheStagesYield(t *testing.T) {
	t.Parallel()
	const leads, clients = 600, 4 * pipelines.YieldAbove
	_, rcv, f := startApp(t)
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[int]int{}
	)
	// Keep-alive connections, one per client, as a partner's burst comes.
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	defer client.CloseIdleConnections()
	for range clients {
		wg.Go(func() {
			for i := range next {
				status := -1 // a transport error
				req, err := http.NewRequest(http.MethodPost, f.hookURL(), bytes.NewReader(leadBody(i, "burst")))
				if err == nil {
					req.Header = jsonHeader("Bearer " + f.Token)
					if resp, err := client.Do(req); err == nil {
						status = resp.StatusCode
						resp.Body.Close()
					}
				}
				mu.Lock()
				statuses[status]++
				mu.Unlock()
			}
		})
	}
	for i := range leads {
		next <- i
	}
	close(next)
	wg.Wait()
	require.Equal(t, map[int]int{http.StatusOK: leads}, statuses)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, rcv.WaitForUnique(ctx, leads))
	for id, n := range rcv.UniqueIDs() {
		require.Equal(t, 1, n, "event %s delivered %d times", id, n)
	}
	// Counted once a hold ends, so read after the deliveries.
	held, ok := metric(f.scrape(t), "passerelle_stage_yield_seconds_total", map[string]string{"pipeline": "leads", "stage": "normalize"})
	require.True(t, ok, "no passerelle_stage_yield_seconds_total for leads/normalize")
	require.Positive(t, held, "the normalize stage never yielded to %d concurrent posts", clients)
}

// The CRM fails for a while, in every way a real one does, while leads keep coming: they are all
// accepted, and all delivered once it recovers.
func TestCRMOutage(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, rcv, f := startApp(t, "PASSERELLE_CRM_MAX_ATTEMPTS=1000")
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusServiceUnavailable})

	const n = 20
	want := map[string]int{}
	var failed []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	bodies := make(chan []byte)
	for range 4 {
		wg.Go(func() {
			for b := range bodies {
				status, err := f.tryPost(f.hookURL(), b)
				mu.Lock()
				if err == nil && status == http.StatusOK {
					want[eventIDOf(b)] = 1
				} else {
					failed = append(failed, fmt.Sprintf("status %d, error %v", status, err))
				}
				mu.Unlock()
			}
		})
	}
	for i := range n {
		bodies <- leadBody(i, "outage")
	}
	close(bodies)
	wg.Wait()
	require.Empty(t, failed, "every lead is accepted during the outage")
	require.Len(t, want, n)

	// 503 for a while, then 429 with Retry-After, then connection resets, then healthy.
	waitAttempts := func(k int) {
		require.True(t, testwait.Eventually(30*time.Second, func() bool { return rcv.Attempts() >= k }), "receiver got %d attempts, want %d", rcv.Attempts(), k)
	}
	waitAttempts(8)
	require.Empty(t, rcv.Deliveries())
	// Operators see the CRM stage falling behind: leads wait for it, and have waited a while.
	msgs, age := f.backlog(t, "crm")
	require.Positive(t, msgs, "crm backlog during the outage")
	require.Positive(t, age, "age of the oldest lead waiting for the crm stage")
	var stages []pipelines.StageBacklog
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodGet, "/admin/stages", nil, &stages))
	i := slices.IndexFunc(stages, func(s pipelines.StageBacklog) bool { return s.Pipeline == "leads" && s.Stage == "crm" })
	require.GreaterOrEqual(t, i, 0, "no leads/crm in %+v", stages)
	require.Positive(t, stages[i].Messages)
	require.NotNil(t, stages[i].Oldest)
	require.Empty(t, stages[i].Error)
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: "1"})
	waitAttempts(rcv.Attempts() + 3)
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultReset})
	waitAttempts(rcv.Attempts() + 5)
	require.Empty(t, rcv.Deliveries())
	rcv.SetFault(crmsim.Fault{})

	require.NoError(t, rcv.WaitForUnique(ctx, n))
	f.waitStage(t, "crm", "out", n)
	require.Equal(t, want, rcv.UniqueIDs(), "every lead once")
	require.Zero(t, rcv.Rejected())
	for _, stage := range []string{"normalize", "crm"} {
		require.True(t, testwait.Eventually(10*time.Second, func() bool {
			msgs, age := f.backlog(t, stage)
			return msgs == 0 && age == 0
		}), "the %s backlog empties once the CRM is back", stage)
	}
}

// backlog reads a leads stage's backlog gauges: messages not acked, and the oldest one's age.
func (f *fixture) backlog(t testing.TB, stage string) (messages, oldestSeconds float64) {
	t.Helper()
	scrape := f.scrape(t)
	labels := map[string]string{"pipeline": "leads", "stage": stage}
	messages, ok := metric(scrape, "passerelle_stage_backlog_messages", labels)
	require.True(t, ok, "no passerelle_stage_backlog_messages for %v", labels)
	oldestSeconds, ok = metric(scrape, "passerelle_stage_backlog_oldest_seconds", labels)
	require.True(t, ok, "no passerelle_stage_backlog_oldest_seconds for %v", labels)
	return messages, oldestSeconds
}

type dlView = app.DeadLetterView

func (f *fixture) deadLetters(t testing.TB) []dlView {
	t.Helper()
	var dls []dlView
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodGet, "/admin/dlq", nil, &dls))
	return dls
}

func (f *fixture) waitDeadLetters(t testing.TB, n int) []dlView {
	t.Helper()
	var dls []dlView
	require.True(t, testwait.Eventually(20*time.Second, func() bool {
		dls = f.deadLetters(t)
		return len(dls) >= n
	}), "dead letters: %v, want %d", dls, n)
	return dls
}

func (f *fixture) deadLetterGauge(t testing.TB) float64 {
	t.Helper()
	v, ok := metric(f.scrape(t), "passerelle_dead_letters", map[string]string{"pipeline": "leads"})
	require.True(t, ok, "no passerelle_dead_letters{pipeline=\"leads\"}")
	return v
}

func (f *fixture) retryDeadLetter(t testing.TB, id int64) {
	t.Helper()
	var out map[string]int
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodPost, "/admin/dlq/retry", map[string]int64{"id": id}, &out))
	require.Equal(t, map[string]int{"retried": 1}, out)
}

// A permanent refusal dead-letters the lead; once the cause is fixed an operator re-drives it.
func TestDeadLetterAndRetry(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, rcv, f := startApp(t)
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusBadRequest})
	lead := leadBody(1, "dlq")
	status, body := f.post(t, lead)
	require.Equal(t, http.StatusOK, status, "%s", body)

	dls := f.waitDeadLetters(t, 1)
	require.Len(t, dls, 1)
	dl := dls[0]
	require.Equal(t, "leads", dl.Pipeline)
	require.Equal(t, pipelines.TopicLeadsNormalized, dl.Topic)
	require.Equal(t, eventIDOf(lead), dl.EventID)
	require.Contains(t, dl.Error, "HTTP 400")
	require.Equal(t, float64(1), f.deadLetterGauge(t))
	require.Equal(t, float64(1), f.stageCount(t, "crm", "dead_lettered"))
	require.Equal(t, float64(0), f.stageCount(t, "crm", "out"), "for a sink, out means delivered")
	require.Empty(t, rcv.Deliveries())

	rcv.SetFault(crmsim.Fault{})
	f.retryDeadLetter(t, dl.ID)
	require.NoError(t, rcv.WaitForUnique(ctx, 1))
	f.waitIdle(t)
	require.Equal(t, map[string]int{eventIDOf(lead): 1}, rcv.UniqueIDs())
	f.waitStage(t, "crm", "out", 1)
	require.Empty(t, f.deadLetters(t))
	require.Equal(t, float64(0), f.deadLetterGauge(t))
	// Retried once: a second retry of the same dead letter is refused.
	require.NotEqual(t, http.StatusOK, f.adminJSON(t, http.MethodPost, "/admin/dlq/retry", map[string]int64{"id": dl.ID}, nil))
}

// A 410 Gone disables the endpoint and holds its events: nothing is dead-lettered, the leads
// posted meanwhile wait too (counted in endpoints list and a gauge), and enabling the endpoint
// delivers every one of them, once.
func TestGoneEndpointHoldsItsEvents(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	_, rcv, f := startApp(t)
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusGone})
	first := leadBody(1, "gone")
	status, body := f.post(t, first)
	require.Equal(t, http.StatusOK, status, "%s", body)

	endpoint := pipelines.EndpointID(f.CRMURL)
	views := func() map[string]app.EndpointView {
		var vs []app.EndpointView
		require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodGet, "/admin/endpoints", nil, &vs))
		out := map[string]app.EndpointView{}
		for _, v := range vs {
			out[v.Endpoint] = v
		}
		return out
	}
	require.Eventually(t, func() bool { return views()[endpoint].Disabled }, 20*time.Second, 20*time.Millisecond, "the 410 disables the endpoint")
	require.Contains(t, views()[endpoint].Reason, "410")
	v, ok := metric(f.scrape(t), "passerelle_endpoints_disabled_total", map[string]string{"sink": "crm"})
	require.True(t, ok)
	require.Equal(t, float64(1), v)

	// Leads posted while it is disabled are held, not sent and not dead-lettered.
	more := [][]byte{leadBody(2, "held"), leadBody(3, "held")}
	for _, l := range more {
		status, body := f.post(t, l)
		require.Equal(t, http.StatusOK, status, "%s", body)
	}
	require.Eventually(t, func() bool { return views()[endpoint].Held == 3 }, 20*time.Second, 20*time.Millisecond, "three events held")
	held, ok := metric(f.scrape(t), "passerelle_endpoint_held_events", map[string]string{"endpoint": endpoint})
	require.True(t, ok)
	require.Equal(t, float64(3), held)
	require.Empty(t, f.deadLetters(t))
	require.Equal(t, 1, rcv.Attempts(), "only the first lead reached the endpoint, which answered 410")

	rcv.SetFault(crmsim.Fault{})
	var enabled map[string]string
	require.Equal(t, http.StatusOK, f.adminJSON(t, http.MethodPost, "/admin/endpoints/enable", map[string]string{"endpoint": endpoint}, &enabled))
	require.NoError(t, rcv.WaitForUnique(ctx, 3))
	want := map[string]int{eventIDOf(first): 1}
	for _, l := range more {
		want[eventIDOf(l)] = 1
	}
	require.Eventually(t, func() bool { return len(views()) == 0 }, 20*time.Second, 20*time.Millisecond, "nothing held any more")
	f.waitStage(t, "crm", "out", 3)
	got, delivered, repeats := rcv.UniqueIDs(), 0, 0
	for id := range want {
		if n := got[id]; n > 0 {
			delivered, repeats = delivered+1, repeats+n-1
		}
	}
	// The fault suite's line (make test-faults).
	t.Logf("FAULT %-40s posted %4d  answered 200 %4d  delivered %4d  repeats with the same id %3d  lost %d",
		"410 Gone, then enabled", len(want), len(want), delivered, repeats, len(want)-delivered)
	require.Equal(t, want, got, "each held lead delivered once")
	require.Empty(t, f.deadLetters(t))
}

// Stopping while leads arrive: Run returns nil within the shutdown timeout, and every lead answered
// 200 is delivered after a restart on the same data dir.
func TestGracefulShutdownKeepsAcceptedLeads(t *testing.T) {
	t.Parallel()
	const shutdownTimeout = 10 * time.Second
	// Messages handed to a stage and dropped by the closing subscriber come back after the ack wait.
	f := newFixture(t, "PASSERELLE_SHUTDOWN_TIMEOUT="+shutdownTimeout.String(), "PASSERELLE_ACK_WAIT=3s")
	f.start()
	url := f.hookURL()

	var (
		mu       sync.Mutex
		accepted = map[string]int{}
		posted   = map[string]bool{} // answered or not: a lead stored but not answered may arrive too
		other    = map[int]int{}
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b := leadBody(w*100000+i, "shutdown")
				status, err := f.tryPost(url, b)
				mu.Lock()
				posted[eventIDOf(b)] = true
				if err == nil && status == http.StatusOK {
					accepted[eventIDOf(b)] = 1
				} else if err == nil {
					other[status]++
				}
				mu.Unlock()
				if err != nil {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	require.True(t, testwait.Eventually(20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) >= 50
	}), "leads are not being accepted")

	took := f.stop()
	require.LessOrEqual(t, took, shutdownTimeout, "Run returned after the shutdown timeout")
	close(stop)
	wg.Wait()
	mu.Lock()
	want := len(accepted)
	mu.Unlock()
	t.Logf("accepted %d leads before the stop (other answers: %v), %d delivered then; shutdown took %s", want, other, len(f.Receiver.UniqueIDs()), took)

	f.start()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, f.Receiver.WaitForUnique(ctx, want))
	got := f.Receiver.UniqueIDs()
	for id := range accepted {
		require.Contains(t, got, id, "a lead answered 200 was lost")
	}
	repeats := 0
	for id, n := range got {
		require.True(t, posted[id], "unknown event %s", id)
		repeats += n - 1 // at least once: a delivery cut short by the stop may be sent again
	}
	t.Logf("%d delivered after the restart, %d of them twice or more", len(got), repeats)
}

// With debug logging on, no personal data nor secret reaches the log, whatever happens.
func TestLogsLeakNoPersonalDataNorSecret(t *testing.T) {
	t.Parallel()
	var buf redacttest.Buffer
	f := newFixture(t)
	f.Log = app.NewLogger(&buf, "json", "debug")
	f.start()
	rcv := f.Receiver

	type person struct{ nom, prenom, email, tel, e164 string }
	people := []person{
		{"Quatremains", "Zephyrine", "zephyrine.quatremains@example.org", "06 71 82 93 04", "+33671829304"},
		{"Oberkampfova", "Gaspardine", "gaspardine.oberkampfova@example.net", "0785961524", "+33785961524"},
		{"Vauquelinard", "Hortensius", "hortensius.vauquelinard@example.com", "07.44.55.66.17", "+33744556617"},
	}
	body := func(p person) []byte {
		b, _ := json.Marshal(map[string]string{"nom": p.nom, "prenom": p.prenom, "civilite": "Mme", "tel": p.tel,
			"email": p.email, "ville": "paris", "code_postal": "75011", "formation": "Comptabilité", "id_client": "1234"})
		return b
	}

	// A retryable failure, then a delivered lead.
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusServiceUnavailable, Remaining: 3})
	status, _ := f.post(t, body(people[0]))
	require.Equal(t, http.StatusOK, status)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rcv.WaitForUnique(ctx, 1))
	f.waitStage(t, "crm", "out", 1)

	// A permanent failure: dead-lettered.
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusUnprocessableEntity})
	status, _ = f.post(t, body(people[1]))
	require.Equal(t, http.StatusOK, status)
	f.waitDeadLetters(t, 1)
	rcv.SetFault(crmsim.Fault{})

	// Bad requests: no usable contact, malformed JSON, a wrong token.
	bad := people[2]
	status, _ = f.post(t, []byte(fmt.Sprintf(`{"nom":%q,"prenom":%q,"email":"%s@","tel":"%s999"}`, bad.nom, bad.prenom, bad.email, bad.tel)))
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = f.post(t, []byte(fmt.Sprintf(`{"nom":%q,"email":%q,`, bad.nom, bad.email)))
	require.Equal(t, http.StatusBadRequest, status)
	status, _ = postRaw(t, f.hookURL(), jsonHeader("Bearer "+f.Token+"x"), body(bad))
	require.Equal(t, http.StatusUnauthorized, status)
	// A duplicate of the first person.
	dup := people[0]
	dup.nom = "Quatremains-Duplicate"
	status, _ = f.post(t, body(dup))
	require.Equal(t, http.StatusOK, status)
	f.waitStage(t, "normalize", "duplicate", 1)
	f.stop()

	logs := buf.String()
	require.Contains(t, logs, "lead accepted", "the log was written")
	require.Contains(t, logs, `"level":"DEBUG"`, "debug lines were written")
	secrets := []string{f.Token, f.Secret, strings.TrimPrefix(f.Secret, "whsec_")}
	for _, p := range append(people, dup) {
		digits := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return r
			}
			return -1
		}, p.tel)
		secrets = append(secrets, p.nom, p.prenom, p.email, strings.Split(p.email, "@")[0], p.tel, p.e164, digits, strings.TrimPrefix(p.e164, "+"))
	}
	redacttest.RequireNoLeak(t, logs, secrets...)
}

// The metrics pass promtool's lint, both gathered and as served.
func TestMetricsLint(t *testing.T) {
	t.Parallel()
	a, rcv, f := startApp(t)
	status, _ := f.post(t, iciformationsim.SeedExample())
	require.Equal(t, http.StatusOK, status)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, rcv.WaitForUnique(ctx, 1))

	problems, err := testutil.GatherAndLint(a.Registry)
	require.NoError(t, err)
	require.Empty(t, problems)

	text := f.scrape(t)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("install prometheus (apt-get install prometheus) for promtool")
		}
		t.Skip("promtool not on PATH: install prometheus (apt-get install prometheus) to check the served metrics with it")
	}
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
}

// waitIdle waits until no stage of the daemon has anything pending, unacknowledged or awaiting a
// redelivery (every passerelle_stage_backlog_messages is 0): whatever the daemon will deliver of
// what it accepted so far, it has delivered. Tests assert "nothing more arrived" after it rather
// than after a sleep.
func (f *fixture) waitIdle(t testing.TB) {
	t.Helper()
	var busy []string
	ok := testwait.Eventually(30*time.Second, func() bool {
		busy = busy[:0]
		stages := 0
		for line := range strings.Lines(f.scrape(t)) {
			if !strings.HasPrefix(line, "passerelle_stage_backlog_messages{") {
				continue
			}
			stages++
			if series, value, _ := cutLast(strings.TrimSpace(line)); value != "0" {
				busy = append(busy, series+" "+value)
			}
		}
		return stages > 0 && len(busy) == 0
	})
	require.True(t, ok, "stages still busy: %v", busy)
}
