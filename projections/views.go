package projections

import (
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// ServiceIntent is the desired state of one service plus what the fold
// knows about its document.
type ServiceIntent struct {
	crdt.Desired
	Conflicts []crdt.Conflict `cbor:"conflicts,omitempty" json:"conflicts,omitempty"`
	Pending   []string        `cbor:"pending,omitempty" json:"pending,omitempty"` // counted cards waiting for missing changes
	Changes   int             `cbor:"changes" json:"changes"`
}

// Desired lists the desired state of every service with intent, sorted by
// owner then service.
func (s *State) Desired() []ServiceIntent {
	var keys []docKey
	for k, ds := range s.docs {
		if ds.doc.Len() > 0 {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].less(keys[j]) })
	out := make([]ServiceIntent, 0, len(keys))
	for _, k := range keys {
		ds := s.docs[k]
		si := ServiceIntent{Desired: ds.doc.Desired(), Conflicts: ds.doc.Conflicts(), Changes: ds.doc.Len()}
		for _, q := range ds.queue {
			for _, ic := range q {
				si.Pending = append(si.Pending, ic.c.ID().String())
			}
		}
		sort.Strings(si.Pending)
		out = append(out, si)
	}
	return out
}

// ProfileView is a host's latest capability profile.
type ProfileView struct {
	Card      string            `cbor:"card" json:"card"`
	CPU       uint64            `cbor:"cpu" json:"cpu"`
	Memory    uint64            `cbor:"memory" json:"memory"`
	Disk      uint64            `cbor:"disk" json:"disk"`
	GPU       uint64            `cbor:"gpu" json:"gpu"`
	Bandwidth uint64            `cbor:"bandwidth,omitempty" json:"bandwidth,omitempty"`
	Egress    bool              `cbor:"egress,omitempty" json:"egress,omitempty"`
	Labels    map[string]string `cbor:"labels,omitempty" json:"labels,omitempty"`
}

// GrantView is one hosting grant of a host.
type GrantView struct {
	Card      string      `cbor:"card" json:"card"`
	Service   string      `cbor:"service,omitempty" json:"service,omitempty"`
	Owner     string      `cbor:"owner,omitempty" json:"owner,omitempty"`
	Bundle    string      `cbor:"bundle,omitempty" json:"bundle,omitempty"`
	Peer      string      `cbor:"peer,omitempty" json:"peer,omitempty"`
	Limits    GrantLimits `cbor:"limits" json:"limits"`
	Expires   int64       `cbor:"expires,omitempty" json:"-"`
	ExpiresAt string      `cbor:"-" json:"expires,omitempty"` // Expires as RFC 3339 UTC
	RevokedBy string      `cbor:"revoked_by,omitempty" json:"revoked_by,omitempty"`
}

// Instance is what a host last reported about one service (or peer).
type Instance struct {
	Owner   string `cbor:"owner,omitempty" json:"owner,omitempty"`
	Service string `cbor:"service" json:"service"`
	Peer    string `cbor:"peer" json:"peer"`
	Bundle  string `cbor:"bundle,omitempty" json:"bundle,omitempty"`
	State   string `cbor:"state" json:"state"`
	Reason  string `cbor:"reason,omitempty" json:"reason,omitempty"`
	Memory  uint64 `cbor:"memory,omitempty" json:"memory,omitempty"`
	CPUMS   uint64 `cbor:"cpu_ms,omitempty" json:"cpu_ms,omitempty"`
	Card    string `cbor:"card" json:"card"`
	TS      int64  `cbor:"ts" json:"-"`
	Time    string `cbor:"-" json:"time"` // TS as RFC 3339 UTC
}

// HostView is the observed state of one host.
type HostView struct {
	Host      string       `cbor:"host" json:"host"`
	Profile   *ProfileView `cbor:"profile,omitempty" json:"profile,omitempty"`
	Grants    []GrantView  `cbor:"grants,omitempty" json:"grants,omitempty"`
	Instances []Instance   `cbor:"instances,omitempty" json:"instances,omitempty"`
}

func bundleText(b []byte) string {
	if b == nil {
		return ""
	}
	return "sha256:" + hex.EncodeToString(b)
}

// rfc3339 writes Unix seconds as the JSON contract does: RFC 3339, UTC.
func rfc3339(ts int64) string { return time.Unix(ts, 0).UTC().Format(time.RFC3339) }

func idText(b []byte) string {
	if b == nil {
		return ""
	}
	return mustID(b).String()
}

// Observed lists every host that published a profile, a grant or an
// observation, sorted by host identity.
func (s *State) Observed() []HostView {
	hosts := map[key.ID]*HostView{}
	get := func(h key.ID) *HostView {
		if hosts[h] == nil {
			hosts[h] = &HostView{Host: h.String()}
		}
		return hosts[h]
	}
	for h, c := range s.profiles {
		var b ProfileBody
		_ = c.DecodeBody(&b)
		pv := &ProfileView{Card: c.ID().String(), CPU: b.CPU, Memory: b.Memory, Disk: b.Disk, GPU: b.GPU, Labels: b.Labels}
		if b.Network != nil {
			pv.Bandwidth = b.Network.Bandwidth
			pv.Egress = b.Network.Egress != nil && *b.Network.Egress
		}
		get(h).Profile = pv
	}
	for _, c := range s.grants {
		var b GrantBody
		_ = c.DecodeBody(&b)
		g := GrantView{Card: c.ID().String(), Service: b.Service, Owner: idText(b.Owner), Bundle: bundleText(b.Bundle),
			Peer: idText(b.Peer), Limits: b.Limits, Expires: b.Expires}
		if b.Expires != 0 {
			g.ExpiresAt = rfc3339(b.Expires)
		}
		if r := s.revokedBy(c); r != nil {
			g.RevokedBy = r.ID().String()
		}
		hv := get(c.Author())
		hv.Grants = append(hv.Grants, g)
	}
	for k, c := range s.observes {
		var b ObserveBody
		_ = c.DecodeBody(&b)
		in := Instance{Service: b.Service, Peer: idText(b.Peer), Bundle: bundleText(b.Bundle), State: b.State,
			Reason: b.Reason, Card: c.ID().String(), TS: c.TS(), Time: rfc3339(c.TS())}
		if b.Owner != nil {
			in.Owner = k.owner.String()
		}
		if b.Usage != nil {
			in.Memory, in.CPUMS = b.Usage.Memory, b.Usage.CPUMS
		}
		hv := get(k.host)
		hv.Instances = append(hv.Instances, in)
	}
	out := make([]HostView, 0, len(hosts))
	for _, hv := range hosts {
		sort.Slice(hv.Grants, func(i, j int) bool { return hv.Grants[i].Card < hv.Grants[j].Card })
		sort.Slice(hv.Instances, func(i, j int) bool {
			a, b := hv.Instances[i], hv.Instances[j]
			if a.Owner != b.Owner {
				return a.Owner < b.Owner
			}
			return a.Service+a.Peer < b.Service+b.Peer
		})
		out = append(out, *hv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}

// Status is the final verdict on one card: what the projections made of it.
type Status struct {
	Card    string `cbor:"card" json:"card"`
	Kind    string `cbor:"kind" json:"kind"`
	Author  string `cbor:"author" json:"author,omitempty"`
	Seq     uint64 `cbor:"seq" json:"seq,omitempty"`
	Time    string `cbor:"time" json:"time,omitempty"` // the author's claimed time, RFC 3339 UTC
	Verdict string `cbor:"verdict" json:"verdict"`     // applied, refused, ignored, pending, superseded, live, revoked, expired, recorded
	Code    string `cbor:"code" json:"code"`           // the reason's stable code (Reason codes below)
	Reason  string `cbor:"reason" json:"reason"`       // the reason in prose (it may change; Code does not)
}

// Reason codes of Status (stable: scripts and docs/json.md rely on them).
const (
	CodeUnknown           = "unknown"            // not in the set of cards
	CodeRefused           = "card_refused"       // the fold refused the card (malformed body, no authority)
	CodeIntentApplied     = "intent_applied"     // its changes are in the document
	CodeIntentNotCounted  = "intent_not_counted" // its author may not write this service's intent
	CodeIntentRefused     = "intent_refused"     // its changes could not be applied
	CodeIntentPending     = "intent_pending"     // it waits for changes it depends on
	CodeDelegateLive      = "delegate_live"      // the device speaks for its owner
	CodeDelegateRevoked   = "delegate_revoked"   // a revocation: the device's intent counts up to a seq, or not at all
	CodeRevoked           = "revoked"            // withdrawn by a later revoke or crl card of its author
	CodeProfileLatest     = "profile_latest"     // the host's latest profile
	CodeProfileSuperseded = "profile_superseded" // a later profile replaces it
	CodeGrantLive         = "grant_live"         // hosting consent in force
	CodeGrantExpired      = "grant_expired"      // past its expiry
	CodeRevokeRecorded    = "revoke_recorded"    // withdraws a card of its author
	CodeRevokeUnseen      = "revoke_unseen"      // names a card not seen (yet)
	CodeRevokeForeign     = "revoke_foreign"     // names another author's card: ignored
	CodeCRLRecorded       = "crl_recorded"       // a revocation list of its author
	CodeObserveLatest     = "observe_latest"     // the host's latest report
	CodeObserveSuperseded = "observe_superseded" // a later report replaces it
	CodeNotInterpreted    = "not_interpreted"    // a kind the projections do not read
)

// Explain says what the fold made of a card, as a function of the set of
// cards (not of when it arrived). now decides grant expiry.
func (s *State) Explain(id card.ID, now time.Time) Status {
	c, ok := s.seen[id]
	if !ok {
		return Status{Card: id.String(), Verdict: "unknown", Code: CodeUnknown, Reason: "not in the set of cards"}
	}
	st := Status{Card: id.String(), Kind: c.Kind(), Author: c.Author().String(), Seq: c.Seq(),
		Time: rfc3339(c.TS())}
	st.Code = explainCode(s, c, id, now)
	if r, bad := s.bad[id]; bad {
		st.Verdict, st.Reason = "refused", r
		return st
	}
	switch c.Kind() {
	case card.KindIntent:
		var b IntentBody
		_ = c.DecodeBody(&b)
		owner := mustID(b.Owner)
		ds := s.docs[docKey{owner, b.Service}]
		ic := ds.cards[id]
		counted, why := s.counts(ic)
		who := fmt.Sprintf("%s/%s", owner.Short(), b.Service)
		switch {
		case !counted:
			st.Verdict, st.Reason = "ignored", who+": "+why
		case ds.applied[id]:
			st.Verdict, st.Reason = "applied", fmt.Sprintf("%s: %s (%s)", who, describeWrites(ds.doc, id), why)
		case ds.rejected[id] != "":
			st.Verdict, st.Reason = "refused", who+": "+ds.rejected[id]
		default:
			missing := ds.doc.Ready(ic.parsed)
			st.Verdict = "pending"
			st.Reason = fmt.Sprintf("%s: waits for %d change(s) it depends on (first %s)", who, len(missing), missing[0])
		}
	case card.KindDelegate:
		var b DelegateBody
		_ = c.DecodeBody(&b)
		dev := mustID(b.Device)
		switch {
		case b.Revoked && b.Upto != nil:
			st.Verdict, st.Reason = "recorded", fmt.Sprintf("device %s revoked: its intent counts up to its seq %d", dev.Short(), *b.Upto)
		case b.Revoked:
			st.Verdict, st.Reason = "recorded", fmt.Sprintf("device %s revoked: none of its intent counts", dev.Short())
		default:
			scope := "all services"
			if len(b.Services) > 0 {
				scope = strings.Join(b.Services, ",")
			}
			if b.Until != 0 {
				scope += " until " + time.Unix(b.Until, 0).UTC().Format(time.RFC3339)
			}
			st.Verdict, st.Reason = "live", fmt.Sprintf("device %s speaks for %s on %s", dev.Short(), c.Author().Short(), scope)
			if r := s.revokedBy(c); r != nil {
				st.Verdict, st.Reason = "revoked", "by "+r.ID().String()
			}
		}
	case card.KindProfile:
		if s.profiles[c.Author()] == c {
			st.Verdict, st.Reason = "live", "the host's latest profile"
		} else {
			st.Verdict, st.Reason = "superseded", "a later profile of the same host replaces it"
		}
	case card.KindGrant:
		var b GrantBody
		_ = c.DecodeBody(&b)
		switch r := s.revokedBy(c); {
		case r != nil:
			st.Verdict, st.Reason = "revoked", "by "+r.ID().String()
		case b.Expires != 0 && now.Unix() >= b.Expires:
			st.Verdict, st.Reason = "expired", "at "+time.Unix(b.Expires, 0).UTC().Format(time.RFC3339)
		default:
			st.Verdict, st.Reason = "live", "hosting consent from "+c.Author().Short()
		}
	case card.KindRevoke:
		var b RevokeBody
		_ = c.DecodeBody(&b)
		t, ok := s.seen[card.ID(b.Card)]
		switch {
		case !ok:
			st.Verdict, st.Reason = "recorded", "names a card not (yet) seen"
		case t.Author() != c.Author():
			st.Verdict, st.Reason = "ignored", "names a card of another author"
		default:
			st.Verdict, st.Reason = "recorded", "withdraws "+t.Kind()+" "+t.ID().String()
		}
	case card.KindCRL:
		var b CRLBody
		_ = c.DecodeBody(&b)
		st.Verdict, st.Reason = "recorded", fmt.Sprintf("withdraws %d card(s) of its author", len(b.Revoked))
	case card.KindObserve:
		live := false
		for _, o := range s.observes {
			live = live || o == c
		}
		if live {
			st.Verdict, st.Reason = "live", "the host's latest report on this service"
		} else {
			st.Verdict, st.Reason = "superseded", "a later report of the same host replaces it"
		}
	default:
		st.Verdict, st.Reason = "ignored", "not a kind the projections interpret"
	}
	return st
}

// explainCode is the stable code of Explain's verdict on c (the same
// decisions as Explain, without the prose).
func explainCode(s *State, c *card.Card, id card.ID, now time.Time) string {
	if _, bad := s.bad[id]; bad {
		return CodeRefused
	}
	switch c.Kind() {
	case card.KindIntent:
		var b IntentBody
		_ = c.DecodeBody(&b)
		ds := s.docs[docKey{mustID(b.Owner), b.Service}]
		counted, _ := s.counts(ds.cards[id])
		switch {
		case !counted:
			return CodeIntentNotCounted
		case ds.applied[id]:
			return CodeIntentApplied
		case ds.rejected[id] != "":
			return CodeIntentRefused
		}
		return CodeIntentPending
	case card.KindDelegate:
		var b DelegateBody
		_ = c.DecodeBody(&b)
		switch {
		case b.Revoked:
			return CodeDelegateRevoked
		case s.revokedBy(c) != nil:
			return CodeRevoked
		}
		return CodeDelegateLive
	case card.KindProfile:
		if s.profiles[c.Author()] == c {
			return CodeProfileLatest
		}
		return CodeProfileSuperseded
	case card.KindGrant:
		var b GrantBody
		_ = c.DecodeBody(&b)
		switch {
		case s.revokedBy(c) != nil:
			return CodeRevoked
		case b.Expires != 0 && now.Unix() >= b.Expires:
			return CodeGrantExpired
		}
		return CodeGrantLive
	case card.KindRevoke:
		var b RevokeBody
		_ = c.DecodeBody(&b)
		t, ok := s.seen[card.ID(b.Card)]
		switch {
		case !ok:
			return CodeRevokeUnseen
		case t.Author() != c.Author():
			return CodeRevokeForeign
		}
		return CodeRevokeRecorded
	case card.KindCRL:
		return CodeCRLRecorded
	case card.KindObserve:
		for _, o := range s.observes {
			if o == c {
				return CodeObserveLatest
			}
		}
		return CodeObserveSuperseded
	}
	return CodeNotInterpreted
}

func describeWrites(d *crdt.Doc, id card.ID) string {
	var parts []string
	for _, w := range d.WritesOf(id.String()) {
		parts = append(parts, w)
	}
	if len(parts) == 0 {
		return "no visible change"
	}
	return strings.Join(parts, ", ")
}
