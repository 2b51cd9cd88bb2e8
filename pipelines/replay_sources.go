package pipelines

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/passerelle/passerelle/connectors/ecolix"
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
			if err := in.AcceptEvent(ctx, ev); err != nil {
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
