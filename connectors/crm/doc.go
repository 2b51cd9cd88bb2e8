// Package crm is passerelle's sink to CRM webhooks: every event is POSTed as JSON to each
// configured endpoint, signed with the Standard Webhooks scheme (see CONTRACTS.md, "CRM
// webhooks (sink)").
//
// It holds the wire types ([Envelope] for the generic format, [HubSpotContact] for the hubspot
// one), the [Client] that delivers one body to one endpoint and classifies the outcome
// ([DeliveryError]: retryable, permanent, or gone), and [Receiver], a signature-checking
// endpoint with fault injection that tests and the sandbox use as the CRM.
//
// The client retries a few times within a call (429 and 5xx, honouring Retry-After); what is
// still failing after that is the caller's to retry later or dead-letter. The webhook-id is the
// event id, stable across retries and replays, so a receiver can deduplicate.
package crm
