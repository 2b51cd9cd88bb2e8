// Package transforms holds passerelle's pure data transforms: normalising what
// partners send (phones, emails, postal codes, leads), stable event ids and
// dedupe keys, CSV injection neutralisation, and building the monthly billing
// file.
//
// It sits between the connectors, which decode partner payloads into the input
// types declared here, and the pipelines, which publish and deliver the output.
// Every function is pure: no I/O, no clock reads (times come in as arguments),
// no Watermill, and no import of another passerelle package, so each one is
// covered by table tests and, for parsers, by fuzz tests.
package transforms
