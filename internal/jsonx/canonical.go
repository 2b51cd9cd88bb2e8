package jsonx

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"unicode/utf8"
)

// maxDepth bounds the recursion of Canonical and Object. Deeper documents are
// left to encoding/json, which allows far more.
const maxDepth = 64

// Canonical appends to dst the canonical form of the single JSON value in raw:
// exactly what decoding raw into an any with encoding/json (UseNumber) and
// encoding it back with an Encoder (SetEscapeHTML(false)) writes, less the
// trailing newline. That is object keys sorted by byte order, the last of
// duplicate keys winning, no insignificant whitespace, numbers as written and
// strings escaped as encoding/json does.
//
// It handles only what it can reproduce with certainty: strings without
// backslashes or control characters, in valid UTF-8 and without U+2028 or
// U+2029 (so their bytes are already what the encoder writes), and nesting up
// to 64 levels. For anything else, syntax errors included, it returns dst
// unchanged and false, and the caller must fall back on encoding/json, which
// also produces the error. Bytes of dst's spare capacity may be overwritten
// either way.
func Canonical(dst, raw []byte) ([]byte, bool) {
	// Member spans live on this stack array unless an object is larger or
	// nested objects hold more at once.
	var scratch [32]member
	c := canonicalizer{cursor: cursor{raw: raw}}
	c.skipSpace()
	out, _, ok := c.value(dst, scratch[:0])
	if !ok {
		return dst, false
	}
	if c.skipSpace(); c.pos != len(raw) {
		return dst, false
	}
	return out, true
}

// member locates one "key":value member of an object in the output: the
// key's opening quote is at start, its closing quote at keyEnd, and the value
// ends at end. prefix holds the key's first 8 bytes, big-endian and padded
// with zeros, so that most comparisons need no memory access: keys hold no
// control characters, so the padding sorts before any real byte.
type member struct {
	prefix             uint64
	start, keyEnd, end int
}

func (m member) key(buf []byte, shift int) []byte {
	return buf[m.start+shift+1 : m.keyEnd+shift]
}

// keyPrefix returns the first 8 bytes of key, big-endian, padded with
// zeros. When the key is followed by at least 8 bytes of buf, those are read
// in one load and masked.
func keyPrefix(buf []byte, start, end int) uint64 {
	n := end - start
	if start+8 <= len(buf) {
		w := binary.BigEndian.Uint64(buf[start:])
		if n >= 8 {
			return w
		}
		return w & ^(^uint64(0) >> (8 * n)) // n == 0 keeps nothing
	}
	var p uint64
	for i, b := range buf[start:end] {
		p |= uint64(b) << (56 - 8*i)
	}
	return p
}

// compareKeys orders a and b by key, as strings.Compare would. It is
// small enough to be inlined into the loops that call it.
func compareKeys(buf []byte, a, b member) int {
	if a.prefix != b.prefix {
		if a.prefix < b.prefix {
			return -1
		}
		return 1
	}
	return compareKeyBytes(buf, a, b)
}

func compareKeyBytes(buf []byte, a, b member) int {
	return bytes.Compare(a.key(buf, 0), b.key(buf, 0))
}

// CanonicalReference is what Canonical reproduces, and what callers fall back on when it declines:
// raw decoded into an any (numbers as json.Number) and encoded back with HTML escaping off, which
// sorts object keys, keeps the last of duplicates and writes numbers as written.
func CanonicalReference(raw []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("canonical json: data after the top-level value")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// canonicalizer reads raw once, from pos. The output and the member spans
// are passed along and returned rather than kept in the struct, so that the
// compiler can leave the callers' buffers on the stack.
type canonicalizer struct{ cursor }

func (c *canonicalizer) literal(dst []byte, ms []member, lit string) ([]byte, []member, bool) {
	if !c.skipLiteral(lit) {
		return dst, ms, false
	}
	return append(dst, lit...), ms, true
}

// number copies a number verbatim, as json.Number is encoded. What follows it is the caller's to
// check, so "01" stops after "0".
func (c *canonicalizer) number(dst []byte) ([]byte, bool) {
	end, ok := numberEnd(c.raw, c.pos)
	if !ok {
		return dst, false
	}
	dst = append(dst, c.raw[c.pos:end]...)
	c.pos = end
	return dst, true
}

// str copies a string, quotes included, when its bytes are exactly what
// the encoder would write for its decoded value: no escape sequence, no
// control character, valid UTF-8 and neither U+2028 nor U+2029, which the
// encoder escapes. Anything else is left to encoding/json.
func (c *canonicalizer) str(dst []byte) ([]byte, bool) {
	raw := c.raw
	for i := c.pos + 1; i < len(raw); {
		// Skip 8 plain bytes at a time, then look at the first one that
		// may not be.
		for i+8 <= len(raw) {
			w := binary.LittleEndian.Uint64(raw[i:])
			if m := specialBytes(w); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(raw) {
			break
		}
		b := raw[i]
		if plainASCII[b] {
			i++
			continue
		}
		if b == '"' {
			dst = append(dst, raw[c.pos:i+1]...)
			c.pos = i + 1
			return dst, true
		}
		if b < utf8.RuneSelf { // control character or backslash
			return dst, false
		}
		r, size := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			return dst, false
		}
		i += size
	}
	return dst, false
}

const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// specialBytes returns, for the 8 bytes of w read little-endian, a mask with
// the high bit of the first byte that is not plain ASCII (a control
// character, '"', '\\' or a byte of a multi-byte rune) set, and no bit set
// below it; zero if all 8 are plain. Bits above the first may be wrong: the
// subtractions borrow past it.
func specialBytes(w uint64) uint64 {
	quote := w ^ (lsb * '"')
	backslash := w ^ (lsb * '\\')
	return ((w - lsb*0x20) | (quote-lsb)&^quote | (backslash-lsb)&^backslash | w) & msb
}

// plainASCII marks the bytes the encoder writes as they are in a string
// and that cannot end it.
var plainASCII = func() (t [256]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// value appends the canonical form of the value at pos. Objects and arrays
// are handled here rather than in functions of their own: with one
// self-recursive function the compiler sees that dst and ms only flow to the
// results, and lets callers keep them on the stack.
func (c *canonicalizer) value(dst []byte, ms []member) ([]byte, []member, bool) {
	if c.pos >= len(c.raw) {
		return dst, ms, false
	}
	var ok bool
	switch b := c.raw[c.pos]; {
	case b == '"':
		dst, ok = c.str(dst)
		return dst, ms, ok
	case b == '-' || '0' <= b && b <= '9':
		dst, ok = c.number(dst)
		return dst, ms, ok
	case b == 't':
		return c.literal(dst, ms, "true")
	case b == 'f':
		return c.literal(dst, ms, "false")
	case b == 'n':
		return c.literal(dst, ms, "null")
	case b != '{' && b != '[':
		return dst, ms, false
	}
	if c.depth++; c.depth > maxDepth {
		return dst, ms, false
	}
	open, closing := len(dst), c.raw[c.pos]+2 // '{'+2 == '}', '['+2 == ']'
	dst = append(dst, c.raw[c.pos])
	c.pos++
	c.skipSpace()
	if c.pos < len(c.raw) && c.raw[c.pos] == closing {
		c.pos++
		c.depth--
		return append(dst, closing), ms, true
	}
	// An object's members are ms[base:]; nested objects push theirs after
	// them and pop them before returning.
	base := len(ms)
	ordered := true // keys strictly increasing so far: nothing to move
	for first := true; ; first = false {
		if !first {
			dst = append(dst, ',')
		}
		var m member
		if closing == '}' {
			if c.pos >= len(c.raw) || c.raw[c.pos] != '"' {
				return dst, ms, false
			}
			m.start = len(dst)
			keyStart := c.pos + 1
			if dst, ok = c.str(dst); !ok {
				return dst, ms, false
			}
			m.keyEnd = len(dst) - 1
			// raw has the key's bytes too, and usually more after them.
			m.prefix = keyPrefix(c.raw, keyStart, c.pos-1)
			if ordered && !first && compareKeys(dst, ms[len(ms)-1], m) >= 0 {
				ordered = false
			}
			c.skipSpace()
			if c.pos >= len(c.raw) || c.raw[c.pos] != ':' {
				return dst, ms, false
			}
			c.pos++
			c.skipSpace()
			dst = append(dst, ':')
		}
		if dst, ms, ok = c.value(dst, ms); !ok {
			return dst, ms, false
		}
		if closing == '}' {
			m.end = len(dst)
			ms = append(ms, m)
		}
		c.skipSpace()
		if c.pos >= len(c.raw) {
			return dst, ms, false
		}
		if b := c.raw[c.pos]; b == ',' {
			c.pos++
			c.skipSpace()
			continue
		} else if b != closing {
			return dst, ms, false
		}
		c.pos++
		break
	}
	if !ordered {
		dst = sortMembers(dst, open+1, ms[base:])
	}
	c.depth--
	return append(dst, closing), ms[:base], true
}

// sortMembers rewrites the members written from dst[from:] in key order,
// keeping only the last of duplicate keys, as a map[string]any would. It
// copies them past the end of dst first, then writes them back from from:
// the result is never longer than what it replaces, so the writes never
// reach the copy.
func sortMembers(dst []byte, from int, ms []member) []byte {
	// Duplicates must stay in input order, the last one after the others.
	if len(ms) <= 16 {
		// Insertion sort is stable, and faster than a generic sort for the
		// dozen fields of a typical payload.
		for i := 1; i < len(ms); i++ {
			m, j := ms[i], i
			for ; j > 0 && compareKeys(dst, ms[j-1], m) > 0; j-- {
				ms[j] = ms[j-1]
			}
			ms[j] = m
		}
	} else {
		// Members are in input order, so start breaks ties the same way.
		slices.SortFunc(ms, func(a, b member) int {
			if c := compareKeys(dst, a, b); c != 0 {
				return c
			}
			return a.start - b.start
		})
	}
	n := len(dst)
	dst = append(dst, dst[from:n]...)
	shift := n - from
	w := from
	for i, m := range ms {
		if i+1 < len(ms) && bytes.Equal(m.key(dst, shift), ms[i+1].key(dst, shift)) {
			continue // a later duplicate wins
		}
		if w > from {
			dst[w] = ','
			w++
		}
		w += copy(dst[w:], dst[m.start+shift:m.end+shift])
	}
	return dst[:w]
}
