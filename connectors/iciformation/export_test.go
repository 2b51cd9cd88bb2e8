package iciformation

// DecodeLeadReference exposes the encoding/json path DecodeLead falls back on, so the fuzz test
// can hold the fast path to it.
var DecodeLeadReference = func(body []byte) (Lead, error) { return decodeLeadReference(trimJSONSpace(body)) }
