package proto

import (
	"bytes"
	"testing"

	"github.com/sublog/sublog/log/canon"
)

func FuzzDecode(f *testing.F) {
	x := ids(f, 2)
	seeds := []*Msg{
		{T: TRanges, V: Version},
		{T: TRanges, V: Version, Ranges: []Range{{Upper: x[0].Bytes(), Mode: ModeFP, FP: make([]byte, 16)}, {Mode: ModeItems, Items: packItem(nil, Head{Author: x[1], Seq: 3})}}},
		{T: TCards, Author: x[0].Bytes(), From: 1, Cards: [][]byte{{0xd2, 0x84}}},
		{T: TWitness, Author: x[0].Bytes(), From: 2, Reply: true, Cards: [][]byte{{1}}},
		{T: TFork, Author: x[1].Bytes(), Proof: []byte{0xa0}},
		{T: TDone},
		{T: TWant, Author: x[0].Bytes(), Seqs: []uint64{1, 2}},
		{T: TCards, Author: x[0].Bytes(), From: 1, Cards: [][]byte{{0xd2, 0x84}, make([]byte, StubSize)}},
	}
	seeds = append(seeds, CardsMsg(x[0], 1, chain(f, 3, 1)), CardsMsg(x[0], 1, chain(f, 2, 300)))
	for _, m := range seeds {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		// Accepted bytes are the one encoding of the message (a compact
		// Cards message decodes into the plain one it stands for).
		shown := m
		var raw Msg
		if canon.Unmarshal(b, &raw) == nil && raw.T == TCardsCompact {
			shown = &raw
		}
		again, err := Encode(shown)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted non-canonical message: %v", err)
		}
		// Neither side's machine panics on it, at any point of a session.
		for _, init := range []bool{false, true} {
			mc := New(Config{Initiator: init, Heads: []Head{{Author: x[0], Seq: 2}}})
			mc.Start()
			mc.Step(m)
			mc.Step(m)
		}
	})
}

func FuzzReadMsg(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0xa0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			if _, _, err := ReadMsg(r); err != nil {
				return
			}
		}
	})
}
