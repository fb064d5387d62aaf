package projections

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/kinds"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// Plan actions.
const (
	ActDeploy  = "deploy"
	ActSuspend = "suspend"
	ActResume  = "resume"
	ActMove    = "move"
	ActRemove  = "remove"
)

// Cause is a card behind a decision, with the authority it carried.
type Cause struct {
	Card      string `cbor:"card" json:"card"`
	Kind      string `cbor:"kind" json:"kind"`
	Author    string `cbor:"author" json:"author"`
	TS        int64  `cbor:"ts" json:"-"`
	Time      string `cbor:"-" json:"time"`              // TS as RFC 3339 UTC (the JSON contract)
	Authority string `cbor:"authority" json:"authority"` // "owner", "device delegated by <card>", "host"
}

// Action is one step of the plan.
type Action struct {
	Action  string  `cbor:"action" json:"action"`
	Owner   string  `cbor:"owner" json:"owner"`
	Service string  `cbor:"service" json:"service"`
	Host    string  `cbor:"host" json:"host"`
	To      string  `cbor:"to,omitempty" json:"to,omitempty"`
	Reason  string  `cbor:"reason" json:"reason"`
	Causes  []Cause `cbor:"causes" json:"causes"`
}

// Unmet is desired state no eligible host can satisfy.
type Unmet struct {
	Owner   string   `cbor:"owner" json:"owner"`
	Service string   `cbor:"service" json:"service"`
	Missing int64    `cbor:"missing" json:"missing"`
	Reasons []string `cbor:"reasons" json:"reasons"` // per candidate host, why not
}

// Plan is the set of actions that moves observed state towards desired.
type Plan struct {
	At      int64    `cbor:"at" json:"-"` // the time grant expiry was judged at
	AtTime  string   `cbor:"-" json:"at"` // At as RFC 3339 UTC (the JSON contract)
	Actions []Action `cbor:"actions" json:"actions"`
	Unmet   []Unmet  `cbor:"unmet,omitempty" json:"unmet,omitempty"`
}

type capacity struct{ cpu, mem, disk, gpu int64 }

// Plan computes the plan at time now (which only decides grant expiry).
// Only hosts with a live grant for the service and a compatible profile are
// used; every action names its reason and the cards that caused it.
func (s *State) Plan(now time.Time) *Plan {
	p := &Plan{At: now.Unix(), AtTime: rfc3339(now.Unix()), Actions: []Action{}}
	desired := s.Desired()
	// Hosts: those with a profile, sorted.
	var hosts []key.ID
	for h := range s.profiles {
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Compare(hosts[j]) < 0 })
	free := map[key.ID]*capacity{}
	for _, h := range hosts {
		var b ProfileBody
		_ = s.profiles[h].DecodeBody(&b)
		free[h] = &capacity{int64(b.CPU), int64(b.Memory), int64(b.Disk), int64(b.GPU)}
	}
	// Instances that stay where they are use capacity first.
	type svcInst struct {
		host key.ID
		c    *card.Card
		b    ObserveBody
	}
	inst := map[docKey][]svcInst{}
	for k, c := range s.observes {
		var b ObserveBody
		_ = c.DecodeBody(&b)
		if b.Service == "" || b.State == kinds.StateMoved || b.State == kinds.StateRemoved {
			continue
		}
		dk := docKey{k.owner, k.service}
		inst[dk] = append(inst[dk], svcInst{k.host, c, b})
	}
	for dk := range inst {
		sort.Slice(inst[dk], func(i, j int) bool { return inst[dk][i].host.Compare(inst[dk][j].host) < 0 })
	}
	dmap := map[docKey]ServiceIntent{}
	for _, d := range desired {
		o, _ := key.ParseID(d.Owner)
		dmap[docKey{o, d.Service}] = d
		for _, in := range inst[docKey{o, d.Service}] {
			if active(in.b.State) && !d.Removed && d.Replicas > 0 {
				if ok, _, _ := s.eligible(in.host, d, now, nil); ok {
					free[in.host].sub(d)
				}
			}
		}
	}
	var keys []docKey
	for k := range dmap {
		keys = append(keys, k)
	}
	// Instances of services with no intent at all are left alone: without
	// intent there is no authority to act on them.
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })

	for _, k := range keys {
		d := dmap[k]
		intentCause := func(path ...string) []Cause { return s.intentCauses(k, path...) }
		act := func(a, host, to, reason string, causes []Cause) {
			sort.Slice(causes, func(i, j int) bool { return causes[i].Card < causes[j].Card })
			causes = dedupCauses(causes)
			p.Actions = append(p.Actions, Action{Action: a, Owner: k.owner.String(), Service: k.service, Host: host,
				To: to, Reason: reason, Causes: causes})
		}
		ins := inst[k]
		if d.Removed {
			for _, in := range ins {
				act(ActRemove, in.host.String(), "", "the service is removed by intent", append(intentCause("removed"), s.cause(in.c)))
			}
			continue
		}
		placed := map[key.ID]bool{}
		var keep []svcInst
		var idle []svcInst      // suspended/stopped/failed on eligible hosts
		var displaced []svcInst // active on hosts no longer eligible
		for _, in := range ins {
			placed[in.host] = true
			ok, _, _ := s.eligible(in.host, d, now, nil)
			switch {
			case !ok && active(in.b.State):
				displaced = append(displaced, in)
			case !ok:
			case active(in.b.State):
				keep = append(keep, in)
			default:
				idle = append(idle, in)
			}
		}
		want := d.Replicas
		// Update instances running a bundle other than the desired one.
		for _, in := range keep {
			if d.Bundle != "" && in.b.Bundle != nil && bundleText(in.b.Bundle) != d.Bundle && want > 0 {
				act(ActDeploy, in.host.String(), "", fmt.Sprintf("runs %s, intent says %s", bundleText(in.b.Bundle), d.Bundle),
					append(intentCause("spec", "bundle"), s.cause(in.c)))
			}
		}
		if want == 0 {
			for _, in := range append(keep, displaced...) {
				act(ActSuspend, in.host.String(), "", "intent asks for 0 replicas", append(intentCause("spec", "replicas"), s.cause(in.c)))
			}
			continue
		}
		n := int64(len(keep))
		if n > want {
			extra := keep[want:]
			for i := len(extra) - 1; i >= 0; i-- {
				in := extra[i]
				act(ActRemove, in.host.String(), "", fmt.Sprintf("%d running, intent asks for %d replicas", n, want),
					append(intentCause("spec", "replicas"), s.cause(in.c)))
			}
			n = want
		}
		for _, in := range idle {
			if n >= want {
				break
			}
			act(ActResume, in.host.String(), "", fmt.Sprintf("%s here; %d of %d replicas running", in.b.State, n, want),
				append(append(intentCause("spec", "replicas"), s.cause(in.c)), s.grantCauses(in.host, d, now)...))
			free[in.host].sub(d)
			n++
		}
		// New hosts, most free memory first, then by identity.
		pick := func() (key.ID, bool) {
			var best key.ID
			found := false
			for _, h := range hosts {
				if placed[h] {
					continue
				}
				if ok, _, _ := s.eligible(h, d, now, free[h]); !ok {
					continue
				}
				if !found || free[h].mem > free[best].mem {
					best, found = h, true
				}
			}
			return best, found
		}
		for _, in := range displaced {
			_, why, whyCard := s.eligible(in.host, d, now, nil)
			causes := []Cause{s.cause(in.c)}
			if whyCard != nil {
				causes = append(causes, s.cause(whyCard))
			}
			if n < want {
				if h, ok := pick(); ok {
					placed[h] = true
					free[h].sub(d)
					act(ActMove, in.host.String(), h.String(), why+"; moving to a host with a live grant and a compatible profile",
						append(causes, s.grantCauses(h, d, now)...))
					n++
					continue
				}
			}
			act(ActSuspend, in.host.String(), "", why+"; no other eligible host", causes)
		}
		for n < want {
			h, ok := pick()
			if !ok {
				break
			}
			placed[h] = true
			free[h].sub(d)
			act(ActDeploy, h.String(), "", fmt.Sprintf("%d of %d replicas running", n, want),
				append(intentCause("spec", "replicas"), s.grantCauses(h, d, now)...))
			n++
		}
		if n < want {
			u := Unmet{Owner: k.owner.String(), Service: k.service, Missing: want - n}
			for _, h := range hosts {
				if placed[h] {
					continue
				}
				_, why, _ := s.eligible(h, d, now, free[h])
				u.Reasons = append(u.Reasons, h.Short()+": "+why)
			}
			if len(u.Reasons) == 0 && len(hosts) > 0 {
				u.Reasons = append(u.Reasons, "every eligible host already holds a replica (one per host)")
			}
			if len(hosts) == 0 {
				u.Reasons = append(u.Reasons, "no host has published a capability profile")
			}
			p.Unmet = append(p.Unmet, u)
		}
	}
	return p
}

func active(state string) bool { return state == kinds.StateRunning || state == kinds.StateDeployed }

func (c *capacity) sub(d ServiceIntent) {
	if c == nil {
		return
	}
	c.cpu -= d.CPU
	c.mem -= d.Memory
	c.disk -= d.Disk
	c.gpu -= d.GPU
}

func dedupCauses(cs []Cause) []Cause {
	out := cs[:0]
	for i, c := range cs {
		if i > 0 && c.Card == cs[i-1].Card {
			continue
		}
		out = append(out, c)
	}
	return out
}

// cause describes a card as the cause of a decision.
func (s *State) cause(c *card.Card) Cause {
	cs := Cause{Card: c.ID().String(), Kind: c.Kind(), Author: c.Author().String(), TS: c.TS(), Time: rfc3339(c.TS())}
	switch c.Kind() {
	case card.KindIntent:
		var b IntentBody
		_ = c.DecodeBody(&b)
		owner := mustID(b.Owner)
		if owner == c.Author() {
			cs.Authority = "owner"
		} else if ds := s.docs[docKey{owner, b.Service}]; ds != nil {
			_, why := s.counts(ds.cards[c.ID()])
			cs.Authority = "device of owner " + owner.String() + ": " + why
		}
	case card.KindGrant, card.KindProfile, card.KindObserve:
		cs.Authority = "host"
	case card.KindRevoke:
		cs.Authority = "author of the revoked card"
	}
	return cs
}

// intentCauses are the intent cards whose writes of path are the current
// value (the field's provenance in the document).
func (s *State) intentCauses(k docKey, path ...string) []Cause {
	ds := s.docs[k]
	if ds == nil {
		return nil
	}
	var out []Cause
	for _, tag := range ds.doc.Provenance(path...) {
		id, err := card.ParseID(tag)
		if err != nil {
			continue
		}
		if c, ok := s.seen[id]; ok {
			out = append(out, s.cause(c))
		}
	}
	return out
}

// grantCauses are the live grants that make host h eligible for d.
func (s *State) grantCauses(h key.ID, d ServiceIntent, now time.Time) []Cause {
	var out []Cause
	for _, g := range s.liveGrants(h, d, now) {
		out = append(out, s.cause(g))
	}
	if p := s.profiles[h]; p != nil {
		out = append(out, s.cause(p))
	}
	return out
}

func (s *State) liveGrants(h key.ID, d ServiceIntent, now time.Time) []*card.Card {
	var out []*card.Card
	for _, g := range s.grants {
		if g.Author() != h {
			continue
		}
		var b GrantBody
		_ = g.DecodeBody(&b)
		if !grantMatches(&b, d) || s.revokedBy(g) != nil || (b.Expires != 0 && now.Unix() >= b.Expires) {
			continue
		}
		if !limitsFit(&b.Limits, d) {
			continue
		}
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return idLess(out[i].ID(), out[j].ID()) })
	return out
}

// grantMatches is the one definition of consent (kinds.GrantBody.Admits)
// applied to a service's intent: the subject runs as (owner, service) with
// the intent's bundle, if it names one.
func grantMatches(b *GrantBody, d ServiceIntent) bool {
	return b.Admits(SubjectOf(d.Desired)) == ""
}

// SubjectOf is what a replica of the desired service asks a grant to
// admit: the service, its owner and the intent's bundle hash (when it
// names one). The reconciler and the host role ask the same.
func SubjectOf(d crdt.Desired) kinds.Subject {
	s := kinds.Subject{Service: d.Service}
	if o, err := key.ParseID(d.Owner); err == nil {
		s.Owner = o.Bytes()
	}
	if h, ok := strings.CutPrefix(d.Bundle, "sha256:"); ok {
		if b, err := hex.DecodeString(h); err == nil && len(b) == kinds.HashSize {
			s.Bundle = b
		}
	}
	return s
}

func limitsFit(l *GrantLimits, d ServiceIntent) bool {
	return (l.Memory == 0 || uint64(d.Memory) <= l.Memory) && (l.Disk == 0 || uint64(d.Disk) <= l.Disk)
}

// eligible decides whether host h may run d: a live grant, a profile whose
// limits fit (against free capacity when given), placement constraints. On
// refusal it says why and names the card behind the reason when there is
// one (the revoke that withdrew the grant, the profile that is too small).
func (s *State) eligible(h key.ID, d ServiceIntent, now time.Time, free *capacity) (bool, string, *card.Card) {
	hs := h.String()
	if len(d.Hosts) > 0 && !contains(d.Hosts, hs) {
		return false, "placement does not list this host", nil
	}
	if contains(d.Avoid, hs) {
		return false, "placement avoids this host", nil
	}
	if len(s.liveGrants(h, d, now)) == 0 {
		// Say what happened to the grants that did match.
		var why string
		var by *card.Card
		for _, g := range s.sortedGrants(h) {
			var b GrantBody
			_ = g.DecodeBody(&b)
			if !grantMatches(&b, d) {
				continue
			}
			switch r := s.revokedBy(g); {
			case r != nil:
				why, by = "grant "+g.ID().Short()+" revoked by the host", r
			case b.Expires != 0 && now.Unix() >= b.Expires:
				why, by = "grant "+g.ID().Short()+" expired at "+time.Unix(b.Expires, 0).UTC().Format(time.RFC3339), g
			case !limitsFit(&b.Limits, d):
				why, by = "grant "+g.ID().Short()+" limits are below the intent's resources", g
			}
		}
		if why == "" {
			why = "no grant from this host for the service"
		}
		return false, why, by
	}
	pc := s.profiles[h]
	if pc == nil {
		return false, "the host has published no capability profile", nil
	}
	var p ProfileBody
	_ = pc.DecodeBody(&p)
	c := capacity{int64(p.CPU), int64(p.Memory), int64(p.Disk), int64(p.GPU)}
	if free != nil {
		c = *free
	}
	short := ProfileShort(&p, d.Desired, c.cpu, c.mem, c.disk, c.gpu)
	if len(short) > 0 {
		return false, "profile does not fit: " + strings.Join(short, "; "), pc
	}
	return true, "", nil
}

func (s *State) sortedGrants(h key.ID) []*card.Card {
	var out []*card.Card
	for _, g := range s.grants {
		if g.Author() == h {
			out = append(out, g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return idLess(out[i].ID(), out[j].ID()) })
	return out
}

// ProfileShort lists why a host with profile p and the given free
// capacity cannot run d (nil when it can): the plan's and the
// reconciler's one reading of a profile against an intent.
func ProfileShort(p *ProfileBody, d crdt.Desired, cpu, mem, disk, gpu int64) []string {
	c := capacity{cpu, mem, disk, gpu}
	var short []string
	if d.CPU > c.cpu {
		short = append(short, fmt.Sprintf("cpu %dm free < %dm", c.cpu, d.CPU))
	}
	if d.Memory > c.mem {
		short = append(short, fmt.Sprintf("memory %d free < %d", c.mem, d.Memory))
	}
	if d.Disk > c.disk {
		short = append(short, fmt.Sprintf("disk %d free < %d", c.disk, d.Disk))
	}
	if d.GPU > c.gpu {
		short = append(short, fmt.Sprintf("gpu %d free < %d", c.gpu, d.GPU))
	}
	if d.Bandwidth > 0 && (p.Network == nil || p.Network.Bandwidth < uint64(d.Bandwidth)) {
		short = append(short, "network bandwidth too low")
	}
	if d.Egress && (p.Network == nil || p.Network.Egress == nil || !*p.Network.Egress) {
		short = append(short, "no network egress")
	}
	var lk []string
	for k := range d.Labels {
		lk = append(lk, k)
	}
	sort.Strings(lk)
	for _, k := range lk {
		if p.Labels[k] != d.Labels[k] {
			short = append(short, fmt.Sprintf("label %s is %q, placement wants %q", k, p.Labels[k], d.Labels[k]))
		}
	}
	return short
}
