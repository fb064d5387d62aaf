package card

import (
	"unicode/utf8"

	"github.com/sublog/sublog/log/canon"
)

// The payload fast path. A card's payload has one canonical encoding: a map
// of at most 16 text keys in the deterministic order (shorter keys first,
// then bytewise), each value in its shortest form, optional fields absent
// when empty. fastPayload reads exactly that layout with no reflection and
// no re-encoding; at the first byte it does not expect (an unknown or
// missing field, a key out of order, a negative ts, a non-shortest head, a
// tag, an indefinite length, invalid UTF-8, an empty optional field, a body
// deeper or longer than it cares to walk) it gives up and the caller takes
// the general path, canon.UnmarshalExact, which refuses with the precise
// reason. So the fast path never accepts what the general path refuses and
// yields the same payload (FuzzPayloadFastPath holds it to that). The body
// is still checked by canon.Check in both paths.

type fieldKind uint8

const (
	fUint fieldKind = iota
	fInt
	fText
	fBytes
	fTexts
	fItem
)

// payloadFields in canonical key order.
var payloadFields = []struct {
	key      string
	kind     fieldKind
	required bool
}{
	{"ts", fInt, true},
	{"net", fText, true},
	{"rid", fBytes, true},
	{"seq", fUint, true},
	{"ver", fUint, true},
	{"body", fItem, false},
	{"kind", fText, true},
	{"prev", fBytes, false},
	{"prov", fTexts, false},
	{"reqs", fTexts, false},
	{"type", fText, true},
	{"author", fBytes, true},
	{"dist_tag", fBytes, false},
	{"policy_ref", fBytes, false},
	{"content_uri", fText, false},
	{"content_hash", fBytes, false},
}

// chead reads a canonical (shortest-form, definite) CBOR head at b[i:]:
// major type, argument, and the offset after the head.
func chead(b []byte, i int) (major byte, arg uint64, next int, ok bool) {
	if i >= len(b) {
		return 0, 0, 0, false
	}
	major, ai := b[i]>>5, b[i]&0x1f
	i++
	switch {
	case ai < 24:
		return major, uint64(ai), i, true
	case ai == 24:
		if i+1 > len(b) || b[i] < 24 {
			return 0, 0, 0, false
		}
		return major, uint64(b[i]), i + 1, true
	case ai == 25:
		if i+2 > len(b) {
			return 0, 0, 0, false
		}
		v := uint64(b[i])<<8 | uint64(b[i+1])
		if v < 256 {
			return 0, 0, 0, false
		}
		return major, v, i + 2, true
	case ai == 26:
		if i+4 > len(b) {
			return 0, 0, 0, false
		}
		v := uint64(b[i])<<24 | uint64(b[i+1])<<16 | uint64(b[i+2])<<8 | uint64(b[i+3])
		if v < 1<<16 {
			return 0, 0, 0, false
		}
		return major, v, i + 4, true
	case ai == 27:
		if i+8 > len(b) {
			return 0, 0, 0, false
		}
		var v uint64
		for k := range 8 {
			v = v<<8 | uint64(b[i+k])
		}
		if v < 1<<32 {
			return 0, 0, 0, false
		}
		return major, v, i + 8, true
	}
	return 0, 0, 0, false // reserved or indefinite
}

// str reads a definite byte or text string of the given major type.
func str(b []byte, i int, major byte) ([]byte, int, bool) {
	m, n, j, ok := chead(b, i)
	if !ok || m != major || n > uint64(len(b)-j) {
		return nil, 0, false
	}
	e := j + int(n)
	return b[j:e:e], e, true
}

// skipItem walks one well-formed data item without tags or indefinite lengths
// and returns the offset after it. depth counts the containers it may still
// enter; floats and simple values are walked only in their head forms (the
// canonical check that follows judges their values).
func skipItem(b []byte, i, depth int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	if b[i]>>5 == 7 { // simple values and floats: their own head rules
		switch ai := b[i] & 0x1f; {
		case ai < 24:
			return i + 1, true
		case ai == 24:
			return i + 2, i+2 <= len(b)
		case ai == 25:
			return i + 3, i+3 <= len(b)
		case ai == 26:
			return i + 5, i+5 <= len(b)
		case ai == 27:
			return i + 9, i+9 <= len(b)
		}
		return 0, false
	}
	m, n, j, ok := chead(b, i)
	if !ok {
		return 0, false
	}
	switch m {
	case 0, 1:
		return j, true
	case 2, 3:
		if n > uint64(len(b)-j) {
			return 0, false
		}
		return j + int(n), true
	case 4, 5:
		if depth == 0 || n > canon.MaxElements {
			return 0, false
		}
		items := n
		if m == 5 {
			items = 2 * n
		}
		for range items {
			if j, ok = skipItem(b, j, depth-1); !ok {
				return 0, false
			}
		}
		return j, true
	}
	return 0, false // tags
}

// fastPayload decodes a payload in its canonical layout, or reports false.
func fastPayload(b []byte) (payload, bool) {
	var p payload
	m, pairs, i, ok := chead(b, 0)
	if !ok || m != 5 || pairs > uint64(len(payloadFields)) {
		return payload{}, false
	}
	seen := uint64(0)
	for _, f := range payloadFields {
		if seen == pairs {
			if f.required {
				return payload{}, false
			}
			continue
		}
		k := len(f.key)
		if i+1+k > len(b) || b[i] != 0x60|byte(k) || string(b[i+1:i+1+k]) != f.key {
			if f.required {
				return payload{}, false
			}
			continue
		}
		i += 1 + k
		seen++
		switch f.kind {
		case fUint, fInt:
			mj, v, j, ok := chead(b, i)
			if !ok || mj != 0 || (f.kind == fInt && v > 1<<63-1) {
				return payload{}, false
			}
			i = j
			switch f.key {
			case "ts":
				p.TS = int64(v)
			case "seq":
				p.Seq = v
			case "ver":
				p.Ver = v
			}
		case fText:
			s, j, ok := str(b, i, 3)
			if !ok || !utf8.Valid(s) || (!f.required && len(s) == 0) {
				return payload{}, false
			}
			i = j
			switch f.key {
			case "net":
				p.Net = string(s)
			case "kind":
				p.Kind = string(s)
			case "type":
				p.Type = string(s)
			case "content_uri":
				p.ContentURI = string(s)
			}
		case fBytes:
			s, j, ok := str(b, i, 2)
			if !ok || (!f.required && len(s) == 0) {
				return payload{}, false
			}
			i = j
			switch f.key {
			case "rid":
				p.RID = s
			case "prev":
				p.Prev = s
			case "author":
				p.Author = s
			case "dist_tag":
				p.DistTag = s
			case "policy_ref":
				p.PolicyRef = s
			case "content_hash":
				p.ContentHash = s
			}
		case fTexts:
			mj, n, j, ok := chead(b, i)
			if !ok || mj != 4 || n == 0 || n > 256 {
				return payload{}, false
			}
			list := make([]string, 0, n)
			for range n {
				s, e, ok := str(b, j, 3)
				if !ok || !utf8.Valid(s) {
					return payload{}, false
				}
				list, j = append(list, string(s)), e
			}
			i = j
			if f.key == "reqs" {
				p.Reqs = list
			} else {
				p.Prov = list
			}
		case fItem:
			// The payload map is one nesting level, so the body may use one
			// less than the decoder allows; stay a level further inside.
			j, ok := skipItem(b, i, canon.MaxNesting-2)
			if !ok {
				return payload{}, false
			}
			p.Body, i = b[i:j:j], j
		}
	}
	if seen != pairs || i != len(b) {
		return payload{}, false
	}
	return p, true
}
