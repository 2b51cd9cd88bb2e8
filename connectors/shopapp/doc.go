// Package shopapp is passerelle's connector to the Shop Application (Cegid) API, where the shops'
// interfaces (sites) and their prestations (setups, subscriptions, options) live. Pipelines poll it
// as a source (interfaces, their status and prestations, for billing and CRM events) and order
// through it as a sink (create an interface, add or cancel prestations).
//
// It holds the wire types, the [Client] (token cached and renewed, retries and a client-side rate
// limit through internal/httpclient), its [Metrics], and [Simulator], an in-memory implementation
// of the whole API with the partner's rules, used by tests, benchmarks and the sandbox.
//
// Where the partner document is silent, this package chose, and the simulator does the same:
//   - an unknown interface key or prestation is a 400 (the document's "route not referenced"), so
//     a 400 on a key does not tell "unknown" from "malformed";
//   - POST /interfaces/{cle}/prestations takes {"prestations": [...]} (the document names no
//     field); the simulator also accepts a bare array;
//   - creation is idempotent on guid, deletion of an interface already deactivated answers its
//     existing date_suppression, and cancelling a prestation with no active occurrence left
//     answers an empty list, so that a retried request does not fail; a reactivation is the
//     exception, as the document has it: once done, asking again is a 400;
//   - the token goes in the Authorization header; the client_id and client_secret in the query
//     of GET /token, as the document shows.
package shopapp
