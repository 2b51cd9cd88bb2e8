// Package pipelines is where systems meet: each file wires one pipeline — which source feeds which
// transforms and sinks, on which topics — as Watermill router handlers, with the middleware stack
// and the per-stage metrics defined once here. Connectors and transforms know nothing of each other;
// the narrow interfaces a pipeline needs from them are declared beside the pipeline.
package pipelines
