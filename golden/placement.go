package golden

import (
	"errors"
	"fmt"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/kinds"
	"github.com/sublog/sublog/reconcile"
)

func init() {
	Register(&Suite{Name: "placement", Generate: genPlacements, Check: checkPlacement})
}

// genPlacements: the reconciler's two kinds, signed by the owner fixture
// alice at seq 1 (a placement of web#0 on bob) and seq 2 (bob declared
// lost), and bodies the decoder refuses (reason bad-body).
func genPlacements() ([]*Vector, error) {
	alice, bob := Fixture("alice"), Fixture("bob")
	var gid, bundle [32]byte
	for i := range gid {
		gid[i], bundle[i] = byte(i), byte(0xb0+i%16)
	}
	place := map[string]any{"service": "web", "owner": alice.ID().Bytes(), "replica": 0, "epoch": 1,
		"host": bob.ID().Bytes(), "bundle": bundle[:], "grant": gid[:]}
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for a, b := range place {
			m[a] = b
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	lost := map[string]any{"host": bob.ID().Bytes(), "last": BaseTS, "lease": 30}
	steps := []struct {
		name, expect, kind string
		seq                uint64
		body               any
		comment            string
	}{
		{"placement", "accept", kinds.KindPlacement, 1, place, "alice places replica 0 of her service web on bob, under bob's grant"},
		{"host-lost", "accept", kinds.KindHostLost, 2, lost, "alice has not heard from bob since BaseTS for over a 30 s lease"},
		{"placement-epoch-zero", "reject bad-body", kinds.KindPlacement, 1, with("epoch", 0), "epochs start at 1"},
		{"placement-short-grant", "reject bad-body", kinds.KindPlacement, 1, with("grant", gid[:31]), "a 31-byte grant ID"},
		{"placement-no-host", "reject bad-body", kinds.KindPlacement, 1, with("host", nil), "no host"},
		{"placement-unknown-field", "reject bad-body", kinds.KindPlacement, 1, with("colour", "red"), "a field placements do not have"},
		{"placement-replica-64", "reject bad-body", kinds.KindPlacement, 1, with("replica", 64), "replicas are 0..63"},
		{"host-lost-lease-zero", "reject bad-body", kinds.KindHostLost, 1, map[string]any{"host": bob.ID().Bytes(), "last": BaseTS, "lease": 0}, "a lease of 0 s"},
	}
	var out []*Vector
	var prev card.ID
	for _, s := range steps {
		p := card.ID{}
		if s.seq == 2 {
			p = prev
		}
		c, err := card.Sign(alice, s.seq, p, card.Draft{Kind: s.kind, TS: BaseTS + int64(s.seq), RawBody: canon.MustMarshal(s.body)}, caps.Builtin())
		if err != nil {
			return nil, err
		}
		if s.seq == 1 && s.expect == "accept" {
			prev = c.ID()
		}
		v := newVector("placement", s.name, s.expect, s.comment)
		v.SetHex("card", c.Bytes())
		if s.expect == "accept" {
			id := c.ID()
			v.SetHex("id", id[:])
		}
		out = append(out, v)
	}
	return out, nil
}

func checkPlacement(v *Vector) error {
	accept, reason, _ := v.Expect()
	b, err := v.Hex("card")
	if err != nil {
		return err
	}
	c, err := card.Decode(b, caps.Builtin())
	if err != nil {
		return fmt.Errorf("%w: %s: card: %v", ErrMismatch, v.ID(), err)
	}
	switch c.Kind() {
	case kinds.KindPlacement:
		_, err = reconcile.DecodePlacement(c)
	case kinds.KindHostLost:
		_, err = reconcile.DecodeHostLost(c)
	default:
		return fmt.Errorf("%w: %s: kind %q", ErrVectorFormat, v.ID(), c.Kind())
	}
	if !accept {
		if err == nil {
			return fmt.Errorf("%w: %s: accepted, want reject %s", ErrMismatch, v.ID(), reason)
		}
		if reason != "bad-body" || !errors.Is(err, reconcile.ErrBadBody) {
			return fmt.Errorf("%w: %s: refused for %v, want %s", ErrMismatch, v.ID(), err, reason)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMismatch, v.ID(), err)
	}
	want, err := v.Hex("id")
	if err != nil {
		return err
	}
	if id := c.ID(); string(id[:]) != string(want) {
		return fmt.Errorf("%w: %s: card ID %x, want %x", ErrMismatch, v.ID(), id[:], want)
	}
	return nil
}
