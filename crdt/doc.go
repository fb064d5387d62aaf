// Package crdt owns service intent documents: one Automerge document per
// (owner, service), the minimal change sets that move a document to a
// manifest, and the bookkeeping that makes conflicts and provenance visible
// (which change wrote which field, which concurrent value won).
//
// Automerge (automerge-go, cgo) lives only here. The package does no I/O.
//
// Document schema (version 1), readable by any Automerge implementation:
//
//	{ service: str, owner: str (z-base-32), removed?: bool,
//	  spec: { bundle?: str "sha256:<hex>", replicas?: int, version?: str,
//	          resources: { cpu?: int millicores, memory?: int bytes, disk?: int bytes,
//	                       gpu?: int, network: { bandwidth?: int bytes/s, egress?: bool } },
//	          placement: { hosts: {<id>: true}, avoid: {<id>: true}, labels: {<k>: str} },
//	          policy: { <k>: str | int | bool } } }
//
// The maps are created by a deterministic genesis change (fixed actor, time
// 0), so two devices that create the same service offline produce the same
// genesis bytes and their edits land in shared maps instead of conflicting
// whole-map writes. Every other change must be made by the actor whose
// Automerge actor ID is the card author's 32-byte key.
package crdt

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/automerge/automerge-go"

	"github.com/sublog/sublog/log/key"
)

// SchemaVersion is the version of the document schema above.
const SchemaVersion = 1

// Errors of the package.
var (
	ErrBadChanges  = errors.New("crdt: not valid Automerge change bytes")
	ErrNoChanges   = errors.New("crdt: no changes")
	ErrWrongActor  = errors.New("crdt: change made by an actor other than the card author")
	ErrActorSeq    = errors.New("crdt: change does not continue its actor's sequence")
	ErrMissingDeps = errors.New("crdt: change depends on changes not yet applied")
	ErrBadGenesis  = errors.New("crdt: genesis actor used for something other than the genesis change")
	ErrManifest    = errors.New("crdt: bad manifest")
	ErrTooMany     = errors.New("crdt: too many changes in one card")
)

// MaxChangesPerCard bounds the work one card can cause.
const MaxChangesPerCard = 64

// Hash is an Automerge change hash.
type Hash = automerge.ChangeHash

// ActorOf is the Automerge actor ID (hex) used by an identity.
func ActorOf(id key.ID) string { return hex.EncodeToString(id.Bytes()) }

// genesisActor is the fixed actor of a document's genesis change.
func genesisActor(owner key.ID, service string) string {
	h := sha256.New()
	h.Write([]byte("sublog/v1/intent-genesis\x00"))
	h.Write(owner.Bytes())
	h.Write([]byte(service))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// safe turns a panic inside the cgo wrapper (it panics on some internal
// errors) into an error, so no input can crash the process.
func safe(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: automerge: %v", ErrBadChanges, r)
	}
}

var zeroTime = time.Time{}

// Genesis returns the genesis change bytes of (owner, service): the same
// bytes on every machine.
func Genesis(owner key.ID, service string) (b []byte, err error) {
	defer safe(&err)
	d := automerge.New()
	if err := d.SetActorID(genesisActor(owner, service)); err != nil {
		return nil, err
	}
	r := d.RootMap()
	steps := []error{
		r.Set("service", service),
		r.Set("owner", owner.String()),
		r.Set("spec", automerge.NewMap()),
	}
	spec := d.Path("spec").Map()
	steps = append(steps,
		spec.Set("resources", automerge.NewMap()),
		spec.Set("placement", automerge.NewMap()),
		spec.Set("policy", automerge.NewMap()))
	steps = append(steps,
		d.Path("spec", "resources").Map().Set("network", automerge.NewMap()),
		d.Path("spec", "placement").Map().Set("hosts", automerge.NewMap()),
		d.Path("spec", "placement").Map().Set("avoid", automerge.NewMap()),
		d.Path("spec", "placement").Map().Set("labels", automerge.NewMap()))
	for _, e := range steps {
		if e != nil {
			return nil, e
		}
	}
	if _, err := d.Commit("sublog intent genesis", automerge.CommitOptions{Time: &zeroTime}); err != nil {
		return nil, err
	}
	chs, err := d.Changes()
	if err != nil {
		return nil, err
	}
	return automerge.SaveChanges(chs), nil
}

// Change is what Doc knows about one applied change.
type Change struct {
	Hash    Hash
	Actor   string
	Seq     uint64
	Deps    []Hash
	Tag     string            // the caller's label for the carrier (a card ID)
	Writes  map[string]string // flat path -> value written (Value encoding); "" = deleted
	clock   map[string]uint64 // actor -> highest seq in this change's causal past (inclusive)
	genesis bool
}

// Doc is one service's intent document plus provenance bookkeeping.
type Doc struct {
	owner     key.ID
	service   string
	am        *automerge.Doc
	changes   map[Hash]*Change
	seqs      map[string]uint64 // actor -> highest applied seq
	heads     []Hash
	flat      map[string]string    // nil when it must be read again
	writers   map[string][]*Change // path -> maximal writers of the path
	lastHeads []Hash
	objs      map[string]string // object ID (ctr@actor) -> flat path; "" is the root
	texts     map[string]bool   // object IDs of text objects
	log       []logEntry
}

// New returns an empty document for (owner, service).
func New(owner key.ID, service string) *Doc {
	return &Doc{owner: owner, service: service, am: automerge.New(),
		changes: map[Hash]*Change{}, seqs: map[string]uint64{}, flat: map[string]string{},
		writers: map[string][]*Change{}, objs: map[string]string{}, texts: map[string]bool{}}
}

// Owner and Service name the document.
func (d *Doc) Owner() key.ID   { return d.owner }
func (d *Doc) Service() string { return d.service }

// Len is the number of applied changes.
func (d *Doc) Len() int { return len(d.changes) }

// Has reports whether the change is applied.
func (d *Doc) Has(h Hash) bool { _, ok := d.changes[h]; return ok }

// Heads are the current heads, sorted.
func (d *Doc) Heads() []Hash { return append([]Hash(nil), d.heads...) }

// Parsed is a checked set of changes from one card.
type Parsed struct {
	author key.ID
	chs    []rawChange
}

// Changes lists the change hashes.
func (p *Parsed) Changes() []Hash {
	out := make([]Hash, len(p.chs))
	for i, c := range p.chs {
		out[i] = c.hash
	}
	return out
}

// Check parses change bytes carried by a card of author for (owner,
// service) and checks them without any document state: a concatenation of
// well-formed Automerge change chunks (checksums, framing, operations as
// Automerge parses them), at least one, at most MaxChangesPerCard, each made
// by the author's actor or exactly the genesis change of (owner, service).
func Check(author, owner key.ID, service string, b []byte) (p *Parsed, err error) {
	return check(author, owner, service, b, true)
}

// CheckStructure is Check without Automerge's own parse (which costs a
// scratch document): for a fold that copes with a change Automerge refuses
// at application (Apply then leaves the document as it was).
func CheckStructure(author, owner key.ID, service string, b []byte) (*Parsed, error) {
	return check(author, owner, service, b, false)
}

func check(author, owner key.ID, service string, b []byte, full bool) (p *Parsed, err error) {
	defer safe(&err)
	if len(b) == 0 {
		return nil, ErrNoChanges
	}
	chs, err := splitChanges(b)
	if err != nil {
		return nil, err
	}
	if len(chs) > MaxChangesPerCard {
		return nil, fmt.Errorf("%w: %d > %d", ErrTooMany, len(chs), MaxChangesPerCard)
	}
	ga := genesisActor(owner, service)
	actor := ActorOf(author)
	var gen []byte
	for _, c := range chs {
		switch c.actor {
		case actor:
		case ga:
			if gen == nil {
				if gen, err = Genesis(owner, service); err != nil {
					return nil, err
				}
			}
			if !bytes.Equal(c.raw, gen) {
				return nil, ErrBadGenesis
			}
		default:
			return nil, fmt.Errorf("%w: actor %s, author %s", ErrWrongActor, c.actor, ActorOf(author))
		}
	}
	// Let Automerge parse every operation: into an empty document the
	// changes only queue (their dependencies are absent), but malformed
	// columns or values are refused here, before any projection sees them.
	if !full {
		return &Parsed{author: author, chs: chs}, nil
	}
	probe := automerge.New()
	if err := probe.RootMap().Set("probe", true); err != nil {
		return nil, err
	}
	if _, err := probe.Commit("", automerge.CommitOptions{Time: &zeroTime}); err != nil {
		return nil, err
	}
	// (An empty document would treat the bytes as a whole document.)
	if err := probe.LoadIncremental(b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadChanges, err)
	}
	return &Parsed{author: author, chs: chs}, nil
}

// Ready reports the dependencies of p's changes that are neither applied
// nor earlier in p; Apply needs none missing.
func (d *Doc) Ready(p *Parsed) (missing []Hash) {
	inCard := map[Hash]bool{}
	for _, c := range p.chs {
		for _, dep := range c.deps {
			if !d.Has(dep) && !inCard[dep] {
				missing = append(missing, dep)
			}
		}
		inCard[c.hash] = true
	}
	return missing
}

// Apply applies the changes of one card, labelled tag, in order. Changes
// already present are skipped (the genesis change arrives many times). It
// applies nothing and fails if any dependency is missing or an actor's
// sequence would not continue by exactly one. If Automerge refuses a change
// halfway, the document is rebuilt from the cards applied before, so a bad
// card leaves no trace.
func (d *Doc) Apply(p *Parsed, tag string) (applied []*Change, err error) {
	defer safe(&err)
	if m := d.Ready(p); len(m) > 0 {
		return nil, fmt.Errorf("%w: %s", ErrMissingDeps, m[0])
	}
	seqs := map[string]uint64{}
	for _, c := range p.chs {
		if d.Has(c.hash) {
			continue
		}
		last, ok := seqs[c.actor]
		if !ok {
			last = d.seqs[c.actor]
		}
		if c.seq != last+1 {
			return nil, fmt.Errorf("%w: actor %s seq %d after %d", ErrActorSeq, c.actor, c.seq, last)
		}
		seqs[c.actor] = c.seq
	}
	for _, c := range p.chs {
		if d.Has(c.hash) {
			continue
		}
		ch, err := d.applyOne(c, tag)
		if err != nil {
			d.rebuild()
			return nil, err
		}
		applied = append(applied, ch)
	}
	if len(applied) > 0 {
		d.log = append(d.log, logEntry{p, tag})
	}
	return applied, nil
}

type logEntry struct {
	p   *Parsed
	tag string
}

// rebuild replays the cards applied so far into a fresh document.
func (d *Doc) rebuild() {
	log := d.log
	*d = *New(d.owner, d.service)
	for _, e := range log {
		d.Apply(e.p, e.tag)
	}
}

func (d *Doc) applyOne(c rawChange, tag string) (*Change, error) {
	deps := append([]Hash(nil), c.deps...)
	sortedHeads(deps)
	ch := &Change{Hash: c.hash, Actor: c.actor, Seq: c.seq, Deps: deps, Tag: tag,
		clock: map[string]uint64{}}
	ch.genesis = ch.Actor == genesisActor(d.owner, d.service)
	for _, dep := range deps {
		for a, s := range d.changes[dep].clock {
			if s > ch.clock[a] {
				ch.clock[a] = s
			}
		}
	}
	ch.clock[ch.Actor] = ch.Seq

	// What did this change write? Its operations say: every map key it
	// sets, deletes or makes an object at, with the value.
	if err := d.load(d.am, c); err != nil {
		return nil, err
	}
	d.flat = nil
	ch.Writes = d.writesOf(c.actor, c.ops)
	d.heads = d.lastHeads
	d.changes[ch.Hash] = ch
	d.seqs[ch.Actor] = ch.Seq
	for p := range ch.Writes {
		ws := d.writers[p][:0:0]
		for _, w := range d.writers[p] {
			if !w.before(ch) {
				ws = append(ws, w)
			}
		}
		d.writers[p] = append(ws, ch)
	}
	return ch, nil
}

// load applies one change chunk to am and checks that it took effect.
func (d *Doc) load(am *automerge.Doc, c rawChange) error {
	if err := am.LoadIncremental(c.raw); err != nil {
		return fmt.Errorf("%w: %v", ErrBadChanges, err)
	}
	// Just applied, nothing depends on it yet: it must be a head.
	heads := sortedHeads(am.Heads())
	for _, h := range heads {
		if h == c.hash {
			if am == d.am {
				d.lastHeads = heads
			}
			return nil
		}
	}
	return fmt.Errorf("%w: change %s did not apply", ErrBadChanges, c.hash)
}

func objKey(ctr uint64, actor string) string {
	if actor == "" {
		return ""
	}
	return strconv.FormatUint(ctr, 10) + "@" + actor
}

// writesOf records the objects ops create and returns the map keys they
// write (flat path -> encoded value, "" for a deletion). Writes inside
// lists are not register writes; edits of a text object count as a write
// of the text, whose value is read back from the document.
func (d *Doc) writesOf(actor string, ops []op) map[string]string {
	w := map[string]string{}
	var texts []string
	for _, o := range ops {
		parentID := objKey(o.objCtr, o.objActor)
		parent, known := d.objs[parentID]
		if parentID == "" {
			parent, known = "", true
		}
		if !known {
			continue
		}
		if o.elem {
			if d.texts[parentID] {
				texts = append(texts, parent)
			}
			continue
		}
		path := o.key
		if parent != "" {
			path = parent + Sep + o.key
		}
		switch o.action {
		case actSet:
			w[path] = o.value
		case actDel:
			w[path] = ""
		case actMakeMap, actMakeTable:
			w[path] = "{}"
		case actMakeList:
			w[path] = "l:"
		case actMakeText:
			texts = append(texts, path)
		default:
			continue
		}
		if o.action == actMakeMap || o.action == actMakeTable || o.action == actMakeList || o.action == actMakeText {
			oid := objKey(o.ctr, actor)
			d.objs[oid] = path
			if o.action == actMakeText {
				d.texts[oid] = true
			}
		}
	}
	for _, p := range texts {
		w[p] = d.readPath(p)
	}
	return w
}

// readPath reads one flat path from the live document.
func (d *Doc) readPath(p string) string {
	seg := strings.Split(p, Sep)
	args := make([]any, len(seg))
	for i, s := range seg {
		args[i] = s
	}
	v, err := d.am.Path(args...).Get()
	if err != nil || v.IsVoid() {
		return ""
	}
	if v.Kind() == automerge.KindMap {
		return "{}"
	}
	return encodeValue(v)
}

// current returns the flattened live document, reading it when stale.
func (d *Doc) current() map[string]string {
	if d.flat == nil {
		f, err := flatten(d.am)
		if err != nil {
			f = map[string]string{}
		}
		d.flat = f
	}
	return d.flat
}

// before reports whether w is in c's causal past.
func (w *Change) before(c *Change) bool { return c.clock[w.Actor] >= w.Seq && w != c }

func sameHeads(a, b []Hash) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func sortedHeads(h []Hash) []Hash {
	sort.Slice(h, func(i, j int) bool { return bytes.Compare(h[i][:], h[j][:]) < 0 })
	return h
}

func diff(before, after map[string]string) map[string]string {
	w := map[string]string{}
	for k, v := range after {
		if before[k] != v {
			w[k] = v
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			w[k] = ""
		}
	}
	return w
}

// Sep separates the segments of a flat path.
const Sep = "\x1f"

// DisplayPath writes a flat path with dots.
func DisplayPath(p string) string { return strings.ReplaceAll(p, Sep, ".") }

// flatten renders the document as path -> encoded value; maps appear as
// "{}" entries so their creation is visible; text objects read as strings.
func flatten(d *automerge.Doc) (out map[string]string, err error) {
	defer safe(&err)
	out = map[string]string{}
	err = flattenMap(d.RootMap(), "", out, 0)
	return out, err
}

func flattenMap(m *automerge.Map, prefix string, out map[string]string, depth int) error {
	if depth > 8 {
		return nil // deeper values are not part of the schema
	}
	vals, err := m.Values()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadChanges, err)
	}
	for k, v := range vals {
		p := k
		if prefix != "" {
			p = prefix + Sep + k
		}
		switch v.Kind() {
		case automerge.KindMap:
			out[p] = "{}"
			if err := flattenMap(v.Map(), p, out, depth+1); err != nil {
				return err
			}
		default:
			out[p] = encodeValue(v)
		}
	}
	return nil
}

// encodeValue gives a typed text form of a scalar: s:, i:, u:, f:, b:, n:,
// x: (bytes, hex), t: (time), l: (list, not part of the schema), c:
// (counter), ?: (unknown).
func encodeValue(v *automerge.Value) string {
	switch v.Kind() {
	case automerge.KindStr:
		return "s:" + v.Str()
	case automerge.KindText:
		s, _ := v.Text().Get()
		return "s:" + s
	case automerge.KindInt64:
		return "i:" + strconv.FormatInt(v.Int64(), 10)
	case automerge.KindUint64:
		return "u:" + strconv.FormatUint(v.Uint64(), 10)
	case automerge.KindFloat64:
		return "f:" + strconv.FormatFloat(v.Float64(), 'g', -1, 64)
	case automerge.KindBool:
		return "b:" + strconv.FormatBool(v.Bool())
	case automerge.KindNull:
		return "n:"
	case automerge.KindBytes:
		return "x:" + hex.EncodeToString(v.Bytes())
	case automerge.KindTime:
		return "t:" + strconv.FormatInt(v.Time().UnixMilli(), 10)
	case automerge.KindList:
		return "l:"
	case automerge.KindCounter:
		n, _ := v.Counter().Get()
		return "c:" + strconv.FormatInt(n, 10)
	}
	return "?:"
}

// Flat returns a copy of the flattened current document.
func (d *Doc) Flat() map[string]string {
	cur := d.current()
	out := make(map[string]string, len(cur))
	for k, v := range cur {
		out[k] = v
	}
	return out
}

// Save is the Automerge document (any implementation loads it).
func (d *Doc) Save() (b []byte, err error) {
	defer safe(&err)
	return d.am.Save(), nil
}

// Conflict is a field that concurrent changes set to different values;
// Automerge picked Winner, the others lost.
type Conflict struct {
	Path   string   `cbor:"path" json:"path"`
	Winner Write    `cbor:"winner" json:"winner"`
	Losers []Write  `cbor:"losers" json:"losers"`
	_      struct{} `cbor:"-" json:"-"`
}

// Write is one change's write of a field.
type Write struct {
	Value string `cbor:"value" json:"value"` // encoded as in Flat; "" = deleted
	Actor string `cbor:"actor" json:"actor"`
	Tag   string `cbor:"tag" json:"tag"` // the carrying card
}

// MarshalJSON writes a write as the JSON contract does: the value as a
// JSON value of its type (string, number, boolean, null; a time as RFC 3339
// UTC, bytes as 0x<hex>), deleted: true for a removal, the Automerge actor
// (hex) and the card that carried it.
func (w Write) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Value   any    `json:"value"`
		Deleted bool   `json:"deleted,omitempty"`
		Actor   string `json:"actor"`
		Card    string `json:"card"`
	}{JSONValue(w.Value), w.Value == "", w.Actor, w.Tag})
}

// JSONValue turns a value encoded as in Flat into the JSON value it is.
func JSONValue(v string) any {
	t, s, _ := strings.Cut(v, ":")
	switch t {
	case "s":
		return s
	case "i", "c":
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	case "u":
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return n
		}
	case "f":
		if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return f
		}
		return s // JSON has no NaN or infinity
	case "b":
		return s == "true"
	case "x":
		return "0x" + s
	case "t":
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
		}
	case "l":
		return []any{}
	}
	return nil
}

// Conflicts lists fields whose maximal writers (writes no later write has
// seen) disagree, sorted by path. The winner is the write whose value is
// the document's current value.
func (d *Doc) Conflicts() []Conflict {
	var out []Conflict
	for p, ws := range d.writers {
		if len(ws) < 2 {
			continue
		}
		cur := d.current()[p]
		vals := map[string]bool{}
		for _, w := range ws {
			vals[w.Writes[p]] = true
		}
		if len(vals) < 2 {
			continue
		}
		c := Conflict{Path: DisplayPath(p)}
		found := false
		sorted := append([]*Change(nil), ws...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i].Tag+sorted[i].Actor < sorted[j].Tag+sorted[j].Actor })
		for _, w := range sorted {
			wr := Write{Value: w.Writes[p], Actor: w.Actor, Tag: w.Tag}
			if !found && wr.Value == cur {
				c.Winner, found = wr, true
			} else {
				c.Losers = append(c.Losers, wr)
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// Provenance returns the tags of the changes whose write of path is the
// current value (usually one; several when concurrent writes agree),
// sorted. Empty when no applied change wrote it.
func (d *Doc) Provenance(path ...string) []string {
	p := strings.Join(path, Sep)
	cur := d.current()[p]
	var tags []string
	seen := map[string]bool{}
	for _, w := range d.writers[p] {
		if w.Writes[p] == cur && !seen[w.Tag] {
			seen[w.Tag] = true
			tags = append(tags, w.Tag)
		}
	}
	sort.Strings(tags)
	return tags
}

// WritesOf lists, sorted, the fields the changes carried under tag wrote,
// as "path=value" ("path removed" for deletions); containers are left out.
func (d *Doc) WritesOf(tag string) []string {
	var out []string
	for _, c := range d.changes {
		if c.Tag != tag || c.genesis {
			continue
		}
		for p, v := range c.Writes {
			if v == "{}" {
				continue
			}
			if v == "" {
				out = append(out, DisplayPath(p)+" removed")
			} else {
				out = append(out, DisplayPath(p)+"="+ShowValue(v))
			}
		}
	}
	sort.Strings(out)
	return out
}

// ShowValue writes an encoded value for people.
func ShowValue(v string) string {
	t, s, _ := strings.Cut(v, ":")
	switch t {
	case "s":
		return strconv.Quote(s)
	case "n":
		return "null"
	}
	return s
}

// ReadDocument loads a whole saved Automerge document (from any
// implementation) and returns its flattened form, as Flat does.
func ReadDocument(b []byte) (flat map[string]string, err error) {
	defer safe(&err)
	am, err := automerge.Load(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadChanges, err)
	}
	return flatten(am)
}

// writesPreview decodes what c would write, without applying it (tests).
func (d *Doc) writesPreview(c rawChange) map[string]string {
	objs := make(map[string]string, len(d.objs))
	for k, v := range d.objs {
		objs[k] = v
	}
	texts := d.texts
	w := d.writesOf(c.actor, c.ops)
	d.objs, d.texts = objs, texts
	return w
}

// RawDoc is a bare Automerge document with no sublog bookkeeping: the
// physical limit benchmarks compare against.
type RawDoc struct{ am *automerge.Doc }

// NewRawDoc returns an empty bare document.
func NewRawDoc() *RawDoc { return &RawDoc{am: automerge.New()} }

// Load applies change bytes.
func (r *RawDoc) Load(changes []byte) (err error) {
	defer safe(&err)
	if len(r.am.Heads()) == 0 {
		// An empty document would read the bytes as a whole document.
		f, err := automerge.Load(changes)
		if err == nil {
			r.am = f
			return nil
		}
	}
	return r.am.LoadIncremental(changes)
}
