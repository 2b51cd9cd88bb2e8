package pipelines_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/biway"
	"github.com/passerelle/passerelle/connectors/biway/biwaysim"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

func leadMessage(t *testing.T, lead transforms.Lead) *message.Message {
	t.Helper()
	b, err := json.Marshal(lead)
	require.NoError(t, err)
	return message.NewMessage(lead.EventID, b)
}

// biwayFixture starts the Bi-way simulator on now (time.Now when nil), a client of it, and a
// store in a temporary directory.
func biwayFixture(t *testing.T, now func() time.Time) (*biwaysim.Sim, *biway.Client, *store.Store) {
	t.Helper()
	sim, err := biwaysim.Start(biwaysim.SimConfig{Now: now})
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	client, err := biway.New(biway.Config{Mobile: transforms.MobileE164, BaseURL: sim.URL(), APIKey: sim.APIKey(), RetryWaitMax: 10 * time.Millisecond}, nil)
	require.NoError(t, err)
	st := openTestStore(t, t.TempDir())
	t.Cleanup(func() { _ = st.Close() })
	return sim, client, st
}

// A lead arriving on Saturday night waits for Monday's opening instead of being dropped or sent
// at night; once sent, the number gets no second message that day; a replay of the lead sends
// nothing.
func TestBiwayAckWindowCapAndReplay(t *testing.T) {
	t.Parallel()
	clk := newTestClock(parisTime(t, "2026-12-05 21:00")) // a Saturday, after the window
	sim, client, st := biwayFixture(t, clk.Now)
	window, err := pipelines.ParseSendWindow(pipelines.DefaultSendWindow)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	ack := &pipelines.BiwayAck{API: client, Engine: delivery.New(delivery.Config{}, nil), Store: st, Window: window,
		Template: "tpl_ack", Channel: biway.ChannelAuto, MaxPerDay: 1, MaxAge: 24 * time.Hour, Metrics: pipelines.NewBiwayMetrics(reg), Log: slogDiscard(), Now: clk.Now}
	acks := func(outcome string) float64 {
		v, _ := gathered(t, reg, "passerelle_biway_acks_total", map[string]string{"outcome": outcome})
		return v
	}
	handle := func(l transforms.Lead) {
		t.Helper()
		_, err := ack.Handle(leadMessage(t, l))
		require.NoError(t, err)
	}
	a := transforms.Lead{EventID: "ev-a", Phone: "+33612345671", FirstName: "Alice", Course: "Comptabilité", CallbackTime: "matin", ReceivedAt: clk.Now()}
	handle(a)
	handle(transforms.Lead{EventID: "ev-old", Phone: "+33612345672", ReceivedAt: clk.Now().Add(-25 * time.Hour)}) // from the stream's past
	handle(transforms.Lead{EventID: "ev-fixe", Phone: "+33145678901"})
	handle(a) // redelivered
	require.Zero(t, sim.Requests(), "nothing is sent at night")
	require.Equal(t, 1.0, acks(pipelines.AckScheduled))
	require.Equal(t, 1.0, acks(pipelines.AckNoMobile))
	require.Equal(t, 1.0, acks(pipelines.AckDuplicate))
	require.Equal(t, 1.0, acks(pipelines.AckTooOld))

	ctx := context.Background()
	clk.Advance(9 * time.Hour) // Sunday 06:00
	waiting, err := ack.SendDue(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, waiting)
	clk.Advance(24 * time.Hour) // Sunday passes: Monday 06:00
	_, err = ack.SendDue(ctx)
	require.NoError(t, err)
	require.Zero(t, sim.Requests(), "Sunday and Monday before 08:00 are closed")

	clk.Advance(2 * time.Hour) // Monday 08:00: the window opens
	waiting, err = ack.SendDue(ctx)
	require.NoError(t, err)
	require.Zero(t, waiting)
	subs := sim.Submissions()
	require.Len(t, subs, 1)
	require.Equal(t, "ev-a", subs[0].Reference, "the lead's event id is the reference")
	require.Equal(t, "tpl_ack", subs[0].Modele)
	require.Equal(t, map[string]string{"prenom": "Alice", "formation": "Comptabilité", "horaire_rappel": "matin"}, subs[0].Variables)

	_, err = ack.SendDue(ctx) // nothing left
	require.NoError(t, err)
	handle(a) // a replay of the lead after it was sent
	clk.Advance(time.Hour)
	handle(transforms.Lead{EventID: "ev-a2", Phone: "+33612345671", FirstName: "Alice"}) // same number, same day
	require.Equal(t, 1, sim.MessagesTo("+33612345671"))
	require.Equal(t, 1.0, acks(pipelines.AckDailyCap))
	clk.Advance(24 * time.Hour) // Tuesday
	handle(transforms.Lead{EventID: "ev-a3", Phone: "+33612345671", FirstName: "Alice"})
	require.Equal(t, 2, sim.MessagesTo("+33612345671"))
	require.Equal(t, 2.0, acks(pipelines.AckSubmitted))

	st2, err := pipelines.ReadBiwayStatus(ctx, st)
	require.NoError(t, err)
	require.Equal(t, map[string]int{pipelines.AckSubmitted: 2, pipelines.AckDailyCap: 1}, st2.Acks)
	require.Zero(t, st2.Scheduled)

	// A day later the daily counts go; a month later the records too.
	n, err := pipelines.PruneBiway(ctx, st, clk.Now().Add(24*time.Hour), 30*24*time.Hour, window)
	require.NoError(t, err)
	require.Equal(t, 1, n, "Monday's count, not Tuesday's nor the records")
	n, err = pipelines.PruneBiway(ctx, st, clk.Now().Add(31*24*time.Hour), 30*24*time.Hour, window)
	require.NoError(t, err)
	require.Equal(t, 1+3+2, n, "Tuesday's count, three lead records, two submissions")
	st2, err = pipelines.ReadBiwayStatus(ctx, st)
	require.NoError(t, err)
	require.Empty(t, st2.Acks)
}

// A number the partner refuses is recorded, not retried; a partner that is down makes the stage
// fail so the broker redelivers, and the redelivery sends once.
func TestBiwayAckRefusedAndRetried(t *testing.T) {
	t.Parallel()
	sim, client, st := biwayFixture(t, nil)
	window, err := pipelines.ParseSendWindow("00:00-24:00 Europe/Paris")
	require.NoError(t, err)
	ack := &pipelines.BiwayAck{API: client, Engine: delivery.New(delivery.Config{}, nil), Store: st, Window: window,
		Template: "tpl_ack", Channel: biway.ChannelSMS, MaxPerDay: 1, Log: slogDiscard(), Now: time.Now}

	sim.FailNext(3, 503, "") // the call and its two in-call retries
	msg := leadMessage(t, transforms.Lead{EventID: "ev-b", Phone: "+33698765432"})
	_, err = ack.Handle(msg)
	require.Error(t, err, "a partner down fails the stage")
	require.False(t, pipelines.IsPermanent(err))
	_, err = ack.Handle(leadMessage(t, transforms.Lead{EventID: "ev-b", Phone: "+33698765432"}))
	require.NoError(t, err)
	require.Equal(t, 1, sim.MessagesTo("+33698765432"))

	sim.FailNext(1, 400, "")
	_, err = ack.Handle(leadMessage(t, transforms.Lead{EventID: "ev-c", Phone: "+33698765400"}))
	require.NoError(t, err, "a refusal is recorded, not redelivered")
	status, err := pipelines.ReadBiwayStatus(context.Background(), st)
	require.NoError(t, err)
	require.Equal(t, 1, status.Acks[pipelines.AckRefused])
}

// flakyStore fails its next writes of many keys, as a crash between the partner's answer and our
// record would.
type flakyStore struct {
	*store.Store
	fail atomic.Int32
}

func (f *flakyStore) PutStates(ctx context.Context, ns string, kv map[string][]byte, deleted []string) error {
	if f.fail.Add(-1) >= 0 {
		return errors.New("disk full")
	}
	return f.Store.PutStates(ctx, ns, kv, deleted)
}

// The partner answered but our record was not written: the redelivered lead is submitted again
// with the same reference, and the partner, idempotent on it, messages nobody twice.
func TestBiwayAckRedeliveredAfterLostRecord(t *testing.T) {
	t.Parallel()
	sim, client, plain := biwayFixture(t, nil)
	st := &flakyStore{Store: plain}
	window, err := pipelines.ParseSendWindow("00:00-24:00")
	require.NoError(t, err)
	ack := &pipelines.BiwayAck{API: client, Engine: delivery.New(delivery.Config{}, nil), Store: st, Window: window,
		Template: "tpl_ack", MaxPerDay: 1, Log: slogDiscard(), Now: time.Now}
	lead := transforms.Lead{EventID: "ev-lost", Phone: "+33611111111", ReceivedAt: time.Now()}

	st.fail.Store(1)
	_, err = ack.Handle(leadMessage(t, lead))
	require.ErrorContains(t, err, "disk full")
	_, err = ack.Handle(leadMessage(t, lead)) // the broker's redelivery
	require.NoError(t, err)
	_, err = ack.Handle(leadMessage(t, lead)) // and a replay: recorded now, no call
	require.NoError(t, err)
	require.Equal(t, 2, sim.Requests(), "submitted twice, the second answered from the reference")
	require.Equal(t, 1, sim.MessagesTo("+33611111111"), "one message")
	status, err := pipelines.ReadBiwayStatus(context.Background(), st)
	require.NoError(t, err)
	require.Equal(t, map[string]int{pipelines.AckSubmitted: 1}, status.Acks)
}

// gatedSubmitter holds its first submission until open is closed, after saying so on entered.
type gatedSubmitter struct {
	pipelines.BiwaySubmitter
	entered, open chan struct{}
	once          atomic.Bool
}

func (g *gatedSubmitter) Submit(ctx context.Context, s biway.Submission) (biway.SubmitAnswer, error) {
	if g.once.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.open
	}
	return g.BiwaySubmitter.Submit(ctx, s)
}

// gatedLocks holds its next TryLock until open is closed, after saying so on entered.
type gatedLocks struct {
	*store.Store
	entered, open chan struct{}
	armed         atomic.Bool
}

func (g *gatedLocks) TryLock(ctx context.Context, name string) (func(), bool, error) {
	if g.armed.CompareAndSwap(true, false) {
		close(g.entered)
		<-g.open
	}
	return g.Store.TryLock(ctx, name)
}

// Two replicas on one store: a number gets one acknowledgement a day whichever replica handles
// its leads, and a scheduled acknowledgement both replicas' schedulers find is sent once.
func TestBiwayAckOneSendPerNumberAcrossReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newTestClock(parisTime(t, "2026-12-07 10:00")) // a Monday, inside the window
	sim, client, st := biwayFixture(t, clk.Now)
	window, err := pipelines.ParseSendWindow(pipelines.DefaultSendWindow)
	require.NoError(t, err)
	replica := func(api pipelines.BiwaySubmitter, s pipelines.BiwayStore) *pipelines.BiwayAck {
		return &pipelines.BiwayAck{API: api, Engine: delivery.New(delivery.Config{}, nil), Store: s, Window: window,
			Template: "tpl_ack", Channel: biway.ChannelAuto, MaxPerDay: 1, Metrics: pipelines.NewBiwayMetrics(prometheus.NewRegistry()),
			Log: slogDiscard(), Now: clk.Now}
	}
	const number = "+33612345671"
	lead := func(id string) *message.Message {
		return leadMessage(t, transforms.Lead{EventID: id, Phone: number, FirstName: "Alice", ReceivedAt: clk.Now()})
	}

	// Replica A is sending lead 1 when replica B gets lead 2, for the same number: B sends nothing
	// and fails, so the broker redelivers; once A is done, the redelivery finds the day's message.
	gate := &gatedSubmitter{BiwaySubmitter: client, entered: make(chan struct{}), open: make(chan struct{})}
	a, b := replica(gate, st), replica(client, st)
	done := make(chan error, 1)
	go func() { _, err := a.Handle(lead("ev-1")); done <- err }()
	<-gate.entered
	_, err = b.Handle(lead("ev-2"))
	require.ErrorIs(t, err, pipelines.ErrBiwayNumberBusy)
	close(gate.open)
	require.NoError(t, <-done)
	_, err = b.Handle(lead("ev-2")) // redelivered
	require.NoError(t, err)
	require.Equal(t, 1, sim.MessagesTo(number))
	status, err := pipelines.ReadBiwayStatus(ctx, st)
	require.NoError(t, err)
	require.Equal(t, map[string]int{pipelines.AckSubmitted: 1, pipelines.AckDailyCap: 1}, status.Acks)

	// A lead of Saturday night waits for Monday; both schedulers find it due. B has read it as
	// still to send when A sends it: B, taking the number's lock after A, finds it sent.
	clk.Advance(5*24*time.Hour + 11*time.Hour) // Saturday 21:00
	const other = "+33612345673"
	_, err = a.Handle(leadMessage(t, transforms.Lead{EventID: "ev-3", Phone: other, FirstName: "Bob", ReceivedAt: clk.Now()}))
	require.NoError(t, err)
	clk.Advance(35 * time.Hour) // Monday 08:00
	locks := &gatedLocks{Store: st, entered: make(chan struct{}), open: make(chan struct{})}
	locks.armed.Store(true)
	b = replica(client, locks)
	go func() { _, err := b.SendDue(ctx); done <- err }()
	<-locks.entered
	waiting, err := a.SendDue(ctx)
	require.NoError(t, err)
	require.Zero(t, waiting)
	close(locks.open)
	require.NoError(t, <-done)
	require.Equal(t, 1, sim.MessagesTo(other))
	status, err = pipelines.ReadBiwayStatus(ctx, st)
	require.NoError(t, err)
	require.Equal(t, map[string]int{pipelines.AckSubmitted: 2, pipelines.AckDailyCap: 1}, status.Acks, "ev-3 recorded as sent, not capped")
	require.Zero(t, status.Scheduled)
}
