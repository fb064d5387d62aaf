package cli

import (
	"testing"

	"github.com/sublog/sublog/log/canon"
)

// FuzzParseDoc: no YAML or JSON input makes append's parser panic, and any
// document it accepts turns into a draft whose body encodes canonically or
// is refused with an error.
func FuzzParseDoc(f *testing.F) {
	for _, s := range []string{
		"kind: note\nmsg: hi\n",
		`{"kind":"note","n":[1,2,{"a":null}]}`,
		"kind: grant\nlimits: {memory: 64Mi}\nreqs: [a, b]\n",
		"kind: note\na: &x 1\nb: *x\n",
		"- 1\n- 2\n",
		"kind: note\n? [a]\n: b\n",
		"kind: note\nt: 2024-01-01T00:00:00Z\nf: 1.5\nbig: 18446744073709551615\nneg: -9223372036854775808\n",
	} {
		f.Add([]byte(s))
	}
	a := &App{}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDoc("fuzz", b)
		if err != nil {
			return
		}
		dr, err := a.draftFor(d)
		if err != nil || dr.Body == nil {
			return
		}
		if enc, err := canon.Marshal(dr.Body); err == nil {
			if err := canon.Check(enc); err != nil {
				t.Fatalf("body encodes non-canonically: %v", err)
			}
		}
	})
}
