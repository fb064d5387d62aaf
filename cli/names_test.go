package cli_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/key"
)

// lookalike returns a valid identity whose text form shares id's first 8
// characters (40 bits: the first 5 bytes) and differs after them.
func lookalike(t *testing.T, id key.ID) key.ID {
	r := rand.New(rand.NewPCG(1, 2))
	b := id.Bytes()
	for range 1000 {
		c := append([]byte(nil), b...)
		for i := 5; i < len(c); i++ {
			c[i] = byte(r.Uint32())
		}
		c[31] &= 0x7f
		if x, err := key.IDFromBytes(c); err == nil && x != id {
			return x
		}
	}
	t.Fatal("no lookalike identity found")
	return key.ID{}
}

func field(t *testing.T, out, name string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	s, _ := m[name].(string)
	return s
}

// TestNamesInEveryCommand runs every command that takes an identity or a
// card with each form the one resolver accepts (full, petname, prefix, the
// short form tables print, AUTHOR@SEQ) and checks the command acted on the
// identity or card meant; then the ambiguous and malformed forms fail with
// the candidates listed.
func TestNamesInEveryCommand(t *testing.T) {
	dir := t.TempDir()
	desk, lap := newHome(t, dir+"/desk"), newHome(t, dir+"/lap")
	deskOut := strings.TrimSpace(desk.ok("", "init"))
	L := strings.TrimSpace(lap.ok("", "init"))
	lapID, _ := key.ParseID(L)
	lap.ok("kind: note\nmsg: one\n", "append", "-")
	lap.ok("kind: note\nmsg: two\n", "append", "-")
	lap.ok("", "trust", deskOut)
	if out := desk.ok("", "trust", L, "--name", "laptop2"); !strings.Contains(out, "trusting "+L+" (laptop2)") {
		t.Fatalf("trust does not confirm what it did: %q", out)
	}
	f := dir + "/lap.bundle"
	lap.ok("", "export", "--out", f)
	desk.ok("", "import", f)

	forms := map[string]string{"full": L, "petname": "laptop2", "prefix": L[:8], "short form": lapID.Short()}
	// showCard prints the body field of the card an appending command made.
	bodyOf := func(out, name string) string {
		t.Helper()
		id := field(t, out, "id")
		var v struct{ Body map[string]any }
		json.Unmarshal([]byte(desk.ok("", "--json", "show", id)), &v)
		s, _ := v.Body[name].(string)
		return s
	}
	cases := []struct {
		name string
		args func(f string) []string
		// got is the identity the command acted on, from its output.
		got func(t *testing.T, out string) string
	}{
		{"log", func(f string) []string { return []string{"log", f} }, func(t *testing.T, out string) string {
			var v []struct{ Author string }
			json.Unmarshal([]byte(out), &v)
			if len(v) != 2 {
				t.Fatalf("log: %d cards", len(v))
			}
			return v[0].Author
		}},
		{"verify", func(f string) []string { return []string{"verify", f} }, func(t *testing.T, out string) string {
			var v struct{ Cards, Logs int }
			json.Unmarshal([]byte(out), &v)
			if v.Cards == 2 && v.Logs == 1 {
				return L
			}
			return out
		}},
		{"follow", func(f string) []string { return []string{"follow", f} }, func(t *testing.T, out string) string { return field(t, out, "id") }},
		{"unfollow", func(f string) []string { return []string{"unfollow", f} }, func(t *testing.T, out string) string { return field(t, out, "id") }},
		{"trust", func(f string) []string { return []string{"trust", f} }, func(t *testing.T, out string) string { return field(t, out, "id") }},
		{"delegate", func(f string) []string { return []string{"delegate", f} }, func(t *testing.T, out string) string { return bodyOf(out, "device") }},
		{"undelegate", func(f string) []string { return []string{"undelegate", f} }, func(t *testing.T, out string) string { return bodyOf(out, "device") }},
		{"grant PEER", func(f string) []string { return []string{"grant", f, "--memory", "64Mi"} }, func(t *testing.T, out string) string { return bodyOf(out, "peer") }},
		{"grant --owner", func(f string) []string { return []string{"grant", deskOut, "--service", "web", "--owner", f} }, func(t *testing.T, out string) string { return bodyOf(out, "owner") }},
		{"trustset set", func(f string) []string { return []string{"trustset", "set", "team", f} }, func(t *testing.T, out string) string {
			var v struct{ Members []string }
			json.Unmarshal([]byte(out), &v)
			return strings.Join(v.Members, ",")
		}},
		{"export --for", func(f string) []string {
			return []string{"export", "--for", f, "--out", filepath.Join(dir, "for.bundle")}
		}, func(t *testing.T, out string) string {
			// Encrypted to the laptop: the laptop's home opens it.
			lap.ok("", "import", filepath.Join(dir, "for.bundle"))
			return L
		}},
	}
	for _, c := range cases {
		for form, f := range forms {
			out := desk.ok("", append([]string{"--json"}, c.args(f)...)...)
			if got := c.got(t, out); got != L {
				t.Errorf("%s with the %s %q acted on %q, want %s", c.name, form, f, got, L)
			}
		}
	}

	// Cards: full, prefixes with and without sha256:, the table's short
	// form, AUTHOR@SEQ with the author in any form.
	var logv []struct{ ID, Kind string }
	json.Unmarshal([]byte(desk.ok("", "--json", "log", "laptop2")), &logv)
	full := logv[1].ID // laptop2@2
	hexID := strings.TrimPrefix(full, "sha256:")
	cardForms := map[string]string{"full": full, "prefix": hexID[:8], "sha256: prefix": "sha256:" + hexID[:9],
		"short form": hexID[:12], "AUTHOR@SEQ": L + "@2", "petname@SEQ": "laptop2@2", "prefix@SEQ": L[:8] + "@2"}
	for form, f := range cardForms {
		if got := field(t, desk.ok("", "--json", "show", f), "id"); got != full {
			t.Errorf("show with the %s %q showed %s, want %s", form, f, got, full)
		}
	}
	// revoke and crl add act on one's own cards: the desk's.
	var own []struct{ ID string }
	json.Unmarshal([]byte(desk.ok("", "--json", "log")), &own)
	ownHex := strings.TrimPrefix(own[0].ID, "sha256:")
	for i, f := range []string{own[0].ID, ownHex[:8], "default@1", deskOut[:10] + "@1"} {
		if got := field(t, desk.ok("", "--json", "revoke", f), "revoked"); got != own[0].ID {
			t.Errorf("revoke %q (form %d) revoked %s, want %s", f, i, got, own[0].ID)
		}
	}
	var crl struct{ Revoked []string }
	json.Unmarshal([]byte(desk.ok("", "--json", "crl", "add", ownHex[:10], "default@2")), &crl)
	if len(crl.Revoked) != 2 || crl.Revoked[0] != own[0].ID || crl.Revoked[1] != own[1].ID {
		t.Errorf("crl add by prefix and AUTHOR@SEQ: %v", crl.Revoked)
	}

	// capspec add takes a stored capspec card by any card form.
	spec := filepath.Join(dir, "x.yaml")
	os.WriteFile(spec, []byte("name: x-chat\nsemver: 1.0.0\npurpose: chat schema\n"), 0o600)
	capID := strings.TrimSpace(desk.ok("", "capspec", "add", spec))
	var mine []struct {
		ID, Kind string
		Seq      int
	}
	json.Unmarshal([]byte(desk.ok("", "--json", "log")), &mine)
	last := mine[len(mine)-1]
	if last.Kind != "capspec" {
		t.Fatalf("the last card is a %s card", last.Kind)
	}
	for _, f := range []string{strings.TrimPrefix(last.ID, "sha256:")[:8], fmt.Sprintf("default@%d", last.Seq)} {
		if got := field(t, desk.ok("", "--json", "capspec", "add", f), "id"); got != capID {
			t.Errorf("capspec add %q learned %q, want %q", f, got, capID)
		}
	}

	// Ambiguity: a second trusted identity sharing the laptop's first 8
	// characters. The 8-character prefix is refused, naming both; a longer
	// one still resolves.
	twin := lookalike(t, lapID)
	desk.ok("", "trust", twin.String())
	out, errs, code := desk.run("", "log", L[:8])
	if code != 1 || out != "" || !strings.Contains(errs, "ambiguous") || !strings.Contains(errs, L) || !strings.Contains(errs, twin.String()) || !strings.Contains(errs, "laptop2") {
		t.Fatalf("ambiguous prefix: exit %d\n%s", code, errs)
	}
	_, errs, code = desk.run("", "--json", "log", L[:8])
	var e struct {
		Code       string
		Exit       int
		Candidates []string
	}
	if json.Unmarshal([]byte(errs), &e); code != 1 || e.Code != "ambiguous" || e.Exit != 1 || len(e.Candidates) != 2 {
		t.Fatalf("ambiguous prefix with --json: exit %d %+v\n%s", code, e, errs)
	}
	n := 9
	for L[:n] == twin.String()[:n] {
		n++
	}
	desk.ok("", "log", L[:n])

	// Malformed and unknown forms: exit 1, a hint naming where identities are.
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"log", L[:7]}, "too short"},
		{[]string{"log", "laptop3"}, "neither an identity"},
		{[]string{"log", "ybndrfg8ejkm"}, "no identity known here"},
		{[]string{"show", hexID[:7]}, "too short"},
		{[]string{"show", "ffffffffffff"}, "no card stored here"},
		{[]string{"show", "laptop2@99"}, "not stored here"},
		{[]string{"show", "laptop2@x"}, "must be a seq"},
		{[]string{"show", "zz"}, "not a card ID"},
	} {
		_, errs, code := desk.run("", bad.args...)
		if code != 1 || !strings.Contains(errs, bad.want) || !strings.Contains(errs, "sublog: hint:") {
			t.Errorf("sublog %s: exit %d, want 1 with %q and a hint\n%s", strings.Join(bad.args, " "), code, bad.want, errs)
		}
	}
	// A petname cannot take the name of one of the home's identities.
	if _, errs, code := desk.run("", "trust", L, "--name", "default"); code != 1 || !strings.Contains(errs, "name of this home's identity") {
		t.Errorf("trust --name default: exit %d\n%s", code, errs)
	}
	// The hint for a peer points at 'sublog peers', not 'sublog id'.
	if _, errs, _ := desk.run("", "call", "nosuchpeer", "x"); !strings.Contains(errs, "'sublog peers'") {
		t.Errorf("call's hint does not name 'sublog peers':\n%s", errs)
	}
}
