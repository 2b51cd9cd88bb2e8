package ecolix

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// maxPages bounds one pull against a server announcing absurd page counts: 5 million records at
// the largest page size.
const maxPages = 10_000

// Cursor is where an incremental pull of one resource stands: the last date_modification
// received and the ids received at that very instant. The server's modifie_depuis is inclusive
// and dates are whole seconds, so the next pull asks again from Since and drops those ids: a
// record written later in the same second is not lost, and none is received twice.
type Cursor struct {
	Since   time.Time `json:"since"`
	SeenIDs []string  `json:"seen_ids,omitempty"`
}

// Pull fetches every record of resource modified since cur, page by page up to the last page the
// server announces, and returns the new ones (in date_modification order) with the cursor to keep
// once they are safely handled. On any failure it returns no record and the error: the caller
// commits nothing and pulls again from the same cursor.
func (c *Client) Pull(ctx context.Context, resource string, cur Cursor) ([]Record, Cursor, error) {
	var all []Record
	for page := 1; ; page++ {
		if page > maxPages {
			return nil, cur, fmt.Errorf("ecolix: pull %s: more than %d pages", resource, maxPages)
		}
		p, err := c.Export(ctx, resource, cur.Since, page)
		if err != nil {
			return nil, cur, fmt.Errorf("ecolix: pull %s: page %d: %w", resource, page, err)
		}
		all = append(all, p.Records...)
		// "pages" says where to stop, so no call is spent past the last page; an empty page
		// also ends the pull, should the set have shrunk meanwhile.
		if page >= p.Pages || len(p.Records) == 0 {
			break
		}
	}
	fresh, next := cur.Advance(all)
	c.m.recordsPulled(resource, len(fresh))
	return fresh, next, nil
}

// Advance is the cursor arithmetic of a pull, with no I/O: given what the server sent for
// modifie_depuis = cur.Since, it returns the records not received before, ordered by
// date_modification (ties in the order received, one version per id: the latest), and the cursor
// after them. Records older than Since, or at Since with an id in SeenIDs, are dropped.
func (cur Cursor) Advance(received []Record) ([]Record, Cursor) {
	seen := make(map[string]bool, len(cur.SeenIDs))
	for _, id := range cur.SeenIDs {
		seen[id] = true
	}
	// One version per id: a record edited during a pull may come twice, keep the latest.
	at := make(map[string]int, len(received))
	var fresh []Record
	for _, r := range received {
		if r.Modified.Before(cur.Since) || (r.Modified.Equal(cur.Since) && seen[r.ID]) {
			continue
		}
		if i, ok := at[r.ID]; ok {
			if r.Modified.After(fresh[i].Modified) {
				fresh[i] = r
			}
			continue
		}
		at[r.ID] = len(fresh)
		fresh = append(fresh, r)
	}
	slices.SortStableFunc(fresh, func(a, b Record) int { return a.Modified.Compare(b.Modified) })
	if len(fresh) == 0 {
		return nil, cur
	}

	next := Cursor{Since: fresh[len(fresh)-1].Modified}
	if next.Since.Equal(cur.Since) {
		next.SeenIDs = slices.Clone(cur.SeenIDs)
	}
	for _, r := range fresh {
		if r.Modified.Equal(next.Since) {
			next.SeenIDs = append(next.SeenIDs, r.ID)
		}
	}
	slices.SortFunc(next.SeenIDs, cmp.Compare[string])
	next.SeenIDs = slices.Compact(next.SeenIDs)
	return fresh, next
}
