package pipelines

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/shopapp"
	"github.com/passerelle/passerelle/connectors/simplebo"
)

// ReplayFunc replays records of a source that is not a lead source through that source's own
// ingest (the step its webhook or poller publishes with), so that ids, topics and metadata are
// those of a live record. A record's rejection is counted; only a publish failure is an error.
type ReplayFunc func(ctx context.Context, recs []ReplayRecord) (ReplayCounts, error)

// SimpleboReplay replays Simplébo webhook bodies (a form or a JSON object of its fields, as
// testdata/replay/simplebo holds) through in, as the webhook hands them over: the message id is
// SimpleboEventID, so an event already received is dropped by the broker or by the state stage.
func SimpleboReplay(in *SimpleboIngest) ReplayFunc {
	return func(ctx context.Context, recs []ReplayRecord) (ReplayCounts, error) {
		counts := ReplayCounts{}
		for _, rec := range recs {
			ev, err := DecodeSimpleboReplay(rec.Body)
			if err != nil {
				counts[ReplayRejected]++
				continue
			}
			if err := in.accept(ctx, ev, true); err != nil {
				if errors.Is(err, simplebo.ErrInvalidEvent) {
					counts[ReplayRejected]++
					continue
				}
				return counts, fmt.Errorf("replay simplebo: %w", err)
			}
			counts[ReplayPublished]++
		}
		return counts, nil
	}
}

// DecodeSimpleboReplay decodes a Simplébo webhook body as replayed (its content type is not
// kept: a body starting with "{" is JSON, any other a form).
func DecodeSimpleboReplay(body []byte) (simplebo.Event, error) {
	return simplebo.DecodeEvent(simpleboContentType(body), body)
}

// simpleboContentType tells a JSON object from a form body, which is all a journal line keeps.
func simpleboContentType(b []byte) string {
	if b = bytes.TrimLeft(b, " \t\r\n"); len(b) > 0 && b[0] == '{' {
		return "application/json"
	}
	return "application/x-www-form-urlencoded"
}

// EcolixReplayPage is the body of an Ecolix replay record: an export page as the API answers it
// ({"donnees": […]}), with the resource its file was exported from.
type EcolixReplayPage struct {
	Resource string            `json:"ressource"`
	Donnees  []json.RawMessage `json:"donnees"`
}

// EcolixReplay replays saved export pages through p.Publish, as a poll publishes what it pulls:
// the same EcolixEventID, topic and ordering key, client identities recorded and quotes turned
// into provisioning commands. A page that does not decode, or names no known resource, is
// rejected whole (its records count as rejected) as a poll would refuse it.
func EcolixReplay(p *EcolixPoller) ReplayFunc {
	return func(ctx context.Context, recs []ReplayRecord) (ReplayCounts, error) {
		counts := ReplayCounts{}
		for _, rec := range recs {
			var page EcolixReplayPage
			if err := json.Unmarshal(rec.Body, &page); err != nil || !ecolix.KnownResource(page.Resource) {
				counts[ReplayRejected]++
				continue
			}
			decoded, err := ecolix.DecodePage(rec.Body)
			if err != nil {
				counts[ReplayRejected] += max(1, len(page.Donnees))
				continue
			}
			if len(decoded.Records) == 0 {
				continue
			}
			if err := p.Publish(ctx, page.Resource, decoded.Records, OriginReplay, ""); err != nil {
				return counts, fmt.Errorf("replay ecolix %s: %w", page.Resource, err)
			}
			counts[ReplayPublished] += len(decoded.Records)
		}
		return counts, nil
	}
}

// Outcomes of a Shop Application snapshot replay besides published and rejected.
const (
	// ReplayUnchanged: the snapshot equals the stored one, or was applied by an earlier replay.
	ReplayUnchanged = "unchanged"
	// ReplayOlder: the snapshot lacks a prestation or a cancellation the stored one has: it was
	// taken before it, and a snapshot is never applied backwards.
	ReplayOlder = "older"
	// ReplayEvents counts the changes the applied snapshots published.
	ReplayEvents = "events"
)

// lockWait takes the named lock, waiting up to limit for a running poll to end.
func lockWait(ctx context.Context, st SnapshotStore, name string, limit time.Duration) (func(), error) {
	deadline := time.Now().Add(limit)
	for {
		release, ok, err := st.TryLock(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("%s lock: %w", name, err)
		}
		if ok {
			return release, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("%s lock: still held after %s", name, limit)
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// shopAppReplayLine is a replayed snapshot: GET /interfaces/{cle} with its key and its
// prestations' occurrences, as testdata/replay/shopapp holds.
type shopAppReplayLine struct {
	Key string `json:"cle"`
	shopapp.InterfaceDetail
	Prestations []shopapp.PrestationOccurrence `json:"prestations"`
}

// DecodeShopAppSnapshot reads a replayed interface snapshot as the poller would have built it.
func DecodeShopAppSnapshot(body []byte, now time.Time) (InterfaceSnapshot, error) {
	var l shopAppReplayLine
	if err := json.Unmarshal(body, &l); err != nil {
		return InterfaceSnapshot{}, fmt.Errorf("shopapp snapshot: %w", err)
	}
	if l.Key == "" {
		return InterfaceSnapshot{}, errors.New("shopapp snapshot: no cle")
	}
	return interfaceSnapshotOf(l.Key, l.InterfaceDetail, l.Prestations, now), nil
}

// olderThan says whether s was taken before stored: it lacks a prestation stored has, or a
// cancellation. (A status alone cannot tell: an interface may go back to a status.)
func (s InterfaceSnapshot) olderThan(stored InterfaceSnapshot) bool {
	for ref, was := range stored.Prestations {
		ps, ok := s.Prestations[ref]
		if !ok || (was.CancelledAt != nil && ps.CancelledAt == nil) {
			return true
		}
	}
	return false
}

// content is a snapshot's digest over what the partner shows (not when we saw it).
func (s InterfaceSnapshot) content() string {
	b, _ := json.Marshal(struct {
		Key         string
		Status      int
		CreatedAt   time.Time
		DeletionAt  *time.Time
		Prestations map[string]PrestationSnapshot
	}{s.Key, s.Status, s.CreatedAt, s.DeletionAt, s.Prestations})
	sum := sha256.Sum256(b)
	return s.Key + "|" + hex.EncodeToString(sum[:16])
}

// ShopAppReplay replays interface snapshots, in order, through p's diff and publish step, as a
// poll that saw each of them: each is compared with the stored snapshot of its interface, its
// changes published with the poller's ids, and it becomes the stored one. Replaying a history in
// order rebuilds its changes; a snapshot older than the stored one is skipped (ReplayOlder), one
// equal to it or already applied by a replay changes nothing (ReplayUnchanged), so a second
// replay of the same history publishes nothing. It holds the poller's lock while it runs.
func ShopAppReplay(p *ShopAppPoller) ReplayFunc {
	return func(ctx context.Context, recs []ReplayRecord) (ReplayCounts, error) {
		counts := ReplayCounts{}
		release, err := lockWait(ctx, p.Store, "shopapp.poller", 30*time.Second)
		if err != nil {
			return counts, err
		}
		defer release()
		prevRaw, err := p.Store.ListState(ctx, nsShopAppSnapshot)
		if err != nil {
			return counts, fmt.Errorf("load snapshots: %w", err)
		}
		applied, err := p.Store.ListState(ctx, nsShopAppReplayed)
		if err != nil {
			return counts, fmt.Errorf("load replayed snapshots: %w", err)
		}
		for _, rec := range recs {
			snap, err := DecodeShopAppSnapshot(rec.Body, p.Now())
			if err != nil {
				counts[ReplayRejected]++
				continue
			}
			digest := snap.content()
			prev := map[string]InterfaceSnapshot{}
			if raw, ok := prevRaw[snap.Key]; ok {
				var old InterfaceSnapshot
				if err := json.Unmarshal(raw, &old); err != nil {
					return counts, fmt.Errorf("decode snapshot %s: %w", snap.Key, err)
				}
				if _, done := applied[digest]; done || old.content() == digest {
					counts[ReplayUnchanged]++
					continue
				}
				if snap.olderThan(old) {
					counts[ReplayOlder]++
					continue
				}
				prev[snap.Key] = old
			}
			mark := map[string][]byte{digest: []byte("1")}
			n, next, err := p.apply(ctx, prevRaw, prev, map[string]InterfaceSnapshot{snap.Key: snap}, nil, mark)
			if err != nil {
				return counts, fmt.Errorf("replay shopapp %s: %w", snap.Key, err)
			}
			applied[digest] = mark[digest]
			// The stored snapshot is now this one, with the diff's bookkeeping: the next one's base.
			if b, err := json.Marshal(next[snap.Key]); err == nil {
				prevRaw[snap.Key] = b
			}
			counts[ReplayPublished]++
			counts[ReplayEvents] += n
		}
		return counts, nil
	}
}
