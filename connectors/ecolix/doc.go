// Package ecolix is the Ecolix ERP connector (CONTRACTS.md "Ecolix ERP"): incremental exports of
// clients, devis, commandes, articles and stocks with a cursor per resource, the client import,
// one call budget shared by all of them, and a file inbox for sites that drop CSV exports instead
// of opening the API.
//
// Everything the seed leaves open is our design and configurable where a real server may differ
// (the base URL; the paths follow CONTRACTS.md). The seed's only hard rule is a contractual
// "x calls per minute": every HTTP attempt, retries included, takes a token from the one Budget
// first, and a 429's Retry-After pauses that Budget for every caller.
//
// The connector sits at the edge: pipelines call Client.Pull and Inbox.Scan, keep the Cursor and
// the Processed record, and publish what comes back.
package ecolix
