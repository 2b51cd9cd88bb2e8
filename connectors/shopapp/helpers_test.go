package shopapp_test

import (
	"sync"
	"testing"
	"time"

	"github.com/passerelle/passerelle/connectors/shopapp"

	"github.com/passerelle/passerelle/connectors/shopapp/shopappsim"

	"github.com/stretchr/testify/require"

	"github.com/passerelle/passerelle/internal/frtime"
)

// fakeClock is a clock tests move by hand, shared by a simulator and a client.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t *testing.T, paris string) *fakeClock {
	t.Helper()
	at, err := frtime.Parse(paris)
	require.NoError(t, err)
	return &fakeClock{t: at}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start serves a simulator on loopback and builds a client for it: no rate limit and
// millisecond backoffs unless cc says otherwise.
func start(t *testing.T, sc shopappsim.Config, cc shopapp.Config, m *shopapp.Metrics) (*shopappsim.Sim, *shopapp.Client) {
	t.Helper()
	sim, err := shopappsim.Start(sc)
	require.NoError(t, err)
	t.Cleanup(sim.Close)
	cc.BaseURL, cc.ClientID, cc.ClientSecret = sim.URL(), sim.ClientID(), sim.ClientSecret()
	if cc.Rate == 0 {
		cc.Rate = -1
	}
	if cc.RetryWaitMin == 0 {
		cc.RetryWaitMin, cc.RetryWaitMax = time.Millisecond, 5*time.Millisecond
	}
	c, err := shopapp.New(cc, nil, m)
	require.NoError(t, err)
	if sc.Now != nil {
		shopapp.SetClock(c, sc.Now)
	}
	return sim, c
}

// boutique is a valid order creating an online shop.
func boutique(guid string, extra ...string) shopapp.CreateRequest {
	return shopapp.CreateRequest{
		GUID:        guid,
		Prestations: append([]string{"IN-BTQST-S", "IN-BTQZ-AMM"}, extra...),
		Client: shopapp.Customer{
			LastName: "Lefèvre", FirstName: "Chloé", Company: "Atelier Lefèvre", City: "Lyon",
			PostalCode: "69002", Country: "France", Email: "chloe@example.com", Phone: "0611223344",
		},
	}
}

// requireAPIError asserts err is an *shopapp.APIError with that status and route.
func requireAPIError(t *testing.T, err error, status int, route string) *shopapp.APIError {
	t.Helper()
	require.Error(t, err)
	var api *shopapp.APIError
	require.ErrorAs(t, err, &api, "got %T: %v", err, err)
	require.Equal(t, status, api.Status, "status of %v", err)
	require.Equal(t, route, api.Endpoint)
	require.NotEmpty(t, api.Message)
	return api
}
