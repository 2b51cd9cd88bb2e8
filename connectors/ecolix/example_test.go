package ecolix_test

import (
	"context"
	"fmt"
	"time"

	"github.com/passerelle/passerelle/connectors/ecolix"
	"github.com/passerelle/passerelle/connectors/ecolix/ecolixsim"
)

// An incremental pull: the cursor is kept only once the records are safely handled, so a failed
// pull or a crash before that pulls the same records again, and a later pull only what changed.
func ExampleClient_Pull() {
	sim, err := ecolixsim.Start(ecolixsim.SimConfig{PerMinute: 600})
	if err != nil {
		panic(err)
	}
	defer sim.Close()
	from := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	if _, err := sim.Generate("commandes", 5, from, 2); err != nil {
		panic(err)
	}

	budget := ecolix.NewBudget(600) // one budget for every resource and the import
	c, err := ecolix.New(ecolix.Config{BaseURL: sim.URL(), APIKey: sim.APIKey()}, budget, nil)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	var cur ecolix.Cursor // loaded from the store in the daemon
	recs, cur, err := c.Pull(ctx, "commandes", cur)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(recs), "new; cursor at", cur.Since.UTC().Format(time.TimeOnly), cur.SeenIDs)

	recs, _, err = c.Pull(ctx, "commandes", cur)
	if err != nil {
		panic(err)
	}
	fmt.Println(len(recs), "new")
	// Output:
	// 5 new; cursor at 09:00:02 [5]
	// 0 new
}
