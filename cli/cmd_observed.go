package cli

import (
	"fmt"
	"github.com/sublog/sublog/log/kinds"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/units"
	"github.com/sublog/sublog/projections"
)

// Builders for the kinds behind observed state and authority, so that
// `sublog append` turns what people write (identities in z-base-32, card
// IDs and hashes as sha256:<hex>, 64Mi, 500m, times) into the bodies of
// ARCHITECTURE.md, with errors naming field and line.
func init() {
	registerKind(card.KindProfile, profileDraft)
	registerKind(card.KindGrant, grantDraft)
	registerKind(card.KindObserve, observeDraft)
	registerKind(card.KindDelegate, delegateDraft)
}

type fields struct {
	d      *Doc
	prefix string
	m      map[string]any
	err    error
}

func (f *fields) path(k string) string {
	if f.prefix == "" {
		return k
	}
	return f.prefix + "." + k
}

func (f *fields) fail(k, format string, args ...any) {
	if f.err == nil {
		f.err = f.d.Errorf(f.path(k), format, args...)
	}
}

// known refuses fields not listed (envelope fields are allowed at the top).
func (f *fields) known(names ...string) {
	var unknown []string
	for k := range f.m {
		ok := f.prefix == "" && envelopeFields[k]
		for _, n := range names {
			ok = ok || k == n
		}
		if !ok {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		f.fail(unknown[0], "unknown field (known: %s)", strings.Join(names, ", "))
	}
}

func (f *fields) sub(k string) *fields {
	v, ok := f.m[k]
	if !ok || v == nil {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		f.fail(k, "must be a mapping")
		return nil
	}
	return &fields{d: f.d, prefix: f.path(k), m: m}
}

func (f *fields) str(k string, required bool) string {
	v, ok := f.m[k]
	if !ok || v == nil {
		if required {
			f.fail(k, "missing")
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		f.fail(k, "must be a string")
	}
	return s
}

func (f *fields) id(k string, required bool) []byte {
	s := f.str(k, required)
	if s == "" {
		return nil
	}
	id, err := key.ParseID(s)
	if err != nil {
		f.fail(k, "%v", err)
		return nil
	}
	return id.Bytes()
}

func (f *fields) hash(k string) []byte {
	s := f.str(k, false)
	if s == "" {
		return nil
	}
	id, err := card.ParseID(s)
	if err != nil {
		f.fail(k, "%q is not sha256:<64 hex digits>", s)
		return nil
	}
	return id[:]
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case uint64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

func (f *fields) uint(k string) uint64 {
	v, ok := f.m[k]
	if !ok || v == nil {
		return 0
	}
	n, ok := number(v)
	if !ok || n < 0 || n != math.Trunc(n) || n > 1<<53 {
		f.fail(k, "must be a whole number ≥ 0, not %v", v)
		return 0
	}
	return uint64(n)
}

// quantity reads sizes ("64Mi", or a number of bytes) or CPU ("500m", or
// cores) with log/units.
func (f *fields) quantity(k string, cpu bool) uint64 {
	v, ok := f.m[k]
	if !ok || v == nil {
		return 0
	}
	var s string
	switch x := v.(type) {
	case string:
		s = x
	default:
		// A bare number is the body's own unit: bytes, or millicores.
		n, ok := number(v)
		if !ok {
			f.fail(k, "must be a quantity, not %v", v)
			return 0
		}
		s = strconv.FormatFloat(n, 'f', -1, 64)
		if cpu {
			s += "m"
		}
	}
	parse := units.ParseBytes
	if cpu {
		parse = units.ParseMilliCPU
	}
	n, err := parse(s)
	if err != nil {
		f.fail(k, "%v", err)
	}
	return n
}

func (f *fields) boolPtr(k string) *bool {
	v, ok := f.m[k]
	if !ok || v == nil {
		return nil
	}
	b, ok := v.(bool)
	if !ok {
		f.fail(k, "must be true or false")
		return nil
	}
	return &b
}

func (f *fields) strings(k string) []string {
	v, ok := f.m[k]
	if !ok || v == nil {
		return nil
	}
	l, ok := v.([]any)
	if !ok {
		f.fail(k, "must be a list of strings")
		return nil
	}
	var out []string
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			f.fail(fmt.Sprintf("%s[%d]", k, i), "must be a string")
			return nil
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// when reads a time: RFC 3339, 2006-01-02[T15:04], Unix seconds, or a
// duration from now ("720h").
func (f *fields) when(a *App, k string) int64 {
	v, ok := f.m[k]
	if !ok || v == nil {
		return 0
	}
	if n, ok := number(v); ok {
		return int64(n)
	}
	s, _ := v.(string)
	if d, err := time.ParseDuration(s); err == nil {
		return a.Now().Add(d).Unix()
	}
	t, err := parseTime(s)
	if err != nil {
		f.fail(k, "%v", err)
		return 0
	}
	return t.Unix()
}

func top(d *Doc) *fields { return &fields{d: d, m: d.Fields} }

// finish returns the draft, or the first field error.
func finish(f *fields, body any) (card.Draft, error) {
	if f.err != nil {
		return card.Draft{}, f.err
	}
	return card.Draft{Body: body}, nil
}

func profileDraft(a *App, d *Doc) (card.Draft, error) {
	f := top(d)
	f.known("cpu", "memory", "disk", "gpu", "network", "labels")
	b := projections.ProfileBody{CPU: f.quantity("cpu", true), Memory: f.quantity("memory", false),
		Disk: f.quantity("disk", false), GPU: f.uint("gpu")}
	if n := f.sub("network"); n != nil {
		n.known("bandwidth", "egress")
		b.Network = &projections.NetworkBody{Bandwidth: n.quantity("bandwidth", false), Egress: n.boolPtr("egress")}
		f.err = n.err
	}
	if l := f.sub("labels"); l != nil {
		b.Labels = map[string]string{}
		for k := range l.m {
			b.Labels[k] = l.str(k, true)
		}
		if f.err == nil {
			f.err = l.err
		}
	}
	return finish(f, b)
}

func grantDraft(a *App, d *Doc) (card.Draft, error) {
	f := top(d)
	f.known("peer", "bundle", "service", "owner", "limits", "caps", "expires")
	b := projections.GrantBody{Peer: f.id("peer", false), Bundle: f.hash("bundle"), Service: f.str("service", false),
		Owner: f.id("owner", false), Caps: f.strings("caps"), Expires: f.when(a, "expires")}
	if l := f.sub("limits"); l != nil {
		l.known("memory", "cpu_req_ms", "cpu_total_ms", "instances", "disk")
		b.Limits = projections.GrantLimits{Memory: l.quantity("memory", false), CPUReqMS: l.uint("cpu_req_ms"),
			CPUTotalMS: l.uint("cpu_total_ms"), Instances: l.uint("instances"), Disk: l.quantity("disk", false)}
		if f.err == nil {
			f.err = l.err
		}
	}
	if f.err == nil && b.Peer == nil && b.Bundle == nil && b.Service == "" {
		f.fail("service", "a grant names a service, a peer or a bundle")
	}
	return finish(f, b)
}

func observeDraft(a *App, d *Doc) (card.Draft, error) {
	f := top(d)
	f.known("peer", "bundle", "service", "owner", "state", "reason", "grant", "to", "usage")
	b := projections.ObserveBody{Peer: f.id("peer", true), Bundle: f.hash("bundle"), Service: f.str("service", false),
		Owner: f.id("owner", false), State: f.str("state", true), Reason: f.str("reason", false),
		Grant: f.hash("grant"), To: f.id("to", false)}
	switch b.State {
	case "", kinds.StateDeployed, kinds.StateRunning, kinds.StateSuspended, kinds.StateMoved,
		kinds.StateRemoved, kinds.StateFailed, kinds.StateStopped:
	default:
		f.fail("state", "%q is not a state (deployed, running, suspended, moved, removed, failed, stopped)", b.State)
	}
	if u := f.sub("usage"); u != nil {
		u.known("memory", "cpu_ms")
		b.Usage = &projections.Usage{Memory: u.quantity("memory", false), CPUMS: u.uint("cpu_ms")}
		if f.err == nil {
			f.err = u.err
		}
	}
	return finish(f, b)
}

func delegateDraft(a *App, d *Doc) (card.Draft, error) {
	f := top(d)
	f.known("device", "services", "until", "revoked", "upto")
	b := projections.DelegateBody{Device: f.id("device", true), Services: f.strings("services"), Until: f.when(a, "until")}
	if r := f.boolPtr("revoked"); r != nil {
		b.Revoked = *r
	}
	if _, ok := d.Fields["upto"]; ok {
		if !b.Revoked {
			f.fail("upto", "only a revocation (revoked: true) names a position")
		}
		u := f.uint("upto")
		b.Upto = &u
	}
	return finish(f, b)
}
