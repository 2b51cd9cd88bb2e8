package simplebo_test

import (
	"context"
	"fmt"

	"github.com/passerelle/passerelle/connectors/simplebo"
	"github.com/passerelle/passerelle/connectors/simplebo/simplebosim"
	"github.com/passerelle/passerelle/internal/httpclient"
)

// A mock-up request against the simulator; a refusal comes back as a permanent error with the
// partner's text, even though it was answered with HTTP 200.
func ExampleClient_RequestMockup() {
	sim, err := simplebosim.Start(simplebosim.SimConfig{})
	if err != nil {
		panic(err)
	}
	defer sim.Close()
	c, err := simplebo.New(simplebo.Config{
		BaseURL: sim.URL(), Token: sim.Token(), PartnerCode: sim.PartnerCode(), Partner: "LBA",
	}, nil)
	if err != nil {
		panic(err)
	}
	cu := simplebo.Customer{
		ClientID: "54d8b0fad5922248bf2f", Lastname: "Lhermitte", Email: "t@example.com",
		PhoneNumber1: "0182103621", Zipcode: "28000", City: "Chartres", Country: "France",
		Typology: 12, SIRET: "182918291",
	}
	ans, err := c.RequestMockup(context.Background(), cu)
	fmt.Println(ans.RedirectTo, ans.InvalidSIRET, err)

	sim.RejectNext(1, "Client déjà actif")
	_, err = c.Activate(context.Background(), cu)
	fmt.Println(httpclient.OutcomeOf(err), err)
	// Output:
	// https://sites.simplebo.example/54d8b0fad5922248bf2f true <nil>
	// permanent simplebo: POST /v1/customers failed after 1 attempt(s): HTTP 200: "Client déjà actif" (permanent)
}
