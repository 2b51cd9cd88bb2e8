// Package jsonx holds the few JSON primitives the hot paths write by hand, each one producing
// exactly the bytes encoding/json would (with HTML escaping off), so that hand-built documents
// and reflect-built ones never differ.
package jsonx
