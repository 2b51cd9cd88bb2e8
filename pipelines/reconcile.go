package pipelines

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/connectors/iciformation"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/transforms"
)

// PolledLeads lists the leads Ici Formation recorded between two calendar days, both included.
type PolledLeads interface {
	Leads(ctx context.Context, start, end time.Time, loc *time.Location) ([]iciformation.PolledLead, error)
}

// Reconcile results, per lead and per run.
const (
	ReconcileKnown   = "known"   // the webhook (or an earlier run) brought it
	ReconcileMissed  = "missed"  // never received: fed into the pipeline
	ReconcileInvalid = "invalid" // no usable contact: the webhook would have refused it too

	RunOK           = "ok"
	RunRetry        = "retry"        // 429, 5xx or a transport failure: tried again sooner
	RunUnauthorized = "unauthorized" // 401 or 403: the key is wrong or revoked
	RunFailed       = "failed"       // anything else: the journal unreadable, a publish failed
)

// ReconcileMetrics count the reconciliation's runs and leads.
type ReconcileMetrics struct {
	runs  *prometheus.CounterVec
	leads *prometheus.CounterVec
	last  prometheus.Gauge
}

// NewReconcileMetrics registers the metrics on reg, every series from zero.
func NewReconcileMetrics(reg prometheus.Registerer) *ReconcileMetrics {
	m := &ReconcileMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "iciformation_reconcile", Name: "runs_total",
			Help: "Reconciliation runs against Ici Formation's polling API, by outcome (ok, retry, unauthorized, failed).",
		}, []string{"outcome"}),
		leads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "passerelle", Subsystem: "iciformation_reconcile", Name: "leads_total",
			Help: "Leads the polling API listed, by result: known (the webhook brought it), missed (never received, fed now), invalid (no usable contact).",
		}, []string{"result"}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "passerelle", Subsystem: "iciformation_reconcile", Name: "last_success_timestamp_seconds",
			Help: "When a reconciliation run last succeeded (Unix time).",
		}),
	}
	reg.MustRegister(m.runs, m.leads, m.last)
	for _, o := range []string{RunOK, RunRetry, RunUnauthorized, RunFailed} {
		m.runs.WithLabelValues(o)
	}
	for _, r := range []string{ReconcileKnown, ReconcileMissed, ReconcileInvalid} {
		m.leads.WithLabelValues(r)
	}
	return m
}

// Reconciler compares the polling API's last day with what was received and feeds the leads the
// webhook missed into leads.received, as the webhook would have: one lead is delivered once
// whichever way it came, since the event id of its body is the same.
type Reconciler struct {
	API PolledLeads
	// Received returns the event ids received since a time (the journal's).
	Received func(ctx context.Context, since time.Time) (map[string]struct{}, error)
	Pub      ContextPublisher
	Metrics  *ReconcileMetrics
	Log      *slog.Logger
	Now      func() time.Time
	// Location sets the API's calendar days (Europe/Paris).
	Location *time.Location
}

// ReconcileResult is one run's leads by result.
type ReconcileResult struct {
	Known, Missed, Invalid int
}

// Once runs one reconciliation of the last day: from yesterday's date to today's.
func (r *Reconciler) Once(ctx context.Context) (ReconcileResult, error) {
	now := r.Now()
	start := now.Add(-24 * time.Hour)
	leads, err := r.API.Leads(ctx, start, now, r.Location)
	if err != nil {
		return ReconcileResult{}, err
	}
	// From the start of the first day asked, with a day of margin for the journal's own days.
	y, m, d := start.In(r.Location).Date()
	since := time.Date(y, m, d, 0, 0, 0, 0, r.Location).Add(-24 * time.Hour)
	seen, err := r.Received(ctx, since)
	if err != nil {
		return ReconcileResult{}, err
	}
	var res ReconcileResult
	var msgs []*message.Message
	for _, l := range leads {
		in, err := DecodeIciFormation(l.Body)
		if err == nil {
			err = transforms.CheckLead(in)
		}
		if err != nil {
			res.Invalid++
			continue
		}
		id := transforms.EventID(SourceIciFormation, l.Body)
		if _, ok := seen[id]; ok {
			res.Known++
			continue
		}
		seen[id] = struct{}{} // the same lead twice in one answer is fed once
		res.Missed++
		msg := message.NewMessage(nuid.Next(), message.Payload(l.Body))
		msg.Metadata.Set(MetaPipeline, PipelineLeads)
		msg.Metadata.Set(MetaSource, SourceIciFormation)
		msg.Metadata.Set(MetaReceivedAt, now.UTC().Format(time.RFC3339Nano))
		msg.Metadata.Set(MetaVia, "reconcile")
		msgs = append(msgs, msg)
	}
	if len(msgs) > 0 {
		if err := r.Pub.PublishContext(ctx, TopicLeadsReceived, msgs...); err != nil {
			return ReconcileResult{}, fmt.Errorf("publish %d missed leads: %w", len(msgs), err)
		}
	}
	return res, nil
}

// Run reconciles now and every interval until ctx is done. A 429 or a server error is tried
// again after its Retry-After (at least a minute, at most the interval); a 401 or 403 waits for
// the next interval, logged as an error each time: a key problem is an operator's, not a loop's.
func (r *Reconciler) Run(ctx context.Context, interval time.Duration) {
	for {
		wait := interval
		res, err := r.Once(ctx)
		if ctx.Err() != nil {
			return
		}
		switch outcome := runOutcome(err); outcome {
		case RunOK:
			r.Metrics.runs.WithLabelValues(RunOK).Inc()
			r.Metrics.last.Set(float64(r.Now().Unix()))
			r.Metrics.leads.WithLabelValues(ReconcileKnown).Add(float64(res.Known))
			r.Metrics.leads.WithLabelValues(ReconcileMissed).Add(float64(res.Missed))
			r.Metrics.leads.WithLabelValues(ReconcileInvalid).Add(float64(res.Invalid))
			if res.Missed > 0 {
				r.Log.Warn("leads missed by the Ici Formation webhook fed from the polling API", "missed", res.Missed, "known", res.Known, "invalid", res.Invalid)
			} else {
				r.Log.Debug("Ici Formation reconciled", "known", res.Known, "invalid", res.Invalid)
			}
		case RunRetry:
			r.Metrics.runs.WithLabelValues(RunRetry).Inc()
			ra, _ := httpclient.RetryAfterOf(err)
			wait = min(interval, max(ra, time.Minute))
			r.Log.Warn("Ici Formation reconciliation failed, trying again", "error", err, "in", wait.String())
		default:
			r.Metrics.runs.WithLabelValues(outcome).Inc()
			r.Log.Error("Ici Formation reconciliation failed", "error", err, "outcome", outcome, "next_in", wait.String())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func runOutcome(err error) string {
	if err == nil {
		return RunOK
	}
	var he *httpclient.Error
	switch {
	case !errors.As(err, &he):
		return RunFailed
	case he.Status == http.StatusUnauthorized || he.Status == http.StatusForbidden:
		return RunUnauthorized
	case he.Outcome == httpclient.Retry:
		return RunRetry
	}
	return RunFailed
}
