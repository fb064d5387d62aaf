package node

// The read-only views of the control API that the status page (package ui)
// and scripts share: the projections of `sublog status` and `sublog replay
// --audit` folded over the store, the hosts with their liveness, one card,
// the topology of the live sessions and the sync progress. The status page
// reads nothing else, so it and the command line can never disagree.

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"github.com/sublog/sublog/blob"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/projections"
)

// Bounds of the views.
const (
	// auditDefault and auditMax bound the entries one /v1/audit answer
	// carries (the newest that match; ?limit=N asks for up to auditMax).
	auditDefault = 1000
	auditMax     = 10000
	// maxFilter bounds a filter value of /v1/audit.
	maxFilter = 256
)

// folded is the projections of every card the store holds, kept up to date
// incrementally: before each answer the cards stored since the last one are
// added. A fold depends only on the set of cards, so this equals a full
// replay (TestFoldedEqualsFullReplay).
type folded struct {
	mu   stdsync.Mutex
	ps   *projections.State
	tl   *projections.Timeline
	upto map[key.ID]uint64     // per log, the last seq folded in
	refs map[blob.Hash]card.ID // blobs the folded cards name (first card naming each)
}

func newFolded() *folded {
	return &folded{ps: projections.New(), tl: projections.NewTimeline(), upto: map[key.ID]uint64{}, refs: map[blob.Hash]card.ID{}}
}

// catchUp folds in what the store holds beyond the last call. Call with
// f.mu held.
func (f *folded) catchUp(st *sublog.Store) error {
	for _, h := range st.Heads() {
		from := f.upto[h.Author] + 1
		if h.Seq < from {
			continue
		}
		err := st.Scan(h.Author, from, func(c *card.Card) error {
			f.tl.Add(c)
			_ = f.ps.Add(c) // refused cards are recorded in the state and explained
			for _, r := range blob.Refs(c) {
				if _, ok := f.refs[r]; !ok {
					f.refs[r] = c.ID()
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		f.upto[h.Author] = h.Seq
	}
	forks, err := st.ForkProofs()
	if err != nil {
		return err
	}
	for _, p := range forks {
		f.tl.MarkForked(p.Author())
	}
	return nil
}

// with runs fn on the up-to-date fold.
func (n *Node) with(fn func(f *folded) error) error {
	f := n.fold
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.catchUp(n.st); err != nil {
		return err
	}
	return fn(f)
}

// viewRoutes adds the views to the control API.
func (n *Node) viewRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/state", n.handleState)
	mux.HandleFunc("GET /v1/audit", n.handleAudit)
	mux.HandleFunc("GET /v1/cards/{id}", n.handleCard)
	mux.HandleFunc("GET /v1/topology", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.topology()) })
	mux.HandleFunc("GET /v1/progress", n.handleProgress)
	mux.HandleFunc("GET /v1/ui", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.uiInfo()) })
}

// StateView is GET /v1/state: what `sublog status --json` prints (desired,
// observed, plan) plus the hosts with their liveness.
type StateView struct {
	Desired  []projections.ServiceIntent `json:"desired"`
	Observed []projections.HostView      `json:"observed"`
	Plan     *projections.Plan           `json:"plan"`
	Hosts    []HostInfo                  `json:"hosts"`
}

// HostInfo is one identity this instance knows as a host or a peer: its
// newest profile (with the roles it publishes) and whether a live session
// with it is up.
type HostInfo struct {
	ID        key.ID     `json:"id"`
	Self      bool       `json:"self,omitempty"`       // the identity this instance acts as
	Profile   string     `json:"profile,omitempty"`    // card ID of its newest profile
	Roles     []string   `json:"roles"`                // role names its profile publishes (a cap ID when unknown)
	Live      bool       `json:"live"`                 // a live session with it is up (always true for Self)
	Since     *time.Time `json:"since,omitempty"`      // the session's start
	LastRound *time.Time `json:"last_round,omitempty"` // the session's last sync round
	LastCard  *time.Time `json:"last_card,omitempty"`  // claimed time of its newest card held here
	Cards     uint64     `json:"cards"`                // length of its log here
}

func (n *Node) handleState(w http.ResponseWriter, r *http.Request) {
	var v StateView
	now := n.opt.Now()
	err := n.with(func(f *folded) error {
		v.Desired = f.ps.Desired()
		v.Observed = f.ps.Observed()
		v.Plan = f.ps.Plan(now)
		return nil
	})
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	v.Hosts = n.hosts(v.Observed)
	writeJSON(w, v)
}

// roleName maps a role's cap ID to its name.
func roleName(id string) string {
	for _, r := range caps.Roles {
		if r.Spec.ID() == id {
			return r.Name
		}
	}
	return id
}

// hosts lists this identity, every host of the observed state and every
// peer of a live session, this identity first, then by identity.
func (n *Node) hosts(obs []projections.HostView) []HostInfo {
	self := n.sk.ID()
	byID := map[key.ID]*HostInfo{}
	get := func(id key.ID) *HostInfo {
		if byID[id] == nil {
			byID[id] = &HostInfo{ID: id, Self: id == self, Live: id == self, Roles: []string{}}
		}
		return byID[id]
	}
	get(self)
	for _, o := range obs {
		id, err := key.ParseID(o.Host)
		if err != nil {
			continue
		}
		h := get(id)
		if o.Profile == nil {
			continue
		}
		h.Profile = o.Profile.Card
		if cid, err := card.ParseID(o.Profile.Card); err == nil {
			if c, err := n.st.GetByID(cid); err == nil {
				var b projections.ProfileBody
				if c.DecodeBody(&b) == nil {
					for _, r := range b.Roles {
						h.Roles = append(h.Roles, roleName(r))
					}
				}
			}
		}
	}
	for _, s := range n.live.sessions() {
		h := get(s.Peer)
		h.Live = true
		since, last := s.Since, s.LastRound
		if h.Since == nil || since.Before(*h.Since) {
			h.Since = &since
		}
		if !last.IsZero() && (h.LastRound == nil || last.After(*h.LastRound)) {
			h.LastRound = &last
		}
	}
	for _, hd := range n.st.Heads() {
		h, ok := byID[hd.Author]
		if !ok {
			continue
		}
		h.Cards = hd.Seq
		if c, err := n.st.Get(hd.Author, hd.Seq); err == nil {
			t := c.Time()
			h.LastCard = &t
		}
	}
	out := make([]HostInfo, 0, len(byID))
	for _, h := range byID {
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b HostInfo) int {
		if a.Self != b.Self {
			if a.Self {
				return -1
			}
			return 1
		}
		return a.ID.Compare(b.ID)
	})
	return out
}

// AuditView is GET /v1/audit: what `sublog replay --audit --json` prints
// (summary, timeline, decisions, plan), with About naming, per timeline
// entry, the service, owner and hosts the card is about, and the filters
// applied. Summary and Plan are of every card; Timeline, Decisions and
// About are the newest matching entries (at most Limit), oldest first.
type AuditView struct {
	Summary   projections.Summary  `json:"summary"`
	Timeline  []projections.Entry  `json:"timeline"`
	Decisions []projections.Status `json:"decisions"`
	About     []Subject            `json:"about"`
	Plan      *projections.Plan    `json:"plan"`
	Filter    AuditFilter          `json:"filter"`
	Matched   int                  `json:"matched"` // entries matching the filter (before the limit)
}

// AuditFilter selects timeline entries: each set field must match (host and
// author by identity or a prefix of its text form).
type AuditFilter struct {
	Service string `json:"service,omitempty"`
	Host    string `json:"host,omitempty"`
	Author  string `json:"author,omitempty"`
	Limit   int    `json:"limit"`
}

// Subject is what a card is about, for filtering the audit.
type Subject struct {
	Service string   `json:"service,omitempty"`
	Owner   string   `json:"owner,omitempty"`
	Hosts   []string `json:"hosts,omitempty"`
}

const zbase32 = "ybndrfg8ejkmcpqxot1uwisza345h769"

func parseAuditFilter(r *http.Request) (AuditFilter, error) {
	q := r.URL.Query()
	f := AuditFilter{Service: q.Get("service"), Host: q.Get("host"), Author: q.Get("author"), Limit: auditDefault}
	if len(f.Service) > maxFilter {
		return f, fmt.Errorf("service: longer than %d bytes", maxFilter)
	}
	for _, p := range []struct{ name, v string }{{"host", f.Host}, {"author", f.Author}} {
		if len(p.v) > 52 {
			return f, fmt.Errorf("%s: %q is longer than an identity", p.name, p.v)
		}
		for _, c := range p.v {
			if !strings.ContainsRune(zbase32, c) {
				return f, fmt.Errorf("%s: %q is not an identity or a prefix of one (z-base-32)", p.name, p.v)
			}
		}
	}
	if l := q.Get("limit"); l != "" {
		v, err := strconv.Atoi(l)
		if err != nil || v < 1 || v > auditMax {
			return f, fmt.Errorf("limit: %q: want 1..%d", l, auditMax)
		}
		f.Limit = v
	}
	return f, nil
}

func (f AuditFilter) matches(e projections.Entry, s Subject) bool {
	if f.Service != "" && s.Service != f.Service {
		return false
	}
	if f.Author != "" && !strings.HasPrefix(e.Author.String(), f.Author) {
		return false
	}
	if f.Host != "" && !slices.ContainsFunc(s.Hosts, func(h string) bool { return strings.HasPrefix(h, f.Host) }) {
		return false
	}
	return true
}

func (n *Node) handleAudit(w http.ResponseWriter, r *http.Request) {
	flt, err := parseAuditFilter(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	now := n.opt.Now()
	v := AuditView{Filter: flt, Timeline: []projections.Entry{}, Decisions: []projections.Status{}, About: []Subject{}}
	err = n.with(func(f *folded) error {
		v.Summary = f.tl.Summary()
		v.Plan = f.ps.Plan(now)
		for _, e := range f.tl.Entries() {
			s := subjectOf(f.ps, e.ID, 0)
			if !flt.matches(e, s) {
				continue
			}
			v.Matched++
			v.Timeline = append(v.Timeline, e)
			v.About = append(v.About, s)
		}
		if len(v.Timeline) > flt.Limit {
			cut := len(v.Timeline) - flt.Limit
			v.Timeline, v.About = v.Timeline[cut:], v.About[cut:]
		}
		for _, e := range v.Timeline {
			v.Decisions = append(v.Decisions, f.ps.Explain(e.ID, now))
		}
		return nil
	})
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, v)
}

func idOf(b []byte) string {
	id, err := key.IDFromBytes(b)
	if err != nil {
		return ""
	}
	return id.String()
}

// subjectOf says which service, owner and hosts a card is about: intent
// its service; grants, observations and profiles their host (the author);
// a revoke what the card it withdraws is about.
func subjectOf(ps *projections.State, id card.ID, depth int) Subject {
	c, ok := ps.Card(id)
	if !ok {
		return Subject{}
	}
	author := c.Author().String()
	var s Subject
	switch c.Kind() {
	case card.KindIntent:
		var b projections.IntentBody
		if c.DecodeBody(&b) == nil {
			s = Subject{Service: b.Service, Owner: idOf(b.Owner)}
		}
	case card.KindGrant:
		var b projections.GrantBody
		if c.DecodeBody(&b) == nil {
			s = Subject{Service: b.Service, Owner: idOf(b.Owner)}
		}
		s.Hosts = []string{author}
	case card.KindObserve:
		var b projections.ObserveBody
		if c.DecodeBody(&b) == nil {
			s = Subject{Service: b.Service, Owner: idOf(b.Owner)}
			if to := idOf(b.To); to != "" {
				s.Hosts = append(s.Hosts, to)
			}
		}
		s.Hosts = append([]string{author}, s.Hosts...)
	case card.KindProfile, "handoff":
		s.Hosts = []string{author}
	case card.KindDelegate:
		s.Owner = author
	case card.KindRevoke:
		var b projections.RevokeBody
		if depth == 0 && c.DecodeBody(&b) == nil {
			if t, err := card.IDFromBytes(b.Card); err == nil {
				s = subjectOf(ps, t, 1)
			}
		}
	}
	return s
}

// CardView is GET /v1/cards/{id}: one card, what the projections made of
// it and what it is about.
type CardView struct {
	ID       card.ID            `json:"id"`
	Author   key.ID             `json:"author"`
	Seq      uint64             `json:"seq"`
	Prev     *card.ID           `json:"prev,omitempty"`
	Kind     string             `json:"kind"`
	Time     time.Time          `json:"time"`
	Net      string             `json:"net"`
	Size     int                `json:"size"`
	Body     any                `json:"body,omitempty"` // byte strings as hex text
	Decision projections.Status `json:"decision"`
	About    Subject            `json:"about"`
}

func (n *Node) handleCard(w http.ResponseWriter, r *http.Request) {
	id, err := card.ParseID(r.PathValue("id"))
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	c, err := n.st.GetByID(id)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, sublog.ErrNotFound) {
			code = http.StatusNotFound
		}
		httpError(w, code, err)
		return
	}
	v := CardView{ID: c.ID(), Author: c.Author(), Seq: c.Seq(), Kind: c.Kind(), Time: c.Time(), Net: c.Net(), Size: len(c.Bytes())}
	if p, ok := c.Prev(); ok {
		v.Prev = &p
	}
	if c.Body() != nil {
		var body any
		if canon.Unmarshal(c.Body(), &body) == nil {
			v.Body = plain(body)
		}
	}
	now := n.opt.Now()
	err = n.with(func(f *folded) error {
		v.Decision = f.ps.Explain(id, now)
		v.About = subjectOf(f.ps, id, 0)
		return nil
	})
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, v)
}

// plain makes decoded CBOR printable as JSON: text keys, byte strings as
// hex.
func plain(v any) any {
	switch t := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(plain(k))] = plain(e)
		}
		return m
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = plain(e)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, e := range t {
			l[i] = plain(e)
		}
		return l
	case []byte:
		return hex.EncodeToString(t)
	}
	return v
}

// Topology is GET /v1/topology: this instance, the peers it keeps or
// wants sessions with, and the live links between them. Relays stay empty
// until the relay role carries sessions (issue 19).
type Topology struct {
	Self   key.ID     `json:"self"`
	Nodes  []TopoNode `json:"nodes"`
	Links  []TopoLink `json:"links"`
	Relays []TopoNode `json:"relays"`
}

// TopoNode is one identity of the topology.
type TopoNode struct {
	ID   key.ID `json:"id"`
	Role string `json:"role"` // self | peer (a sync target or a session's peer)
	Live bool   `json:"live"`
}

// TopoLink is one live session.
type TopoLink struct {
	From      key.ID    `json:"from"`
	To        key.ID    `json:"to"`
	Addr      string    `json:"addr,omitempty"`
	Initiator bool      `json:"initiator"`     // this instance dialled
	Via       string    `json:"via,omitempty"` // a relay's identity; "" = direct
	Since     time.Time `json:"since"`
	LastRound time.Time `json:"last_round"`
	Rounds    int       `json:"rounds"`
	Received  int       `json:"received"`
	Sent      int       `json:"sent"`
	BytesIn   int64     `json:"bytes_in"`
	BytesOut  int64     `json:"bytes_out"`
}

// targetIDs are the identities the instance keeps dialers for.
func (lv *live) targetIDs() []key.ID {
	if lv == nil {
		return nil
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	out := make([]key.ID, 0, len(lv.dialers))
	for id := range lv.dialers {
		out = append(out, id)
	}
	return out
}

func (n *Node) topology() Topology {
	self := n.sk.ID()
	t := Topology{Self: self, Nodes: []TopoNode{{ID: self, Role: "self", Live: true}}, Links: []TopoLink{}, Relays: []TopoNode{}}
	live := map[key.ID]bool{}
	for _, s := range n.live.sessions() {
		live[s.Peer] = true
		t.Links = append(t.Links, TopoLink{From: self, To: s.Peer, Addr: s.Addr, Initiator: s.Initiator, Since: s.Since,
			LastRound: s.LastRound, Rounds: s.Rounds, Received: s.Received, Sent: s.Sent, BytesIn: s.BytesIn, BytesOut: s.BytesOut})
	}
	peers := map[key.ID]bool{}
	for id := range live {
		peers[id] = true
	}
	for _, id := range n.live.targetIDs() {
		peers[id] = true
	}
	var ids []key.ID
	for id := range peers {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b key.ID) int { return a.Compare(b) })
	for _, id := range ids {
		t.Nodes = append(t.Nodes, TopoNode{ID: id, Role: "peer", Live: live[id]})
	}
	return t
}

// Progress is GET /v1/progress: the live sessions with their counts, and
// the blobs this home still lacks. CardsToGo is the sum of the sessions'
// cards to go: what the rounds in flight still expect to receive, known
// once a round has compared heads with the peer (ARCHITECTURE.md, "cards
// to go"); 0 when no round is moving cards here.
type Progress struct {
	Sessions  []SessionInfo `json:"sessions"`
	Cards     uint64        `json:"cards"` // held here
	Logs      int           `json:"logs"`
	CardsToGo int           `json:"cards_to_go"`
	Blobs     BlobProgress  `json:"blobs"`
}

// BlobProgress: blobs held, partial (being fetched) and missing (named by a
// card held here, not held, no partial).
type BlobProgress struct {
	Held    int           `json:"held"`
	Partial []BlobPending `json:"partial"`
	Missing []BlobPending `json:"missing"`
}

// BlobPending is one blob still to come.
type BlobPending struct {
	Hash string `json:"hash"`
	Card string `json:"card,omitempty"` // a card naming it
	Size int64  `json:"size,omitempty"` // the blob's full size (partials)
}

func (n *Node) handleProgress(w http.ResponseWriter, r *http.Request) {
	cards, logs := n.st.Count()
	p := Progress{Sessions: n.live.sessions(), Cards: cards, Logs: logs,
		Blobs: BlobProgress{Partial: []BlobPending{}, Missing: []BlobPending{}}}
	for _, s := range p.Sessions {
		p.CardsToGo += s.CardsToGo
	}
	held := map[blob.Hash]bool{}
	partial := map[blob.Hash]bool{}
	if n.blobs != nil {
		list, err := n.blobs.List()
		if err != nil {
			httpError(w, http.StatusInternalServerError, err)
			return
		}
		for _, b := range list {
			if b.Partial {
				partial[b.Hash] = true
				p.Blobs.Partial = append(p.Blobs.Partial, BlobPending{Hash: b.Hash.String(), Size: b.Size})
			} else {
				held[b.Hash] = true
				p.Blobs.Held++
			}
		}
	}
	err := n.with(func(f *folded) error {
		for h, c := range f.refs {
			if !held[h] && !partial[h] {
				p.Blobs.Missing = append(p.Blobs.Missing, BlobPending{Hash: h.String(), Card: c.String()})
			}
		}
		return nil
	})
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	slices.SortFunc(p.Blobs.Missing, func(a, b BlobPending) int { return strings.Compare(a.Hash, b.Hash) })
	writeJSON(w, p)
}
