package cli

// The executor's commands: peer bundles (build, inspect, publish), hosting
// consent (grant), and running peers on this home's host (run, call,
// deploy, suspend, resume, move, remove, peers).

import (
	"context"
	"errors"
	"fmt"
	"github.com/sublog/sublog/log/kinds"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sublog/sublog/blob"
	"github.com/sublog/sublog/exec"
	"github.com/sublog/sublog/exec/bundle"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/units"
	"github.com/sublog/sublog/names"
	"github.com/sublog/sublog/node"
)

func init() {
	register(newBundleCmd)
	register(newGrantCmd)
	register(newRunCmd)
	register(newCallCmd)
	register(newDeployCmd)
	register(newSuspendCmd)
	register(newResumeCmd)
	register(newMoveCmd)
	register(newRemoveCmd)
	register(newPeersCmd)
}

// execHint gives the next step for an executor error.
func execHint(err error) string {
	switch {
	case errors.Is(err, exec.ErrUnprovenPeer):
		return "a grant by peer identity runs only code the peer signed for: the peer's key holder publishes it ('sublog bundle publish FILE --as PEER') and this home takes that log ('sublog follow PEER' and sync), or grant the bundle's hash instead"
	case errors.Is(err, exec.ErrNoGrant):
		return "this host must consent first: sublog grant PEER --memory 64Mi --cpu 200ms --caps req,kv,log"
	case errors.Is(err, exec.ErrExceedsGrant):
		return "grant more (sublog grant ...) or lower the limits in the bundle's manifest"
	case errors.Is(err, bundle.ErrHashMismatch):
		return "the bundle file was altered or is not the one named; fetch it again"
	case errors.Is(err, exec.ErrUnknownPeer):
		return "list this host's peers with: sublog peers"
	case errors.Is(err, exec.ErrStopped), errors.Is(err, exec.ErrNotRunning):
		return "see why with: sublog peers; resume it (under a live grant) with: sublog resume PEER"
	}
	return ""
}

func execErr(err error) error { return rejected(err, execHint(err)) }

// readBundleFile reads a bundle file (or - for stdin), bounded.
// decodeBundleFile reads and strictly decodes a bundle file (or stdin for "-").
func decodeBundleFile(a *App, path string) (*bundle.Bundle, error) {
	raw, err := readBundleFile(a, path)
	if err != nil {
		return nil, err
	}
	b, err := bundle.Decode(raw)
	if err != nil {
		return nil, rejected(err, "")
	}
	return b, nil
}

func readBundleFile(a *App, path string) ([]byte, error) {
	var r io.Reader
	if path == "-" {
		r = a.In()
	} else {
		f, err := os.Open(a.Path(path))
		if err != nil {
			return nil, rejected(err, "")
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, bundle.MaxFileSize+1))
	if err != nil {
		return nil, rejected(err, "")
	}
	return b, nil
}

// openHost opens this home's executor, as the --as identity. Inside a
// running instance with the host role it is the instance's executor (its
// peers keep running); close it with a.closeHost.
func openHost(a *App) (*exec.Host, error) {
	if a.node != nil && a.node.Host() != nil {
		sk, err := a.Secret()
		if err != nil {
			return nil, rejected(err, "")
		}
		if sk.ID() == a.node.Host().ID() {
			return a.node.Host(), nil
		}
	}
	h, err := a.Home()
	if err != nil {
		return nil, rejected(err, "create a home with: sublog init")
	}
	st, err := a.Store()
	if err != nil {
		return nil, rejected(err, "")
	}
	sk, err := a.Secret()
	if err != nil {
		return nil, rejected(err, "")
	}
	dir, err := h.Path("exec")
	if err != nil {
		return nil, rejected(err, "")
	}
	host, err := exec.Open(exec.Config{Dir: dir, Key: sk, Log: st, Now: a.Now, Rand: a.Rand(), PeerLog: a.Err()})
	if err != nil {
		return nil, rejected(err, "")
	}
	return host, nil
}

// closeHost closes an executor openHost opened (not the instance's).
func (a *App) closeHost(h *exec.Host) {
	if a.node != nil && h == a.node.Host() {
		return
	}
	h.Close()
}

type manifestJSON struct {
	Hash     string   `json:"hash"`
	Size     int      `json:"size"`
	Name     string   `json:"name"`
	Version  string   `json:"version"`
	Peer     key.ID   `json:"peer"`
	Caps     []string `json:"caps"`
	Memory   uint64   `json:"memory,omitempty"`
	CPUReq   uint64   `json:"cpu_req_ms,omitempty"`
	CPUTotal uint64   `json:"cpu_total_ms,omitempty"`
	Inst     uint64   `json:"instances,omitempty"`
	Disk     uint64   `json:"disk,omitempty"`
	Policy   string   `json:"policy,omitempty"`
	Module   int      `json:"module_size"`
}

func describe(b *bundle.Bundle) manifestJSON {
	m := b.Manifest
	j := manifestJSON{Hash: b.Hash().String(), Size: b.Size(), Name: m.Name, Version: m.Version, Peer: b.Peer(),
		Caps: m.Caps, Memory: m.Limits.Memory, CPUReq: m.Limits.CPUReqMS, CPUTotal: m.Limits.CPUTotalMS,
		Inst: m.Limits.Instances, Disk: m.Limits.Disk, Module: len(b.Module)}
	if j.Caps == nil {
		j.Caps = []string{}
	}
	if m.Policy != nil {
		h, _ := bundle.HashFromBytes(m.Policy)
		j.Policy = h.String()
	}
	return j
}

func newBundleCmd(a *App) *cobra.Command {
	c := &cobra.Command{Use: "bundle", Short: "Build, inspect and publish peer bundles (WASM module + manifest)"}
	var out string
	build := &cobra.Command{
		Use:   "build DIR [--out FILE]",
		Short: "Pack DIR/manifest.yaml and its module into one content-addressed bundle file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			doc, err := os.ReadFile(filepath.Join(a.Path(dir), bundle.SourceFile))
			if err != nil {
				return rejected(err, "a bundle source directory holds "+bundle.SourceFile+" and the compiled module")
			}
			m, mod, err := bundle.ParseSource(doc)
			if err != nil {
				return rejected(err, "")
			}
			code, err := os.ReadFile(filepath.Join(a.Path(dir), mod))
			if err != nil {
				return rejected(err, "build the module first, e.g. GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared")
			}
			raw, err := bundle.Build(m, code)
			if err != nil {
				return rejected(err, "")
			}
			if out == "" {
				out = filepath.Join(dir, m.Name+".bundle")
			}
			// --out - writes the bundle on stdout; what is said goes to stderr.
			say := a.Out()
			if out == "-" {
				if _, err := a.RawOut().Write(raw); err != nil {
					return rejected(err, "")
				}
				say = a.Err()
			} else if err := os.WriteFile(a.Path(out), raw, 0o644); err != nil {
				return rejected(err, "")
			}
			b, _ := bundle.Decode(raw)
			if a.JSON() {
				j := describe(b)
				return printJSONTo(say, struct {
					File string `json:"file"`
					manifestJSON
				}{out, j})
			}
			fmt.Fprintf(say, "%s %s\n", out, b.Hash())
			return nil
		},
	}
	build.Flags().StringVar(&out, "out", "", "bundle file to write (default DIR/NAME.bundle; - for standard output)")

	inspect := &cobra.Command{
		Use:   "inspect FILE",
		Short: "Verify a bundle file and print its manifest and content hash",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := decodeBundleFile(a, args[0])
			if err != nil {
				return err
			}
			j := describe(b)
			if a.JSON() {
				return a.PrintJSON(j)
			}
			w := a.Out()
			fmt.Fprintf(w, "hash:      %s\n", j.Hash)
			fmt.Fprintf(w, "name:      %s %s\n", j.Name, j.Version)
			fmt.Fprintf(w, "peer:      %s\n", j.Peer)
			fmt.Fprintf(w, "caps:      %s\n", strings.Join(j.Caps, " "))
			fmt.Fprintf(w, "memory:    %s\n", orUnset(j.Memory, units.FormatBytes))
			fmt.Fprintf(w, "cpu:       %s per request, %s in total\n", orUnset(j.CPUReq, ms), orUnset(j.CPUTotal, ms))
			fmt.Fprintf(w, "instances: %s\n", orUnset(j.Inst, func(n uint64) string { return fmt.Sprint(n) }))
			fmt.Fprintf(w, "disk:      %s\n", orUnset(j.Disk, units.FormatBytes))
			if j.Policy != "" {
				fmt.Fprintf(w, "policy:    %s\n", j.Policy)
			}
			fmt.Fprintf(w, "size:      %d bytes (module %d)\n", j.Size, j.Module)
			return nil
		},
	}

	publish := &cobra.Command{
		Use:   "publish FILE",
		Short: "Append a bundle card naming the bundle's content hash (and keep the file as a blob peers can fetch by hash)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := decodeBundleFile(a, args[0])
			if err != nil {
				return err
			}
			h := b.Hash()
			if err := keepBlob(a, b.Bytes()); err != nil {
				return err
			}
			body := exec.BundleBody{Hash: h[:], Name: b.Manifest.Name, Version: b.Manifest.Version, Peer: b.Manifest.Peer, Size: uint64(b.Size())}
			if sk, err := a.Secret(); err == nil && sk.ID() != b.Peer() {
				fmt.Fprintf(a.Err(), "sublog: note: signed by %s, not by the bundle's peer %s: this card proves the bundle's peer only if the peer's own log delegates to the signer ('sublog delegate %s --as PEER'); publish with --as PEER otherwise\n", sk.ID(), b.Peer(), sk.ID())
			}
			return appendCard(a, card.Draft{Kind: card.KindBundle, Body: body, ContentHash: h[:]})
		},
	}
	c.AddCommand(build, inspect, publish)
	return c
}

func ms(n uint64) string { return (time.Duration(n) * time.Millisecond).String() }

func orUnset(n uint64, f func(uint64) string) string {
	if n == 0 {
		return "(host default)"
	}
	return f(n)
}

// appendCard signs d as the next card of the --as identity and prints it.
func appendCard(a *App, d card.Draft) error {
	st, err := a.Store()
	if err != nil {
		return rejected(err, "create a home with: sublog init")
	}
	sk, err := a.Secret()
	if err != nil {
		return rejected(err, "")
	}
	h, err := a.Home()
	if err != nil {
		return rejected(err, "")
	}
	d.TS = a.Now().Unix()
	if d.Net == "" {
		d.Net = h.Net()
	}
	c, err := st.Append(sk, d)
	if err != nil {
		return rejected(err, "")
	}
	if a.JSON() {
		return a.PrintJSON(struct {
			Author key.ID `json:"author"`
			Seq    uint64 `json:"seq"`
			ID     string `json:"id"`
			Kind   string `json:"kind"`
		}{c.Author(), c.Seq(), c.ID().String(), c.Kind()})
	}
	fmt.Fprintf(a.Out(), "%s@%d %s\n", c.Author(), c.Seq(), c.ID())
	return nil
}

func newGrantCmd(a *App) *cobra.Command {
	var memory, cpu, cpuTotal, disk, expires, owner, service string
	var instances uint64
	var caps, from []string
	c := &cobra.Command{
		Use:   "grant PEER|BUNDLE|sha256:HASH [--from HOST:PORT] [--memory 64Mi] [--cpu 200ms] [--cpu-total 1h] [--instances N] [--disk 1Mi] [--caps req,kv,log] [--expires 24h|TIME]",
		Short: "Consent, as this host, to run a peer (by identity) or a bundle (by file or content hash) under limits",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var g exec.GrantBody
			var manifest *bundle.Manifest // the bundle's, when known
			target := args[0]
			_, statErr := os.Stat(a.Path(target))
			switch {
			case strings.HasPrefix(target, "sha256:"):
				h, err := bundle.ParseHash(target)
				if err != nil {
					return rejected(err, "")
				}
				g.Bundle = h[:]
				// The bundle reaches this host by its hash: fetched from
				// peers (--from, trusted peers), it names its peer too.
				raw, err := bundleByHash(a, h, from, len(from) > 0)
				if err != nil {
					return err
				}
				if raw != nil {
					b, err := bundle.Open(raw, h)
					if err != nil {
						return rejected(err, "")
					}
					g.Peer = b.Manifest.Peer
					manifest = &b.Manifest
				}
			case target != "-" && statErr != nil:
				// Not a file: a peer identity, in any form names takes.
				id, err := a.identityArg(target, peerID)
				if err != nil {
					if isMalformed(err) || errors.Is(err, names.ErrUnknown) {
						return rejected(fmt.Errorf("%q is neither a peer identity, a content hash nor a readable bundle file (%w)", target, err), peerID.hint())
					}
					return err
				}
				g.Peer = id.Bytes()
			default:
				raw, err := readBundleFile(a, target)
				if err != nil {
					return rejected(fmt.Errorf("%q is neither a peer identity, a content hash nor a readable bundle file", target), "")
				}
				b, err := bundle.Decode(raw)
				if err != nil {
					return rejected(err, "")
				}
				h := b.Hash()
				g.Bundle, g.Peer = h[:], b.Manifest.Peer
				manifest = &b.Manifest
			}
			if manifest != nil && !anyChanged(cmd, "memory", "cpu", "cpu-total", "instances", "disk", "caps") {
				if flags := asksBeyondDefaults(manifest); flags != "" {
					return rejected(fmt.Errorf("a grant with no limits gives the host defaults and no host functions, less than bundle %s asks for", manifest.Name),
						"grant what the bundle asks: sublog grant "+target+" "+flags)
				}
			}
			var err error
			if memory != "" {
				if g.Limits.Memory, err = units.ParseBytes(memory); err != nil {
					return usage(fmt.Errorf("--memory: %w", err))
				}
			}
			if disk != "" {
				if g.Limits.Disk, err = units.ParseBytes(disk); err != nil {
					return usage(fmt.Errorf("--disk: %w", err))
				}
			}
			for _, f := range []struct {
				name, v string
				dst     *uint64
			}{{"--cpu", cpu, &g.Limits.CPUReqMS}, {"--cpu-total", cpuTotal, &g.Limits.CPUTotalMS}} {
				if f.v == "" {
					continue
				}
				d, err := units.ParseDuration(f.v)
				if err != nil || d < time.Millisecond {
					return usage(fmt.Errorf("%s: %q is not a duration of at least 1ms", f.name, f.v))
				}
				*f.dst = uint64(d / time.Millisecond)
			}
			g.Limits.Instances = instances
			for _, c := range caps {
				for _, c := range strings.Split(c, ",") {
					if c = strings.TrimSpace(c); c != "" && !slices.Contains(g.Caps, c) {
						g.Caps = append(g.Caps, c)
					}
				}
			}
			slices.Sort(g.Caps)
			if expires != "" {
				if d, err := units.ParseDuration(expires); err == nil {
					g.Expires = a.Now().Add(d).Unix()
				} else if t, err := time.Parse(time.RFC3339, expires); err == nil {
					g.Expires = t.Unix()
				} else {
					return usage(fmt.Errorf("--expires: %q is neither a duration (24h) nor an RFC 3339 time", expires))
				}
			}
			if owner != "" {
				id, err := a.identityArg(owner, ownerID)
				if err != nil {
					return err
				}
				g.Owner = id.Bytes()
			}
			g.Service = service
			if err := g.Validate(); err != nil {
				return rejected(err, "caps are: "+strings.Join(bundle.Caps, ", "))
			}
			return appendCard(a, card.Draft{Kind: card.KindGrant, Body: g})
		},
	}
	f := c.Flags()
	f.StringVar(&memory, "memory", "", "memory per instance (64Mi); default 64Mi")
	f.StringVar(&cpu, "cpu", "", "CPU time per request (200ms); default 1s")
	f.StringVar(&cpuTotal, "cpu-total", "", "CPU time in total (1h); default none")
	f.Uint64Var(&instances, "instances", 0, "concurrent instances; default 1")
	f.StringVar(&disk, "disk", "", "key-value state (1Mi); default 1Mi")
	f.StringSliceVar(&caps, "caps", nil, "host functions granted: req, kv, log, clock, random")
	f.StringVar(&expires, "expires", "", "expiry: a duration from now (24h) or an RFC 3339 time")
	f.StringVar(&owner, "owner", "", "the service owner's identity (recorded, never transferred)")
	f.StringVar(&service, "service", "", "the owner's service the grant is for: it then admits the peer only when placed as that service, never a bare deploy")
	f.StringSliceVar(&from, "from", nil, "with a hash: a peer's sync address to fetch the bundle from (repeatable; trusted peers at their cached addresses are asked too)")
	return c
}

// anyChanged reports whether any of the flags was given.
func anyChanged(cmd *cobra.Command, flags ...string) bool {
	for _, f := range flags {
		if cmd.Flags().Changed(f) {
			return true
		}
	}
	return false
}

// asksBeyondDefaults gives the grant flags that cover what a manifest asks
// beyond the host defaults (exec.Defaults, no host functions), or "" when
// the defaults cover it.
func asksBeyondDefaults(m *bundle.Manifest) string {
	var out []string
	l, d := m.Limits, exec.Defaults
	if l.Memory > d.Memory {
		out = append(out, "--memory "+units.FormatBytes(l.Memory))
	}
	if l.CPUReqMS > d.CPUReqMS {
		out = append(out, "--cpu "+ms(l.CPUReqMS))
	}
	if l.CPUTotalMS > 0 {
		out = append(out, "--cpu-total "+ms(l.CPUTotalMS))
	}
	if l.Instances > d.Instances {
		out = append(out, fmt.Sprintf("--instances %d", l.Instances))
	}
	if l.Disk > d.Disk {
		out = append(out, "--disk "+units.FormatBytes(l.Disk))
	}
	if len(m.Caps) > 0 {
		cs := slices.Clone(m.Caps)
		slices.Sort(cs)
		out = append(out, "--caps "+strings.Join(cs, ","))
	}
	return strings.Join(out, " ")
}

// readRequest takes the request from the argument, or stdin for "-".
func readRequest(a *App, args []string) ([]byte, error) {
	if len(args) == 0 {
		return nil, nil
	}
	if args[0] == "-" {
		b, err := io.ReadAll(io.LimitReader(a.In(), 1<<20+1))
		if err != nil {
			return nil, rejected(err, "")
		}
		return b, nil
	}
	return []byte(args[0]), nil
}

func printResponse(a *App, peer key.ID, resp []byte) error {
	if a.JSON() {
		return a.PrintJSON(struct {
			Peer     key.ID `json:"peer"`
			Response string `json:"response"`
		}{peer, string(resp)})
	}
	a.Out().Write(resp)
	if len(resp) > 0 && resp[len(resp)-1] != '\n' {
		fmt.Fprintln(a.Out())
	}
	return nil
}

func newRunCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "run BUNDLE [REQUEST|-]",
		Short: "Run a bundle on this host, under this host's grant, and send it one request",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readBundleFile(a, args[0])
			if err != nil {
				return err
			}
			req, err := readRequest(a, args[1:])
			if err != nil {
				return err
			}
			host, err := openHost(a)
			if err != nil {
				return err
			}
			defer a.closeHost(host)
			b, err := bundle.Decode(raw)
			if err != nil {
				return rejected(err, "")
			}
			resp, err := host.Run(context.Background(), raw, req)
			if err != nil {
				return execErr(err)
			}
			return printResponse(a, b.Peer(), resp)
		},
	}
}

func newCallCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "call PEER [REQUEST|-]",
		Short: "Send one request to a peer running on this host and print its response",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := readRequest(a, args[1:])
			if err != nil {
				return err
			}
			host, err := openHost(a)
			if err != nil {
				return err
			}
			defer a.closeHost(host)
			id, err := a.identityArg(args[0], peerID, peersKnown(host)...)
			if err != nil {
				return err
			}
			resp, err := host.Call(context.Background(), id, req)
			if err != nil {
				return execErr(err)
			}
			return printResponse(a, id, resp)
		},
	}
}

type statusJSON struct {
	Peer     key.ID   `json:"peer"`
	Name     string   `json:"name"`
	Bundle   string   `json:"bundle"`
	State    string   `json:"state"`
	Grant    string   `json:"grant,omitempty"`
	Reason   string   `json:"reason,omitempty"`
	Caps     []string `json:"caps"`
	Memory   uint64   `json:"memory"`
	CPUReq   uint64   `json:"cpu_req_ms"`
	CPUTotal uint64   `json:"cpu_total_ms,omitempty"`
	Inst     uint64   `json:"instances"`
	Disk     uint64   `json:"disk"`
	CPUUsed  uint64   `json:"cpu_used_ms"`
}

func statusOf(s exec.Status) statusJSON {
	j := statusJSON{Peer: s.Peer, Name: s.Name, Bundle: s.Bundle.String(), State: s.State, Reason: s.Reason,
		Caps: s.Caps, Memory: s.Limits.Memory, CPUReq: s.Limits.CPUReqMS, CPUTotal: s.Limits.CPUTotalMS,
		Inst: s.Limits.Instances, Disk: s.Limits.Disk, CPUUsed: s.CPUMS}
	if !s.Grant.IsZero() {
		j.Grant = s.Grant.String()
	}
	if j.Caps == nil {
		j.Caps = []string{}
	}
	return j
}

func printStatus(a *App, s exec.Status) error {
	if a.JSON() {
		return a.PrintJSON(statusOf(s))
	}
	fmt.Fprintf(a.Out(), "%s %s %s\n", s.Peer, s.Name, s.State)
	return nil
}

func newDeployCmd(a *App) *cobra.Command {
	var hash string
	var handoff bool
	var from []string
	c := &cobra.Command{
		Use:   "deploy BUNDLE [--hash sha256:...] | deploy sha256:HASH [--from HOST:PORT] | deploy --handoff FILE|sha256:CARD",
		Short: "Deploy a bundle (or a moved peer's handoff) on this host under a live grant of this host (recorded)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if handoff {
				var hb []byte
				var err error
				_, statErr := os.Stat(a.Path(args[0]))
				if strings.HasPrefix(args[0], "sha256:") || statErr != nil && isCardForm(args[0]) {
					// By the handoff card alone (it arrived by sync): the
					// state and the bundle it names are blobs, fetched. Any
					// card form names it (a prefix, AUTHOR@SEQ).
					if hb, err = handoffByCard(a, args[0], from); err != nil {
						return err
					}
				} else if hb, err = os.ReadFile(a.Path(args[0])); err != nil {
					return rejected(err, "")
				}
				host, err := openHost(a)
				if err != nil {
					return err
				}
				defer a.closeHost(host)
				if err := host.Receive(context.Background(), hb); err != nil {
					return execErr(err)
				}
				fmt.Fprintf(a.Out(), "handoff %s deployed\n", args[0])
				return nil
			}
			var raw []byte
			var want bundle.Hash
			var err error
			if strings.HasPrefix(args[0], "sha256:") {
				// By hash alone: from this home's blobs or fetched from peers.
				if want, err = bundle.ParseHash(args[0]); err != nil {
					return usage(err)
				}
				if raw, err = bundleByHash(a, want, from, true); err != nil {
					return err
				}
			} else {
				if raw, err = readBundleFile(a, args[0]); err != nil {
					return err
				}
				if hash != "" {
					if want, err = bundle.ParseHash(hash); err != nil {
						return usage(err)
					}
				}
			}
			host, err := openHost(a)
			if err != nil {
				return err
			}
			defer a.closeHost(host)
			st, err := host.Deploy(context.Background(), raw, want)
			if err != nil {
				return execErr(err)
			}
			return printStatus(a, st)
		},
	}
	c.Flags().StringVar(&hash, "hash", "", "the content hash the bundle must have (as named by its bundle card)")
	c.Flags().BoolVar(&handoff, "handoff", false, "the argument is a handoff file written by 'sublog move --out', or the ID of a handoff card this home holds ('sublog move --for' without --out)")
	c.Flags().StringSliceVar(&from, "from", nil, "with a hash: a peer's sync address to fetch the bundle from (repeatable; trusted peers at their cached addresses are asked too)")
	return c
}

// peerStep is suspend, resume and remove: one peer, one lifecycle step.
func peerStep(a *App, use, short string, step func(*exec.Host, context.Context, key.ID) error) *cobra.Command {
	return &cobra.Command{
		Use:   use + " PEER",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := openHost(a)
			if err != nil {
				return err
			}
			defer a.closeHost(host)
			id, err := a.identityArg(args[0], peerID, peersKnown(host)...)
			if err != nil {
				return err
			}
			if err := step(host, context.Background(), id); err != nil {
				return execErr(err)
			}
			if use == "remove" {
				if a.JSON() {
					return a.PrintJSON(struct {
						Peer  key.ID `json:"peer"`
						State string `json:"state"`
					}{id, kinds.StateRemoved})
				}
				fmt.Fprintf(a.Out(), "%s removed\n", id)
				return nil
			}
			st, err := host.Status(id)
			if err != nil {
				return execErr(err)
			}
			return printStatus(a, st)
		},
	}
}

func newSuspendCmd(a *App) *cobra.Command {
	return peerStep(a, "suspend", "Stop a peer's instances and keep its state (recorded)", (*exec.Host).Suspend)
}

func newResumeCmd(a *App) *cobra.Command {
	return peerStep(a, "resume", "Run a suspended or stopped peer again, under a grant live now (recorded)", (*exec.Host).Resume)
}

func newRemoveCmd(a *App) *cobra.Command {
	return peerStep(a, "remove", "Stop a peer and delete its bundle and state from this host (recorded)", (*exec.Host).Remove)
}

// homeReceiver opens another home on this machine to receive a moved peer.
type homeReceiver struct {
	a    *App
	dir  string
	as   string
	host *exec.Host
	done func()
	// Through the receiving home's instance (host is nil then).
	id      key.ID
	receive func(ctx context.Context, hb []byte) error
}

func (r *homeReceiver) open() error {
	if cl, err := node.Dial(r.dir); err == nil {
		// The receiving home runs an instance: it takes the handoff
		// through its socket, as 'sublog deploy --handoff' would.
		return r.viaInstance(cl)
	}
	h, err := home.Open(r.dir)
	if err != nil {
		return err
	}
	st, err := h.OpenStore(sublog.Options{})
	if err != nil {
		return err
	}
	sk, err := h.Identity(r.as)
	if err != nil {
		st.Close()
		return err
	}
	dir, err := h.Path("exec")
	if err != nil {
		st.Close()
		return err
	}
	host, err := exec.Open(exec.Config{Dir: dir, Key: sk, Log: st, Now: r.a.Now, Rand: r.a.Rand()})
	if err != nil {
		st.Close()
		return err
	}
	r.host = host
	r.done = func() { host.Close(); st.Close() }
	return nil
}

func (r *homeReceiver) ID() key.ID {
	if r.host == nil {
		return r.id
	}
	return r.host.ID()
}

func (r *homeReceiver) Receive(ctx context.Context, hb []byte) error {
	if r.host == nil {
		return r.receive(ctx, hb)
	}
	return r.host.Receive(ctx, hb)
}

// viaInstance makes the receiver a client of the receiving home's instance.
func (r *homeReceiver) viaInstance(cl *node.Client) error {
	run := func(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
		if r.as != "" {
			args = append([]string{"--as", r.as}, args...)
		}
		args = append([]string{"--home", r.dir}, args...)
		var out, errb strings.Builder
		code, err := cl.Run(ctx, node.Command{Args: args, Dir: r.a.cwd, Env: r.a.environ(), Stdin: stdin, Stdout: &out, Stderr: &errb})
		if err != nil {
			return "", err
		}
		if code != ExitOK {
			msg := strings.TrimSpace(strings.TrimPrefix(strings.SplitN(errb.String(), "\n", 2)[0], "sublog: error: "))
			return "", errors.New(msg)
		}
		return out.String(), nil
	}
	out, err := run(context.Background(), nil, "id")
	if err != nil {
		return err
	}
	if r.id, err = key.ParseID(strings.TrimSpace(out)); err != nil {
		return err
	}
	r.receive = func(ctx context.Context, hb []byte) error {
		f, err := os.CreateTemp("", "sublog-handoff-*")
		if err != nil {
			return err
		}
		defer os.Remove(f.Name())
		_, err = f.Write(hb)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		_, err = run(ctx, nil, "deploy", "--handoff", f.Name())
		return err
	}
	r.done = func() {}
	return nil
}

func newMoveCmd(a *App) *cobra.Command {
	var to, toAs, out, forHost string
	c := &cobra.Command{
		Use:   "move PEER (--to HOME [--to-as NAME] | --for HOST [--out FILE])",
		Short: "Suspend a peer here and hand its bundle and state to another host (recorded on both)",
		Long: "With --to, the peer moves to another home on this machine, which needs its own live grant;\n" +
			"nothing of the peer is left here. With --out, a handoff is written to FILE for host HOST's\n" +
			"'sublog deploy --handoff FILE': a handoff card signed by this host, the peer's state encrypted to\n" +
			"HOST, and the bundle. With --for alone, nothing is written: the handoff card travels to HOST by sync\n" +
			"and its state and bundle as blobs ('sublog deploy --handoff CARD-ID' there). The peer is handed\n" +
			"over at once: this host keeps no state of it and can never resume it; HOST takes the handoff once.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (to == "") == (out == "" && forHost == "") {
				return usage(errors.New("move needs exactly one of --to HOME and --for HOST [--out FILE]"))
			}
			host, err := openHost(a)
			if err != nil {
				return err
			}
			defer a.closeHost(host)
			id, err := a.identityArg(args[0], peerID, peersKnown(host)...)
			if err != nil {
				return err
			}
			if out != "" || forHost != "" {
				if forHost == "" {
					return usage(errors.New("move --out needs --for HOST: the identity of the host that will receive the peer (its state is encrypted to it)"))
				}
				to, err := a.identityArg(forHost, hostID)
				if err != nil {
					return err
				}
				ho, err := host.Export(context.Background(), id, to)
				if err != nil {
					return execErr(err)
				}
				// The state and bundle are blobs the handoff card names, so
				// they can also travel by hash.
				if err := keepBlob(a, ho.State); err != nil {
					return err
				}
				if err := keepBlob(a, ho.Bundle); err != nil {
					return err
				}
				if out == "" {
					if a.JSON() {
						return a.PrintJSON(struct {
							Peer    key.ID `json:"peer"`
							To      key.ID `json:"to"`
							Handoff string `json:"handoff"`
						}{id, to, ho.ID().String()})
					}
					fmt.Fprintf(a.Out(), "%s handed over to %s by handoff %s (its state and bundle travel as blobs: 'sublog deploy --handoff %s' on %s)\n",
						id, to, ho.ID(), ho.ID(), to)
					return nil
				}
				say := a.Out()
				if out == "-" { // the handoff on stdout; what is said on stderr
					if _, err := a.RawOut().Write(ho.Encode()); err != nil {
						return rejected(err, "")
					}
					say = a.Err()
				} else if err := writeFileNew(a.Path(out), ho.Encode()); err != nil {
					return rejected(err, "")
				}
				if a.JSON() {
					return printJSONTo(say, struct {
						Peer    key.ID `json:"peer"`
						To      key.ID `json:"to"`
						Handoff string `json:"handoff"`
						File    string `json:"file"`
					}{id, to, ho.ID().String(), out})
				}
				fmt.Fprintf(say, "%s handed over to %s by handoff %s, written to %s\n", id, to, ho.ID(), out)
				return nil
			}
			r := &homeReceiver{a: a, dir: a.Path(to), as: toAs}
			if err := r.open(); err != nil {
				return rejected(fmt.Errorf("opening the home at %s: %w", to, err), "")
			}
			defer r.done()
			if err := host.Move(context.Background(), id, r); err != nil {
				return execErr(err)
			}
			if a.JSON() {
				return a.PrintJSON(struct {
					Peer key.ID `json:"peer"`
					To   key.ID `json:"to"`
				}{id, r.ID()})
			}
			fmt.Fprintf(a.Out(), "%s moved to %s\n", id, r.ID())
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the receiving home's directory")
	c.Flags().StringVar(&toAs, "to-as", "", "the receiving home's host identity (default: its default)")
	c.Flags().StringVar(&out, "out", "", "with --for: also write the handoff to FILE (- for standard output)")
	c.Flags().StringVar(&forHost, "for", "", "the identity of the receiving host (the handoff card names it; its state is encrypted to it)")
	return c
}

func newPeersCmd(a *App) *cobra.Command {
	return &cobra.Command{
		Use:   "peers",
		Short: "List the peers this host holds, with state, limits and CPU used",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			host, err := openHost(a)
			if err != nil {
				return err
			}
			defer a.closeHost(host)
			list, err := host.Peers()
			if err != nil {
				return rejected(err, "")
			}
			if a.JSON() {
				out := make([]statusJSON, 0, len(list))
				for _, s := range list {
					out = append(out, statusOf(s))
				}
				return a.PrintJSON(out)
			}
			fmt.Fprintf(a.Out(), "%-10s  %-12s  %-9s  %s\n", "PEER", "NAME", "STATE", "REASON")
			for _, s := range list {
				fmt.Fprintf(a.Out(), "%-10s  %-12s  %-9s  %s\n", showID(s.Peer), s.Name, s.State, s.Reason)
			}
			return nil
		},
	}
}

// keepBlob adds bytes to this home's blobs.
func keepBlob(a *App, b []byte) error {
	blobs, err := openBlobs(a)
	if err != nil {
		return err
	}
	if _, err := blobs.Put(b); err != nil {
		return rejected(err, "")
	}
	return nil
}

// bundleByHash reads bundle h from this home's blobs, or fetches it from
// peers. With must unset, a bundle that is not here and that no peer can be
// asked for is nil, not an error.
func bundleByHash(a *App, h bundle.Hash, from []string, must bool) ([]byte, error) {
	blobs, err := openBlobs(a)
	if err != nil {
		return nil, err
	}
	bh := blob.Hash(h)
	if !blobs.Has(bh) {
		if !must {
			env, err := a.syncEnv()
			if err != nil {
				return nil, err
			}
			if len(blobAddrs(a, env, from)) == 0 && (a.node == nil || len(a.node.BlobSources()) == 0) {
				return nil, nil
			}
		}
		if _, err := fetchBlob(a, bh, from); err != nil {
			return nil, err
		}
	}
	raw, err := blobs.Get(bh)
	if err != nil {
		return nil, rejected(err, "")
	}
	return raw, nil
}

// handoffByCard assembles the handoff named by a handoff card this home
// holds (synced from the source host): the card, and the state and bundle
// blobs it names, read from this home's blobs or fetched from peers (each
// chunk verified, only from peers entitled to give them). The executor then
// checks it as it checks a handoff file.
func handoffByCard(a *App, arg string, from []string) ([]byte, error) {
	id, err := a.cardArg(arg)
	if err != nil {
		return nil, err
	}
	st, err := a.Store()
	if err != nil {
		return nil, rejected(err, "create a home with: sublog init")
	}
	c, err := st.GetByID(id)
	if err != nil {
		return nil, rejected(fmt.Errorf("handoff card %s: %w", id, err), "sync with the source host first: the handoff card travels in its log")
	}
	if c.Kind() != kinds.KindHandoff {
		return nil, rejected(fmt.Errorf("%w: card %s is a %s card", exec.ErrBadHandoff, id, c.Kind()), "")
	}
	var body kinds.HandoffBody
	if err := c.DecodeBody(&body); err != nil {
		return nil, rejected(fmt.Errorf("%w: card body: %w", exec.ErrBadHandoff, err), "")
	}
	// Not for this host: refused before anything is fetched.
	sk, err := a.Secret()
	if err != nil {
		return nil, rejected(err, "")
	}
	if string(body.To) != string(sk.ID().Bytes()) {
		return nil, execErr(fmt.Errorf("%w: handoff %s is not for this host %s", exec.ErrNotAddressed, id, sk.ID()))
	}
	get := func(what string, b []byte) ([]byte, error) {
		h, err := blob.HashFromBytes(b)
		if err != nil {
			return nil, rejected(fmt.Errorf("%w: %s: %w", exec.ErrBadHandoff, what, err), "")
		}
		blobs, err := openBlobs(a)
		if err != nil {
			return nil, err
		}
		if !blobs.Has(h) {
			if _, err := fetchBlob(a, h, from); err != nil {
				return nil, err
			}
		}
		raw, err := blobs.Get(h)
		if err != nil {
			return nil, rejected(err, "")
		}
		return raw, nil
	}
	state, err := get("state", body.State)
	if err != nil {
		return nil, err
	}
	bundleRaw, err := get("bundle", body.Bundle)
	if err != nil {
		return nil, err
	}
	return (&exec.Handoff{Card: c, State: state, Bundle: bundleRaw}).Encode(), nil
}

// writeFileNew writes a file that must not exist yet (a handoff is never
// written over another).
func writeFileNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
