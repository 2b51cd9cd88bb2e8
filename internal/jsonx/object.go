package jsonx

// Object calls fn with each member of the JSON object raw, in order: the key's bytes between its
// quotes and the value's bytes as written. It reports true only when raw is a valid JSON object
// (whitespace around it allowed) whose keys hold no escape, having checked the whole document
// first, so fn never sees a member of an invalid one. Anything else returns false without calling
// fn: the caller falls back on encoding/json, which also produces the error. Values are checked
// as encoding/json checks them (invalid UTF-8 inside strings is accepted, as it is there) and
// nesting deeper than 64 levels is left to encoding/json.
func Object(raw []byte, fn func(key, value []byte)) bool {
	v := validator{cursor{raw: raw}}
	v.skipSpace()
	if v.pos >= len(raw) || raw[v.pos] != '{' {
		return false
	}
	start := v.pos
	if !v.value() {
		return false
	}
	end := v.pos
	if v.skipSpace(); v.pos != len(raw) {
		return false
	}
	// Valid: walk the members again, knowing every step succeeds.
	w := validator{cursor{raw: raw[:end], pos: start + 1}}
	for {
		w.skipSpace()
		if raw[w.pos] == '}' {
			return true
		}
		keyStart := w.pos + 1
		if !w.str() {
			return false
		}
		key := raw[keyStart : w.pos-1]
		for _, b := range key {
			if b == '\\' {
				return false
			}
		}
		w.skipSpace()
		w.pos++ // ':'
		w.skipSpace()
		valueStart := w.pos
		w.value()
		fn(key, raw[valueStart:w.pos])
		w.skipSpace()
		if raw[w.pos] == ',' {
			w.pos++
		}
	}
}

// cursor is a position in a JSON document, shared by Canonical's and Object's readers.
type cursor struct {
	raw   []byte
	pos   int
	depth int
}

func (c *cursor) skipSpace() {
	for c.pos < len(c.raw) {
		switch c.raw[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// skipLiteral moves past lit if the document holds it at pos.
func (c *cursor) skipLiteral(lit string) bool {
	if len(c.raw)-c.pos < len(lit) || string(c.raw[c.pos:c.pos+len(lit)]) != lit {
		return false
	}
	c.pos += len(lit)
	return true
}

// validator checks one JSON value at pos and moves past it.
type validator struct{ cursor }

func (v *validator) value() bool {
	if v.pos >= len(v.raw) {
		return false
	}
	switch c := v.raw[v.pos]; {
	case c == '{':
		return v.container('}', true)
	case c == '[':
		return v.container(']', false)
	case c == '"':
		return v.str()
	case c == 't':
		return v.skipLiteral("true")
	case c == 'f':
		return v.skipLiteral("false")
	case c == 'n':
		return v.skipLiteral("null")
	case c == '-' || (c >= '0' && c <= '9'):
		end, ok := numberEnd(v.raw, v.pos)
		v.pos = end
		return ok
	}
	return false
}

// container checks an object (members) or an array from its opening bracket.
func (v *validator) container(closing byte, members bool) bool {
	if v.depth++; v.depth > maxDepth {
		return false
	}
	defer func() { v.depth-- }()
	v.pos++
	v.skipSpace()
	if v.pos < len(v.raw) && v.raw[v.pos] == closing {
		v.pos++
		return true
	}
	for {
		if members {
			if v.pos >= len(v.raw) || v.raw[v.pos] != '"' || !v.str() {
				return false
			}
			v.skipSpace()
			if v.pos >= len(v.raw) || v.raw[v.pos] != ':' {
				return false
			}
			v.pos++
			v.skipSpace()
		}
		if !v.value() {
			return false
		}
		v.skipSpace()
		if v.pos >= len(v.raw) {
			return false
		}
		switch v.raw[v.pos] {
		case ',':
			v.pos++
			v.skipSpace()
		case closing:
			v.pos++
			return true
		default:
			return false
		}
	}
}

// str checks a string from its opening quote: no control character, valid escapes.
func (v *validator) str() bool {
	for i := v.pos + 1; i < len(v.raw); i++ {
		switch c := v.raw[i]; {
		case c == '"':
			v.pos = i + 1
			return true
		case c < 0x20:
			return false
		case c == '\\':
			i++
			if i >= len(v.raw) {
				return false
			}
			switch v.raw[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(v.raw) {
					return false
				}
				for _, h := range v.raw[i+1 : i+5] {
					if !isHex(h) {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// numberEnd returns where the JSON number starting at raw[i] ends, and whether it is one:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func numberEnd(raw []byte, i int) (int, bool) {
	if i < len(raw) && raw[i] == '-' {
		i++
	}
	switch {
	case i < len(raw) && raw[i] == '0':
		i++
	case i < len(raw) && raw[i] >= '1' && raw[i] <= '9':
		i = digitsEnd(raw, i+1)
	default:
		return i, false
	}
	if i < len(raw) && raw[i] == '.' {
		j := digitsEnd(raw, i+1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(raw) && (raw[i] == 'e' || raw[i] == 'E') {
		i++
		if i < len(raw) && (raw[i] == '+' || raw[i] == '-') {
			i++
		}
		j := digitsEnd(raw, i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func digitsEnd(raw []byte, i int) int {
	for i < len(raw) && raw[i] >= '0' && raw[i] <= '9' {
		i++
	}
	return i
}
