// Package crm is passerelle's sink to CRM webhooks: every event is POSTed as JSON to each
// configured endpoint, signed with the Standard Webhooks scheme (see CONTRACTS.md, "CRM
// webhooks (sink)").
//
// It holds the wire types ([Envelope] for the generic format, [HubSpotContact] for the hubspot
// one), and the [Client] that delivers one body to one endpoint and classifies the outcome with
// the outcome table of internal/httpclient ([DeliveryError]: retryable, permanent, or gone). Its
// simulator, a signature-checking endpoint with fault injection, is the crmsim sub-package.
//
// The client retries a few times within a call (the statuses the table retries, honouring
// Retry-After); what is
// still failing after that is the caller's to retry later or dead-letter. The webhook-id is the
// event id, stable across retries and replays, so a receiver can deduplicate.
package crm
