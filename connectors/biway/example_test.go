package biway_test

import (
	"context"
	"fmt"

	"github.com/passerelle/passerelle/connectors/biway"
	"github.com/passerelle/passerelle/connectors/biway/biwaysim"
	"github.com/passerelle/passerelle/internal/httpclient"
	"github.com/passerelle/passerelle/transforms"
)

// A lead's acknowledgement: the reference is the lead's event id, so sending it again after a
// crash answers the same message id and nobody is messaged twice. A landline never leaves.
func ExampleClient_Submit() {
	sim, err := biwaysim.Start(biwaysim.SimConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sim.Close()
	c, err := biway.New(biway.Config{Mobile: transforms.MobileE164, BaseURL: sim.URL(), APIKey: sim.APIKey()}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	s := biway.Submission{To: "06 12 34 56 78", Modele: "accuse-reception",
		Variables: map[string]string{"prenom": "Camille"}, Reference: "evt_2f6c"}

	first, _ := c.Submit(ctx, s)
	again, _ := c.Submit(ctx, s)
	fmt.Println(first.Statut, first.MessageID == again.MessageID, sim.MessagesTo("+33612345678"))

	_, err = c.Submit(ctx, biway.Submission{To: "01 23 45 67 89", Texte: "Bonjour", Reference: "evt_9a1d"})
	fmt.Println(err)
	fmt.Println(httpclient.IsPermanent(err), sim.Requests())
	// Output:
	// accepte true 1
	// biway: /messenger/submit failed: not a French mobile number (permanent)
	// true 2
}
