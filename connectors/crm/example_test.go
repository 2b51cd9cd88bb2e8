package crm_test

import (
	"context"
	"fmt"
	"log"

	"github.com/passerelle/passerelle/connectors/crm"
	"github.com/passerelle/passerelle/connectors/crm/crmsim"
	"github.com/passerelle/passerelle/internal/stdwebhook"
)

func ExampleClient_Send() {
	secret, err := stdwebhook.NewSecret()
	if err != nil {
		log.Fatal(err)
	}
	rcv, err := crmsim.Start(secret)
	if err != nil {
		log.Fatal(err)
	}
	defer rcv.Close()
	// The endpoint fails once; the client retries within the call.
	rcv.SetFault(crmsim.Fault{Mode: crmsim.FaultStatus, Status: 503, Remaining: 1})

	c, err := crm.New(crm.Config{Secret: secret}, nil)
	if err != nil {
		log.Fatal(err)
	}
	res, err := c.Send(context.Background(), rcv.URL()+"/hooks", "evt_42", []byte(`{"type":"lead.created","id":"evt_42"}`))
	switch {
	case crm.IsGone(err):
		fmt.Println("disable the endpoint")
	case crm.IsPermanent(err):
		fmt.Println("dead-letter:", err)
	case err != nil:
		fmt.Println("retry later:", err)
	}
	fmt.Printf("status %d after %d attempts; receiver has %v\n", res.Status, res.Attempts, rcv.UniqueIDs())
	// Output: status 200 after 2 attempts; receiver has map[evt_42:1]
}
