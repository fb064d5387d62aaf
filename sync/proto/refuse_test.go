package proto

import (
	"errors"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/canon"
)

func TestRefuseMessage(t *testing.T) {
	m := &Msg{T: TRefuse, Reason: "quota: more than 500 new logs in one session", Retry: 30}
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil || got.Reason != m.Reason || got.Retry != 30 {
		t.Fatalf("%+v %v", got, err)
	}
	// Step hands it back as an error (the session handles it first).
	mc := New(Config{})
	if _, err := mc.Step(got); !errors.Is(err, ErrRefused) {
		t.Fatalf("step: %v", err)
	}
	// Real bad bytes: each refused by the decoder.
	for name, bad := range map[string]*Msg{
		"empty reason":     {T: TRefuse},
		"escape in reason": {T: TRefuse, Reason: "bad \x1b[2J card"},
		"non-ASCII reason": {T: TRefuse, Reason: "caf\u00e9"},
		"reason too long":  {T: TRefuse, Reason: strings.Repeat("x", MaxReason+1)},
		"card fields":      {T: TRefuse, Reason: "x", Author: make([]byte, 32)},
		"reason in done":   {T: TDone, Reason: "x"},
		"retry in cards":   {T: TCards, Author: make([]byte, 32), From: 1, Cards: [][]byte{{1}}, Retry: 1},
	} {
		raw := canon.MustMarshal(bad)
		if _, err := Decode(raw); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decoded (%v)", name, err)
		}
	}
	if CleanReason("a\nb\x00c\u00e9") != "a?b?c??" || CleanReason("") != "refused" || len(CleanReason(strings.Repeat("y", 2000))) != MaxReason {
		t.Fatal("CleanReason")
	}
}
