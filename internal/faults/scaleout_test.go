package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/connectors/sftp"
	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"
	"github.com/passerelle/passerelle/internal/broker/brokertest"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/internal/testwait"
)

// The scale-out figures: 600 leads over about 20 s from 4 clients, round-robin across the replicas.
const (
	scaleLeads    = 600
	scaleClients  = 4
	scaleDuration = 20 * time.Second
	pollInterval  = 2 * time.Second
	streamName    = "PASSERELLE"
)

// scaleOut is the scale-out mode as users run it: three passerelle processes (the built binary) on
// one PostgreSQL database and a 3-node NATS JetStream cluster holding the stream at 3 replicas,
// wired to the CRM receiver, the Shop Application simulator and an SFTP depot.
type scaleOut struct {
	t        *testing.T
	cluster  *brokertest.Cluster
	rcv      *crmsim.Receiver
	shop     *shopappsim.Sim
	token    string
	replicas []*daemon
	tallies  []*tally
}

func startScaleOut(t *testing.T) *scaleOut {
	t.Helper()
	start := time.Now()
	cluster := brokertest.StartCluster(t, 3)
	t.Logf("3 NATS nodes ready in %s", time.Since(start).Round(100*time.Millisecond))
	dsn := postgresDSN(t)
	secret, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	rcv, err := crmsim.Start(secret)
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	shop, err := shopappsim.Start(shopappsim.Config{})
	require.NoError(t, err)
	t.Cleanup(shop.Close)
	shop.Seed(5, rand.New(rand.NewPCG(1, 2)))

	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "depot"), 0o750))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	depot, err := sftp.StartServer(ctx, sftp.ServerConfig{Root: root, User: "partner", Password: "faults-sftp"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = depot.Close() })
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, depot.WriteKnownHosts(knownHosts))

	s := &scaleOut{t: t, cluster: cluster, rcv: rcv, shop: shop, token: "scale-token"}
	// Started together, as a Deployment's replicas are: each creates or updates the stream and the
	// consumers, and migrates the database, at the same time as the others.
	for i := range 3 {
		env := append(baseEnv(t.TempDir(), s.token, rcv, secret),
			"PASSERELLE_NATS_URL="+cluster.URL(),
			"PASSERELLE_NATS_REPLICAS=3",
			"PASSERELLE_STORE_DSN="+dsn,
			"PASSERELLE_SHOPAPP_URL="+shop.URL(),
			"PASSERELLE_SHOPAPP_CLIENT_ID="+shop.ClientID(),
			"PASSERELLE_SHOPAPP_CLIENT_SECRET="+shop.ClientSecret(),
			"PASSERELLE_SHOPAPP_POLL_INTERVAL="+pollInterval.String(),
			"PASSERELLE_SHOPAPP_RATE=100",
			"PASSERELLE_SFTP_ADDR="+depot.Addr(),
			"PASSERELLE_SFTP_USER=partner",
			"PASSERELLE_SFTP_PASSWORD=faults-sftp",
			"PASSERELLE_SFTP_KNOWN_HOSTS="+knownHosts,
			"PASSERELLE_SFTP_DIR=/depot/",
		)
		s.replicas = append(s.replicas, launch(t, fmt.Sprintf("replica-%d", i+1), env))
	}
	start = time.Now()
	for _, d := range s.replicas {
		d.waitReady(60 * time.Second)
		t.Logf("%s ready %s after the start", d.name, time.Since(start).Round(100*time.Millisecond))
	}
	configured, current, err := cluster.StreamReplicas(streamName)
	require.NoError(t, err)
	require.Equal(t, 3, configured, "the stream is kept by 3 nodes")
	t.Logf("stream %s: %d replicas, %d current", streamName, configured, current)
	return s
}

// restart starts replica i again, on the same settings, after it was killed. The process belongs
// to the whole test (it is stopped at its end); t, a subtest, fails if it does not get ready.
func (s *scaleOut) restart(t *testing.T, i int) {
	t.Helper()
	old := s.replicas[i]
	d := launch(s.t, old.name+"'", old.env)
	require.NoError(t, d.ready(60*time.Second))
	s.replicas[i] = d
}

// load posts scaleLeads leads tagged tag over about scaleDuration from scaleClients clients,
// round-robin across the replicas. A lead refused with 503, or not answered (its replica is gone),
// is sent again to the next replica after 100 ms, as a partner behind a load balancer would, for up
// to 15 s. fault runs once, in its own goroutine, when a third of the leads are out; the test
// fails if it returns an error.
func (s *scaleOut) load(t *testing.T, tag string, fault func() error) *tally {
	t.Helper()
	tl := newTally()
	s.tallies = append(s.tallies, tl)
	client := &http.Client{Timeout: 15 * time.Second}
	replicas := append([]*daemon(nil), s.replicas...)
	next := make(chan int)
	var wg sync.WaitGroup
	for range scaleClients {
		wg.Go(func() {
			for i := range next {
				body := lead(tag, i)
				for try, deadline := 0, time.Now().Add(15*time.Second); ; try++ {
					status := post(client, replicas[(i+try)%len(replicas)].hookURL(), s.token, body)
					tl.record(body, status)
					if status == http.StatusOK || status == http.StatusBadRequest || time.Now().After(deadline) {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	faultErr := make(chan error, 1)
	tick := time.NewTicker(scaleDuration / scaleLeads)
	for i := range scaleLeads {
		if i == scaleLeads/3 {
			go func() { faultErr <- fault() }()
		}
		<-tick.C
		next <- i
	}
	tick.Stop()
	close(next)
	wg.Wait()
	require.NoError(t, <-faultErr, "the fault")
	return tl
}

// unknownLeadIDs counts the lead deliveries whose id no test posted: a lead delivered under a
// second id. Shop Application's and billing's events have ids of their own.
func (s *scaleOut) unknownLeadIDs() int {
	n := 0
	for id := range s.rcv.UniqueIDs() {
		if strings.HasPrefix(id, "shopapp_") || strings.HasPrefix(id, "billing_") {
			continue
		}
		known := false
		for _, tl := range s.tallies {
			tl.mu.Lock()
			known = known || tl.posted[id]
			tl.mu.Unlock()
		}
		if !known {
			n++
		}
	}
	return n
}

// polls is each replica's count of Shop Application polls that ran (took the lock and committed).
func (s *scaleOut) polls() []float64 {
	out := make([]float64, len(s.replicas))
	for i, d := range s.replicas {
		if d.alive() {
			out[i], _ = d.counter("passerelle_shopapp_polls_total", map[string]string{"outcome": "ok"})
		}
	}
	return out
}

// meanPoll is how long a poll took on average, over the live replicas.
func (s *scaleOut) meanPoll() time.Duration {
	var sum, n float64
	for _, d := range s.replicas {
		if d.alive() {
			ds, _ := d.counter("passerelle_shopapp_poll_duration_seconds_sum", nil)
			dn, _ := d.counter("passerelle_shopapp_poll_duration_seconds_count", nil)
			sum, n = sum+ds, n+dn
		}
	}
	if n == 0 {
		return 0
	}
	return time.Duration(sum / n * float64(time.Second))
}

func totalCalls(sim *shopappsim.Sim) int {
	n := 0
	for _, c := range sim.Calls() {
		n += c
	}
	return n
}

// Three replicas, one engine (issue 17): under load across the three, a replica killed with -9
// loses no lead answered 200, a NATS node killed turns no 200 into a loss, the Shop Application
// poller runs on one replica and moves within a poll interval of its death, and a billing period is
// uploaded once.
func TestScaleOut(t *testing.T) {
	start := time.Now()
	s := startScaleOut(t)
	t.Logf("3 NATS nodes and 3 replicas ready in %s", time.Since(start).Round(100*time.Millisecond))

	t.Run("kill -9 one passerelle", func(t *testing.T) {
		victim := s.replicas[0]
		tl := s.load(t, "kill9", victim.kill)
		// What the dead replica had taken and not acknowledged comes back to the others after the
		// ack wait (5 s here).
		r := tl.waitDelivered(s.rcv, 90*time.Second)
		report(t, "kill -9 one of 3 replicas", r)
		require.Zero(t, s.unknownLeadIDs(), "no lead delivered under a second id")
		s.restart(t, 0)
	})

	t.Run("kill one NATS node", func(t *testing.T) {
		leader, err := s.cluster.StreamLeader(streamName)
		require.NoError(t, err)
		if leader < 0 {
			leader = 0
		}
		// The stream's leader: the worst node to lose, its followers elect another.
		tl := s.load(t, "natskill", func() error { return s.cluster.Kill(leader) })
		r := tl.waitDelivered(s.rcv, 90*time.Second)
		report(t, "kill the stream leader of 3 NATS nodes", r)
		for status := range r.Statuses {
			require.Contains(t, []int{http.StatusOK, http.StatusServiceUnavailable}, status, "webhooks answer 200 or 503 while a NATS node is down (answers: %v)", r.Statuses)
		}
		require.Zero(t, s.unknownLeadIDs(), "no lead delivered under a second id")
		require.NoError(t, s.cluster.Restart(leader))
	})

	t.Run("Shop Application poller", func(t *testing.T) {
		// Over the next three polls, wherever they ran: which replicas ran them (took the lock and
		// committed), and how many requests the Shop Application got.
		start := time.Now()
		before, calls0 := s.polls(), totalCalls(s.shop)
		var after []float64
		testwait.For(t, 6*pollInterval, "three more polls", func() bool {
			after = s.polls()
			var grew float64
			for i := range after {
				grew += after[i] - before[i]
			}
			return grew >= 3
		})
		calls1 := totalCalls(s.shop)
		window := time.Since(start).Round(time.Millisecond)
		var pollers []int
		owner, ran := 0, 0.0
		for i := range after {
			if d := after[i] - before[i]; d > 0 {
				pollers = append(pollers, i)
				if d >= ran {
					owner, ran = i, d
				}
			}
		}
		t.Logf("polls that ran over %s, per replica: %v → %v; Shop Application requests: %d", window, before, after, calls1-calls0)
		require.NotEmpty(t, pollers, "some replica polls")

		// Kill the replica that polled most: another polls within one interval of its death.
		require.NoError(t, s.replicas[owner].kill())
		died := time.Now()
		base := s.polls()
		var moved time.Duration
		for moved == 0 && time.Since(died) < 3*pollInterval {
			now := s.polls()
			for i := range now {
				if i != owner && now[i] > base[i] {
					moved = time.Since(died)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		// The counter moves when a poll ends: a poll's own run (a few dozen requests to the
		// simulator, slower on a busy machine) is the slack on top of the interval.
		slack := max(time.Second, 3*s.meanPoll())
		t.Logf("a poll ended on another replica %s after replica %d's death (interval %s, slack for the poll's run %s)",
			moved.Round(time.Millisecond), owner+1, pollInterval, slack.Round(time.Millisecond))
		require.NotZero(t, moved, "no other replica polled within %s of the poller's death", 3*pollInterval)
		require.LessOrEqual(t, moved, pollInterval+slack, "the poller moves within one poll interval")
		s.restart(t, owner)

		require.Len(t, pollers, 1, "one replica polls (the leader lock), over %s", window)
	})

	t.Run("billing period", func(t *testing.T) {
		run := func(d *daemon, period string) (string, error) {
			body, _ := json.Marshal(map[string]any{"period": period})
			resp, err := http.Post("http://"+d.adminAddr+"/admin/billing/run", "application/json", bytes.NewReader(body))
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			var rep struct {
				Outcome string `json:"outcome"`
				Error   string `json:"error"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
				return "", fmt.Errorf("status %d: %w", resp.StatusCode, err)
			}
			if resp.StatusCode != http.StatusOK {
				return "", fmt.Errorf("status %d: %s", resp.StatusCode, rep.Error)
			}
			return rep.Outcome, nil
		}
		// One replica uploads the period; the others, asked after, see it uploaded (the store is
		// shared) and upload nothing.
		got, err := run(s.replicas[1], "2026-10")
		require.NoError(t, err)
		require.Equal(t, "uploaded", got)
		for _, i := range []int{0, 2} {
			got, err := run(s.replicas[i], "2026-10")
			require.NoError(t, err)
			require.Equal(t, "already_uploaded", got, "replica %d", i+1)
		}

		// Asked at the same moment, as the schedule asks every replica on the 1st at 06:00.
		var wg sync.WaitGroup
		outcomes := make([]string, len(s.replicas))
		for i, d := range s.replicas {
			wg.Go(func() {
				o, err := run(d, "2026-09")
				if err != nil {
					o = "error: " + err.Error()
				}
				outcomes[i] = o
			})
		}
		wg.Wait()
		uploads := 0
		for _, o := range outcomes {
			if o == "uploaded" {
				uploads++
			}
		}
		t.Logf("one period asked of the 3 replicas at once: %v", outcomes)
		// The upload lock (PostgreSQL advisory lock) lets one replica upload; the others wait, then
		// find the period uploaded.
		require.Equal(t, 1, uploads, "one upload of a period asked of 3 replicas at once: %v", outcomes)
	})
	t.Logf("scale-out suite: %s", time.Since(start).Round(time.Second))
}
