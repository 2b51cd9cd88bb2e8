// Package simplebo is the Simplébo partner ("facturation" partnership, CONTRACTS.md "Simplébo
// partner"): a client for its API (POST /v1/leads asks for a free mock-up, POST /v1/customers
// activates the paid service) and the HTTP handler its client-state webhooks are posted to.
//
// It sits at the edge: pipelines call the Client and give the handler an EventAcceptor; errors
// come back classified by internal/httpclient's outcome table. The simulator of the partner is
// in simplebosim.
package simplebo
