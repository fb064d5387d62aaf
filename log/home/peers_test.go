package home

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/key"
)

func TestPeersRoundTrip(t *testing.T) {
	h := &Home{Dir: t.TempDir()}
	p, err := h.Peers()
	if err != nil || len(p.Follow)+len(p.Trust) != 0 {
		t.Fatalf("empty home: %+v %v", p, err)
	}
	ids := make([]key.ID, 3)
	for i := range ids {
		sk, _ := key.FromSeed(key.DeriveSeed([]byte("peers"), string(rune('a'+i))))
		ids[i] = sk.ID()
	}
	if _, err := h.EditPeers(func(p *Peers) {
		p.Follow = append(p.Follow, ids[2], ids[0], ids[2])
		p.Trust = append(p.Trust, ids[1])
	}); err != nil {
		t.Fatal(err)
	}
	p, err = h.Peers()
	if err != nil || len(p.Follow) != 2 || len(p.Trust) != 1 || p.Trust[0] != ids[1] {
		t.Fatalf("%+v %v", p, err)
	}
	if p.Follow[0].Compare(p.Follow[1]) >= 0 {
		t.Fatal("follow list not sorted")
	}
	st, _ := os.Stat(filepath.Join(h.Dir, PeersFile))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("peers.json mode %v", st.Mode().Perm())
	}
	b, _ := os.ReadFile(filepath.Join(h.Dir, PeersFile))
	if !strings.Contains(string(b), ids[1].String()) {
		t.Fatal("identities not in text form")
	}
}

func TestPeersMalformed(t *testing.T) {
	h := &Home{Dir: t.TempDir()}
	for _, bad := range []string{"{", `{"follow": ["not-an-id"]}`, `{"trust": [1]}`} {
		os.WriteFile(filepath.Join(h.Dir, PeersFile), []byte(bad), 0o600)
		if _, err := h.Peers(); !errors.Is(err, ErrBadPeers) {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}
