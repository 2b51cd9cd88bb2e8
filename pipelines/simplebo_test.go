package pipelines_test

import (
	"context"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/connectors/simplebo/simplebosim"
	"github.com/passerelle/passerelle/pipelines"
)

// applyAll applies evs in order to a new client and returns it with the verdicts.
func applyAll(m pipelines.SimpleboEventMap, evs []simplebo.Event, received time.Time) (pipelines.SimpleboClient, []pipelines.SimpleboVerdict) {
	var c pipelines.SimpleboClient
	var verdicts []pipelines.SimpleboVerdict
	for i, ev := range evs {
		var v pipelines.SimpleboVerdict
		c, v = pipelines.ApplySimpleboEvent(c, ev, m, pipelines.SimpleboEventID(ev), received.Add(time.Duration(i)*time.Minute))
		verdicts = append(verdicts, v)
	}
	return c, verdicts
}

func TestSimpleboApplyEventOrdering(t *testing.T) {
	start := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	received := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	chain := simplebosim.EventsFor("C1", start) // 0, 1, 3, 2
	lead, service, billing, ended := chain[0], chain[1], chain[2], chain[3]
	sameDayService := service
	sameDayService.ServiceStartingDate = lead.LeadCreationDate // activated the day of the lead
	unknown := service
	unknown.Type, unknown.TypeRaw = 7, "7"
	free := simplebosim.EventsFor("C1", start, simplebo.SwitchedToFree)[0]

	A, U, S, X := pipelines.SimpleboApplied, pipelines.SimpleboUnchanged, pipelines.SimpleboStale, pipelines.SimpleboUnknown
	for _, tc := range []struct {
		name     string
		evs      []simplebo.Event
		want     string
		verdicts []pipelines.SimpleboVerdict
	}{
		{"in order", []simplebo.Event{lead, service, billing, ended}, pipelines.SimpleboContractEnded, []pipelines.SimpleboVerdict{A, A, A, A}},
		{"reversed", []simplebo.Event{ended, billing, service, lead}, pipelines.SimpleboContractEnded, []pipelines.SimpleboVerdict{A, S, S, S}},
		{"older after newer", []simplebo.Event{lead, billing, service}, pipelines.SimpleboBillingStarted, []pipelines.SimpleboVerdict{A, A, S}},
		{"repeat is level", []simplebo.Event{lead, service, service}, pipelines.SimpleboServiceActivated, []pipelines.SimpleboVerdict{A, A, U}},
		{"same day: the later stage wins", []simplebo.Event{sameDayService, lead}, pipelines.SimpleboServiceActivated, []pipelines.SimpleboVerdict{A, S}},
		{"unknown code keeps the state", []simplebo.Event{lead, unknown}, pipelines.SimpleboLeadCreated, []pipelines.SimpleboVerdict{A, X}},
		{"unknown code first", []simplebo.Event{unknown, lead}, pipelines.SimpleboLeadCreated, []pipelines.SimpleboVerdict{X, A}},
		{"switched to free", []simplebo.Event{lead, service, billing, free}, pipelines.SimpleboSwitchedToFree, []pipelines.SimpleboVerdict{A, A, A, A}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, verdicts := applyAll(pipelines.DefaultSimpleboEventMap(), tc.evs, received)
			require.Equal(t, tc.want, c.State)
			require.Equal(t, tc.verdicts, verdicts)
			require.Equal(t, "C1", c.ClientID)
		})
	}

	// Any order of any number of repeats ends in the state of the newest event, with its dates.
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		evs := simplebosim.Scramble(chain, r, r.IntN(6))
		c, _ := applyAll(pipelines.DefaultSimpleboEventMap(), evs, received)
		require.Equal(t, pipelines.SimpleboContractEnded, c.State, "run %d", i)
		require.Equal(t, ended.EndOfContractDate, c.Contract.EndOfContractDate, "run %d", i)
		require.Equal(t, billing.BillingStartingDate, c.Contract.BillingStartingDate, "run %d", i)
		require.Equal(t, 2, *c.StateCode)
	}
}

func TestSimpleboApplyEventMapOverride(t *testing.T) {
	m, err := pipelines.ParseSimpleboEventMap("0=lead_created,5=service_activated")
	require.NoError(t, err)
	ev := simplebosim.EventsFor("C2", time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC), simplebo.LeadCreated, simplebo.ServiceActivated)[1]
	ev.Type = 5
	c, v := pipelines.ApplySimpleboEvent(pipelines.SimpleboClient{}, ev, m, "e1", time.Now())
	require.Equal(t, pipelines.SimpleboApplied, v)
	require.Equal(t, pipelines.SimpleboServiceActivated, c.State)
	ev.Type = 1 // no longer named
	_, v = pipelines.ApplySimpleboEvent(c, ev, m, "e2", time.Now())
	require.Equal(t, pipelines.SimpleboUnknown, v)
}

// The identity takes the newer value of each field: what we sent stays against an older
// snapshot, a newer snapshot wins field by field, an empty field erases nothing, and a stale
// event changes nothing at all.
func TestSimpleboIdentityNewerWinsFieldByField(t *testing.T) {
	sent := time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)
	var c pipelines.SimpleboClient
	require.True(t, c.MergeIdentity(simplebo.Snapshot{CompanyName: "ACME", Email: "a@acme.example", City: "Lyon"}, sent, "mockup"))

	old := simplebosim.EventsFor("C3", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), simplebo.LeadCreated)[0] // dated before we sent
	old.Client = simplebo.Snapshot{ClientID: "C3", CompanyName: "Old Name", Lastname: "Martin"}
	c, v := pipelines.ApplySimpleboEvent(c, old, pipelines.DefaultSimpleboEventMap(), "e1", sent.Add(time.Hour))
	require.Equal(t, pipelines.SimpleboApplied, v)
	require.Equal(t, "ACME", c.Identity.CompanyName, "what we sent later wins")
	require.Equal(t, "Martin", c.Identity.Lastname, "a field never set is taken")

	newer := simplebosim.EventsFor("C3", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), simplebo.LeadCreated, simplebo.ServiceActivated)[1] // service on 03-15
	newer.Client = simplebo.Snapshot{ClientID: "C3", CompanyName: "ACME SARL", Email: ""}
	c, v = pipelines.ApplySimpleboEvent(c, newer, pipelines.DefaultSimpleboEventMap(), "e2", sent.Add(10*24*time.Hour))
	require.Equal(t, pipelines.SimpleboApplied, v)
	require.Equal(t, "ACME SARL", c.Identity.CompanyName)
	require.Equal(t, "a@acme.example", c.Identity.Email, "an empty field erases nothing")
	require.Equal(t, "webhook", c.IdentitySource)

	stale := old
	stale.Client.City = "Paris"
	before := c
	c, v = pipelines.ApplySimpleboEvent(c, stale, pipelines.DefaultSimpleboEventMap(), "e3", sent.Add(20*24*time.Hour))
	require.Equal(t, pipelines.SimpleboStale, v)
	require.True(t, reflect.DeepEqual(before, c), "a stale event changes nothing")
}

func TestSimpleboEventMapParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    pipelines.SimpleboEventMap
		wantErr string
	}{
		{"", pipelines.DefaultSimpleboEventMap(), ""},
		{" 1=lead_created , 7=contract_ended", pipelines.SimpleboEventMap{1: "lead_created", 7: "contract_ended"}, ""},
		{"0=lead_created,0=contract_ended", nil, "twice"},
		{"0=lead", nil, "unknown state"},
		{"x=lead_created", nil, "non-negative integer"},
		{"-1=lead_created", nil, "non-negative integer"},
		{"lead_created", nil, "want code=state"},
	} {
		got, err := pipelines.ParseSimpleboEventMap(tc.in)
		if tc.wantErr != "" {
			require.ErrorContains(t, err, tc.wantErr, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		require.Equal(t, tc.want, got, "%q", tc.in)
	}
	require.Equal(t, "0=lead_created,1=service_activated,2=contract_ended,3=billing_started,4=switched_to_free", pipelines.DefaultSimpleboEventMap().String())
}

// A table that parses writes back to itself.
func FuzzSimpleboEventMap(f *testing.F) {
	f.Add("0=lead_created,1=service_activated")
	f.Add(pipelines.DefaultSimpleboEventMap().String())
	f.Add("9=contract_ended, 3 = billing_started")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := pipelines.ParseSimpleboEventMap(s)
		if err != nil {
			return
		}
		again, err := pipelines.ParseSimpleboEventMap(m.String())
		if err != nil {
			t.Fatalf("%q parsed, its String %q does not: %v", s, m.String(), err)
		}
		if !reflect.DeepEqual(m, again) {
			t.Fatalf("%q: %v, then %v", s, m, again)
		}
	})
}

// The dedupe records of events older than SimpleboSeenKeep are pruned; an old event sent again
// after that changes nothing (stale against the client's state), a recent one is still a duplicate.
func TestPruneSimpleboSeen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	var pub publishedTo
	m, err := pipelines.ParseSimpleboEventMap("")
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	stage := &pipelines.SimpleboStateStage{Store: st, Pub: &pub, Map: m,
		Metrics: pipelines.NewSimpleboMetrics(reg, st), Log: slogDiscard(), Now: func() time.Time { return now }}
	verdicts := func(v string) float64 {
		n := 0.0
		for _, state := range []string{pipelines.SimpleboLeadCreated, pipelines.SimpleboServiceActivated} {
			c, _ := gathered(t, reg, "passerelle_simplebo_state_events_total", map[string]string{"state": state, "verdict": v})
			n += c
		}
		return n
	}
	handle := func(body string, received time.Time) {
		t.Helper()
		msg := message.NewMessage(watermill.NewUUID(), []byte(body))
		msg.Metadata.Set(pipelines.MetaReceivedAt, received.Format(time.RFC3339Nano))
		_, err := stage.Handle(msg)
		require.NoError(t, err)
	}
	created := `{"event_type":"0","client_id":"c1","email":"a@example.fr","lead_creation_date":"2026-08-20"}`
	activated := `{"event_type":"1","client_id":"c1","email":"a@example.fr","lead_creation_date":"2026-08-20","service_starting_date":"2026-11-24"}`
	handle(created, now.Add(-100*24*time.Hour))
	handle(activated, now.Add(-10*24*time.Hour))
	require.Len(t, pub.msgs, 2)

	n, err := pipelines.PruneSimpleboSeen(ctx, st, now.Add(-pipelines.SimpleboSeenKeep))
	require.NoError(t, err)
	require.Equal(t, 1, n, "the 100-day-old record only")
	n, err = pipelines.PruneSimpleboSeen(ctx, st, now.Add(-pipelines.SimpleboSeenKeep))
	require.NoError(t, err)
	require.Zero(t, n)

	handle(created, now)   // its record is gone: applied again, and found stale
	handle(activated, now) // still recorded: a duplicate
	require.Len(t, pub.msgs, 2, "nothing published again")
	require.Equal(t, 1.0, verdicts("stale"))
	require.Equal(t, 1.0, verdicts("duplicate"))
	c, ok, err := pipelines.LoadSimpleboClient(ctx, st, "c1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, pipelines.SimpleboServiceActivated, c.State)
}
