package cli

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
)

type run struct{ t *testing.T }

// sub runs the real command line in-process and returns stdout, stderr and
// the exit code.
func (r run) sub(stdin string, args ...string) (string, string, int) {
	r.t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb, func(string) string { return "" })
	return out.String(), errb.String(), code
}

func (r run) ok(stdin string, args ...string) string {
	r.t.Helper()
	out, errs, code := r.sub(stdin, args...)
	if code != 0 {
		r.t.Fatalf("sublog %v: exit %d\n%s%s", args, code, out, errs)
	}
	return out
}

// carry copies a card from one home's store into another's (sync stands in).
func carry(t *testing.T, r run, from, to, id string) {
	t.Helper()
	raw, err := hex.DecodeString(strings.TrimSpace(r.ok("", "--home", from, "show", "--hex", id)))
	if err != nil {
		t.Fatal(err)
	}
	h, err := home.Open(to)
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.OpenStore(sublog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Import(raw); err != nil {
		t.Fatalf("import into %s: %v", to, err)
	}
}

func TestCLISealedCardsAndRevocation(t *testing.T) {
	r := run{t}
	dir := t.TempDir()
	alice, bob, carol := filepath.Join(dir, "alice"), filepath.Join(dir, "bob"), filepath.Join(dir, "carol")
	for _, h := range []string{alice, bob, carol} {
		r.ok("", "--home", h, "init")
	}
	idOf := func(h string) string { return strings.TrimSpace(r.ok("", "--home", h, "id")) }
	bobID, carolID := idOf(bob), idOf(carol)

	// direct to bob
	out := r.ok("kind: note\nvisibility: direct\nto: "+bobID+"\nmsg: for bob only\n", "--home", alice, "append", "-")
	direct := strings.Fields(out)[1]
	// a trust set of bob and carol
	r.ok("", "--home", alice, "trustset", "set", "friends", bobID, carolID)
	out = r.ok("kind: note\nvisibility: trustset\nto: friends\nmsg: for friends\n", "--home", alice, "append", "-")
	trust := strings.Fields(out)[1]

	// alice (the author) reads both through her KEK
	if s := r.ok("", "--home", alice, "show", direct); !strings.Contains(s, "for bob only") {
		t.Fatalf("author cannot read her card:\n%s", s)
	}
	// carry the log to bob and carol
	for _, h := range []string{bob, carol} {
		carry(t, r, alice, h, direct)
		carry(t, r, alice, h, trust)
	}
	if s := r.ok("", "--home", bob, "show", direct); !strings.Contains(s, "for bob only") {
		t.Fatalf("bob cannot read:\n%s", s)
	}
	s := r.ok("", "--home", carol, "show", direct)
	if strings.Contains(s, "for bob only") || !strings.Contains(s, "not a recipient") {
		t.Fatalf("carol should be told she is not a recipient:\n%s", s)
	}
	for _, h := range []string{bob, carol} {
		if s := r.ok("", "--home", h, "show", trust); !strings.Contains(s, "for friends") {
			t.Fatalf("%s cannot read the trust-set card:\n%s", h, s)
		}
	}
	var v struct {
		Body struct {
			Status string `json:"status"`
		} `json:"body"`
	}
	json.Unmarshal([]byte(r.ok("", "--home", carol, "--json", "show", direct)), &v)
	if v.Body.Status != "not a recipient" {
		t.Fatalf("json status %q", v.Body.Status)
	}

	// unknown to: is a clear input error
	if _, e, code := r.sub("kind: note\nvisibility: trustset\nto: enemies\n", "--home", alice, "append", "-"); code != 1 || !strings.Contains(e, "enemies") {
		t.Fatalf("unknown trust set: exit %d %s", code, e)
	}

	// revoke --shred: alice can no longer read, the card still verifies
	if _, e, code := r.sub("", "--home", bob, "revoke", direct); code != 1 || !strings.Contains(e, "only its author") {
		t.Fatalf("bob revoking alice's card: exit %d %s", code, e)
	}
	kek := kekOf(t, alice, direct)
	r.ok("", "--home", alice, "revoke", "--shred", "--reason", "oops", direct)
	if files := filesWith(t, filepath.Join(alice, "store"), kek); len(files) > 0 {
		t.Fatalf("KEK bytes remain in %v after revoke --shred", files)
	}
	if s := r.ok("", "--home", alice, "show", direct); strings.Contains(s, "for bob only") || !strings.Contains(s, "shredded") {
		t.Fatalf("after shred:\n%s", s)
	}
	r.ok("", "--home", alice, "verify")

	// a permanent public card: readable by anyone, cannot be shredded
	out = r.ok("kind: note\nvisibility: public\nmsg: for everyone\n", "--home", alice, "append", "-")
	pub := strings.Fields(out)[1]
	if s := r.ok("", "--home", alice, "show", pub); !strings.Contains(s, "for everyone") || !strings.Contains(s, "permanent") {
		t.Fatalf("public card:\n%s", s)
	}
	if _, e, code := r.sub("", "--home", alice, "revoke", "--shred", pub); code != 1 || !strings.Contains(e, "irrevocable") {
		t.Fatalf("shredding a public card: exit %d %s", code, e)
	}
	if _, e, code := r.sub("kind: note\nvisibility: direct\nto: ["+bobID+", "+carolID+"]\n", "--home", alice, "append", "-"); code != 1 || !strings.Contains(e, "exactly one") {
		t.Fatalf("direct to two: exit %d %s", code, e)
	}

	// crl: listed cards are hidden by honest readers
	r.ok("", "--home", alice, "crl", "add", trust)
	if s := r.ok("", "--home", alice, "crl"); !strings.Contains(s, strings.TrimPrefix(trust, "sha256:")[:12]) || strings.Contains(s, trust) {
		t.Fatalf("crl list:\n%s", s)
	}
	if s := r.ok("", "--home", alice, "show", trust); strings.Contains(s, "for friends") || !strings.Contains(s, "CRL") {
		t.Fatalf("crl-listed card still shown:\n%s", s)
	}
}

func TestCLIReqsAndCapspec(t *testing.T) {
	r := run{t}
	h := filepath.Join(t.TempDir(), "h")
	r.ok("", "--home", h, "init")
	x := caps.Spec{Schema: caps.SchemaV1, Name: "x-chat", Semver: "1.0.0", Purpose: "chat schema"}
	doc := "kind: note\nreqs: [" + x.ID() + "]\nmsg: hi\n"
	_, e, code := r.sub(doc, "--home", h, "append", "-")
	if code != 1 || !strings.Contains(e, x.ID()) {
		t.Fatalf("unknown req: exit %d, stderr %s", code, e)
	}
	spec := filepath.Join(t.TempDir(), "x.yaml")
	os.WriteFile(spec, []byte("name: x-chat\nsemver: 1.0.0\npurpose: chat schema\n"), 0o600)
	if out := r.ok("", "--home", h, "capspec", "add", "--support", "--sign", spec); strings.TrimSpace(out) != x.ID() {
		t.Fatalf("capspec add printed %q, want %s", out, x.ID())
	}
	r.ok(doc, "--home", h, "append", "-")

	// a bundle of x and an unknown member is refused, naming the member
	unknown := caps.Spec{Schema: caps.SchemaV1, Name: "y", Semver: "1.0.0", Purpose: "nobody"}
	b := caps.Spec{Schema: caps.SchemaV1, Name: "xy", Semver: "1.0.0", Purpose: "bundle", Members: []string{x.ID(), unknown.ID()}}
	bf := filepath.Join(t.TempDir(), "b.yaml")
	os.WriteFile(bf, []byte("name: xy\nsemver: 1.0.0\npurpose: bundle\nmembers: ["+x.ID()+", "+unknown.ID()+"]\n"), 0o600)
	r.ok("", "--home", h, "capspec", "add", "--local", bf)
	_, e, code = r.sub("kind: note\nreqs: ["+b.ID()+"]\n", "--home", h, "append", "-")
	if code != 1 || !strings.Contains(e, unknown.ID()) {
		t.Fatalf("bundle with unknown member: exit %d, stderr %s", code, e)
	}
	// a second home learns the spec from the capspec card the first published
	h2 := filepath.Join(t.TempDir(), "h2")
	r.ok("", "--home", h2, "init")
	var logv []struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	}
	json.Unmarshal([]byte(r.ok("", "--home", h, "--json", "log")), &logv)
	specCard := ""
	for _, c := range logv {
		if c.Kind == "capspec" {
			specCard = c.ID
		}
	}
	if specCard == "" {
		t.Fatalf("no capspec card in %+v", logv)
	}
	carry(t, r, h, h2, specCard)
	r.ok("", "--home", h2, "capspec", "add", "--local", specCard)
	if s := r.ok("", "--home", h2, "caps", "--all"); !strings.Contains(s, "x-chat/1.0.0") {
		t.Fatalf("spec from card not learned:\n%s", s)
	}

	// a signed deprecation notice flags the cap, which stays supported
	r.ok("", "--home", h, "capspec", "deprecate", "--reason", "use v2", x.ID())
	if s := r.ok("", "--home", h, "caps"); !strings.Contains(s, "supported,deprecated") {
		t.Fatalf("deprecated cap not flagged:\n%s", s)
	}
	r.ok(doc, "--home", h, "append", "-")
	var v capsView
	if err := json.Unmarshal([]byte(r.ok("", "--home", h, "--json", "caps", "--all")), &v); err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, id := range v.Supported {
		found[id] = true
	}
	if !found[x.ID()] || !found[caps.CardV1.ID()] || found[b.ID()] || len(v.Known) <= len(v.Supported) ||
		len(v.Entries) != len(v.Supported) {
		t.Fatalf("caps --json: %+v", v)
	}
}

// draftFor on an App without an environment (as the parser fuzz target uses)
// must refuse sealed documents with an error, never panic.
func TestSealWithoutHomeIsAnError(t *testing.T) {
	a := &App{}
	for _, src := range []string{
		"kind: note\nvisibility: direct\nto: friends\n",
		"kind: note\nvisibility: public\n",
		"kind: note\nvisibility: node\n",
		"kind: note\nto: [1, 2]\n",
		"kind: note\nvisibility: [x]\n",
	} {
		d, err := ParseDoc("t", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := a.draftFor(d); err == nil {
			t.Errorf("%q: sealed without a home", src)
		}
	}
}

// kekOf reads the KEK of a sealed card from a home's store (and checks the
// scan below would find it).
func kekOf(t *testing.T, dir, id string) []byte {
	t.Helper()
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := h.OpenStore(sublog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cid, _ := card.ParseID(id)
	c, err := st.GetByID(cid)
	if err != nil {
		t.Fatal(err)
	}
	env, err := capsule.DecodeEnvelope(c.Body())
	if err != nil || env.Capsule.KEK == nil {
		t.Fatalf("no KEK wrap: %v", err)
	}
	k, err := st.KEK(env.Capsule.KEK.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(filesWith(t, filepath.Join(dir, "store"), k)) == 0 {
		t.Fatal("the scan cannot see the live KEK")
	}
	return k
}

func filesWith(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, needle) {
			out = append(out, filepath.Base(p))
		}
		return nil
	})
	return out
}
