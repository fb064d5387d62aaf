package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sublog/sublog/cli"
)

// home is one sublog home driven in-process, as a user would drive it.
type tHome struct {
	t   *testing.T
	dir string
	cwd string
}

func newHome(t *testing.T, dir string) *tHome {
	return &tHome{t: t, dir: dir, cwd: filepath.Dir(dir)}
}

func (h *tHome) run(stdin string, args ...string) (stdout, stderr string, code int) {
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == "SUBLOG_HOME" {
			return h.dir
		}
		return ""
	}
	code = cli.Main(args, strings.NewReader(stdin), &out, &errb, env)
	return out.String(), errb.String(), code
}

func (h *tHome) ok(stdin string, args ...string) string {
	h.t.Helper()
	out, errs, code := h.run(stdin, args...)
	if code != 0 {
		h.t.Fatalf("sublog %s: exit %d\n%s", strings.Join(args, " "), code, errs)
	}
	return out
}

// schemas compiles docs/json.schema.json's definitions on demand.
type schemas struct {
	t    *testing.T
	c    *jsonschema.Compiler
	path string
	seen map[string]bool
}

func loadSchemas(t *testing.T) *schemas {
	p, err := filepath.Abs("../docs/json.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return &schemas{t: t, c: jsonschema.NewCompiler(), path: p, seen: map[string]bool{}}
}

// check validates one --json output against the schema's definition def.
func (s *schemas) check(def, what, out string) {
	s.t.Helper()
	sch, err := s.c.Compile(s.path + "#/$defs/" + def)
	if err != nil {
		s.t.Fatalf("schema %s: %v", def, err)
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(out))
	if err != nil {
		s.t.Fatalf("%s: not JSON: %v\n%s", what, err, out)
	}
	if err := sch.Validate(inst); err != nil {
		s.t.Fatalf("%s: does not validate against #/$defs/%s: %v\n%s", what, def, err, out)
	}
	s.seen[def] = true
}

// cmdValidJSON is the scripts' validjson DEF [stderr] command.
func cmdValidJSON(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: validjson DEF [stderr]")
	}
	stream := "stdout"
	if len(args) == 2 {
		stream = args[1]
	}
	p, err := filepath.Abs("../docs/json.schema.json")
	ts.Check(err)
	sch, err := jsonschema.NewCompiler().Compile(p + "#/$defs/" + args[0])
	ts.Check(err)
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(ts.ReadFile(stream)))
	if err == nil {
		err = sch.Validate(inst)
	}
	if (err == nil) == neg {
		ts.Fatalf("validjson %s: %v", args[0], err)
	}
}

// jsonCase is one --json output: the command, and the schema definition
// its output (stdout, or stderr for a failure) must validate against.
type jsonCase struct {
	def  string
	args []string
	fail bool // the command fails: its stderr is the error object
}

// TestEveryJSONOutputValidates runs every command that prints JSON, in a
// story of an owner with two laptops and a host, and validates each output
// against docs/json.schema.json. TestJSONCoversEveryCommand checks that no
// command is left out.
func TestEveryJSONOutputValidates(t *testing.T) {
	s := loadSchemas(t)
	dir := t.TempDir()
	o, l1, l2 := newHome(t, dir+"/owner"), newHome(t, dir+"/l1"), newHome(t, dir+"/l2")
	id := func(h *tHome) string {
		out := h.ok("", "init", "--json")
		s.check("init", "init --json", out)
		var v struct{ ID string }
		json.Unmarshal([]byte(out), &v)
		return v.ID
	}
	ownerID, l1ID, l2ID := id(o), id(l1), id(l2)
	run := func(h *tHome, c jsonCase, stdin string) string {
		t.Helper()
		args := append([]string{"--json"}, c.args...)
		out, errs, code := h.run(stdin, args...)
		what := "sublog " + strings.Join(args, " ")
		if c.fail {
			if code == 0 {
				t.Fatalf("%s: succeeded, want a failure", what)
			}
			if out != "" {
				t.Fatalf("%s: failed with stdout %q", what, out)
			}
			s.check(c.def, what, errs)
			return errs
		}
		if code != 0 {
			t.Fatalf("%s: exit %d\n%s", what, code, errs)
		}
		s.check(c.def, what, out)
		return out
	}
	send := func(from *tHome, to ...*tHome) {
		t.Helper()
		f := from.dir + ".bundle"
		s.check("export", "export", from.ok("", "--json", "export", "--out", f))
		for _, h := range to {
			s.check("sync_stats", "import", h.ok("", "--json", "import", f))
		}
	}
	for _, d := range []*tHome{l1, l2} {
		var dv struct {
			PairingToken string `json:"pairing_token"`
		}
		json.Unmarshal([]byte(run(o, jsonCase{"delegate", []string{"delegate", map[*tHome]string{l1: l1ID, l2: l2ID}[d]}, false}, "")), &dv)
		run(d, jsonCase{"pair", []string{"pair", dv.PairingToken}, false}, "")
		run(d, jsonCase{"pair_list", []string{"pair"}, false}, "")
	}
	run(l1, jsonCase{"trust", []string{"trust", ownerID, "--name", "owner"}, false}, "")
	run(l2, jsonCase{"trust", []string{"trust", ownerID}, false}, "")
	run(o, jsonCase{"trust", []string{"trust", l1ID, "--name", "laptop1"}, false}, "")
	run(o, jsonCase{"trust", []string{"follow", l2ID}, false}, "")
	manifest := func(replicas int, mem string) string {
		return fmt.Sprintf("kind: intent\nservice: web\nspec:\n  replicas: %d\n  version: 1.0.0\n  bundle: sha256:%064d\n  resources: {cpu: 250m, memory: %s}\n  placement: {labels: {zone: eu}}\n", replicas, 7, mem)
	}
	run(o, jsonCase{"append", []string{"append", "-"}, false}, manifest(1, "64Mi"))
	send(o, l1, l2)
	run(l1, jsonCase{"append", []string{"append", "-"}, false}, manifest(2, "128Mi"))
	run(l2, jsonCase{"append", []string{"append", "-"}, false}, manifest(2, "256Mi"))
	send(l1, o)
	send(l2, o)
	// A host with a profile and a grant for the owner's service, and an
	// observation, so status has something in every part.
	hostYAML := "kind: profile\ncpu: 4\nmemory: 8Gi\ndisk: 100Gi\ngpu: 0\nlabels: {zone: eu}\n"
	run(o, jsonCase{"append", []string{"append", "-"}, false}, hostYAML)
	grantYAML := "kind: grant\nservice: web\nowner: " + ownerID + "\nlimits: {memory: 1Gi, instances: 4, cpu_req_ms: 500}\nexpires: 720h\n"
	run(o, jsonCase{"append", []string{"append", "-"}, false}, grantYAML)
	obsYAML := "kind: observe\npeer: " + l2ID + "\nservice: web\nowner: " + ownerID + "\nstate: running\nusage: {memory: 1Mi, cpu_ms: 3}\n"
	run(o, jsonCase{"append", []string{"append", "-"}, false}, obsYAML)
	run(o, jsonCase{"append", []string{"append", "-"}, false}, "kind: note\nmsg: hello\n")

	status := run(o, jsonCase{"status", []string{"status"}, false}, "")
	if !strings.Contains(status, `"conflicts"`) || !strings.Contains(status, `"value": 134217728`) && !strings.Contains(status, `"value": 268435456`) {
		t.Fatalf("status shows no conflict with a typed value:\n%s", status)
	}
	for _, bad := range []string{`"Memory"`, `"CPUReqMS"`, `"i:`, `"0x`, `"ts"`} {
		if strings.Contains(status, bad) {
			t.Fatalf("status --json has %s:\n%s", bad, status)
		}
	}
	run(o, jsonCase{"status", []string{"status", "web"}, false}, "")
	got := run(o, jsonCase{"intent_manifest", []string{"intent", "get", "web"}, false}, "")
	mf := filepath.Join(dir, "web.json")
	os.WriteFile(mf, []byte(got), 0o600)
	run(o, jsonCase{"intent_delta", []string{"intent", "diff", mf}, false}, "")
	run(o, jsonCase{"intent_delta", []string{"append", "--dry-run", "-"}, false}, manifest(5, "64Mi"))
	run(o, jsonCase{"append_dry_run", []string{"append", "--dry-run", "-"}, false}, "kind: note\nmsg: not yet\n")
	// Applying the merged manifest settles the conflicting field (a change
	// the first time), then is unchanged.
	run(o, jsonCase{"append", []string{"append", mf}, false}, "")
	run(o, jsonCase{"append_unchanged", []string{"append", mf}, false}, "")
	// A card that may not leave this node: the laptop holds it as a stub.
	run(o, jsonCase{"append", []string{"append", "-"}, false}, "kind: note\nvisibility: node\ntext: stays here\n")
	run(o, jsonCase{"append", []string{"append", "-"}, false}, "kind: note\ntext: after it\n")
	send(o, l1)
	if stubbed := run(l1, jsonCase{"log", []string{"log", "owner"}, false}, ""); !strings.Contains(stubbed, `"withheld": true`) {
		t.Fatalf("the laptop's log of the owner shows no stub:\n%s", stubbed)
	}
	run(o, jsonCase{"plan", []string{"plan"}, false}, "")
	audit := run(o, jsonCase{"replay", []string{"replay", "--audit"}, false}, "")
	if !strings.Contains(audit, `"code": "intent_applied"`) || !strings.Contains(audit, `"code": "delegate_live"`) {
		t.Fatalf("the audit's decisions lack stable codes:\n%s", audit)
	}
	run(o, jsonCase{"replay", []string{"replay"}, false}, "")
	logOut := run(o, jsonCase{"log", []string{"log"}, false}, "")
	if strings.Contains(logOut, `"0x`+strings.Repeat("0", 10)) {
		t.Fatalf("log shows an identity or hash as hex:\n%s", logOut)
	}
	run(o, jsonCase{"log", []string{"log", "laptop1"}, false}, "")
	run(o, jsonCase{"heads", []string{"log", "--heads"}, false}, "")
	run(o, jsonCase{"heads", []string{"heads"}, false}, "")
	run(o, jsonCase{"show", []string{"show", "default@1"}, false}, "")
	run(o, jsonCase{"verify", []string{"verify"}, false}, "")
	run(o, jsonCase{"id", []string{"id"}, false}, "")
	run(o, jsonCase{"id_list", []string{"id", "--list"}, false}, "")
	run(o, jsonCase{"trust_list", []string{"trust"}, false}, "")
	run(o, jsonCase{"trust_list", []string{"follow"}, false}, "")
	run(o, jsonCase{"trust", []string{"unfollow", l2ID}, false}, "")
	run(o, jsonCase{"append", []string{"undelegate", l2ID}, false}, "")
	run(o, jsonCase{"delegate", []string{"delegate", l1ID}, false}, "") // again: reused, a fresh token
	rev := run(o, jsonCase{"revoke", []string{"revoke", "default@2", "--reason", "test"}, false}, "")
	_ = rev
	run(o, jsonCase{"crl_add", []string{"crl", "add", "default@3"}, false}, "")
	run(o, jsonCase{"crl", []string{"crl"}, false}, "")
	run(o, jsonCase{"caps", []string{"caps"}, false}, "")
	run(o, jsonCase{"caps", []string{"caps", "--all"}, false}, "")
	run(o, jsonCase{"token", []string{"token", "--addr", "127.0.0.1:7411"}, false}, "")
	blobFile := filepath.Join(dir, "some.bin")
	os.WriteFile(blobFile, []byte("some bytes"), 0o600)
	run(o, jsonCase{"blob_put", []string{"blob", "put", blobFile}, false}, "")
	run(o, jsonCase{"blob_list", []string{"blob", "ls"}, false}, "")
	run(o, jsonCase{"blob_gc", []string{"blob", "gc", "--dry-run", "--grace", "0s"}, false}, "")
	run(o, jsonCase{"trustset_set", []string{"trustset", "set", "team", "laptop1", l2ID}, false}, "")
	run(o, jsonCase{"trustsets", []string{"trustset", "list"}, false}, "")
	run(o, jsonCase{"trustset_rm", []string{"trustset", "rm", "team"}, false}, "")
	run(o, jsonCase{"config", []string{"config"}, false}, "")
	run(o, jsonCase{"append", []string{"grant", l2ID, "--memory", "64Mi", "--caps", "req"}, false}, "")
	run(o, jsonCase{"peers", []string{"peers"}, false}, "")
	vectors, _ := filepath.Abs("../golden/vectors/card")
	run(o, jsonCase{"golden", []string{"golden", "check", vectors}, false}, "")

	// A cap spec learned, then deprecated by a signed notice.
	specFile := filepath.Join(dir, "spec.yaml")
	os.WriteFile(specFile, []byte("name: x-chat\nsemver: 1.0.0\npurpose: atomic\n"), 0o600)
	added := run(o, jsonCase{"capspec_add", []string{"capspec", "add", "--support", specFile}, false}, "")
	var spec struct{ ID string }
	json.Unmarshal([]byte(added), &spec)
	run(o, jsonCase{"capspec_deprecate", []string{"capspec", "deprecate", "--reason", "use v2", spec.ID}, false}, "")

	// Discovery: what publish would make public (nothing sent), and a
	// resolve whose only hint names an address where nobody answers. Both
	// print their report on stdout even when they fail (the report says
	// why), then the error object on stderr.
	run(o, jsonCase{"publish", []string{"publish", "--pkarr", "http://127.0.0.1:1", "--addr", "127.0.0.1:7000", "--profile", "--dry-run"}, false}, "")
	report := func(h *tHome, def string, args ...string) string {
		t.Helper()
		args = append([]string{"--json"}, args...)
		out, errs, code := h.run("", args...)
		if code != 1 {
			t.Fatalf("sublog %s: exit %d, want 1\n%s", strings.Join(args, " "), code, errs)
		}
		s.check(def, strings.Join(args, " "), out)
		s.check("error", strings.Join(args, " ")+" (stderr)", errs)
		return out
	}
	if out := report(o, "publish", "publish", "--pkarr", "http://127.0.0.1:1", "--addr", "127.0.0.1:7000"); !strings.Contains(out, `"ok": false`) {
		t.Fatalf("publish to a closed port claims success:\n%s", out)
	}
	var tok struct{ Token string }
	json.Unmarshal([]byte(run(o, jsonCase{"token", []string{"token", "--addr", "127.0.0.1:1"}, false}, "")), &tok)
	var res struct {
		Identity, Addr string
		Attempts       []struct{ Source, Outcome string }
	}
	out := report(l1, "resolve", "resolve", "owner", "--no-cache", "--token", tok.Token)
	json.Unmarshal([]byte(out), &res)
	if res.Identity != ownerID || res.Addr != "" || len(res.Attempts) != 1 || res.Attempts[0].Outcome != "rejected" {
		t.Fatalf("resolve of the owner (by its petname) at an address where nobody answers:\n%s", out)
	}

	// Failures under --json: one object on stderr with a stable code.
	errCode := func(h *tHome, code string, args ...string) {
		t.Helper()
		out := run(h, jsonCase{"error", args, true}, "")
		var e struct{ Code string }
		json.Unmarshal([]byte(out), &e)
		if e.Code != code {
			t.Fatalf("sublog --json %s: code %q, want %q\n%s", strings.Join(args, " "), e.Code, code, out)
		}
	}
	errCode(o, "not_found", "show", "sha256:"+strings.Repeat("ab", 32))
	errCode(o, "bad_argument", "log", "nope!")
	errCode(o, "usage", "log", "--no-such-flag")
	errCode(o, "usage", "show")
	errCode(o, "bad_input", "append", "-")
	errCode(newHome(t, dir+"/none"), "no_home", "log")

	// The definitions exercised above are every one an output uses.
	for _, def := range []string{"init", "id", "id_list", "append", "revoke", "crl_add", "log", "show", "heads",
		"verify", "replay", "plan", "status", "sync_stats", "export", "trust_list", "trust", "crl", "caps",
		"trustsets", "token", "delegate", "intent_manifest", "intent_delta", "append_dry_run", "append_unchanged", "pair", "pair_list", "blob_list", "blob_put", "blob_gc", "trustset_set", "trustset_rm", "config",
		"peers", "golden", "error", "capspec_add", "capspec_deprecate", "publish", "resolve"} {
		if !s.seen[def] {
			t.Errorf("no output was checked against #/$defs/%s", def)
		}
	}
}

// TestJSONRejectsWhatTheContractForbids feeds the schema outputs that break
// the contract (Go field names, hex identities, unqualified times, prose
// values), so the validation above is known to be able to fail.
func TestJSONRejectsWhatTheContractForbids(t *testing.T) {
	s := loadSchemas(t)
	id := strings.Repeat("y", 52)
	cid := "sha256:" + strings.Repeat("0", 64)
	bad := []struct{ def, doc string }{
		{"head", `{"Author": "` + id + `", "seq": 1}`},
		{"head", `{"author": "0x` + strings.Repeat("00", 32) + `", "seq": 1}`},
		{"cause", `{"card": "` + cid + `", "kind": "grant", "author": "` + id + `", "time": "2026-12-03T08:00:00+01:00", "authority": "host"}`},
		{"cause", `{"card": "` + cid + `", "kind": "grant", "author": "` + id + `", "ts": 1700000000, "authority": "host"}`},
		{"write", `{"value": "i:2", "actor": "ab", "card": "` + cid + `", "extra": 1}`},
		{"limits", `{"Memory": 1, "CPUReqMS": 2}`},
		{"decision", `{"card": "` + cid + `", "kind": "note", "author": "` + id + `", "seq": 1, "time": "2026-12-03T08:00:00Z", "verdict": "ignored", "reason": "prose only"}`},
		{"error", `{"code": "oops", "exit": 1, "error": "x"}`},
		{"show", `{"id": "` + cid + `", "author": "` + id + `", "seq": 1, "kind": "note", "time": "2026-12-03T08:00:00Z", "net": "", "rid": "` + strings.Repeat("0", 32) + `", "size": 0, "verified": true}`},
		{"capspec_deprecate", `{"cap": "x", "notice": "a1b2"}`},
		{"resolve", `{"identity": "` + id + `", "attempts": [{"source": "token", "outcome": "it did not answer"}]}`},
		{"publish", `{"public": {"identity": "` + id + `", "addrs": [], "ttl": 3600, "timestamp": "2026-12-03T08:00:00+01:00", "packet_bytes": 100}, "dry_run": true, "relays": []}`},
		{"blob_fetch", `{"hash": "` + cid + `", "size": 1, "chunks": 1, "reused": 0, "fetched": 1, "refused": 0, "damaged": 0, "bytes_fetched": 1, "already_stored": false, "Stats": {}}`},
		{"down", `{"stopped": true, "pid": 0}`},
	}
	for _, b := range bad {
		sch, err := s.c.Compile(s.path + "#/$defs/" + b.def)
		if err != nil {
			t.Fatal(err)
		}
		inst, err := jsonschema.UnmarshalJSON(strings.NewReader(b.doc))
		if err != nil {
			t.Fatal(err)
		}
		if sch.Validate(inst) == nil {
			t.Errorf("#/$defs/%s accepted %s", b.def, b.doc)
		}
	}
}

// noJSON are the commands whose output is not JSON, and why.
var noJSON = map[string]string{
	"serve":                 "a server: its output is a log on stderr",
	"relay":                 "a server: its output is a log on stderr",
	"up":                    "the instance: its logs are structured by --log-format json",
	"completion":            "prints shell scripts",
	"completion bash":       "prints shell scripts",
	"completion zsh":        "prints shell scripts",
	"completion fish":       "prints shell scripts",
	"completion powershell": "prints shell scripts",
	"help":                  "prints help text",
	"golden write":          "writes files",
}

// jsonCovered are the commands whose --json output a test validates against
// docs/json.schema.json: TestEveryJSONOutputValidates, TestJSONOfHostCommands,
// or the scripts named (their validjson command).
var jsonCovered = []string{
	"init", "id", "append", "log", "show", "verify", "replay", "status", "plan", "export", "import",
	"heads", "trust", "follow", "unfollow", "delegate", "undelegate", "revoke", "crl", "crl add",
	"caps", "trustset list", "trustset set", "trustset rm", "token", "blob ls", "blob put", "blob gc",
	"grant", "peers", "golden check", "config", "pair", "intent get", "intent diff",
	"capspec add", "capspec deprecate", "publish", "resolve",
	// TestJSONOfHostCommands:
	"bundle inspect", "bundle build", "bundle publish", "run", "deploy", "call", "suspend", "resume",
	"move", "remove",
	// testdata/sync: names.txtar (sync over a pipe), tcp.txtar (sync over
	// TCP, resolve of a serving peer), profile.txtar (fetch-profile):
	"sync", "fetch-profile",
	// testdata/blob/byhash.txtar:
	"blob fetch",
	// testdata/instance/shutdown.txtar (a running instance):
	"ui", "down",
}

// TestJSONCoversEveryCommand fails when a command is added without saying
// how its --json output is checked.
func TestJSONCoversEveryCommand(t *testing.T) {
	for _, p := range cli.CommandPaths() {
		if _, ok := noJSON[p]; !ok && !slices.Contains(jsonCovered, p) {
			t.Errorf("command %q: its --json output is not checked against docs/json.schema.json (add it to a test, or to noJSON with the reason)", p)
		}
	}
}

var hexID = regexp.MustCompile(`"0x[0-9a-f]{64}"`)

// TestJSONOfHostCommands validates the executor's commands' --json output
// with the example counter bundle.
func TestJSONOfHostCommands(t *testing.T) {
	execParams(t) // builds the examples if `make examples` has not
	s := loadSchemas(t)
	root, _ := filepath.Abs("..")
	bundleFile := filepath.Join(root, "examples/counter/counter.bundle")
	if _, err := os.Stat(bundleFile); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	h := newHome(t, tmp+"/host")
	h.ok("", "init")
	on := func(h *tHome, def string, args ...string) string {
		t.Helper()
		out := h.ok("", append([]string{"--json"}, args...)...)
		s.check(def, strings.Join(args, " "), out)
		if hexID.MatchString(out) {
			t.Fatalf("%s: an identity or hash as hex:\n%s", strings.Join(args, " "), out)
		}
		return out
	}
	check := func(def string, args ...string) string { t.Helper(); return on(h, def, args...) }
	check("manifest", "bundle", "inspect", bundleFile)
	// A bundle built from its source directory (manifest and module).
	src := filepath.Join(tmp, "src")
	os.MkdirAll(src, 0o755)
	for _, f := range []string{"manifest.yaml", "greeter.wasm"} {
		b, err := os.ReadFile(filepath.Join(root, "examples/greeter", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(src, f), b, 0o644)
	}
	if out := check("manifest", "bundle", "build", src); !strings.Contains(out, `"file": "`) {
		t.Fatalf("bundle build names no file:\n%s", out)
	}
	greeter := filepath.Join(src, "greeter.bundle")
	// The publisher holds the peer's key and signs its bundle card.
	dev := newHome(t, tmp+"/dev")
	dev.ok("", "init")
	key, err := os.ReadFile(filepath.Join(root, "examples/counter/peer.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dev.dir, "keys", "counter.key"), key, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := on(dev, "append", "bundle", "publish", "--as", "counter", bundleFile); !strings.Contains(out, `"author": "wjfoegbjdg`) {
		t.Fatalf("bundle publish --as counter: not signed by the counter's peer:\n%s", out)
	}
	// A one-shot run of a granted bundle.
	check("append", "grant", greeter, "--caps", "req,log", "--instances", "2")
	if out := check("response", "run", greeter, "ann"); !strings.Contains(out, `"response": "hello, ann`) {
		t.Fatalf("run greeter ann:\n%s", out)
	}
	check("append", "grant", bundleFile, "--caps", "req,kv", "--memory", "64Mi")
	check("peer_status", "deploy", bundleFile)
	check("response", "call", "counter", "inc")
	check("peer_status", "suspend", "wjfoegbjdg") // the peer by the short form of its identity
	check("peer_status", "resume", "counter")
	check("peers", "peers")
	// The table prints the peer's short form, which every command takes back.
	if tbl := h.ok("", "peers"); !regexp.MustCompile(`(?m)^wjfoegbjdg +counter +running`).MatchString(tbl) || strings.Contains(tbl, "wjfoegbjdgpy6") {
		t.Fatalf("peers table, want the short form of the counter's identity:\n%s", tbl)
	}
	// Moved to a second home that consents on its own, and removed there.
	h2 := newHome(t, tmp+"/host2")
	h2.ok("", "init")
	on(h2, "append", "grant", bundleFile, "--caps", "req,kv")
	if out := check("move", "move", "counter", "--to", h2.dir); !strings.Contains(out, `"to": "`) {
		t.Fatalf("move names no receiving identity:\n%s", out)
	}
	on(h2, "removed", "remove", "counter")
}
