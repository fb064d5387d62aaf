package bundle

import (
	"bytes"
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/units"
)

// SourceFile is the name of the manifest in a bundle source directory.
const SourceFile = "manifest.yaml"

// Source is a manifest as a person writes it (YAML or JSON) in a bundle
// source directory, next to the compiled module:
//
//	name: counter
//	version: 1.0.0
//	peer: <z-base-32 identity>
//	module: counter.wasm
//	caps: [req, kv]
//	limits: {memory: 32Mi, cpu_req: 200ms, cpu_total: 1h, instances: 1, disk: 1Mi}
//	policy: sha256:<hex>   # optional
type Source struct {
	Name    string       `yaml:"name"`
	Version string       `yaml:"version"`
	Peer    string       `yaml:"peer"`
	Module  string       `yaml:"module"`
	Caps    []string     `yaml:"caps"`
	Limits  SourceLimits `yaml:"limits"`
	Policy  string       `yaml:"policy"`
}

// SourceLimits are limits in the units people write.
type SourceLimits struct {
	Memory    scalar `yaml:"memory"`
	CPUReq    scalar `yaml:"cpu_req"`
	CPUTotal  scalar `yaml:"cpu_total"`
	Instances scalar `yaml:"instances"`
	Disk      scalar `yaml:"disk"`
}

// scalar takes a YAML string or number as its text (64Mi and 4096 alike).
type scalar string

func (s *scalar) UnmarshalYAML(b []byte) error {
	var v any
	if err := yaml.Unmarshal(b, &v); err != nil {
		return err
	}
	switch x := v.(type) {
	case string:
		*s = scalar(x)
	case uint64, int64, int, uint:
		*s = scalar(fmt.Sprint(x))
	case nil:
		*s = ""
	default:
		return fmt.Errorf("%v is not a quantity", x)
	}
	return nil
}

// ParseSource reads a manifest source document strictly (unknown fields are
// errors) and converts it; it returns the manifest and the module's path
// relative to the source directory.
func ParseSource(doc []byte) (Manifest, string, error) {
	var s Source
	dec := yaml.NewDecoder(bytes.NewReader(doc), yaml.DisallowUnknownField(), yaml.Strict())
	if err := dec.Decode(&s); err != nil {
		return Manifest{}, "", fmt.Errorf("%w: %s: %v", ErrManifest, SourceFile, err)
	}
	m := Manifest{Name: s.Name, Version: s.Version, Caps: s.Caps}
	peer, err := key.ParseID(s.Peer)
	if err != nil {
		return Manifest{}, "", fmt.Errorf("%w: peer %q: %w", ErrManifest, s.Peer, err)
	}
	m.Peer = peer.Bytes()
	if m.Limits, err = s.Limits.convert(); err != nil {
		return Manifest{}, "", fmt.Errorf("%w: %w", ErrManifest, err)
	}
	if s.Policy != "" {
		h, err := ParseHash(s.Policy)
		if err != nil {
			return Manifest{}, "", fmt.Errorf("%w: policy: %w", ErrManifest, err)
		}
		m.Policy = h[:]
	}
	mod := s.Module
	if mod == "" {
		mod = s.Name + ".wasm"
	}
	if path.IsAbs(mod) || strings.Contains(mod, "..") || strings.ContainsAny(mod, "\\\x00") {
		return Manifest{}, "", fmt.Errorf("%w: module %q must be a file inside the source directory", ErrManifest, mod)
	}
	return m, mod, nil
}

func (s SourceLimits) convert() (Limits, error) {
	var l Limits
	var err error
	if s.Memory != "" {
		if l.Memory, err = units.ParseBytes(string(s.Memory)); err != nil {
			return l, fmt.Errorf("limits.memory: %w", err)
		}
	}
	if s.Disk != "" {
		if l.Disk, err = units.ParseBytes(string(s.Disk)); err != nil {
			return l, fmt.Errorf("limits.disk: %w", err)
		}
	}
	if l.CPUReqMS, err = millis(string(s.CPUReq)); err != nil {
		return l, fmt.Errorf("limits.cpu_req: %w", err)
	}
	if l.CPUTotalMS, err = millis(string(s.CPUTotal)); err != nil {
		return l, fmt.Errorf("limits.cpu_total: %w", err)
	}
	if s.Instances != "" {
		if l.Instances, err = strconv.ParseUint(string(s.Instances), 10, 32); err != nil {
			return l, fmt.Errorf("limits.instances: %q is not a whole number", s.Instances)
		}
	}
	return l, l.Validate()
}

func millis(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	d, err := units.ParseDuration(s)
	if err != nil {
		return 0, err
	}
	if d%1e6 != 0 || d == 0 {
		return 0, fmt.Errorf("%q is not a positive whole number of milliseconds", s)
	}
	return uint64(d / 1e6), nil
}
