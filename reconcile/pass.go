package reconcile

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
	"github.com/sublog/sublog/projections"
)

// Write is a card a controller should append: its kind and body. Every
// controller holding the same cards at the same now computes the same
// writes, byte for byte in their bodies.
type Write struct {
	Kind string
	Body any // *kinds.PlacementBody or *kinds.HostLostBody
}

// Unmet is a replica no eligible host can take: reported, never retried
// by writing cards (so an unsatisfiable intent cannot loop).
type Unmet struct {
	Owner   key.ID
	Service string
	Replica uint64
	Reasons []string // per host with a profile, why not, in host order
}

// Placed is the placement in force for one replica.
type Placed struct {
	Owner   key.ID
	Service string
	Replica uint64
	Host    key.ID
	Epoch   uint64
	Card    card.ID // the placement card that decided it
}

// Decision is the outcome of one pass.
type Decision struct {
	Writes []Write
	Unmet  []Unmet
	// Placements are the placements in force after Writes are applied,
	// sorted by owner, service and replica.
	Placements []Placed
}

// UnmetText is a stable one-line-per-replica rendering of the unmet
// report, so a caller can report it once and again only when it changes.
func (d *Decision) UnmetText() string {
	var b strings.Builder
	for _, u := range d.Unmet {
		fmt.Fprintf(&b, "%s/%s#%d: %s\n", u.Owner.Short(), u.Service, u.Replica, strings.Join(u.Reasons, "; "))
	}
	return b.String()
}

type capLeft struct{ cpu, mem, disk, gpu int64 }

func (c *capLeft) sub(d crdt.Desired) {
	c.cpu -= d.CPU
	c.mem -= d.Memory
	c.disk -= d.Disk
	c.gpu -= d.GPU
}

// rank is the deterministic preference of host h for a replica: the
// SHA-256 of (owner, service, replica, host), read as a big-endian number;
// the smallest wins (rendezvous hashing, so a change of one host moves
// only the replicas that host held or wins).
func rank(owner key.ID, service string, replica uint64, h key.ID) [32]byte {
	hs := sha256.New()
	hs.Write([]byte("sublog/v1/placement-rank\x00"))
	hs.Write(owner.Bytes())
	hs.Write([]byte(service))
	hs.Write([]byte{0})
	var r [8]byte
	binary.BigEndian.PutUint64(r[:], replica)
	hs.Write(r[:])
	hs.Write(h.Bytes())
	var out [32]byte
	hs.Sum(out[:0])
	return out
}

type svc struct {
	k     svcKey
	d     crdt.Desired
	lease int64
	subj  kinds.Subject // what its replicas ask a grant to admit
}

// services are the desired services that are not removed, sorted by
// owner and service, with what a pass reads of each parsed once per
// change of the intent.
func (s *State) services() []svc {
	if s.dirty || s.svcs == nil {
		s.svcs = s.svcs[:0]
		for _, si := range s.ps.Desired() {
			o, err := key.ParseID(si.Owner)
			if err != nil || si.Removed {
				continue
			}
			s.svcs = append(s.svcs, svc{svcKey{o, si.Service}, si.Desired, Lease(si.Desired), projections.SubjectOf(si.Desired)})
		}
		sort.Slice(s.svcs, func(i, j int) bool { return s.svcs[i].k.less(s.svcs[j].k) })
		if s.svcs == nil {
			s.svcs = []svc{}
		}
		s.dirty = false
	}
	return s.svcs
}

// Pass computes what controller self should write at now. It only
// decides for services self speaks for (Speaks). The rule, in order:
//
//  1. Replicas in force stay where they are while their host is alive
//     (heard within the lease and not declared lost), its grant named by
//     the placement is live and admits the service (kinds.GrantBody.Admits),
//     its profile fits what is left of it, and no earlier replica of the
//     service is on that host. Services go in (owner, service) order,
//     replicas in index order, so capacity is used the same way everywhere.
//  2. Every other replica below the intent's count is placed on the
//     eligible host (alive and not returning from a loss within a lease,
//     an admitting live grant, a fitting profile, the intent's host lists
//     and labels, no other replica of the service) of smallest rank; ties
//     (none in practice) go to the host with more free memory, then the
//     smaller identity. The placement's epoch is one more than any epoch
//     seen for the replica; it supersedes the one in force.
//  3. A replica whose host is lost, and not yet declared lost since it was
//     last heard by anyone speaking for the owner, first gets a host-lost
//     card (one per host per pass).
//  4. A replica no host can take is reported unmet and nothing is written.
func (s *State) Pass(self key.ID, now int64) *Decision {
	dec := &Decision{}
	var hosts []key.ID
	for h := range s.profiles {
		hosts = append(hosts, h)
	}
	sort.Slice(hosts, func(i, j int) bool { return hosts[i].Compare(hosts[j]) < 0 })
	free := make(map[key.ID]*capLeft, len(hosts))
	for _, h := range hosts {
		p := s.pbody[h]
		free[h] = &capLeft{int64(p.CPU), int64(p.Memory), int64(p.Disk), int64(p.GPU)}
	}
	svcs := s.services()

	type todo struct {
		sv  *svc
		r   uint64
		cur *placeRec
	}
	var pending []todo
	used := map[svcKey]map[key.ID]bool{}
	inForce := map[replicaKey]*placeRec{}
	for i := range svcs {
		sv := &svcs[i]
		used[sv.k] = map[key.ID]bool{}
		n := replicas(sv.d)
		for r := uint64(0); r < n; r++ {
			rk := replicaKey{sv.k, r}
			cur := s.current(rk, now)
			if cur != nil && s.keeps(cur, sv, free[cur.host], used[sv.k], now) {
				used[sv.k][cur.host] = true
				free[cur.host].sub(sv.d)
				inForce[rk] = cur
				continue
			}
			pending = append(pending, todo{sv, r, cur})
		}
	}
	declared := map[key.ID]bool{}
	for _, t := range pending {
		sv, rk := t.sv, replicaKey{t.sv.k, t.r}
		if !s.Speaks(sv.k.owner, self, sv.k.service, now) {
			if t.cur != nil {
				inForce[rk] = t.cur
			}
			continue
		}
		epoch := s.maxEpochOf(rk, now) + 1
		if epoch > kinds.MaxEpoch {
			dec.Unmet = append(dec.Unmet, Unmet{Owner: sv.k.owner, Service: sv.k.service, Replica: t.r, Reasons: []string{"placement epochs exhausted"}})
			if t.cur != nil {
				inForce[rk] = t.cur
			}
			continue
		}
		bp, why := s.choose(sv, t.r, hosts, free, used[sv.k], now)
		if bp == nil {
			dec.Unmet = append(dec.Unmet, Unmet{Owner: sv.k.owner, Service: sv.k.service, Replica: t.r, Reasons: why})
			if t.cur != nil {
				inForce[rk] = t.cur
			}
			continue
		}
		if t.cur != nil && !declared[t.cur.host] {
			if lv, decl := s.liveness(t.cur.host, sv.k.owner, sv.k.service, sv.lease, now); lv == lost &&
				(decl == nil || decl.body.Last < s.heard[t.cur.host]) {
				declared[t.cur.host] = true
				dec.Writes = append(dec.Writes, Write{Kind: kinds.KindHostLost, Body: &kinds.HostLostBody{
					Host: t.cur.host.Bytes(), Last: s.heard[t.cur.host], Lease: sv.lease}})
			}
		}
		best := *bp
		g, _ := s.admitting(best, sv, now)
		pb := &kinds.PlacementBody{Service: sv.k.service, Owner: sv.k.owner.Bytes(), Replica: t.r,
			Epoch: epoch, Host: best.Bytes(), Bundle: sv.subj.Bundle, Grant: g.id[:]}
		if pb.Bundle == nil {
			pb.Bundle = make([]byte, kinds.HashSize) // no bundle in the intent: the zero hash (nothing to run yet)
		}
		if t.cur != nil {
			pb.Supersedes = t.cur.id[:]
		}
		used[sv.k][best] = true
		free[best].sub(sv.d)
		dec.Writes = append(dec.Writes, Write{Kind: kinds.KindPlacement, Body: pb})
		inForce[rk] = &placeRec{host: best, body: *pb}
	}
	for rk, p := range inForce {
		dec.Placements = append(dec.Placements, Placed{Owner: rk.owner, Service: rk.service, Replica: rk.replica,
			Host: p.host, Epoch: p.body.Epoch, Card: p.id})
	}
	sort.Slice(dec.Placements, func(i, j int) bool {
		a, b := dec.Placements[i], dec.Placements[j]
		if a.Owner != b.Owner || a.Service != b.Service {
			return svcKey{a.Owner, a.Service}.less(svcKey{b.Owner, b.Service})
		}
		return a.Replica < b.Replica
	})
	return dec
}

func replicas(d crdt.Desired) uint64 {
	if d.Replicas <= 0 {
		return 0
	}
	if d.Replicas > kinds.MaxReplicas {
		return kinds.MaxReplicas
	}
	return uint64(d.Replicas)
}

// maxEpochOf is the highest epoch of the replica's placements by authors
// who speak for the owner (a stranger's placement cannot push epochs).
func (s *State) maxEpochOf(rk replicaKey, now int64) uint64 {
	var m uint64
	for a, p := range s.places[rk] {
		if p.body.Epoch > m && s.Speaks(rk.owner, a, rk.service, now) {
			m = p.body.Epoch
		}
	}
	return m
}

// keeps decides rule 1 for the placement in force.
func (s *State) keeps(p *placeRec, sv *svc, left *capLeft, used map[key.ID]bool, now int64) bool {
	if left == nil || used[p.host] {
		return false
	}
	if lv, _ := s.liveness(p.host, sv.k.owner, sv.k.service, sv.lease, now); lv == lost {
		return false
	}
	if !s.grantLive(p.host, p.body.Grant, sv, now) || !placementAllows(sv.d, p.host) {
		return false
	}
	return len(projections.ProfileShort(s.pbody[p.host], sv.d, left.cpu, left.mem, left.disk, left.gpu)) == 0
}

func placementAllows(d crdt.Desired, h key.ID) bool {
	hs := h.String()
	if len(d.Hosts) > 0 && !contains(d.Hosts, hs) {
		return false
	}
	return !contains(d.Avoid, hs)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// choose implements rule 2; with no eligible host it says why for each.
func (s *State) choose(sv *svc, r uint64, hosts []key.ID, free map[key.ID]*capLeft, used map[key.ID]bool, now int64) (*key.ID, []string) {
	var best key.ID
	var bestRank [32]byte
	found := false
	var why []string
	for _, h := range hosts {
		w := s.ineligible(h, sv, free[h], used, now)
		if w != "" {
			why = append(why, h.Short()+": "+w)
			continue
		}
		rk := rank(sv.k.owner, sv.k.service, r, h)
		if c := compare(rk, bestRank); !found || c < 0 || (c == 0 && free[h].mem > free[best].mem) {
			best, bestRank, found = h, rk, true
		}
	}
	if !found {
		if len(hosts) == 0 {
			why = []string{"no host has published a capability profile"}
		}
		return nil, why
	}
	return &best, nil
}

func compare(a, b [32]byte) int { return strings.Compare(string(a[:]), string(b[:])) }

func (s *State) ineligible(h key.ID, sv *svc, left *capLeft, used map[key.ID]bool, now int64) string {
	if used[h] {
		return "already holds a replica of the service"
	}
	if !placementAllows(sv.d, h) {
		return "the intent's placement excludes this host"
	}
	switch lv, _ := s.liveness(h, sv.k.owner, sv.k.service, sv.lease, now); lv {
	case lost:
		return fmt.Sprintf("not heard from for over the lease (%d s)", sv.lease)
	case returning:
		return fmt.Sprintf("back from a loss for less than the lease (%d s)", sv.lease)
	}
	if _, why := s.admitting(h, sv, now); why != "" {
		return why
	}
	if short := projections.ProfileShort(s.pbody[h], sv.d, left.cpu, left.mem, left.disk, left.gpu); len(short) > 0 {
		return "profile does not fit: " + strings.Join(short, "; ")
	}
	return ""
}

// Duty is a replica a host should run: the placement in force names it,
// under a grant of its own that is live and admits the service.
type Duty struct {
	Owner     key.ID
	Service   string
	Replica   uint64
	Bundle    []byte
	Grant     card.ID
	Placement card.ID
	Epoch     uint64
}

// Duties lists what host h should run at now, sorted by owner, service and
// replica. A host runs exactly these and stops every other replica it
// holds: a placement superseded by a higher epoch (a host that comes back
// after being replaced), one whose grant is revoked, one beyond the
// intent's replica count or of a removed service.
func (s *State) Duties(h key.ID, now int64) []Duty {
	var out []Duty
	for i := range s.services() {
		sv := &s.svcs[i]
		n := replicas(sv.d)
		for r := uint64(0); r < n; r++ {
			p := s.current(replicaKey{sv.k, r}, now)
			if p == nil || p.host != h || !s.grantLive(h, p.body.Grant, sv, now) {
				continue
			}
			gid, _ := card.IDFromBytes(p.body.Grant)
			out = append(out, Duty{Owner: sv.k.owner, Service: sv.k.service, Replica: r, Bundle: p.body.Bundle, Grant: gid, Placement: p.id, Epoch: p.body.Epoch})
		}
	}
	return out
}
