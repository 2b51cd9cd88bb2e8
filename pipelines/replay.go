package pipelines

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nuid"

	"github.com/passerelle/passerelle/internal/broker"
	"github.com/passerelle/passerelle/internal/journal"
	"github.com/passerelle/passerelle/transforms"
)

// Metadata of the journal and replay.
const (
	// MetaReplay marks a leads.received message published by a replay: the journal stage skips
	// it, since what it carries is already in the journal or in the file it was read from.
	MetaReplay = "replay"
	// MetaVia says how a received record came in when it was not the source's push: "reconcile"
	// for the Ici Formation reconciliation. The journal keeps it.
	MetaVia = "via"
)

// Stages a replay can start at: "received" runs every stage (decode, dedupe, normalise,
// deliver), "normalized" publishes the normalised lead past the normalize stage's dedupe.
const (
	StageReceived   = "received"
	StageNormalized = "normalized"
)

// JournalAppender appends entries and returns once they are on disk.
type JournalAppender interface {
	Append(ctx context.Context, entries ...journal.Entry) error
}

// JournalStage is the leads.journal stage: a consumer of leads.received of its own, beside
// leads.normalize, appending each record as received to the journal. It runs off the webhook's
// path: the webhook answers once the broker holds the lead, whatever the disk does here.
type JournalStage struct {
	Journal JournalAppender
}

// Handle appends the records of msg (one, or a batch) in one call. A failed append is retried by
// the broker: a redelivery after a partial write journals a record twice, which a replay dedupes
// by event id.
func (s *JournalStage) Handle(msg *message.Message) ([]*message.Message, error) {
	items, err := broker.Unbatch(msg)
	if err != nil {
		return nil, Permanent(err)
	}
	entries := make([]journal.Entry, 0, len(items))
	for _, it := range items {
		if it.Metadata.Get(MetaReplay) != "" {
			continue
		}
		// An unreadable time journals the record at now rather than losing it.
		at, _ := time.Parse(time.RFC3339Nano, it.Metadata.Get(MetaReceivedAt))
		e := journal.Entry{Source: it.Metadata.Get(MetaSource), ReceivedAt: at, Body: journalBody(it.Payload)}
		if via := it.Metadata.Get(MetaVia); via != "" {
			e.Metadata = map[string]string{MetaVia: via}
		}
		entries = append(entries, e)
	}
	if len(entries) == 0 {
		return nil, nil
	}
	if err := s.Journal.Append(msg.Context(), entries...); err != nil {
		if errors.Is(err, journal.ErrBadSource) {
			return nil, Permanent(err)
		}
		return nil, fmt.Errorf("journal: %w", err)
	}
	return nil, nil
}

// journalBody keeps a JSON body as JSON and any other bytes as a JSON string.
func journalBody(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	return journal.StringBody(b)
}

// AddJournal adds the leads.journal stage.
func AddJournal(ctx context.Context, w Wiring, j JournalAppender) error {
	s := &JournalStage{Journal: j}
	// Appends are synced one gzip member per call: several consumers at once keep up with
	// bursts, each batch still one write.
	return w.handlerWith(ctx, "leads.journal", TopicLeadsReceived, "", s.Handle, SubscribeOptions{Subscribers: 4})
}

// AddSimpleboJournal adds the simplebo.journal stage: the JournalStage on simplebo.received,
// journaling each webhook event as the ingest stored it (its fields as a JSON object, which
// `passerelle replay` decodes as a webhook body), except those a replay published.
func AddSimpleboJournal(ctx context.Context, w Wiring, j JournalAppender) error {
	s := &JournalStage{Journal: j}
	return w.handlerWith(ctx, "simplebo.journal", TopicSimpleboReceived, "", s.Handle, SubscribeOptions{})
}

// ReplayRecord is one record to replay: as received, from a journal or a partner's file.
type ReplayRecord struct {
	Source string `json:"source"`
	// ReceivedAt is when it was first received (a journal entry's); zero stamps it with the
	// replay's time, as the webhook stamps what it receives.
	ReceivedAt time.Time       `json:"received_at,omitzero"`
	Body       json.RawMessage `json:"body"`
}

// Replay outcomes, counted per record.
const (
	ReplayPublished = "published"
	// ReplayRejected: the source's decoder or the normaliser refuses the record, as it refuses a
	// live one (the webhook's 400).
	ReplayRejected = "rejected"
	// ReplayDuplicate: an earlier record of the same run had the same event id.
	ReplayDuplicate = "duplicate"
	// ReplayNearDuplicate: an earlier record of the same run had the same dedupe key (contact,
	// formation, id_client) inside the dedupe window.
	ReplayNearDuplicate = "near_duplicate"
	// ReplayMalformed: a line that is not a record at all (not JSON, not a journal line).
	ReplayMalformed = "malformed"
)

// ErrUnknownSource is a replay of a source no decoder is wired for.
var ErrUnknownSource = errors.New("unknown lead source")

// CheckReplay decodes and normalises r as the normalize stage would, without publishing: the
// lead it gives carries the event id a live delivery of the same body gets. An error is the
// record's rejection (ErrUnknownSource for a source with no decoder).
func (s LeadSources) CheckReplay(r ReplayRecord, now time.Time) (transforms.Lead, error) {
	decode, ok := s[r.Source]
	if !ok {
		return transforms.Lead{}, fmt.Errorf("%w %q", ErrUnknownSource, r.Source)
	}
	in, err := decode(r.Body)
	if err != nil {
		return transforms.Lead{}, err
	}
	at := r.ReceivedAt
	if at.IsZero() {
		at = now
	}
	return transforms.NormalizeLead(in, at.UTC())
}

// CheckReplayAll checks recs as CheckReplay does, on up to workers goroutines: leads[i] and
// errs[i] are recs[i]'s.
func (s LeadSources) CheckReplayAll(recs []ReplayRecord, now time.Time, workers int) ([]transforms.Lead, []error) {
	leads, errs := make([]transforms.Lead, len(recs)), make([]error, len(recs))
	workers = max(1, min(workers, len(recs)/64)) // small chunks are not worth a goroutine
	per := (len(recs) + workers - 1) / workers
	var wg sync.WaitGroup
	for lo := 0; lo < len(recs); lo += per {
		hi := min(lo+per, len(recs))
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				leads[i], errs[i] = s.CheckReplay(recs[i], now)
			}
		})
	}
	wg.Wait()
	return leads, errs
}

// ReplayDedupe drops, within one replay run, the records the live dedupe would drop were they
// sent one by one: the same event id again, or the same dedupe key with another event id inside
// the window. The normalize stage only sees a key once its first lead is delivered, and a replay
// publishes faster than deliveries commit keys; without this a near-duplicate of one run would
// be delivered. A zero Window compares event ids only, as the live dedupe is then off.
type ReplayDedupe struct {
	Window time.Duration
	ids    map[string]struct{}
	keys   map[string]time.Time
}

// Check returns "" for a record to publish, or ReplayDuplicate or ReplayNearDuplicate, and
// remembers lead.
func (d *ReplayDedupe) Check(lead transforms.Lead) string {
	if d.ids == nil {
		d.ids, d.keys = map[string]struct{}{}, map[string]time.Time{}
	}
	if _, ok := d.ids[lead.EventID]; ok {
		return ReplayDuplicate
	}
	d.ids[lead.EventID] = struct{}{}
	// Any digest of the key's parts does within one run: this is the only call, so that a change
	// of the stored key's form (a keyed digest) changes one line here.
	key := transforms.LeadDedupeDigest(lead)
	if d.Window <= 0 {
		return ""
	}
	if first, ok := d.keys[key]; ok && lead.ReceivedAt.Sub(first) < d.Window {
		return ReplayNearDuplicate
	}
	d.keys[key] = lead.ReceivedAt
	return ""
}

// Replayer publishes replayed records into the leads pipeline, at the stage asked.
type Replayer struct {
	Sources LeadSources
	// Others replay the records of sources that are not lead sources, by source name; they
	// always enter at their source's ingest, whatever the stage asked.
	Others map[string]ReplayFunc
	Pub    ContextPublisher
	Now    func() time.Time
}

// ReplayCounts are a replay call's records by outcome.
type ReplayCounts map[string]int

// Replay checks each record as the ingest would and publishes those that pass, in one publish.
// At StageReceived a record is published to leads.received exactly as the webhook publishes it
// (its body, MetaSource, MetaReceivedAt), marked MetaReplay: the normalize stage derives the
// same event id, and the sink's delivery log skips what was delivered already. At
// StageNormalized the normalised lead goes to leads.normalized with the id as message id, past
// the dedupe (for leads an operator forces through), claiming no dedupe key. Only
// a publish failure is an error; a record's rejection is counted.
func (r *Replayer) Replay(ctx context.Context, recs []ReplayRecord, stage string) (ReplayCounts, error) {
	counts := ReplayCounts{}
	now := r.Now().UTC()
	msgs := make([]*message.Message, 0, len(recs))
	var others map[string][]ReplayRecord
	for _, rec := range recs {
		if _, ok := r.Others[rec.Source]; ok {
			if others == nil {
				others = map[string][]ReplayRecord{}
			}
			others[rec.Source] = append(others[rec.Source], rec)
			continue
		}
		lead, err := r.Sources.CheckReplay(rec, now)
		if err != nil {
			counts[ReplayRejected]++
			continue
		}
		var msg *message.Message
		switch stage {
		case StageReceived, "":
			msg = message.NewMessage(nuid.Next(), message.Payload(rec.Body))
			msg.Metadata.Set(MetaPipeline, PipelineLeads)
			msg.Metadata.Set(MetaSource, rec.Source)
			msg.Metadata.Set(MetaReceivedAt, lead.ReceivedAt.Format(time.RFC3339Nano))
		case StageNormalized:
			msg = message.NewMessage(lead.EventID, lead.AppendJSON(make([]byte, 0, 512+len(lead.Raw))))
			// No dedupe key: the stage that claims keys is skipped, and a forced lead must not
			// make a later one of the same contact a duplicate.
			setMeta(msg, lead.EventID, PipelineLeads, rec.Source, lead.ReceivedAt)
		default:
			return nil, fmt.Errorf("replay: unknown stage %q (want %s or %s)", stage, StageReceived, StageNormalized)
		}
		msg.Metadata.Set(MetaReplay, "1")
		msgs = append(msgs, msg)
	}
	for src, recs := range others {
		c, err := r.Others[src](ctx, recs)
		for k, v := range c {
			counts[k] += v
		}
		if err != nil {
			return counts, err
		}
	}
	if len(msgs) == 0 {
		return counts, nil
	}
	topic, out := TopicLeadsReceived, msgs
	if stage == StageNormalized {
		topic = TopicLeadsNormalized
	} else {
		out = replayBatches(msgs)
	}
	if err := r.Pub.PublishContext(ctx, topic, out...); err != nil {
		return counts, fmt.Errorf("replay: publish %d records to %s: %w", len(msgs), topic, err)
	}
	counts[ReplayPublished] += len(msgs)
	return counts, nil
}

// replayBatchSize is how many replayed records travel in one leads.received message, as the
// webhook's batches do: the normalize stage then makes one store round trip per batch, not per
// record (a replay to a 50 ms CRM went at 0.61 of the engine's ceiling one record a message), and
// batches small enough to keep every CRM subscriber busy.
const replayBatchSize = 32

// replayBatches groups msgs into broker batches of replayBatchSize.
func replayBatches(msgs []*message.Message) []*message.Message {
	out := make([]*message.Message, 0, (len(msgs)+replayBatchSize-1)/replayBatchSize)
	for lo := 0; lo < len(msgs); lo += replayBatchSize {
		chunk := msgs[lo:min(lo+replayBatchSize, len(msgs))]
		if len(chunk) == 1 {
			out = append(out, chunk[0])
			continue
		}
		out = append(out, broker.NewBatch(chunk))
	}
	return out
}

// JournalEventIDs returns the event ids of the journal's entries of source received at or after
// since: what the webhook (or an earlier reconciliation) brought.
func JournalEventIDs(ctx context.Context, r *journal.Reader, dir, source string, since time.Time) (map[string]struct{}, error) {
	ids := map[string]struct{}{}
	err := r.ReadRange(ctx, dir, source, since, time.Time{}, func(e journal.Entry, _ journal.Position) error {
		ids[transforms.EventID(e.Source, e.RawBody())] = struct{}{}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	return ids, nil
}
