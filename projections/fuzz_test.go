package projections

import (
	"bytes"
	"testing"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/card"
)

// FuzzIntentBody feeds arbitrary bytes as an intent card's body: the fold
// must never panic, a refused card must leave the projections unchanged,
// and an accepted one must keep them computable.
func FuzzIntentBody(f *testing.F) {
	w := newWorld(f, "owner", "dev")
	w.intent("owner", "owner", spec(2, "1"))
	good := w.intent("owner", "owner", spec(3, "2"))
	f.Add(good.Body())
	f.Add(canon.MustMarshal(IntentBody{Service: "web", Owner: w.id("owner").Bytes(), Changes: []byte("xx")}))
	f.Add(canon.MustMarshal(map[string]any{"service": "web"}))
	fuzzBody(f, w, card.KindIntent)
}

// FuzzGrantBody does the same for grant bodies, which the projections and
// the executor judge with one check (kinds.GrantBody.Validate).
func FuzzGrantBody(f *testing.F) {
	w := newWorld(f, "owner", "dev")
	w.intent("owner", "owner", spec(2, "1"))
	f.Add(canon.MustMarshal(GrantBody{Service: "web", Owner: w.id("owner").Bytes(), Limits: GrantLimits{Memory: 1 << 20}}))
	f.Add(canon.MustMarshal(GrantBody{Peer: w.id("dev").Bytes(), Caps: []string{"req", "kv"}, Expires: 9}))
	f.Add(canon.MustMarshal(map[string]any{"bundle": make([]byte, 32), "limits": map[string]any{"instances": 65}}))
	fuzzBody(f, w, card.KindGrant)
}

// fuzzBody signs arbitrary bytes as the body of a card of kind after the
// owner's first card: the fold must never panic, a refused card must leave
// the projections unchanged, and Add and Check must agree.
func fuzzBody(f *testing.F, w *world, kind string) {
	base := w.logs[w.id("owner")][:1]
	ref := snapshot(fold(base), now)
	sk := w.ids["owner"]
	prev := base[0].ID()
	f.Fuzz(func(t *testing.T, body []byte) {
		if canon.Check(body) != nil {
			return // card.Sign refuses non-canonical bodies, as Decode does
		}
		c, err := card.Sign(sk, 2, prev, card.Draft{Kind: kind, TS: 1, RawBody: body}, nil)
		if err != nil {
			return
		}
		s := fold(base)
		err = s.Add(c)
		cerr := Check(c)
		if err != nil && cerr == nil {
			t.Fatalf("Add refused (%v) what Check accepts", err)
		}
		v := s.Explain(c.ID(), now)
		if !codeAgrees(v) {
			t.Fatalf("the code %q does not match the verdict %q (%s)", v.Code, v.Verdict, v.Reason)
		}
		if cerr != nil && v.Verdict == "applied" {
			t.Fatalf("Check refused (%v) a card the fold applied", cerr)
		}
		got := snapshot(s, now)
		if cerr != nil && !bytes.Equal(got, ref) {
			t.Fatalf("a refused card (%s: %s) changed the projections", v.Verdict, v.Reason)
		}
		if kind == card.KindIntent && v.Verdict != "applied" && !bytes.Equal(got, ref) {
			t.Fatalf("a card that was not applied (%s: %s) changed the projections", v.Verdict, v.Reason)
		}
	})
}
