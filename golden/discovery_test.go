package golden_test

import (
	"path/filepath"
	"testing"

	"github.com/sublog/sublog/golden"
)

// The discovery checkers can fail: every hex or token field of an accept
// vector, altered, makes its vector fail.
func TestDiscoveryCheckersCatchTampering(t *testing.T) {
	tampered := 0
	for _, suite := range []string{"discovery-token", "pkarr"} {
		vs, _, err := golden.LoadDir(filepath.Join(dir, suite))
		if err != nil || len(vs) == 0 {
			t.Fatal(suite, err, len(vs))
		}
		for _, v := range vs {
			if e, _ := v.Get("expect"); e != "accept" {
				continue
			}
			for i, f := range v.Fields {
				switch f.Key {
				case "token", "cbor", "payload", "packet", "signable", "timestamp", "addrs", "profile":
				default:
					continue
				}
				b := []byte(f.Value)
				if len(b) < 2 {
					continue
				}
				if b[len(b)-2] == '0' {
					b[len(b)-2] = '1'
				} else {
					b[len(b)-2] = '0'
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
	}
	if tampered < 10 {
		t.Fatalf("only %d fields tampered", tampered)
	}
}
