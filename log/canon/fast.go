package canon

import (
	"bytes"
	"unicode/utf8"
)

// Bounds within which the fast check decides; beyond them (and for every
// shape it does not know) the general check does.
const (
	fastMaxDepth    = 12
	fastMaxElements = 1024
)

// fastCheck reports whether b is one data item that the general check (a
// decode into generic values, a deterministic re-encode and a byte
// comparison) accepts, without decoding: it walks the bytes of the shapes
// card bodies and sync messages are made of, and answers false for
// everything else, which the general check then decides. Shapes: integers
// (negative ones down to -2^63), byte and text strings (valid UTF-8), arrays,
// maps whose keys are integers or text strings in strictly increasing
// bytewise order of their encodings (so no duplicates), false, true and
// null; every head in its shortest form, lengths definite, at most
// fastMaxDepth levels and fastMaxElements items per array or map. Floats,
// tags, other simple values and other keys always go to the general check.
// It never accepts what the general check refuses (FuzzFastCheck).
func fastCheck(b []byte) bool {
	end, ok := fastItem(b, 0, 1)
	return ok && end == len(b)
}

// fastHead reads the head at i: major type, argument, and where the item's
// content starts; ok is false for a head that is not in its shortest form,
// an indefinite length or reserved additional information.
func fastHead(b []byte, i int) (major byte, arg uint64, next int, ok bool) {
	if i >= len(b) {
		return 0, 0, 0, false
	}
	major, ai := b[i]>>5, b[i]&0x1f
	var n int
	switch {
	case ai < 24:
		return major, uint64(ai), i + 1, true
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	default:
		return 0, 0, 0, false
	}
	if len(b)-i-1 < n {
		return 0, 0, 0, false
	}
	for _, c := range b[i+1 : i+1+n] {
		arg = arg<<8 | uint64(c)
	}
	// Shortest form: the argument needs the width it was given.
	switch n {
	case 1:
		ok = arg >= 24
	case 2:
		ok = arg > 0xff
	case 4:
		ok = arg > 0xffff
	case 8:
		ok = arg > 0xffffffff
	}
	return major, arg, i + 1 + n, ok
}

func fastItem(b []byte, i, depth int) (int, bool) {
	major, arg, j, ok := fastHead(b, i)
	if !ok {
		return 0, false
	}
	switch major {
	case 0:
		return j, true
	case 1:
		return j, arg < 1<<63
	case 2, 3:
		if uint64(len(b)-j) < arg {
			return 0, false
		}
		end := j + int(arg)
		if major == 3 && !utf8.Valid(b[j:end]) {
			return 0, false
		}
		return end, true
	case 4:
		if depth > fastMaxDepth || arg > fastMaxElements {
			return 0, false
		}
		for range arg {
			if j, ok = fastItem(b, j, depth+1); !ok {
				return 0, false
			}
		}
		return j, true
	case 5:
		if depth > fastMaxDepth || arg > fastMaxElements {
			return 0, false
		}
		var prev []byte
		for range arg {
			km, _, _, ok := fastHead(b, j)
			if !ok || (km != 0 && km != 1 && km != 3) {
				return 0, false
			}
			k, ok := fastItem(b, j, depth+1)
			if !ok || (prev != nil && bytes.Compare(b[j:k], prev) <= 0) {
				return 0, false
			}
			prev = b[j:k]
			if j, ok = fastItem(b, k, depth+1); !ok {
				return 0, false
			}
		}
		return j, true
	case 7:
		// false, true, null (one byte each; 0xf8 xx is never one of them)
		return j, j == i+1 && arg >= 20 && arg <= 22
	}
	return 0, false // tags
}
