package blob

import (
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/kinds"
)

// refKinds are the card kinds whose body fields can name blobs, and the
// fields that do: a bundle card's hash, a grant's or observation's bundle, a
// placement's bundle and state, a handoff's bundle and state.
var refKinds = map[string][]string{
	card.KindBundle:   {"hash"},
	card.KindGrant:    {"bundle"},
	card.KindObserve:  {"bundle"},
	"placement":       {"bundle", "state"},
	kinds.KindHandoff: {"bundle", "state"},
}

// Refs lists the blobs a card names: the fields of refKinds in its body (a
// 32-byte byte string each), and the content_hash of a card that is not
// sealed (a sealed card's content_hash names its inline payload). A body
// that does not decode names nothing. This is the one rule for both
// entitlement (a peer may have a blob when it may see a card that names it)
// and GC (a blob no stored card names is collected).
func Refs(c *card.Card) []Hash {
	var out []Hash
	if ch := c.ContentHash(); len(ch) == 32 && c.PolicyRef() == nil {
		out = append(out, Hash(ch))
	}
	fields := refKinds[c.Kind()]
	if len(fields) == 0 || c.PolicyRef() != nil || len(c.Body()) == 0 {
		return out
	}
	var body map[string]any
	if canon.Unmarshal(c.Body(), &body) != nil {
		return out
	}
	for _, f := range fields {
		if b, ok := body[f].([]byte); ok && len(b) == 32 {
			out = append(out, Hash(b))
		}
	}
	return out
}
