package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/crdt"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
	"github.com/sublog/sublog/log/units"
)

func init() { register(newIntentCmd) }

func newIntentCmd(a *App) *cobra.Command {
	c := &cobra.Command{
		Use:   "intent get SERVICE | intent diff FILE",
		Short: "Edit service intent safely: print the merged manifest, preview what a manifest changes",
		Long: `Appending an intent manifest ('sublog append FILE') is a three-way merge against
this identity's last applied manifest for the service: a field is written when the
manifest's value differs, removed when this identity set it before and the manifest
now leaves it out, or when the manifest lists it under delete:. Fields other
identities (the owner, other devices) set stay as they are.

  sublog intent get web > web.yaml      # the whole merged intent, ready to edit
  sublog intent diff web.yaml           # what appending it would change
  sublog append web.yaml                # apply it ("unchanged" when nothing would change)`,
	}
	var ownerFlag string
	get := &cobra.Command{
		Use:   "get SERVICE [--owner IDENTITY]",
		Short: "Print a service's current merged intent as a manifest (YAML, or JSON with --json) ready to edit and append",
		Long: `Print the service's document as every counted card has made it, as an intent
manifest. Appended unchanged it changes nothing; edited, it changes what was edited.
A removed service prints remove: true with its last spec commented out. The owner
is this identity, or the owner it is a device of, unless --owner names one.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sk, err := a.Secret()
			if err != nil {
				return rejected(err, "")
			}
			st, err := a.Store()
			if err != nil {
				return rejected(err, "")
			}
			me := sk.ID()
			owner := me
			if ownerFlag != "" {
				if owner, err = a.identityArg(ownerFlag, ownerID); err != nil {
					return err
				}
			} else {
				owners, err := ownersOf(a, st, me)
				if err != nil {
					return err
				}
				switch len(owners) {
				case 0:
				case 1:
					owner = owners[0]
				default:
					return usage(fmt.Errorf("this identity is a device of %d owners: name one with --owner", len(owners)))
				}
			}
			ps, err := foldStore(a, st)
			if err != nil {
				return err
			}
			doc := ps.Doc(owner, args[0])
			if doc == nil {
				return rejected(fmt.Errorf("no intent for service %q of %s is stored here", args[0], owner),
					"'sublog status' lists the services this home knows; sync with the owner or its devices first, or --owner names another owner")
			}
			m, problems := doc.Manifest()
			for _, p := range problems {
				fmt.Fprintf(a.Err(), "sublog: warning: %s (left out of the manifest)\n", p)
			}
			if a.JSON() {
				return a.PrintJSON(intentManifestJSON(m))
			}
			_, err = a.Out().Write([]byte(renderManifest(m)))
			return err
		},
	}
	get.Flags().StringVar(&ownerFlag, "owner", "", "the service's owner (default: this identity, or the owner it is a device of)")
	diff := &cobra.Command{
		Use:   "diff FILE|-",
		Short: "Show what appending this intent manifest would change, as field paths (nothing is appended)",
		Long: `Print each field the manifest would change: '+ path: value' (added), '~ path: old -> new'
(changed), '- path: old' (removed), '= path: value' (written again to settle a conflict),
then the fields it leaves out that stay because another identity set them. Prints
"unchanged" when appending it would change nothing. Same as 'sublog append --dry-run FILE'.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src, name, err := a.readInput(args[0])
			if err != nil {
				return rejected(err, "")
			}
			d, err := ParseDoc(name, src)
			if err != nil {
				return rejected(err, "")
			}
			if d.Kind != card.KindIntent {
				return rejected(fmt.Errorf("%s is a %s document; intent diff takes kind: intent", name, d.Kind), "'sublog append --dry-run FILE' checks any document")
			}
			p, err := a.planIntent(d)
			if err != nil {
				return rejected(err, "")
			}
			return a.printDelta(p)
		},
	}
	c.AddCommand(get, diff)
	return c
}

// printDelta prints what a manifest changes (intent diff, append --dry-run).
func (a *App) printDelta(p *intentPlan) error {
	if a.JSON() {
		type change struct {
			Path string `json:"path"`
			Op   string `json:"op"`
			From any    `json:"from,omitempty"`
			To   any    `json:"to,omitempty"`
		}
		out := struct {
			Service   string   `json:"service"`
			Owner     key.ID   `json:"owner"`
			Unchanged bool     `json:"unchanged"`
			Changes   []change `json:"changes"`
			Kept      []string `json:"kept"`
		}{Service: p.m.Service, Owner: p.owner, Unchanged: len(p.delta.Changes) == 0, Changes: []change{}, Kept: []string{}}
		for _, c := range p.delta.Changes {
			out.Changes = append(out.Changes, change{Path: crdt.DisplayPath(c.Path), Op: c.Op(), From: jsonValue(c.From), To: jsonValue(c.To)})
		}
		for _, k := range p.delta.Kept {
			out.Kept = append(out.Kept, crdt.DisplayPath(k))
		}
		return a.PrintJSON(out)
	}
	w := a.Out()
	if len(p.delta.Changes) == 0 {
		fmt.Fprintln(w, "unchanged")
	}
	for _, c := range p.delta.Changes {
		path := crdt.DisplayPath(c.Path)
		switch c.Op() {
		case "add":
			fmt.Fprintf(w, "+ %s: %s\n", path, crdt.ShowValue(c.To))
		case "change":
			fmt.Fprintf(w, "~ %s: %s -> %s\n", path, crdt.ShowValue(c.From), crdt.ShowValue(c.To))
		case "delete":
			fmt.Fprintf(w, "- %s: %s\n", path, crdt.ShowValue(c.From))
		case "settle":
			fmt.Fprintf(w, "= %s: %s (written again: settles a conflict)\n", path, crdt.ShowValue(c.To))
		}
	}
	if len(p.delta.Kept) > 0 {
		kept := make([]string, len(p.delta.Kept))
		for i, k := range p.delta.Kept {
			kept[i] = crdt.DisplayPath(k)
		}
		fmt.Fprintf(w, "kept (another identity set them; list them under delete: to remove them): %s\n", strings.Join(kept, ", "))
	}
	return nil
}

// jsonValue is an encoded document value (crdt's s:, i:, b: ... form) as
// JSON: strings, numbers, booleans; nil for absent.
func jsonValue(v string) any {
	if v == "" {
		return nil
	}
	t, s, _ := strings.Cut(v, ":")
	switch t {
	case "s":
		return s
	case "i", "u":
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	case "b":
		return s == "true"
	case "n":
		return nil
	}
	return v
}

// intentManifestJSON is the manifest as the JSON document append takes.
func intentManifestJSON(m *crdt.Manifest) map[string]any {
	out := map[string]any{"kind": "intent", "service": m.Service}
	if m.Owner != nil {
		out["owner"] = m.Owner.String()
	}
	if m.Remove {
		out["remove"] = true
		return out
	}
	out["spec"] = specTree(m)
	return out
}

// specTree is a manifest's spec as nested maps with the values a manifest
// is written with (quantities as text: "500m", "64Mi").
func specTree(m *crdt.Manifest) map[string]any {
	spec := map[string]any{}
	if m.Bundle != "" {
		spec["bundle"] = m.Bundle
	}
	if m.Replicas != nil {
		spec["replicas"] = *m.Replicas
	}
	if m.Version != "" {
		spec["version"] = m.Version
	}
	res := map[string]any{}
	if m.CPU != nil {
		res["cpu"] = units.FormatMilliCPU(uint64(*m.CPU))
	}
	for k, v := range map[string]*int64{"memory": m.Memory, "disk": m.Disk} {
		if v != nil {
			res[k] = units.FormatBytes(uint64(*v))
		}
	}
	if m.GPU != nil {
		res["gpu"] = *m.GPU
	}
	net := map[string]any{}
	if m.Bandwidth != nil {
		net["bandwidth"] = units.FormatBytes(uint64(*m.Bandwidth))
	}
	if m.Egress != nil {
		net["egress"] = *m.Egress
	}
	if len(net) > 0 {
		res["network"] = net
	}
	if len(res) > 0 {
		spec["resources"] = res
	}
	pl := map[string]any{}
	ids := func(l []key.ID) []any {
		out := make([]any, len(l))
		for i, id := range l {
			out[i] = id.String()
		}
		return out
	}
	if len(m.Hosts) > 0 {
		pl["hosts"] = ids(m.Hosts)
	}
	if len(m.Avoid) > 0 {
		pl["avoid"] = ids(m.Avoid)
	}
	if len(m.Labels) > 0 {
		l := map[string]any{}
		for k, v := range m.Labels {
			l[k] = v
		}
		pl["labels"] = l
	}
	if len(pl) > 0 {
		spec["placement"] = pl
	}
	if len(m.Policy) > 0 {
		spec["policy"] = m.Policy
	}
	return spec
}

// specOrder is the order fields are printed in (the schema's order); keys
// not listed (labels, policy names) follow, sorted, always quoted.
var specOrder = map[string]int{"bundle": 1, "replicas": 2, "version": 3, "resources": 4, "cpu": 5, "memory": 6,
	"disk": 7, "gpu": 8, "network": 9, "bandwidth": 10, "egress": 11, "placement": 12, "hosts": 13, "avoid": 14,
	"labels": 15, "policy": 16}

// renderManifest writes a manifest as YAML append reads back to the same
// manifest: strings double-quoted (JSON escapes are valid YAML), schema
// keys plain, other keys quoted.
func renderManifest(m *crdt.Manifest) string {
	var b strings.Builder
	q := func(s string) string { j, _ := json.Marshal(s); return string(j) }
	b.WriteString("kind: intent\n")
	fmt.Fprintf(&b, "service: %s\n", q(m.Service))
	if m.Owner != nil {
		fmt.Fprintf(&b, "owner: %s\n", m.Owner)
	}
	var spec strings.Builder
	var write func(v map[string]any, indent string, schema bool)
	write = func(v map[string]any, indent string, schema bool) {
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			oi, oj := specOrder[keys[i]], specOrder[keys[j]]
			if !schema || oi == oj {
				return keys[i] < keys[j]
			}
			return oi < oj
		})
		for _, k := range keys {
			name := k
			if !schema {
				name = q(k)
			}
			switch x := v[k].(type) {
			case map[string]any:
				fmt.Fprintf(&spec, "%s%s:\n", indent, name)
				write(x, indent+"  ", schema && k != "labels" && k != "policy")
			case []any:
				fmt.Fprintf(&spec, "%s%s:\n", indent, name)
				for _, e := range x {
					fmt.Fprintf(&spec, "%s  - %s\n", indent, q(fmt.Sprint(e)))
				}
			case string:
				fmt.Fprintf(&spec, "%s%s: %s\n", indent, name, q(x))
			default:
				fmt.Fprintf(&spec, "%s%s: %v\n", indent, name, x)
			}
		}
	}
	tree := specTree(m)
	write(tree, "  ", true)
	if m.Remove {
		b.WriteString("# This service is removed. To bring it back, replace 'remove: true' with its spec\n")
		b.WriteString("# (the last one is below, commented out).\n")
		b.WriteString("remove: true\n")
		b.WriteString("# spec:\n")
		for _, l := range strings.SplitAfter(spec.String(), "\n") {
			if l != "" {
				b.WriteString("# " + l)
			}
		}
		return b.String()
	}
	if len(tree) == 0 {
		b.WriteString("spec: {}\n")
		return b.String()
	}
	b.WriteString("spec:\n")
	b.WriteString(spec.String())
	return b.String()
}

// errUnknownKind: append refuses a kind sublog gives no meaning to unless --force.
var errUnknownKind = errors.New("unknown kind")

// knownKind reports whether sublog gives the kind a meaning.
func knownKind(k string) bool {
	if _, ok := kindBuilders[k]; ok {
		return true
	}
	for _, x := range card.Kinds {
		if x == k {
			return true
		}
	}
	return k == kinds.KindHandoff
}

// closestKind is the known kind nearest to k (at most 2 edits), or "".
func closestKind(k string) string {
	best, bestD := "", 3
	for _, x := range append(append([]string(nil), card.Kinds...), kinds.KindHandoff) {
		if d := editDistance(k, x); d < bestD {
			best, bestD = x, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
