package golden

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// Suite is one family of vectors: a generator (sublog's own output, written
// by -update) and a checker that judges any vector of the suite, whoever
// wrote it.
type Suite struct {
	Name     string
	Generate func() ([]*Vector, error)
	Check    func(v *Vector) error
	// Frozen suites are imported from outside corpora: Generate runs only
	// when the vectors are rewritten (-update), and the files are not
	// compared with a fresh generation in ordinary test runs (their
	// sources need not be on the machine); every file is still checked.
	Frozen bool
}

var suites = map[string]*Suite{}

// Register adds a suite; each suite file calls it from init.
func Register(s *Suite) {
	if _, dup := suites[s.Name]; dup {
		panic("golden: suite registered twice: " + s.Name)
	}
	suites[s.Name] = s
}

// Suites returns the registered suites by name.
func Suites() []*Suite {
	out := make([]*Suite, 0, len(suites))
	for _, s := range suites {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Result is the verdict on one vector.
type Result struct {
	Path string `json:"path"`
	ID   string `json:"id"`
	OK   bool   `json:"ok"`
	Err  string `json:"error,omitempty"`
}

// CheckVector judges one vector with its suite's checker.
func CheckVector(v *Vector) error {
	name, _ := v.Get("suite")
	s, ok := suites[name]
	if !ok {
		return fmt.Errorf("%w: %s: unknown suite %q", ErrVectorFormat, v.ID(), name)
	}
	if _, _, err := v.Expect(); err != nil {
		return err
	}
	return s.Check(v)
}

// CheckDir judges every vector file under dir.
func CheckDir(dir string) ([]Result, error) {
	vs, paths, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: no .vec files under %s", ErrVectorFormat, dir)
	}
	out := make([]Result, len(vs))
	for i, v := range vs {
		out[i] = Result{Path: paths[i], ID: v.ID(), OK: true}
		if err := CheckVector(v); err != nil {
			out[i].OK, out[i].Err = false, err.Error()
		}
	}
	return out, nil
}

// WriteAll regenerates every suite into dir (used by `go test ./golden -update`).
func WriteAll(dir string) error {
	for _, s := range Suites() {
		vs, err := s.Generate()
		if err != nil {
			return fmt.Errorf("golden: generating %s: %w", s.Name, err)
		}
		sd := filepath.Join(dir, s.Name)
		if err := os.RemoveAll(sd); err != nil {
			return err
		}
		if err := os.MkdirAll(sd, 0o755); err != nil {
			return err
		}
		for _, v := range vs {
			n, _ := v.Get("name")
			if n == "" {
				return errors.New("golden: generated vector without a name")
			}
			if err := os.WriteFile(filepath.Join(sd, n+".vec"), v.Encode(), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}
