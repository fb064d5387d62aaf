// Package golden owns sublog's golden test vectors: language-neutral files
// that pin exact bytes, hashes and IDs (positive vectors) and bytes that must
// be refused for a named reason (negative vectors), the generators that write
// them and the checker that judges any directory of them, so another
// implementation's output can be checked against sublog's.
//
// A vector is one text file, golden/vectors/<suite>/<name>.vec: '#' comment
// lines, then one `key: value` line per field, values on one line (binary
// values in lowercase hex). Every vector has `suite`, `name` and `expect`
// (`accept` or `reject <reason>`).
package golden

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// ErrVector: a vector file that cannot be parsed, or that fails its check.
var (
	ErrVectorFormat = errors.New("golden: malformed vector file")
	ErrMismatch     = errors.New("golden: vector does not hold")
)

// Field is one `key: value` line.
type Field struct{ Key, Value string }

// Vector is one vector file.
type Vector struct {
	Comment []string
	Fields  []Field
}

var keyRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)

// Get returns a field's value ("" and false when absent).
func (v *Vector) Get(k string) (string, bool) {
	for _, f := range v.Fields {
		if f.Key == k {
			return f.Value, true
		}
	}
	return "", false
}

// Must returns a field's value or an error naming it.
func (v *Vector) Must(k string) (string, error) {
	s, ok := v.Get(k)
	if !ok {
		return "", fmt.Errorf("%w: %s: missing field %q", ErrVectorFormat, v.ID(), k)
	}
	return s, nil
}

// Hex returns a hex field's bytes.
func (v *Vector) Hex(k string) ([]byte, error) {
	s, err := v.Must(k)
	if err != nil {
		return nil, err
	}
	b, err := hex.DecodeString(s)
	if err != nil || strings.ToLower(s) != s {
		return nil, fmt.Errorf("%w: %s: field %q is not lowercase hex", ErrVectorFormat, v.ID(), k)
	}
	return b, nil
}

// Set appends a field.
func (v *Vector) Set(k, val string) { v.Fields = append(v.Fields, Field{k, val}) }

// SetHex appends a hex field.
func (v *Vector) SetHex(k string, b []byte) { v.Set(k, hex.EncodeToString(b)) }

// ID is suite/name for messages.
func (v *Vector) ID() string {
	s, _ := v.Get("suite")
	n, _ := v.Get("name")
	return s + "/" + n
}

// Expect returns "accept" or the reject reason.
func (v *Vector) Expect() (accept bool, reason string, err error) {
	e, err := v.Must("expect")
	if err != nil {
		return false, "", err
	}
	if e == "accept" {
		return true, "", nil
	}
	if r, ok := strings.CutPrefix(e, "reject "); ok && r != "" {
		return false, r, nil
	}
	return false, "", fmt.Errorf("%w: %s: expect %q is neither 'accept' nor 'reject REASON'", ErrVectorFormat, v.ID(), e)
}

// Encode renders the file.
func (v *Vector) Encode() []byte {
	var b bytes.Buffer
	for _, c := range v.Comment {
		fmt.Fprintf(&b, "# %s\n", c)
	}
	for _, f := range v.Fields {
		fmt.Fprintf(&b, "%s: %s\n", f.Key, f.Value)
	}
	return b.Bytes()
}

// Parse reads one vector file strictly.
func Parse(name string, data []byte) (*Vector, error) {
	v := &Vector{}
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	line := 0
	for sc.Scan() {
		line++
		t := sc.Text()
		if c, ok := strings.CutPrefix(t, "#"); ok {
			v.Comment = append(v.Comment, strings.TrimPrefix(c, " "))
			continue
		}
		if strings.TrimSpace(t) == "" {
			continue
		}
		k, val, ok := strings.Cut(t, ": ")
		if !ok || !keyRE.MatchString(k) {
			return nil, fmt.Errorf("%w: %s:%d: want 'key: value'", ErrVectorFormat, name, line)
		}
		if seen[k] {
			return nil, fmt.Errorf("%w: %s:%d: duplicate key %q", ErrVectorFormat, name, line, k)
		}
		seen[k] = true
		v.Fields = append(v.Fields, Field{k, val})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrVectorFormat, name, err)
	}
	for _, k := range []string{"suite", "name", "expect"} {
		if _, err := v.Must(k); err != nil {
			return nil, fmt.Errorf("%w (in %s)", err, name)
		}
	}
	return v, nil
}

// LoadDir reads every *.vec file under dir (recursively), sorted by path.
func LoadDir(dir string) ([]*Vector, []string, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".vec") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	sort.Strings(paths)
	var out []*Vector
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, err
		}
		v, err := Parse(p, b)
		if err != nil {
			return nil, nil, err
		}
		out = append(out, v)
	}
	return out, paths, nil
}
