package crdt

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// jsDir holds the JavaScript Automerge (3.x) that .ci/setup.d/automerge-js.sh
// installs from the committed package.json and package-lock.json.
const jsDir = "testdata/js"

func needJS(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("SKIPPED: JavaScript interop: node is not installed (run .ci/setup.d/automerge-js.sh)")
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@automerge", "automerge", "package.json")); err != nil {
		t.Skip("SKIPPED: JavaScript interop: @automerge/automerge is not installed in crdt/testdata/js (run .ci/setup.d/automerge-js.sh)")
	}
	return node
}

func runNode(t *testing.T, node string, args ...string) string {
	t.Helper()
	cmd := exec.Command(node, append([]string{"interop.mjs"}, args...)...)
	cmd.Dir = jsDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// TestJSInterop: a document sublog writes loads in JavaScript Automerge with
// the same content; changes JavaScript makes (as a device's actor) pass
// Check, apply, and read back correctly, and the document JavaScript saves
// reads the same in Go.
func TestJSInterop(t *testing.T) {
	node := needJS(t)
	owner, dev := ident(t, 1), ident(t, 2)
	d := New(owner.ID(), "web")
	m := manifest(2, "1.2.0")
	m.Labels = map[string]string{"zone": "eu"}
	disk := int64(10 << 20)
	m.Disk = &disk
	apply(t, d, owner.ID(), must(d.Build(owner.ID(), m, time.Unix(1_700_000_000, 0))), "c1")
	saved, err := d.Save()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	goDoc := filepath.Join(tmp, "go.automerge")
	if err := os.WriteFile(goDoc, saved, 0o600); err != nil {
		t.Fatal(err)
	}

	// Go -> JS.
	var js struct {
		Service string `json:"service"`
		Owner   string `json:"owner"`
		Spec    struct {
			Bundle    string `json:"bundle"`
			Replicas  int64  `json:"replicas"`
			Version   string `json:"version"`
			Resources struct {
				CPU    int64 `json:"cpu"`
				Memory int64 `json:"memory"`
				Disk   int64 `json:"disk"`
			} `json:"resources"`
			Placement struct {
				Labels map[string]string `json:"labels"`
			} `json:"placement"`
		} `json:"spec"`
	}
	out := runNode(t, node, "read", goDoc)
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if js.Service != "web" || js.Owner != owner.ID().String() || js.Spec.Replicas != 2 || js.Spec.Version != "1.2.0" ||
		js.Spec.Resources.CPU != 500 || js.Spec.Resources.Memory != 64<<20 || js.Spec.Placement.Labels["zone"] != "eu" ||
		!strings.HasPrefix(js.Spec.Bundle, "sha256:abab") {
		t.Fatalf("JavaScript read %s", out)
	}

	// JS -> Go: the device edits the document in JavaScript.
	outBase := filepath.Join(tmp, "js")
	runNode(t, node, "edit", goDoc, ActorOf(dev.ID()), outBase)
	changes, err := os.ReadFile(outBase + ".changes")
	if err != nil {
		t.Fatal(err)
	}
	p, err := Check(dev.ID(), owner.ID(), "web", changes)
	if err != nil {
		t.Fatalf("JavaScript changes refused: %v", err)
	}
	if _, err := d.Apply(p, "js"); err != nil {
		t.Fatalf("JavaScript changes did not apply: %v", err)
	}
	got := d.Desired()
	if got.Replicas != 5 || got.Version != "2.0.0-js" || got.Labels["tier"] != "frontend" || got.Labels["zone"] != "eu" ||
		got.Disk != 0 || got.Memory != 64<<20 || len(got.Problems) > 0 {
		t.Fatalf("Go read of JavaScript's edit: %+v", got)
	}
	if w := d.WritesOf("js"); len(w) != 4 {
		t.Fatalf("writes of the JavaScript change: %v", w)
	}
	// The whole document JavaScript saved reads the same as Go's merge.
	jsDoc, err := os.ReadFile(outBase + ".doc")
	if err != nil {
		t.Fatal(err)
	}
	flat, err := ReadDocument(jsDoc)
	if err != nil {
		t.Fatal(err)
	}
	mine := d.Flat()
	if len(flat) != len(mine) {
		t.Fatalf("JavaScript document %v\nGo document %v", flat, mine)
	}
	for k, v := range mine {
		if flat[k] != v {
			t.Fatalf("%s: JavaScript %q, Go %q", DisplayPath(k), flat[k], v)
		}
	}
	// And Go's merged document loads in JavaScript again.
	merged, _ := d.Save()
	if err := os.WriteFile(goDoc, merged, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := runNode(t, node, "read", goDoc); !strings.Contains(out, `"2.0.0-js"`) || !strings.Contains(out, `"frontend"`) {
		t.Fatalf("JavaScript read of the merged document: %s", out)
	}
}
