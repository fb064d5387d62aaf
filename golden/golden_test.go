package golden_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sublog/sublog/golden"
)

var update = flag.Bool("update", false, "rewrite the golden vectors from the generators (review the diff!)")

const dir = "vectors"

func TestGenerateMatchesFiles(t *testing.T) {
	if *update {
		if err := golden.WriteAll(dir); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range golden.Suites() {
		if s.Frozen {
			ents, _ := os.ReadDir(filepath.Join(dir, s.Name))
			if len(ents) == 0 {
				t.Errorf("%s: frozen suite has no vectors (run go test ./golden -update)", s.Name)
			}
			continue
		}
		vs, err := s.Generate()
		if err != nil {
			t.Fatalf("%s: %v", s.Name, err)
		}
		if len(vs) == 0 {
			t.Errorf("%s generates no vectors", s.Name)
		}
		names := map[string]bool{}
		for _, v := range vs {
			name, _ := v.Get("name")
			names[name+".vec"] = true
			p := filepath.Join(dir, s.Name, name+".vec")
			onDisk, err := os.ReadFile(p)
			if err != nil {
				t.Errorf("%s: %v (run go test ./golden -update to create it)", p, err)
				continue
			}
			if string(onDisk) != string(v.Encode()) {
				t.Errorf("%s: the generator no longer produces the frozen vector; if the change is intended, run go test ./golden -update and review the diff", p)
			}
		}
		ents, _ := os.ReadDir(filepath.Join(dir, s.Name))
		for _, e := range ents {
			if !names[e.Name()] {
				t.Errorf("%s/%s: stale vector no generator produces", s.Name, e.Name())
			}
		}
	}
}

func TestFilesPassTheirCheckers(t *testing.T) {
	res, err := golden.CheckDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	rejects := 0
	for _, r := range res {
		if !r.OK {
			t.Errorf("%s: %s", r.Path, r.Err)
		}
		if strings.Contains(r.Path, "reject") {
			rejects++
		}
	}
	if rejects == 0 {
		t.Error("no negative vectors checked")
	}
}

// TestCheckersCatchTampering makes sure a checker can fail: every accept
// vector with a hex field is tampered with and must then be refused.
func TestCheckersCatchTampering(t *testing.T) {
	vs, _, err := golden.LoadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	tampered := 0
	for _, v := range vs {
		if e, _ := v.Get("expect"); e != "accept" {
			continue
		}
		for i, f := range v.Fields {
			if f.Key != "card" && f.Key != "public" && f.Key != "proof" && f.Key != "spec" {
				continue
			}
			b := []byte(f.Value)
			if b[len(b)/2] == '0' {
				b[len(b)/2] = '1'
			} else {
				b[len(b)/2] = '0'
			}
			w := *v
			w.Fields = append([]golden.Field(nil), v.Fields...)
			w.Fields[i].Value = string(b)
			if golden.CheckVector(&w) == nil {
				t.Errorf("%s: tampered %s still passes", v.ID(), f.Key)
			}
			tampered++
		}
	}
	if tampered == 0 {
		t.Fatal("nothing tampered")
	}
}

func TestWrongReasonIsAMismatch(t *testing.T) {
	vs, _, err := golden.LoadDir(filepath.Join(dir, "card-reject"))
	if err != nil || len(vs) == 0 {
		t.Fatal(err, len(vs))
	}
	v := *vs[0]
	v.Fields = append([]golden.Field(nil), vs[0].Fields...)
	for i := range v.Fields {
		if v.Fields[i].Key == "expect" {
			v.Fields[i].Value = "reject some-other-reason"
		}
	}
	if golden.CheckVector(&v) == nil {
		t.Fatal("a vector expecting the wrong reason passed")
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	for _, in := range []string{
		"suite: x\nname: y\n",                              // no expect
		"suite: x\nname: y\nexpect: accept\nname: z\n",     // duplicate key
		"suite: x\nname: y\nexpect: accept\nNot A Field\n", // not key: value
	} {
		if _, err := golden.Parse("t", []byte(in)); err == nil {
			t.Errorf("accepted %q", in)
		}
	}
}
