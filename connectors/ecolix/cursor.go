package ecolix

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"
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
//
// The API pages by offset with no snapshot: a record edited while a pull runs moves to the end of
// the set and may pull an unedited one back across a page boundary already read, and that record
// is then missed until it is edited again. Pull keeps the window small (pages fetched back to
// back) and counts the pulls where it may have happened (an id received twice) in
// passerelle_ecolix_torn_pulls_total, the signal for a resync from an older cursor.
func (c *Client) Pull(ctx context.Context, resource string, cur Cursor) ([]Record, Cursor, error) {
	first, err := c.Export(ctx, resource, cur.Since, 1)
	if err != nil {
		return nil, cur, fmt.Errorf("ecolix: pull %s: page 1: %w", resource, err)
	}
	// "pages" says where to stop, so no call is spent past the last page.
	pages := first.Pages
	if pages > maxPages {
		return nil, cur, fmt.Errorf("ecolix: pull %s: %d pages, more than %d", resource, pages, maxPages)
	}
	byPage := make([][]Record, max(pages, 1))
	byPage[0] = first.Records
	if pages > 1 && len(first.Records) > 0 {
		// The next pages are asked for a few at a time: each still waits for its budget token, but
		// a slow answer no longer delays the next call, so a long pull takes the budget's floor
		// rather than the sum of the server's answer times.
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(c.pullConc)
		for page := 2; page <= pages; page++ {
			g.Go(func() error {
				p, err := c.Export(gctx, resource, cur.Since, page)
				if err != nil {
					return fmt.Errorf("ecolix: pull %s: page %d: %w", resource, page, err)
				}
				byPage[page-1] = p.Records
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return nil, cur, err
		}
	}
	all := slices.Concat(byPage...)
	if torn(all) {
		c.m.tornPull(resource)
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

// torn reports whether an id came twice in one pull: the set moved under the pages.
func torn(recs []Record) bool {
	seen := make(map[string]bool, len(recs))
	for _, r := range recs {
		if seen[r.ID] {
			return true
		}
		seen[r.ID] = true
	}
	return false
}
