// Package faults holds the fault suite (`make test-faults`): tests that run the built passerelle
// binary, as users do, against the faults a production daemon meets — kill -9 under load, a NATS
// node lost from a 3-node JetStream cluster, a replica of three lost with its leader locks. Each
// fault is bounded in time and prints posted, answered 200, delivered, repeats with the same id,
// and lost (which must be 0). The package has no code outside its tests.
package faults
