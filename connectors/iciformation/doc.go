// Package iciformation is passerelle's connector to Ici Formation, the training marketplace that
// pushes one prospect (lead) per HTTP POST to a URL we give them. It is the source of the leads
// pipeline: [NewHandler] authenticates and decodes a delivery into a [Lead] and hands it to an
// [Acceptor] (the pipeline), answering 200 with an empty body only once the lead is durable.
//
// The package also holds the partner's side, for tests, benchmarks and the sandbox: [Sender]
// posts leads the way Ici Formation does, [RandomLead] makes realistic ones and [SeedExample]
// is the example payload of their API document (see CONTRACTS.md, "Ici Formation").
package iciformation
