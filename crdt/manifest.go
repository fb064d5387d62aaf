package crdt

import (
	"encoding/hex"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/automerge/automerge-go"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/units"
)

// Manifest is an intent manifest (kind: intent) after validation. Absent
// optional fields are nil. Applying it is a three-way merge (see Diff): a
// field it leaves out is removed only if this author set the value the
// document holds now (the author's last applied manifest had it), or if
// Delete names it; fields other identities set stay.
type Manifest struct {
	Service string
	Owner   *key.ID // nil: the owner the author speaks for
	Remove  bool    // remove the service

	// Delete lists flat paths (Sep-joined) removed whoever set them; a
	// container path ("spec.policy") stands for every field under it but
	// those the manifest sets. Patch: the manifest has no spec, only
	// Delete, and touches nothing else (no three-way removal).
	Delete []string
	Patch  bool

	Bundle    string // "sha256:<64 hex>" or ""
	Replicas  *int64
	Version   string
	CPU       *int64 // millicores
	Memory    *int64 // bytes
	Disk      *int64
	GPU       *int64
	Bandwidth *int64 // bytes per second
	Egress    *bool
	Hosts     []key.ID
	Avoid     []key.ID
	Labels    map[string]string
	Policy    map[string]any // string, int64 or bool
}

// FieldError names the manifest field (dotted path) and its line.
type FieldError struct {
	Field string
	Line  int // 0 when unknown
	Msg   string
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("manifest field %s (line %d): %s", e.Field, e.Line, e.Msg)
	}
	return fmt.Sprintf("manifest field %s: %s", e.Field, e.Msg)
}

func (e *FieldError) Unwrap() error { return ErrManifest }

var (
	serviceRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	bundleRE  = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	policyRE  = regexp.MustCompile(`^[A-Za-z0-9_.\-/]{1,63}$`)
)

// ParseManifest validates a parsed manifest document (the YAML/JSON fields
// as maps, slices and scalars). lineOf gives the line of a dotted field path
// for error messages (nil: no lines). Unknown fields are errors.
func ParseManifest(doc map[string]any, lineOf func(path string) int) (*Manifest, error) {
	p := &mparser{lineOf: lineOf}
	m := &Manifest{}
	p.known("", doc, "kind", "service", "owner", "spec", "remove", "delete")
	if k, ok := doc["kind"]; ok {
		if s, _ := k.(string); s != "intent" {
			p.fail("kind", "must be intent")
		}
	}
	m.Service = p.str("service", doc["service"], true)
	if m.Service != "" && !serviceRE.MatchString(m.Service) {
		p.fail("service", fmt.Sprintf("%q is not a service name (lowercase letters, digits and '-', at most 63)", m.Service))
	}
	if o := p.str("owner", doc["owner"], false); o != "" {
		id, err := key.ParseID(o)
		if err != nil {
			p.fail("owner", err.Error())
		} else {
			m.Owner = &id
		}
	}
	if r, ok := doc["remove"]; ok {
		b, isb := r.(bool)
		if !isb {
			p.fail("remove", "must be true or false")
		}
		m.Remove = b
	}
	spec, hasSpec := doc["spec"]
	dels, hasDel := doc["delete"]
	if m.Remove {
		if hasSpec {
			p.fail("spec", "a removal (remove: true) carries no spec")
		}
		if hasDel {
			p.fail("delete", "a removal (remove: true) carries no delete list")
		}
		return m, p.err
	}
	if hasDel {
		m.Delete = p.deletions(dels)
	}
	if !hasSpec {
		if !hasDel {
			p.fail("spec", "missing (or say remove: true, or list fields under delete:)")
			return nil, p.err
		}
		m.Patch = true
		if p.err != nil {
			return nil, p.err
		}
		return m, nil
	}
	sm := p.mapOf("spec", spec)
	p.known("spec", sm, "bundle", "replicas", "resources", "placement", "policy", "version")
	if b := p.str("spec.bundle", sm["bundle"], false); b != "" {
		if !bundleRE.MatchString(b) {
			p.fail("spec.bundle", fmt.Sprintf("%q is not a content hash (sha256: and 64 lowercase hex digits)", b))
		}
		m.Bundle = b
	}
	if v, ok := sm["replicas"]; ok {
		n := p.count("spec.replicas", v, 1000)
		m.Replicas = &n
	}
	if v, ok := sm["version"]; ok {
		switch v := v.(type) {
		case string:
			if v == "" || len(v) > 64 || !utf8.ValidString(v) {
				p.fail("spec.version", "must be 1 to 64 characters of UTF-8")
			}
			m.Version = v
		default:
			p.fail("spec.version", "must be a string (quote it: \"1.2.0\")")
		}
	}
	if v, ok := sm["resources"]; ok {
		rm := p.mapOf("spec.resources", v)
		p.known("spec.resources", rm, "cpu", "memory", "disk", "gpu", "network")
		if v, ok := rm["cpu"]; ok {
			n := p.quantity("spec.resources.cpu", v, units.ParseMilliCPU, 1000)
			m.CPU = &n
		}
		if v, ok := rm["memory"]; ok {
			n := p.quantity("spec.resources.memory", v, units.ParseBytes, 1)
			m.Memory = &n
		}
		if v, ok := rm["disk"]; ok {
			n := p.quantity("spec.resources.disk", v, units.ParseBytes, 1)
			m.Disk = &n
		}
		if v, ok := rm["gpu"]; ok {
			n := p.count("spec.resources.gpu", v, 1024)
			m.GPU = &n
		}
		if v, ok := rm["network"]; ok {
			nm := p.mapOf("spec.resources.network", v)
			p.known("spec.resources.network", nm, "bandwidth", "egress")
			if v, ok := nm["bandwidth"]; ok {
				n := p.quantity("spec.resources.network.bandwidth", v, units.ParseBytes, 1)
				m.Bandwidth = &n
			}
			if v, ok := nm["egress"]; ok {
				b, isb := v.(bool)
				if !isb {
					p.fail("spec.resources.network.egress", "must be true or false")
				}
				m.Egress = &b
			}
		}
	}
	if v, ok := sm["placement"]; ok {
		// hosts, avoid and labels; any other key with a string value is
		// shorthand for a label ({region: home-lab}).
		pm := p.mapOf("spec.placement", v)
		m.Hosts = p.ids("spec.placement.hosts", pm["hosts"])
		m.Avoid = p.ids("spec.placement.avoid", pm["avoid"])
		label := func(f, k string, v any) {
			if !policyRE.MatchString(k) {
				p.fail(f, "label names are 1 to 63 of A-Z a-z 0-9 _ . - /")
			}
			if _, ok := v.(string); !ok {
				p.fail(f, "a label constraint is a string (placement knows hosts, avoid, labels and label shorthands)")
			}
			if m.Labels == nil {
				m.Labels = map[string]string{}
			}
			m.Labels[k] = p.str(f, v, true)
		}
		var keys []string
		for k := range pm {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			switch k {
			case "hosts", "avoid":
			case "labels":
				lm := p.mapOf("spec.placement.labels", pm[k])
				var lk []string
				for k := range lm {
					lk = append(lk, k)
				}
				sort.Strings(lk)
				for _, l := range lk {
					label("spec.placement.labels."+l, l, lm[l])
				}
			default:
				label("spec.placement."+k, k, pm[k])
			}
		}
	}
	if v, ok := sm["policy"]; ok {
		pm := p.mapOf("spec.policy", v)
		m.Policy = map[string]any{}
		for k, v := range pm {
			f := "spec.policy." + k
			if !policyRE.MatchString(k) {
				p.fail(f, "policy names are 1 to 63 of A-Z a-z 0-9 _ . - /")
			}
			switch v := v.(type) {
			case string:
				if !utf8.ValidString(v) {
					p.fail(f, "is not valid UTF-8")
				}
				m.Policy[k] = v
			case bool:
				m.Policy[k] = v
			default:
				if n, ok := asInt(v); ok {
					m.Policy[k] = n
				} else {
					p.fail(f, "policy values are strings, integers or booleans")
				}
			}
		}
	}
	if p.err == nil {
		t := m.target()
		for i, d := range m.Delete {
			if _, ok := t[d]; ok {
				p.fail(fmt.Sprintf("delete.%d", i), fmt.Sprintf("%s is both set by this manifest and listed for deletion", DisplayPath(d)))
			}
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	return m, nil
}

// deletions parses the delete: list, dotted field paths of the schema
// (spec.version, spec.placement.hosts.ID, spec.policy.KEY, or a container
// such as spec.policy), into flat paths, sorted and without repeats.
func (p *mparser) deletions(v any) []string {
	l, ok := v.([]any)
	if !ok {
		p.fail("delete", "must be a list of field paths (like spec.version or spec.policy.tier)")
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for i, e := range l {
		f := fmt.Sprintf("delete.%d", i)
		s, ok := e.(string)
		if !ok {
			p.fail(f, "must be a field path (like spec.version)")
			continue
		}
		flat, err := deletePath(s)
		if err != nil {
			p.fail(f, err.Error())
			continue
		}
		if !seen[flat] {
			seen[flat] = true
			out = append(out, flat)
		}
	}
	sort.Strings(out)
	return out
}

// deletePath checks one dotted path of the delete: list and returns it flat.
// Label and policy names may hold dots, so everything after
// "spec.placement.labels." or "spec.policy." is the name.
func deletePath(s string) (string, error) {
	flat := func(seg ...string) string { return strings.Join(seg, Sep) }
	bad := fmt.Errorf("%q is not a field of the intent schema (spec.bundle, spec.replicas, spec.version, spec.resources.cpu|memory|disk|gpu, spec.resources.network.bandwidth|egress, spec.placement.hosts.ID, spec.placement.avoid.ID, spec.placement.labels.NAME, spec.policy.NAME, or one of their maps)", s)
	name := func(prefix string) (string, bool) {
		k, ok := strings.CutPrefix(s, prefix)
		return k, ok && policyRE.MatchString(k)
	}
	switch s {
	case "spec", "spec.bundle", "spec.replicas", "spec.version", "spec.resources", "spec.resources.cpu",
		"spec.resources.memory", "spec.resources.disk", "spec.resources.gpu", "spec.resources.network",
		"spec.resources.network.bandwidth", "spec.resources.network.egress", "spec.placement",
		"spec.placement.hosts", "spec.placement.avoid", "spec.placement.labels", "spec.policy":
		return strings.ReplaceAll(s, ".", Sep), nil
	}
	for _, set := range []string{"hosts", "avoid"} {
		if id, ok := strings.CutPrefix(s, "spec.placement."+set+"."); ok {
			x, err := key.ParseID(id)
			if err != nil {
				return "", fmt.Errorf("%s: %v", s, err)
			}
			return flat("spec", "placement", set, x.String()), nil
		}
	}
	if k, ok := name("spec.placement.labels."); ok {
		return flat("spec", "placement", "labels", k), nil
	}
	if k, ok := name("spec.policy."); ok {
		return flat("spec", "policy", k), nil
	}
	if k, ok := name("spec.placement."); ok { // label shorthand
		return flat("spec", "placement", "labels", k), nil
	}
	return "", bad
}

type mparser struct {
	lineOf func(string) int
	err    error
}

func (p *mparser) fail(field, msg string) {
	if p.err != nil {
		return
	}
	line := 0
	if p.lineOf != nil {
		line = p.lineOf(field)
	}
	p.err = &FieldError{Field: field, Line: line, Msg: msg}
}

func (p *mparser) known(prefix string, m map[string]any, names ...string) {
	var unknown []string
	for k := range m {
		ok := false
		for _, n := range names {
			ok = ok || k == n
		}
		if !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		f := unknown[0]
		if prefix != "" {
			f = prefix + "." + f
		}
		p.fail(f, "unknown field (known: "+strings.Join(names, ", ")+")")
	}
}

func (p *mparser) str(field string, v any, required bool) string {
	if v == nil {
		if required {
			p.fail(field, "missing")
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		p.fail(field, "must be a string")
	}
	if !utf8.ValidString(s) {
		p.fail(field, "is not valid UTF-8")
	}
	return s
}

func (p *mparser) mapOf(field string, v any) map[string]any {
	switch m := v.(type) {
	case map[string]any:
		return m
	case nil:
		return map[string]any{}
	}
	p.fail(field, "must be a mapping")
	return map[string]any{}
}

func asInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case uint64:
		if n <= math.MaxInt64 {
			return int64(n), true
		}
	case uint32:
		return int64(n), true
	case float64:
		if n == math.Trunc(n) && n >= 0 && n <= 1<<53 {
			return int64(n), true
		}
	}
	return 0, false
}

func (p *mparser) count(field string, v any, max int64) int64 {
	n, ok := asInt(v)
	if !ok || n < 0 || n > max {
		p.fail(field, fmt.Sprintf("must be a whole number from 0 to %d, not %v", max, v))
		return 0
	}
	return n
}

// quantity accepts a number (in the unit's whole units: cores for CPU,
// bytes for sizes) or a string with a suffix.
func (p *mparser) quantity(field string, v any, parse func(string) (uint64, error), numMul float64) int64 {
	var s string
	switch v := v.(type) {
	case string:
		s = v
	case bool, nil, map[string]any, []any:
		p.fail(field, fmt.Sprintf("must be a quantity, not %v", v))
		return 0
	default:
		f, ok := toFloat(v)
		if !ok {
			p.fail(field, fmt.Sprintf("must be a quantity, not %v", v))
			return 0
		}
		s = strconv.FormatFloat(f*numMul, 'f', -1, 64)
		if numMul == 1000 {
			s += "m"
		}
	}
	n, err := parse(s)
	if err != nil {
		p.fail(field, err.Error())
		return 0
	}
	if n > math.MaxInt64/2 {
		p.fail(field, "too large")
		return 0
	}
	return int64(n)
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	}
	if i, ok := asInt(v); ok {
		return float64(i), true
	}
	return 0, false
}

func (p *mparser) ids(field string, v any) []key.ID {
	if v == nil {
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		p.fail(field, "must be a list of identities")
		return nil
	}
	var out []key.ID
	for i, e := range l {
		f := fmt.Sprintf("%s.%d", field, i)
		s, ok := e.(string)
		if !ok {
			p.fail(f, "must be an identity (z-base-32)")
			continue
		}
		id, err := key.ParseID(s)
		if err != nil {
			p.fail(f, err.Error())
			continue
		}
		out = append(out, id)
	}
	return out
}

// target is the flat document the manifest asks for (only the paths the
// schema manages: spec leaves and "removed").
func (m *Manifest) target() map[string]string {
	t := map[string]string{}
	set := func(v string, path ...string) { t[strings.Join(path, Sep)] = v }
	i := func(n *int64, path ...string) {
		if n != nil {
			set("i:"+strconv.FormatInt(*n, 10), path...)
		}
	}
	if m.Bundle != "" {
		set("s:"+m.Bundle, "spec", "bundle")
	}
	if m.Version != "" {
		set("s:"+m.Version, "spec", "version")
	}
	i(m.Replicas, "spec", "replicas")
	i(m.CPU, "spec", "resources", "cpu")
	i(m.Memory, "spec", "resources", "memory")
	i(m.Disk, "spec", "resources", "disk")
	i(m.GPU, "spec", "resources", "gpu")
	i(m.Bandwidth, "spec", "resources", "network", "bandwidth")
	if m.Egress != nil {
		set("b:"+strconv.FormatBool(*m.Egress), "spec", "resources", "network", "egress")
	}
	for _, h := range m.Hosts {
		set("b:true", "spec", "placement", "hosts", h.String())
	}
	for _, h := range m.Avoid {
		set("b:true", "spec", "placement", "avoid", h.String())
	}
	for k, v := range m.Labels {
		set("s:"+v, "spec", "placement", "labels", k)
	}
	for k, v := range m.Policy {
		switch v := v.(type) {
		case string:
			set("s:"+v, "spec", "policy", k)
		case int64:
			set("i:"+strconv.FormatInt(v, 10), "spec", "policy", k)
		case bool:
			set("b:"+strconv.FormatBool(v), "spec", "policy", k)
		}
	}
	return t
}

// containers are the maps the genesis change creates; never deleted.
var containers = map[string]bool{
	"spec": true, "spec" + Sep + "resources": true, "spec" + Sep + "placement": true,
	"spec" + Sep + "policy": true, "spec" + Sep + "resources" + Sep + "network": true,
	"spec" + Sep + "placement" + Sep + "hosts": true, "spec" + Sep + "placement" + Sep + "avoid": true,
	"spec" + Sep + "placement" + Sep + "labels": true,
}

// managed reports whether a manifest speaks about path.
func managed(path string) bool {
	return path == "removed" || (strings.HasPrefix(path, "spec"+Sep) && !containers[path])
}

// ErrUnchanged: the manifest asks for what the document already says.
var ErrUnchanged = fmt.Errorf("%w: the intent already says this (nothing to change)", ErrManifest)

// FieldChange is one field a manifest changes, with encoded values (as in
// Flat; "" is absent).
type FieldChange struct {
	Path string // flat path
	From string // the value now ("" absent)
	To   string // the value after ("" deleted)
}

// Op names the change: add, change, delete, or settle (the same value
// written again over a conflict, which settles it).
func (c FieldChange) Op() string {
	switch {
	case c.To == "":
		return "delete"
	case c.From == "":
		return "add"
	case c.From == c.To:
		return "settle"
	}
	return "change"
}

// Delta is what applying a manifest does to a document: the fields it
// changes (sorted by path) and the fields it leaves out that stay because
// another identity set their current values (Kept, sorted; empty for a
// delete-only manifest, which speaks of nothing but what it deletes).
type Delta struct {
	Changes []FieldChange
	Kept    []string
}

// plan is the three-way merge of manifest m into the current document cur
// (flat): every field m sets is written where its value differs (or is in
// conflict); a field m leaves out is deleted when owned says this author
// wrote its current value (its last applied manifest set it), or when m's
// delete list names it; any other field stays. A removal only sets the
// removed flag; a manifest with a spec brings a removed service back; a
// delete-only manifest (Patch) touches nothing but what it names.
func plan(cur map[string]string, m *Manifest, owned func(string) bool, conflicted map[string]bool) Delta {
	var out Delta
	if m.Remove {
		if cur["removed"] != "b:true" || conflicted["removed"] {
			out.Changes = append(out.Changes, FieldChange{Path: "removed", From: cur["removed"], To: "b:true"})
		}
		return out
	}
	want := m.target()
	dels := map[string]bool{}
	for _, d := range m.Delete {
		for k := range cur {
			if managed(k) && (k == d || strings.HasPrefix(k, d+Sep)) {
				dels[k] = true
			}
		}
	}
	var paths []string
	for k := range want {
		paths = append(paths, k)
	}
	for k := range cur {
		if _, ok := want[k]; !ok && managed(k) {
			paths = append(paths, k)
		}
	}
	sort.Strings(paths)
	for _, k := range paths {
		w, has := want[k]
		c, had := cur[k]
		switch {
		case has:
			if had && w == c && !conflicted[k] {
				continue
			}
			out.Changes = append(out.Changes, FieldChange{Path: k, From: c, To: w})
		case !had:
		case dels[k]:
			out.Changes = append(out.Changes, FieldChange{Path: k, From: c})
		case k == "removed":
			if !m.Patch {
				out.Changes = append(out.Changes, FieldChange{Path: k, From: c})
			}
		case m.Patch:
			// A delete-only manifest speaks of nothing else.
		case owned(k):
			out.Changes = append(out.Changes, FieldChange{Path: k, From: c})
		default:
			out.Kept = append(out.Kept, k)
		}
	}
	return out
}

// Owns reports whether author wrote the current value of the flat path: one
// of the field's maximal writers (writes no later write has seen) is a
// change by author that set this value. That is the document's record of
// the author's last applied manifest: Build writes what a manifest sets and
// deletes what this author set and a later manifest leaves out.
func (d *Doc) Owns(author key.ID, path string) bool {
	cur, ok := d.current()[path]
	if !ok {
		return false
	}
	actor := ActorOf(author)
	for _, w := range d.writers[path] {
		if w.Actor == actor && w.Writes[path] == cur {
			return true
		}
	}
	return false
}

func (d *Doc) conflicted() map[string]bool {
	out := map[string]bool{}
	for _, c := range d.Conflicts() {
		out[strings.ReplaceAll(c.Path, ".", Sep)] = true
	}
	return out
}

// Diff is what Build(author, m) would change, without changing anything.
func (d *Doc) Diff(author key.ID, m *Manifest) Delta {
	return plan(d.current(), m, func(p string) bool { return d.Owns(author, p) }, d.conflicted())
}

// Build returns the minimal Automerge changes (encoded, ready for an intent
// card) that apply manifest m to the author's current view d (the three-way
// merge of plan), made as the author's actor, timestamped at ts. When d is
// empty the genesis change comes first. Fields in conflict that m sets are
// written even when the winning value already matches, so the author's
// choice settles the conflict. ErrUnchanged: m changes nothing.
func (d *Doc) Build(author key.ID, m *Manifest, ts time.Time) (b []byte, err error) {
	defer safe(&err)
	var f *automerge.Doc
	if len(d.changes) == 0 {
		gen, err := Genesis(d.owner, d.service)
		if err != nil {
			return nil, err
		}
		f = automerge.New()
		if err := f.LoadIncremental(gen); err != nil {
			return nil, err
		}
	} else if f, err = d.am.Fork(); err != nil {
		return nil, err
	}
	delta := d.Diff(author, m)
	return buildOn(f, author, delta, ts, d.heads)
}

// buildOn makes delta's changes in f itself and returns those made since
// the heads since (genesis included when since is empty).
func buildOn(f *automerge.Doc, author key.ID, delta Delta, ts time.Time, since []Hash) ([]byte, error) {
	if len(delta.Changes) == 0 {
		return nil, ErrUnchanged
	}
	if err := f.SetActorID(ActorOf(author)); err != nil {
		return nil, err
	}
	t := ts
	if t.IsZero() {
		t = zeroTime
	}
	for _, c := range delta.Changes {
		if err := setPath(f, c.Path, c.To, c.To != ""); err != nil {
			return nil, err
		}
	}
	if _, err := f.Commit("", automerge.CommitOptions{Time: &t}); err != nil {
		return nil, err
	}
	chs, err := f.Changes(since...)
	if err != nil {
		return nil, err
	}
	return automerge.SaveChanges(chs), nil
}

// setPath sets (or, when !has, deletes) the leaf at flat path k.
func setPath(f *automerge.Doc, k, w string, has bool) error {
	seg := strings.Split(k, Sep)
	parent := f.RootMap()
	if len(seg) > 1 {
		pp := make([]any, len(seg)-1)
		for i, s := range seg[:len(seg)-1] {
			pp[i] = s
		}
		v, err := f.Path(pp...).Get()
		if err != nil {
			return err
		}
		if v.Kind() != automerge.KindMap {
			return fmt.Errorf("%w: %s is not a map in the document", ErrManifest, DisplayPath(strings.Join(seg[:len(seg)-1], Sep)))
		}
		parent = v.Map()
	}
	leaf := seg[len(seg)-1]
	if !has {
		return parent.Delete(leaf)
	}
	return parent.Set(leaf, decodeScalar(w))
}

func decodeScalar(v string) any {
	t, s, _ := strings.Cut(v, ":")
	switch t {
	case "s":
		return s
	case "i":
		n, _ := strconv.ParseInt(s, 10, 64)
		return n
	case "b":
		return s == "true"
	case "x":
		b, _ := hex.DecodeString(s)
		return b
	case "n":
		return nil
	}
	return s
}

// Writer is one device's own copy of a document for making changes in a
// long-running process: changes are made in place, with no copy of the
// document per change. Feed it every change of the document (Receive) and
// publish what Write returns. It remembers the values its own manifests
// wrote (its last applied manifest) for the three-way merge.
type Writer struct {
	am      *automerge.Doc
	owner   key.ID
	service string
	mine    map[string]string // flat path -> value this writer last wrote
}

// NewWriter returns a writer for (owner, service) with an empty document.
func NewWriter(owner key.ID, service string) *Writer {
	return &Writer{am: automerge.New(), owner: owner, service: service, mine: map[string]string{}}
}

// Receive applies changes made elsewhere (any order; Automerge queues
// changes until their dependencies arrive).
func (w *Writer) Receive(changes []byte) (err error) {
	defer safe(&err)
	if len(w.am.Heads()) == 0 {
		// An empty document would read the bytes as a whole document.
		gen, err := Genesis(w.owner, w.service)
		if err != nil {
			return err
		}
		if err := w.am.LoadIncremental(gen); err != nil {
			return err
		}
	}
	return w.am.LoadIncremental(changes)
}

// Write makes the minimal changes to apply m as author (the three-way
// merge of Doc.Build, against the values this writer wrote).
func (w *Writer) Write(author key.ID, m *Manifest, ts time.Time) (b []byte, err error) {
	defer safe(&err)
	var since []Hash
	if len(w.am.Heads()) == 0 {
		gen, err := Genesis(w.owner, w.service)
		if err != nil {
			return nil, err
		}
		if err := w.am.LoadIncremental(gen); err != nil {
			return nil, err
		}
	} else {
		since = w.am.Heads()
	}
	cur, err := flatten(w.am)
	if err != nil {
		return nil, err
	}
	delta := plan(cur, m, func(p string) bool { v, ok := w.mine[p]; return ok && v == cur[p] }, nil)
	if b, err = buildOn(w.am, author, delta, ts, since); err != nil {
		return nil, err
	}
	for _, c := range delta.Changes {
		if c.To == "" {
			delete(w.mine, c.Path)
		} else {
			w.mine[c.Path] = c.To
		}
	}
	return b, nil
}

// Manifest is the current document as a manifest (the whole merged intent,
// ready to edit and apply again: applied as it is, it changes nothing).
// Remove is set when the service is removed; the spec is filled in either
// way. Values the schema cannot read (another implementation wrote a string
// where a number belongs, say) are left out and described in problems.
func (d *Doc) Manifest() (m *Manifest, problems []string) {
	m = &Manifest{Service: d.service}
	o := d.owner
	m.Owner = &o
	flat := d.current()
	var keys []string
	for k := range flat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	bad := func(k, v, want string) {
		problems = append(problems, fmt.Sprintf("%s: %s is not %s", DisplayPath(k), ShowValue(v), want))
	}
	num := func(k, v string) *int64 {
		t, s, _ := strings.Cut(v, ":")
		var n int64
		var err error
		switch t {
		case "i":
			n, err = strconv.ParseInt(s, 10, 64)
		case "u":
			var u uint64
			u, err = strconv.ParseUint(s, 10, 63)
			n = int64(u)
		default:
			err = fmt.Errorf("type")
		}
		if err != nil || n < 0 {
			bad(k, v, "a whole number")
			return nil
		}
		return &n
	}
	str := func(k, v string) (string, bool) {
		if !strings.HasPrefix(v, "s:") {
			bad(k, v, "a string")
			return "", false
		}
		return v[2:], true
	}
	for _, k := range keys {
		v := flat[k]
		seg := strings.Split(k, Sep)
		switch {
		case k == "removed":
			m.Remove = v == "b:true"
		case !managed(k):
		case v == "{}":
			bad(k, v, "part of the schema")
		case len(seg) == 2 && seg[1] == "bundle":
			if s, ok := str(k, v); ok && bundleRE.MatchString(s) {
				m.Bundle = s
			} else if ok {
				bad(k, v, "a content hash")
			}
		case len(seg) == 2 && seg[1] == "version":
			if s, ok := str(k, v); ok {
				m.Version = s
			}
		case len(seg) == 2 && seg[1] == "replicas":
			m.Replicas = num(k, v)
		case len(seg) == 3 && seg[1] == "resources" && seg[2] == "cpu":
			m.CPU = num(k, v)
		case len(seg) == 3 && seg[1] == "resources" && seg[2] == "memory":
			m.Memory = num(k, v)
		case len(seg) == 3 && seg[1] == "resources" && seg[2] == "disk":
			m.Disk = num(k, v)
		case len(seg) == 3 && seg[1] == "resources" && seg[2] == "gpu":
			m.GPU = num(k, v)
		case len(seg) == 4 && seg[1] == "resources" && seg[2] == "network" && seg[3] == "bandwidth":
			m.Bandwidth = num(k, v)
		case len(seg) == 4 && seg[1] == "resources" && seg[2] == "network" && seg[3] == "egress" && strings.HasPrefix(v, "b:"):
			b := v == "b:true"
			m.Egress = &b
		case len(seg) == 4 && seg[1] == "placement" && (seg[2] == "hosts" || seg[2] == "avoid") && v == "b:true":
			id, err := key.ParseID(seg[3])
			if err != nil {
				bad(k, "s:"+seg[3], "an identity")
				continue
			}
			if seg[2] == "hosts" {
				m.Hosts = append(m.Hosts, id)
			} else {
				m.Avoid = append(m.Avoid, id)
			}
		case len(seg) == 4 && seg[1] == "placement" && seg[2] == "labels":
			if s, ok := str(k, v); ok {
				if m.Labels == nil {
					m.Labels = map[string]string{}
				}
				m.Labels[seg[3]] = s
			}
		case len(seg) == 3 && seg[1] == "policy":
			t, s, _ := strings.Cut(v, ":")
			if m.Policy == nil {
				m.Policy = map[string]any{}
			}
			switch t {
			case "s":
				m.Policy[seg[2]] = s
			case "b":
				m.Policy[seg[2]] = s == "true"
			case "i":
				if n, err := strconv.ParseInt(s, 10, 64); err == nil {
					m.Policy[seg[2]] = n
				}
			default:
				bad(k, v, "a string, integer or boolean")
			}
		default:
			bad(k, v, "part of the schema")
		}
	}
	return m, problems
}
