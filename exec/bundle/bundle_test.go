package bundle

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

var module = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

func peer(t testing.TB) key.ID {
	s := sha256.Sum256([]byte("bundle test peer"))
	k, err := key.FromSeed(s[:])
	if err != nil {
		t.Fatal(err)
	}
	return k.ID()
}

func manifest(t testing.TB) Manifest {
	return Manifest{Name: "greeter", Version: "1.0.0", Peer: peer(t).Bytes(), Caps: []string{CapReq, CapLog},
		Limits: Limits{Memory: 32 << 20, CPUReqMS: 200, Instances: 2}}
}

func TestBuildOpen(t *testing.T) {
	b, err := Build(manifest(t), module)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Build(manifest(t), module)
	if !bytes.Equal(b, again) {
		t.Fatal("Build is not deterministic")
	}
	got, err := Open(b, HashOf(b))
	if err != nil {
		t.Fatal(err)
	}
	if got.Peer() != peer(t) || got.Manifest.Name != "greeter" || !bytes.Equal(got.Module, module) ||
		strings.Join(got.Manifest.Caps, ",") != "log,req" || got.Hash() != HashOf(b) || got.Size() != len(b) {
		t.Fatalf("round trip: %+v", got.Manifest)
	}
	h, err := ParseHash(got.Hash().String())
	if err != nil || h != got.Hash() {
		t.Fatalf("hash text: %v", err)
	}
}

func TestRejects(t *testing.T) {
	good, err := Build(manifest(t), module)
	if err != nil {
		t.Fatal(err)
	}
	flip := append([]byte{}, good...)
	flip[len(flip)-1] ^= 1
	if _, err := Open(flip, HashOf(good)); !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("tampered: %v", err)
	}
	enc := func(v any) []byte { return canon.MustMarshal(v) }
	base := func() map[string]any {
		m := manifest(t)
		return map[string]any{"v": 1, "module": module, "manifest": map[string]any{
			"name": m.Name, "version": m.Version, "peer": m.Peer, "caps": m.Caps, "limits": map[string]any{"memory": 1 << 20}}}
	}
	edit := func(f func(f, m map[string]any)) []byte {
		b := base()
		f(b, b["manifest"].(map[string]any))
		return enc(b)
	}
	cases := map[string]struct {
		b    []byte
		want error
	}{
		"ok-shaped":       {edit(func(f, m map[string]any) { m["caps"] = []string{"log", "req"} }), nil},
		"unsorted caps":   {edit(func(f, m map[string]any) {}), ErrManifest},
		"unknown cap":     {edit(func(f, m map[string]any) { m["caps"] = []string{"net"} }), ErrManifest},
		"unknown field":   {edit(func(f, m map[string]any) { delete(m, "caps"); m["entry"] = "x" }), ErrMalformed},
		"unknown top":     {edit(func(f, m map[string]any) { delete(m, "caps"); f["sig"] = []byte{1} }), ErrMalformed},
		"bad name":        {edit(func(f, m map[string]any) { delete(m, "caps"); m["name"] = "Bad Name" }), ErrManifest},
		"empty version":   {edit(func(f, m map[string]any) { delete(m, "caps"); m["version"] = "" }), ErrManifest},
		"short peer":      {edit(func(f, m map[string]any) { delete(m, "caps"); m["peer"] = []byte{1, 2} }), ErrManifest},
		"no peer":         {edit(func(f, m map[string]any) { delete(m, "caps"); delete(m, "peer") }), ErrManifest},
		"version 2":       {edit(func(f, m map[string]any) { delete(m, "caps"); f["v"] = 2 }), ErrMalformed},
		"not wasm":        {edit(func(f, m map[string]any) { delete(m, "caps"); f["module"] = []byte("#!/bin/sh") }), ErrModule},
		"huge memory":     {edit(func(f, m map[string]any) { delete(m, "caps"); m["limits"] = map[string]any{"memory": uint64(8 << 30)} }), ErrManifest},
		"many instances":  {edit(func(f, m map[string]any) { delete(m, "caps"); m["limits"] = map[string]any{"instances": 1000} }), ErrManifest},
		"short policy":    {edit(func(f, m map[string]any) { delete(m, "caps"); m["policy"] = []byte{1} }), ErrManifest},
		"limits as array": {edit(func(f, m map[string]any) { delete(m, "caps"); m["limits"] = []int{1} }), ErrMalformed},
		"not cbor":        {[]byte("name: greeter"), ErrMalformed},
		"trailing":        {append(append([]byte{}, good...), 0), ErrMalformed},
		"non-canonical":   {append([]byte{0xb9, 0x00, 0x03}, good[1:]...), ErrMalformed},
	}
	for name, c := range cases {
		_, err := Decode(c.b)
		if c.want == nil {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
	big := make([]byte, MaxFileSize+1)
	if _, err := Decode(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	if _, err := Build(Manifest{Name: "x"}, module); !errors.Is(err, ErrManifest) {
		t.Errorf("Build with a bad manifest: %v", err)
	}
}

func TestParseSource(t *testing.T) {
	doc := `
name: counter
version: 1.2.3
peer: ` + peer(t).String() + `
caps: [req, kv, req]
limits:
  memory: 32Mi
  cpu_req: 200ms
  cpu_total: 1h
  instances: 2
  disk: 65536
`
	m, mod, err := ParseSource([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if mod != "counter.wasm" || m.Limits != (Limits{Memory: 32 << 20, CPUReqMS: 200, CPUTotalMS: 3600000, Instances: 2, Disk: 65536}) {
		t.Fatalf("%q %+v", mod, m.Limits)
	}
	if _, err := Build(m, module); err != nil {
		t.Fatal(err) // Build sorts and dedups caps
	}
	for name, bad := range map[string]string{
		"unknown field": doc + "extra: 1\n",
		"bad peer":      strings.Replace(doc, peer(t).String(), "not-an-id", 1),
		"bad memory":    strings.Replace(doc, "32Mi", "lots", 1),
		"bad cpu":       strings.Replace(doc, "200ms", "200", 1),
		"sub-ms cpu":    strings.Replace(doc, "200ms", "1500us", 1),
		"module escape": doc + "module: ../../etc/passwd\n",
		"bad policy":    doc + "policy: sha256:zz\n",
	} {
		if _, _, err := ParseSource([]byte(bad)); !errors.Is(err, ErrManifest) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzDecode: no input panics Decode, and whatever it accepts re-encodes to
// the same bytes (one encoding per bundle).
func FuzzDecode(f *testing.F) {
	good, err := Build(manifest(f), module)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Build(got.Manifest, got.Module)
		if err != nil {
			t.Fatalf("accepted bundle does not rebuild: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted bytes are not the one encoding")
		}
	})
}

func TestRejectsExplicitZero(t *testing.T) {
	m := manifest(t)
	f := map[string]any{"v": 1, "module": module, "manifest": map[string]any{
		"name": m.Name, "version": m.Version, "peer": m.Peer, "limits": map[string]any{"memory": 0}}}
	if _, err := Decode(canon.MustMarshal(f)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("explicit zero memory: %v", err)
	}
	f["manifest"].(map[string]any)["limits"] = map[string]any{}
	f["manifest"].(map[string]any)["caps"] = []string{}
	if _, err := Decode(canon.MustMarshal(f)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty caps: %v", err)
	}
}
