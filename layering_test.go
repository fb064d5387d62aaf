package sublog_test

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/sublog/sublog"

// confined maps a confined third-party library's name in ARCHITECTURE.md to
// its import path prefix.
var confined = map[string]string{
	"pebble":         "github.com/cockroachdb/pebble",
	"go-cose":        "github.com/veraison/go-cose",
	"automerge-go":   "github.com/automerge/automerge-go",
	"wazero":         "github.com/tetratelabs/wazero",
	"yamux":          "github.com/hashicorp/yamux",
	"curve25519-voi": "github.com/oasisprotocol/curve25519-voi",
}

var impure = []string{"os", "net", "os/exec", "syscall", "net/http"}

type row struct {
	pure  bool
	any   bool
	allow map[string]bool
}

// codeMap parses the code map table of ARCHITECTURE.md.
func codeMap(t *testing.T) map[string]row {
	t.Helper()
	f, err := os.Open("ARCHITECTURE.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows := map[string]row{}
	sc := bufio.NewScanner(f)
	inMap := false
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			inMap = line == "## Code map"
			continue
		}
		if !inMap || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 6 {
			t.Fatalf("code map row has %d cells: %q", len(cells), line)
		}
		name := strings.Trim(strings.TrimSpace(cells[1]), "`")
		r := row{pure: strings.TrimSpace(cells[3]) == "yes", allow: map[string]bool{}}
		for _, f := range strings.Fields(cells[4]) {
			f = strings.Trim(f, "`")
			if f == "*" {
				r.any = true
			}
			r.allow[f] = true
		}
		rows[name] = r
	}
	if len(rows) == 0 {
		t.Fatal("no code map rows found in ARCHITECTURE.md")
	}
	return rows
}

type pkg struct {
	ImportPath string
	Imports    []string
	GoFiles    []string
	CgoFiles   []string
}

func TestLayering(t *testing.T) {
	rows := codeMap(t)
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p pkg
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if len(p.GoFiles)+len(p.CgoFiles) == 0 || p.ImportPath == module {
			continue
		}
		name := strings.TrimPrefix(p.ImportPath, module+"/")
		if strings.Contains(name, "/testdata/") || strings.HasPrefix(name, "examples/") {
			continue // WASM examples and test fixtures are not part of the layering
		}
		seen++
		r, ok := rows[name]
		if !ok {
			t.Errorf("package %s has no row in the ARCHITECTURE.md code map", name)
			continue
		}
		for _, imp := range p.Imports {
			if strings.HasPrefix(imp, module+"/") {
				dep := strings.TrimPrefix(imp, module+"/")
				if !r.any && !r.allow[dep] {
					t.Errorf("%s imports %s, which its code map row does not allow", name, dep)
				}
				continue
			}
			for lib, prefix := range confined {
				if strings.HasPrefix(imp, prefix) && !r.any && !r.allow[lib] {
					t.Errorf("%s imports %s (%s), which is confined elsewhere", name, imp, lib)
				}
			}
			if r.pure {
				for _, bad := range impure {
					if imp == bad {
						t.Errorf("%s is marked pure but imports %s", name, imp)
					}
				}
			}
		}
	}
	if seen == 0 {
		t.Fatal("no packages checked")
	}
}
