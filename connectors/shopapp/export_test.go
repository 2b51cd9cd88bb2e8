package shopapp

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// What the external tests (package shopapp_test, which may import the simulator) read of the
// package's insides.
var RefreshAfter = refreshAfter

const (
	RenewInitial      = renewInitial
	RenewExpiry       = renewExpiry
	RenewUnauthorized = renewUnauthorized
)

func (m *Metrics) Renewals() *prometheus.CounterVec { return m.renewals }
func (m *Metrics) Calls() *prometheus.CounterVec    { return m.calls }
func (m *Metrics) Renewal(reason string)            { m.renewal(reason) }
func (m *Metrics) Call(endpoint, code string)       { m.call(endpoint, code) }

// SetClock moves the client's clock, to age its token.
func SetClock(c *Client, now func() time.Time) { c.now = now }
