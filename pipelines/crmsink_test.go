package pipelines_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/delivery"
	"github.com/passerelle/passerelle/internal/stdwebhook"
	"github.com/passerelle/passerelle/internal/store"
	"github.com/passerelle/passerelle/internal/testwait"
	"github.com/passerelle/passerelle/pipelines"
	"github.com/passerelle/passerelle/transforms"
)

// crmHarness is a CRM stage's surroundings: the embedded broker, the real store, a router and a
// simulated CRM receiver that checks signatures.
type crmHarness struct {
	ctx    context.Context
	b      *broker.Broker
	pub    *broker.Publisher
	st     *store.Store
	rcv    *crmsim.Receiver
	reg    *prometheus.Registry
	w      pipelines.Wiring
	router *message.Router
	sink   *pipelines.CRMSink
	secret string
}

// newCRMHarness builds it; the sink, with no in-call retries, sends to rcv under engine's limits.
// Consumers honour SubscribeOptions as the daemon's do; redeliveries come after nak ms.
func newCRMHarness(t *testing.T, engine delivery.Config, nak time.Duration) *crmHarness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	dir := t.TempDir()
	b, pub := openTestBroker(t, dir)
	t.Cleanup(func() { _ = pub.Close(); _ = b.Close() })
	st := openTestStore(t, dir)
	t.Cleanup(func() { _ = st.Close() })
	secret, err := stdwebhook.NewSecret()
	require.NoError(t, err)
	rcv, err := crmsim.Start(secret)
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	client, err := crm.New(crm.Config{Secret: secret, Retries: -1}, nil)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	metrics := pipelines.NewMetrics(reg)
	router, err := pipelines.NewRouter(pipelines.RouterConfig{HandlerTimeout: 20 * time.Second, CloseTimeout: 5 * time.Second}, pub, metrics, watermill.NopLogger{})
	require.NoError(t, err)
	w := pipelines.Wiring{
		Router: router, Pub: pub, Metrics: metrics, Log: slogDiscard(), Now: time.Now,
		Subscribe: func(ctx context.Context, durable, topic string, opts pipelines.SubscribeOptions) (message.Subscriber, error) {
			cc := broker.ConsumerConfig{NakDelay: broker.ExpDelay{Min: nak, Max: 2 * nak}, Subscribers: opts.Subscribers, StartAfter: opts.StartAfter}
			if opts.Ordered {
				cc.MaxAckPending = 1
			}
			return b.NewSubscriber(ctx, durable, topic, cc, watermill.NopLogger{})
		},
	}
	sink := &pipelines.CRMSink{
		Sender: client, Engine: delivery.New(engine, nil), Endpoints: []string{rcv.URL() + "/crm"}, Store: st, MaxAttempts: 10,
		Disabled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "disabled_total"}, []string{"sink"}),
		Log:      slogDiscard(), Now: time.Now,
	}
	return &crmHarness{ctx: ctx, b: b, pub: pub, st: st, rcv: rcv, reg: reg, w: w, router: router, sink: sink, secret: secret}
}

// receiver starts one more CRM receiver that verifies the harness's signatures.
func (h *crmHarness) receiver(t *testing.T) *crmsim.Receiver {
	t.Helper()
	rcv, err := crmsim.Start(h.secret)
	require.NoError(t, err)
	t.Cleanup(rcv.Close)
	return rcv
}

// newRouter replaces the harness's router (the one before is closed by the caller), for a
// restart on the same broker and store.
func (h *crmHarness) newRouter(t *testing.T) {
	t.Helper()
	router, err := pipelines.NewRouter(pipelines.RouterConfig{HandlerTimeout: 20 * time.Second, CloseTimeout: 5 * time.Second}, h.pub, h.w.Metrics, watermill.NopLogger{})
	require.NoError(t, err)
	h.router, h.w.Router = router, router
}

// publishShopApp publishes one interface event per key, in turn, n rounds; it returns the event
// ids in publication order.
func (h *crmHarness) publishShopApp(t *testing.T, tag string, n int, keys ...string) []string {
	t.Helper()
	var ids []string
	for i := range n {
		for _, key := range keys {
			ev := pipelines.ShopAppEvent{Type: pipelines.EventInterfaceStatusChanged, ID: fmt.Sprintf("sa_%s_%s_%d", tag, key, i), InterfaceKey: key, ObservedAt: time.Now().UTC()}
			payload, err := json.Marshal(ev)
			require.NoError(t, err)
			m := message.NewMessage(ev.ID, payload)
			m.Metadata.Set(pipelines.MetaEventID, ev.ID)
			m.Metadata.Set(pipelines.MetaOrderingKey, ev.InterfaceKey)
			require.NoError(t, h.pub.PublishContext(h.ctx, pipelines.TopicShopAppEvents, m))
			ids = append(ids, ev.ID)
		}
	}
	return ids
}

// deliveredOnce is the ids rcv received, in arrival order, requiring each once.
func deliveredOnce(t *testing.T, rcv *crmsim.Receiver) []string {
	t.Helper()
	var order []string
	for _, d := range rcv.Deliveries() {
		order = append(order, d.ID)
	}
	for id, n := range rcv.UniqueIDs() {
		require.Equal(t, 1, n, "event %s delivered %d times", id, n)
	}
	return order
}

// run starts the router once the stages are added.
func (h *crmHarness) run(t *testing.T) {
	t.Helper()
	go func() { _ = h.router.Run(h.ctx) }()
	t.Cleanup(func() { _ = h.router.Close() })
	<-h.router.Running()
}

// Leads travel in batches from the webhook to the CRM stage. Within a batch, a lead the CRM
// refuses for good goes to the dead-letter topic alone while the others are delivered; leads that
// fail for now are requeued one by one and retried on their own; nothing is delivered twice.
func TestLeadBatchesThroughCRM(t *testing.T) {
	t.Parallel()
	// One request at a time, so that the order and the down-endpoint short-circuit are observable.
	h := newCRMHarness(t, delivery.Config{Concurrency: 1}, 50*time.Millisecond)
	ctx, b, pub, st, rcv, reg := h.ctx, h.b, h.pub, h.st, h.rcv, h.reg
	require.NoError(t, pipelines.AddLeads(ctx, h.w, pipelines.LeadsConfig{Sources: pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}, Store: st, DedupeWindow: 24 * time.Hour, CRM: h.sink}))
	h.run(t)

	// publish sends n leads as one batch, the way the webhook's Batcher does, and returns their ids;
	// extra messages go in the batch too.
	publish := func(name string, n int, extra ...*message.Message) []string {
		msgs := extra
		var ids []string
		for i := range n {
			raw := fmt.Appendf(nil, `{"email":"%s-%d@example.com","formation":"Web","id_client":"1"}`, name, i)
			id := transforms.EventID(pipelines.SourceIciFormation, raw)
			m := message.NewMessage(id, raw)
			m.Metadata.Set(pipelines.MetaEventID, id)
			m.Metadata.Set(pipelines.MetaSource, pipelines.SourceIciFormation)
			m.Metadata.Set(pipelines.MetaReceivedAt, time.Now().UTC().Format(time.RFC3339Nano))
			msgs, ids = append(msgs, m), append(ids, id)
		}
		require.NoError(t, pub.PublishContext(ctx, pipelines.TopicLeadsReceived, broker.NewBatch(msgs)))
		return ids
	}
	crmCount := func(outcome string) float64 {
		v, _ := gathered(t, reg, "passerelle_stage_messages_total", map[string]string{"pipeline": "leads", "stage": "crm", "outcome": outcome})
		return v
	}

	// The first lead of the batch is refused with a 400; the two others go through. The batch also
	// holds a lead the normalize stage cannot read, which goes to the dead-letter topic alone.
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusBadRequest, Remaining: 1})
	unreadable := message.NewMessage("unreadable", []byte(`{"email":`))
	unreadable.Metadata.Set(pipelines.MetaEventID, "iciformation_unreadable")
	unreadable.Metadata.Set(pipelines.MetaSource, pipelines.SourceIciFormation)
	unreadable.Metadata.Set(pipelines.MetaReceivedAt, time.Now().UTC().Format(time.RFC3339Nano))
	first := publish("refused", 3, unreadable)
	require.NoError(t, rcv.WaitForUnique(ctx, 2))
	require.Eventually(t, func() bool {
		dls, err := st.DeadLetters(ctx, pipelines.PipelineLeads, true)
		if err != nil || len(dls) != 2 {
			return false
		}
		got := map[string]string{}
		for _, d := range dls {
			got[d.EventID] = d.Topic
		}
		return got[first[0]] == pipelines.TopicLeadsNormalized && got["iciformation_unreadable"] == pipelines.TopicLeadsReceived
	}, 10*time.Second, 20*time.Millisecond, "the refused lead and the unreadable one, each alone, are dead-lettered")
	testwait.For(t, 10*time.Second, "metrics that count records, not batches", func() bool { return crmCount("out") == 2 && crmCount("dead_lettered") == 1 })

	// Two 503s in a row: the endpoint looks down, so the third lead is not tried; all three are
	// requeued one by one, and each still arrives once.
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusServiceUnavailable, Remaining: 2})
	second := publish("retried", 3)
	require.NoError(t, rcv.WaitForUnique(ctx, 5))
	// Once both stages have nothing pending, unacked or awaiting redelivery, no stray delivery can come.
	waitDrained(t, b, "leads.normalize", "leads.crm")
	got := rcv.UniqueIDs()
	for _, id := range append(first[1:], second...) {
		require.Equal(t, 1, got[id], "lead %s delivered once", id)
	}
	require.NotContains(t, got, first[0])
	require.Len(t, rcv.Deliveries(), 5, "nothing delivered twice")
	statuses := map[int]int{}
	for _, a := range rcv.AttemptLog() {
		statuses[a.Status]++
	}
	require.Equal(t, map[int]int{http.StatusOK: 5, http.StatusBadRequest: 1, http.StatusServiceUnavailable: 2}, statuses,
		"two failures in a row stop the batch: the third lead was not tried for nothing")

	// One 503: the lead that got it waits for the redelivery, the others of its batch do not.
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusServiceUnavailable, Remaining: 1})
	third := publish("held", 3)
	require.NoError(t, rcv.WaitForUnique(ctx, 8))
	var order []string
	for _, d := range rcv.Deliveries()[5:] {
		order = append(order, d.ID)
	}
	require.Equal(t, []string{third[1], third[2], third[0]}, order)

	testwait.For(t, 10*time.Second, "8 leads out of the CRM stage", func() bool { return crmCount("out") == 8 })
	require.Equal(t, float64(4), crmCount("failed"), "3 requeued, then 1")
	require.Equal(t, float64(1), crmCount("dead_lettered"))
	dls, err := st.DeadLetters(ctx, pipelines.PipelineLeads, true)
	require.NoError(t, err)
	require.Len(t, dls, 2, "a batch is acked once handled: nothing is dead-lettered twice")
}

// flakyLog is the real store whose delivery-log writes fail while fail > 0, as a full disk makes
// them fail.
type flakyLog struct {
	*store.Store
	fail atomic.Int32
}

func (f *flakyLog) RecordAttempts(ctx context.Context, a []store.Attempt) error {
	if f.fail.Load() > 0 {
		f.fail.Add(-1)
		return errors.New("database or disk is full")
	}
	return f.Store.RecordAttempts(ctx, a)
}

// health records what the sink says of the store.
type health struct{ failed, ok atomic.Int32 }

func (h *health) StoreFailed(error) { h.failed.Add(1) }
func (h *health) StoreOK()          { h.ok.Add(1) }

// A delivery whose log cannot be written is not sent again when its message comes back: the sink
// remembers it sent it, writes the log on the redelivery, and tells the guard the store failed
// then recovered.
func TestUnwrittenDeliveryLogIsNotResent(t *testing.T) {
	t.Parallel()
	h := newCRMHarness(t, delivery.Config{}, 50*time.Millisecond)
	ctx, pub, rcv := h.ctx, h.pub, h.rcv
	st := &flakyLog{Store: h.st}
	st.fail.Store(2)
	hl := &health{}
	h.sink.Store, h.sink.Health, h.sink.Sent = st, hl, pipelines.NewSentCache(100)
	require.NoError(t, pipelines.AddLeads(ctx, h.w, pipelines.LeadsConfig{Sources: pipelines.LeadSources{pipelines.SourceIciFormation: pipelines.DecodeIciFormation}, Store: st, DedupeWindow: 24 * time.Hour, CRM: h.sink}))
	h.run(t)

	raw := []byte(`{"email":"full-disk@example.com","formation":"Web","id_client":"1"}`)
	id := transforms.EventID(pipelines.SourceIciFormation, raw)
	m := message.NewMessage(id, raw)
	m.Metadata.Set(pipelines.MetaSource, pipelines.SourceIciFormation)
	m.Metadata.Set(pipelines.MetaReceivedAt, time.Now().UTC().Format(time.RFC3339Nano))
	require.NoError(t, pub.PublishContext(ctx, pipelines.TopicLeadsReceived, m))

	// The log fails twice, then is written: the delivery shows in it.
	require.Eventually(t, func() bool {
		d, err := h.st.DeliveriesTo(ctx, pipelines.EndpointID(rcv.URL()+"/crm"), []string{id})
		return err == nil && d[id].Delivered
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, 1, rcv.Attempts(), "sent once, though its log failed twice")
	require.Equal(t, int32(2), hl.failed.Load())
	require.Positive(t, hl.ok.Load())
}

// On an ordered topic, each endpoint has a stage of its own: one answering 410 holds only its own
// events, while the other receives every event in order; once enabled, the first receives them all,
// in order, each once.
func TestOrderedTopicEndpointsAreIndependent(t *testing.T) {
	t.Parallel()
	h := newCRMHarness(t, delivery.Config{}, 50*time.Millisecond)
	ctx, up := h.ctx, h.rcv
	gone := h.receiver(t)
	gone.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusGone})
	h.sink.Endpoints = append(h.sink.Endpoints, gone.URL()+"/crm")
	require.NoError(t, pipelines.AddShopApp(ctx, h.w, h.sink, nil, h.st))
	h.run(t)

	ids := h.publishShopApp(t, "indep", 5, "sa-1", "sa-2")
	require.NoError(t, up.WaitForUnique(ctx, len(ids)), "the endpoint that is up is not held back")
	require.Equal(t, ids, deliveredOnce(t, up))
	goneID := pipelines.EndpointID(h.sink.Endpoints[1])
	require.True(t, testwait.Eventually(20*time.Second, func() bool {
		held, err := h.st.HeldEvents(ctx)
		return err == nil && held[goneID] == 1
	}), "the disabled endpoint's first event is held")
	require.Equal(t, 1, gone.Attempts(), "one 410, then nothing sent to a disabled endpoint")
	for _, u := range h.sink.Endpoints {
		stage := strings.TrimPrefix(pipelines.CRMStageName(pipelines.PipelineShopApp, u), pipelines.PipelineShopApp+".")
		_, ok := gathered(t, h.reg, "passerelle_stage_messages_total", map[string]string{"pipeline": pipelines.PipelineShopApp, "stage": stage, "outcome": "in"})
		require.True(t, ok, "stage %s has its series", stage)
	}

	gone.SetFault(crmsim.Fault{})
	require.NoError(t, h.st.EnableEndpoint(ctx, goneID))
	require.NoError(t, gone.WaitForUnique(ctx, len(ids)))
	require.Equal(t, ids, deliveredOnce(t, gone), "once enabled, every event in order")
	require.Equal(t, ids, deliveredOnce(t, up), "and nothing more to the other")
}

// A second endpoint added to an ordered topic's CRM starts where the topic's stage had come: it
// gets what is published from then on, not the topic's history, and the first endpoint receives
// nothing twice.
func TestOrderedTopicEndpointAddedStartsWhereTheStageWas(t *testing.T) {
	t.Parallel()
	h := newCRMHarness(t, delivery.Config{}, 50*time.Millisecond)
	ctx, first := h.ctx, h.rcv
	require.NoError(t, pipelines.AddShopApp(ctx, h.w, h.sink, nil, h.st))
	h.run(t)
	before := h.publishShopApp(t, "before", 3, "sa-1")
	require.NoError(t, first.WaitForUnique(ctx, len(before)))
	waitDrained(t, h.b, "shopapp.crm")
	require.NoError(t, h.router.Close())

	second := h.receiver(t)
	h.sink.Endpoints = append(h.sink.Endpoints, second.URL()+"/crm")
	h.newRouter(t)
	require.NoError(t, pipelines.AddShopApp(ctx, h.w, h.sink, nil, h.st))
	h.run(t)
	after := h.publishShopApp(t, "after", 2, "sa-1")
	require.NoError(t, second.WaitForUnique(ctx, len(after)))
	require.NoError(t, first.WaitForUnique(ctx, len(before)+len(after)))
	require.Equal(t, after, deliveredOnce(t, second), "from where the stage was, not the topic's history")
	require.Equal(t, append(before, after...), deliveredOnce(t, first))
}

// Back from two endpoints to one, the topic's single CRM stage is created where that endpoint's own
// stage was: nothing to read again, and the endpoint receives what follows, each event once.
func TestOrderedTopicBackToOneEndpointStartsWhereItsStageWas(t *testing.T) {
	t.Parallel()
	h := newCRMHarness(t, delivery.Config{}, 50*time.Millisecond)
	ctx, first := h.ctx, h.rcv
	second := h.receiver(t)
	h.sink.Endpoints = append(h.sink.Endpoints, second.URL()+"/crm")
	require.NoError(t, pipelines.AddShopApp(ctx, h.w, h.sink, nil, h.st))
	h.run(t)
	before := h.publishShopApp(t, "two", 3, "sa-1")
	require.NoError(t, first.WaitForUnique(ctx, len(before)))
	require.NoError(t, second.WaitForUnique(ctx, len(before)))
	stages := make([]string, len(h.sink.Endpoints))
	for i, u := range h.sink.Endpoints {
		stages[i] = pipelines.CRMStageName(pipelines.PipelineShopApp, u)
	}
	waitDrained(t, h.b, stages...)
	require.NoError(t, h.router.Close())

	h.sink.Endpoints = h.sink.Endpoints[1:]
	h.newRouter(t)
	require.NoError(t, pipelines.AddShopApp(ctx, h.w, h.sink, nil, h.st))
	bl, err := h.b.Backlog(ctx, pipelines.DurableName("shopapp.crm"))
	require.NoError(t, err)
	require.Zero(t, bl.Messages, "the single stage starts after what the endpoint's own stage had acked")
	h.run(t)
	after := h.publishShopApp(t, "one", 2, "sa-1")
	require.NoError(t, second.WaitForUnique(ctx, len(before)+len(after)))
	require.Equal(t, append(before, after...), deliveredOnce(t, second))
	require.Equal(t, before, deliveredOnce(t, first), "the endpoint no longer listed gets nothing more")
}

// An interface's events reach the CRM in the order they happened, even when the first is refused
// for now and comes back later: its topic is consumed one message at a time, so the second waits.
func TestOrderedEventsKeepTheirOrderAcrossRedelivery(t *testing.T) {
	t.Parallel()
	h := newCRMHarness(t, delivery.Config{}, 200*time.Millisecond)
	ctx, pub, rcv := h.ctx, h.pub, h.rcv
	require.NoError(t, pipelines.AddShopApp(ctx, h.w, h.sink, nil, h.st))
	h.run(t)

	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: http.StatusServiceUnavailable, Remaining: 1})
	var ids []string
	for i, typ := range []string{pipelines.EventInterfaceCreated, pipelines.EventInterfaceStatusChanged, pipelines.EventPrestationAdded} {
		ev := pipelines.ShopAppEvent{Type: typ, ID: fmt.Sprintf("sa_ordered_%d", i), InterfaceKey: "sa-1", ObservedAt: time.Now().UTC()}
		payload, err := json.Marshal(ev)
		require.NoError(t, err)
		m := message.NewMessage(ev.ID, payload)
		m.Metadata.Set(pipelines.MetaEventID, ev.ID)
		m.Metadata.Set(pipelines.MetaOrderingKey, ev.InterfaceKey)
		require.NoError(t, pub.PublishContext(ctx, pipelines.TopicShopAppEvents, m))
		ids = append(ids, ev.ID)
	}
	require.NoError(t, rcv.WaitForUnique(ctx, 3))
	var order []string
	for _, d := range rcv.Deliveries() {
		order = append(order, d.ID)
	}
	require.Equal(t, ids, order, "the first event was refused once and redelivered; the others waited behind it")
	require.Equal(t, 4, rcv.Attempts(), "one 503, then each event once")
}
