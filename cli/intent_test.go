package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

type cliEnv struct {
	t    *testing.T
	home string
}

func (e *cliEnv) run(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == "SUBLOG_HOME" {
			return e.home
		}
		return ""
	}
	code := Main(args, strings.NewReader(stdin), &out, &errb, env)
	return out.String(), errb.String(), code
}

func (e *cliEnv) ok(stdin string, args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(stdin, args...)
	if code != 0 {
		e.t.Fatalf("sublog %v: exit %d: %s", args, code, errs)
	}
	return strings.TrimSpace(out)
}

func manifestYAML(owner string, replicas int, version string) string {
	return fmt.Sprintf(`kind: intent
service: web
owner: %s
spec:
  bundle: sha256:%064d
  replicas: %d
  resources: {cpu: 500m, memory: 64Mi, disk: 10Mi, gpu: 0}
  placement: {labels: {zone: eu}}
  version: %s
`, owner, 1, replicas, version)
}

func TestIntentManifestErrorsNameFieldAndLine(t *testing.T) {
	e := &cliEnv{t: t, home: t.TempDir()}
	e.ok("", "init")
	cases := []struct{ doc, want string }{
		{"kind: intent\nservice: web\nspec:\n  replicas: 2\n  resources:\n    memory: 64Q\n", "<stdin>:6: field spec.resources.memory"},
		{"kind: intent\nservice: web\nspec:\n  replicas: lots\n", "<stdin>:4: field spec.replicas"},
		{"kind: intent\nservice: web\nspec:\n  placement:\n    hosts:\n      - nope\n", "<stdin>:6: field spec.placement.hosts.0"},
		{"kind: intent\nservice: web\nspec:\n  version: 1.2\n", "<stdin>:4: field spec.version"},
		{"kind: intent\nservice: Web!\nspec: {}\n", "<stdin>:2: field service"},
		{"kind: intent\nservice: web\nspec:\n  resources:\n    cpu: fast\n", "<stdin>:5: field spec.resources.cpu"},
		{"kind: intent\nservice: web\nspec:\n  replicas: 1\n  colour: red\n", "<stdin>:5: field spec.colour"},
	}
	for _, c := range cases {
		_, errs, code := e.run(c.doc, "append", "-")
		if code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want %q", c.doc, code, errs, c.want)
		}
	}
}

func TestDelegateStatusPlanAudit(t *testing.T) {
	e := &cliEnv{t: t, home: t.TempDir()}
	owner := e.ok("", "init")
	laptop := e.ok("", "init", "--name", "laptop")
	host := e.ok("", "init", "--name", "h1")
	e.ok("", "delegate", laptop, "--services", "web")
	e.ok(manifestYAML(owner, 1, "1.0.0"), "append", "-", "--as", "laptop")
	e.ok("kind: profile\ncpu: 4000\nmemory: 4294967296\ndisk: 1073741824\ngpu: 0\nlabels: {zone: eu}\n", "append", "-", "--as", "h1")
	e.ok("kind: grant\nservice: web\nlimits: {memory: 1073741824}\n", "append", "-", "--as", "h1")

	var st struct {
		Desired []struct {
			Service  string
			Replicas int64
			Version  string
		}
		Plan struct {
			Actions []struct{ Action, Host string }
		}
	}
	if err := json.Unmarshal([]byte(e.ok("", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Desired) != 1 || st.Desired[0].Replicas != 1 || len(st.Plan.Actions) != 1 ||
		st.Plan.Actions[0].Action != "deploy" || st.Plan.Actions[0].Host != host {
		t.Fatalf("status %+v", st)
	}
	text := e.ok("", "status", "web")
	for _, want := range []string{"DESIRED", "OBSERVED", "PLAN", "deploy", "1.0.0"} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
	// Revoke the laptop: its later intent does not count.
	e.ok("", "undelegate", laptop)
	// Refused as written nowhere-counting intent; forced, it is stored and ignored.
	if _, errs, code := e.run(manifestYAML(owner, 3, "9.9.9"), "append", "-", "--as", "laptop"); code != 1 || !strings.Contains(errs, "is not a device of") {
		t.Fatalf("a revoked device's intent: exit %d: %s", code, errs)
	}
	e.ok(manifestYAML(owner, 3, "9.9.9"), "append", "-", "--as", "laptop", "--force")
	if err := json.Unmarshal([]byte(e.ok("", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Desired[0].Replicas != 1 || st.Desired[0].Version != "1.0.0" {
		t.Fatalf("revoked laptop changed intent: %+v", st.Desired)
	}
	// The audit names the decision and the authority behind the plan.
	audit := e.ok("", "replay", "--audit")
	for _, want := range []string{"DECISION", "ignored:", "delegation revoked", "applied:", "because of intent", "delegated by"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit lacks %q:\n%s", want, audit)
		}
	}
	plan := e.ok("", "plan")
	if !strings.Contains(plan, "deploy") {
		t.Errorf("plan:\n%s", plan)
	}
	// An unchanged manifest appends nothing and says so (exit 0).
	if out, errs, code := e.run(manifestYAML(owner, 1, "1.0.0"), "append", "-"); code != 0 || !strings.HasPrefix(out, "unchanged") {
		t.Errorf("unchanged: %d %q %s", code, out, errs)
	}
	if _, _, code := e.run("", "status", "nosuch"); code != 1 {
		t.Errorf("status of unknown service: exit %d", code)
	}
}

func TestObservedKindsFromYAML(t *testing.T) {
	e := &cliEnv{t: t, home: t.TempDir()}
	owner := e.ok("", "init")
	host := e.ok("", "init", "--name", "h1")
	bad := []struct{ doc, want string }{
		{"kind: profile\ncpu: 2\nmemory: 4Q\n", "<stdin>:3: field memory"},
		{"kind: profile\ncpu: 2000\nnetwork:\n  egress: maybe\n", "<stdin>:4: field network.egress"},
		{"kind: grant\nservice: web\nowner: nope\n", "<stdin>:3: field owner"},
		{"kind: grant\nlimits: {memory: 1Gi}\n", "field service"},
		{"kind: observe\nservice: web\nstate: running\n", "field peer"},
		{"kind: observe\npeer: " + host + "\nstate: dancing\n", "<stdin>:3: field state"},
		{"kind: delegate\ndevice: " + host + "\nupto: 3\n", "<stdin>:3: field upto"},
		{"kind: grant\nservice: web\ncolour: red\n", "<stdin>:3: field colour"},
	}
	for _, c := range bad {
		_, errs, code := e.run(c.doc, "append", "-", "--as", "h1")
		if code != 1 || !strings.Contains(errs, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want %q", c.doc, code, errs, c.want)
		}
	}
	e.ok(manifestYAML(owner, 1, "1.0.0"), "append", "-")
	e.ok("kind: profile\ncpu: 4000m\nmemory: 4Gi\ndisk: 100Gi\ngpu: 0\nlabels: {zone: eu}\n", "append", "-", "--as", "h1")
	e.ok("kind: grant\nservice: web\nowner: "+owner+"\nlimits: {memory: 1Gi, instances: 2}\nexpires: 720h\n", "append", "-", "--as", "h1")
	e.ok("kind: observe\npeer: "+host+"\nservice: web\nowner: "+owner+"\nstate: running\nusage: {memory: 32Mi, cpu_ms: 1200}\n", "append", "-", "--as", "h1")
	var st struct {
		Observed []struct {
			Host      string
			Profile   struct{ CPU, Memory uint64 }
			Instances []struct{ Service, State string }
		}
		Plan struct{ Actions []struct{ Action string } }
	}
	if err := json.Unmarshal([]byte(e.ok("", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Observed) != 1 || st.Observed[0].Profile.CPU != 4000 || st.Observed[0].Profile.Memory != 4<<30 ||
		len(st.Observed[0].Instances) != 1 || st.Observed[0].Instances[0].State != "running" || len(st.Plan.Actions) != 0 {
		t.Fatalf("observed %+v plan %+v", st.Observed, st.Plan)
	}
}

// TestLaptopsOfflineViaBundles is the acceptance scenario end to
// end: an owner and three device homes exchange cards only as bundle files;
// two laptops edit the same service offline and converge on the same
// intent and plan (a conflict shown with its winner); the third device is
// revoked and its later intent does not count anywhere.
func TestLaptopsOfflineViaBundles(t *testing.T) {
	dir := t.TempDir()
	homes := map[string]*cliEnv{}
	ids := map[string]string{}
	for _, n := range []string{"owner", "l1", "l2", "l3"} {
		homes[n] = &cliEnv{t: t, home: dir + "/" + n}
		ids[n] = homes[n].ok("", "init")
	}
	send := func(from string, to ...string) {
		t.Helper()
		f := dir + "/" + from + ".bundle"
		homes[from].ok("", "export", "--out", f)
		for _, n := range to {
			homes[n].ok("", "import", f)
		}
	}
	m := func(replicas int, version, memory string) string {
		return fmt.Sprintf("kind: intent\nservice: web\nspec:\n  replicas: %d\n  version: %s\n  resources: {cpu: 250m, memory: %s}\n",
			replicas, version, memory)
	}
	o := homes["owner"]
	for _, d := range []string{"l1", "l2", "l3"} {
		o.ok("", "delegate", ids[d])
		// Pairing: the device trusts its owner; once the delegation is
		// stored the owner and its other devices are the device's own user
		// (the trust rule), and the owner's home takes its devices' logs.
		homes[d].ok("", "trust", ids["owner"])
	}
	o.ok(m(1, "1.0.0", "64Mi"), "append", "-")
	send("owner", "l1", "l2", "l3")

	homes["l3"].ok(m(2, "1.0.0", "64Mi"), "append", "-") // counts: the owner sees it before revoking
	send("l3", "owner")
	o.ok("", "undelegate", ids["l3"])
	send("owner", "l1", "l2")                            // the laptops pick up l3's counted edit and the revocation
	homes["l3"].ok(m(9, "6.6.6", "64Mi"), "append", "-") // after the revocation point

	// Offline edits: different fields, and the same field (memory).
	homes["l1"].ok(m(3, "1.0.0", "128Mi"), "append", "-")
	homes["l2"].ok(m(2, "2.0.0", "256Mi"), "append", "-") // keeps replicas as it sees them

	send("l1", "l2", "owner")
	send("l2", "l1", "owner")
	// The revoked device is trusted nowhere any more: its bundle is refused
	// whole (the trust rule), and nothing of it is stored.
	f := dir + "/l3-late.bundle"
	homes["l3"].ok("", "export", "--out", f)
	for _, n := range []string{"owner", "l1", "l2"} {
		_, stderr, code := homes[n].run("", "import", f)
		if code != 1 || !strings.Contains(stderr, "not a log this home takes") {
			t.Fatalf("%s took the revoked device's bundle: %d %s", n, code, stderr)
		}
	}
	send("owner", "l1", "l2", "l3")

	type view struct {
		Desired []struct {
			Replicas  int64
			Version   string
			Memory    int64
			Conflicts []struct{ Path string }
		}
		Plan any
	}
	var first []byte
	for _, n := range []string{"l1", "l2", "owner", "l3"} {
		out := homes[n].ok("", "status", "--json")
		var v view
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Desired) != 1 || v.Desired[0].Replicas != 3 || v.Desired[0].Version != "2.0.0" {
			t.Fatalf("%s: desired %+v", n, v.Desired)
		}
		if mem := v.Desired[0].Memory; mem != 128<<20 && mem != 256<<20 {
			t.Fatalf("%s: memory %d", n, mem)
		}
		if len(v.Desired[0].Conflicts) != 1 || v.Desired[0].Conflicts[0].Path != "spec.resources.memory" {
			t.Fatalf("%s: conflicts %+v", n, v.Desired[0].Conflicts)
		}
		// The plan's "at" is each home's own clock when it computed the plan;
		// the homes must agree on everything else.
		if p, ok := v.Plan.(map[string]any); ok {
			delete(p, "at")
		}
		d, _ := json.Marshal(v)
		if first == nil {
			first = d
		} else if string(d) != string(first) {
			t.Fatalf("%s disagrees:\n%s\n%s", n, d, first)
		}
	}
	text := homes["l2"].ok("", "status", "web")
	if !strings.Contains(text, "conflict: web") || !strings.Contains(text, "won") || !strings.Contains(text, "lost") {
		t.Fatalf("status does not show the conflict:\n%s", text)
	}
	audit := o.ok("", "replay", "--audit")
	if !strings.Contains(audit, "revoked: its intent counts up to its seq 1") {
		t.Fatalf("audit does not show the revocation:\n%s", audit)
	}
	// The revoked device's later card was never stored by the owner.
	if l3 := o.ok("", "log", ids["l3"], "--json"); strings.Contains(l3, `"seq": 2`) {
		t.Fatalf("the owner stored the revoked device's later card:\n%s", l3)
	}
}
