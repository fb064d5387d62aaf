package exec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

// On disk, under the executor's directory (Config.Dir):
//
//	cache/                  wazero's compilation cache (compiled machine code by module hash)
//	peers/<peer id>/bundle  the bundle file bytes (verified against meta's hash when loaded)
//	peers/<peer id>/meta    canonical CBOR meta: state, bundle hash, grant, CPU used, reason
//	peers/<peer id>/kv      canonical CBOR: the peer's key-value state, sorted pairs
//
// Every file is written to a temporary name, synced and renamed, so a crash
// leaves the old or the new version, never a torn one.

const stateVersion = 1

type meta struct {
	V      uint64 `cbor:"v"`
	State  string `cbor:"state"`
	Bundle []byte `cbor:"bundle"`
	Grant  []byte `cbor:"grant,omitempty"`
	CPUMS  uint64 `cbor:"cpu_ms,omitempty"`
	Reason string `cbor:"reason,omitempty"`
}

// pair is one key-value entry; a list of pairs sorted by key, each key
// once, is the one encoding of a peer's state.
type pair struct {
	_ struct{} `cbor:",toarray"`
	K []byte
	V []byte
}

type kvFile struct {
	V     uint64 `cbor:"v"`
	Pairs []pair `cbor:"pairs"`
}

func encodeKV(m map[string][]byte) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	f := kvFile{V: stateVersion, Pairs: make([]pair, 0, len(keys))}
	for _, k := range keys {
		f.Pairs = append(f.Pairs, pair{K: []byte(k), V: m[k]})
	}
	return canon.MustMarshal(f)
}

func decodeKV(b []byte) (map[string][]byte, error) {
	var f kvFile
	if err := canon.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%w: peer state: %w", ErrCorrupt, err)
	}
	if f.V != stateVersion {
		return nil, fmt.Errorf("%w: peer state version %d", ErrCorrupt, f.V)
	}
	m := make(map[string][]byte, len(f.Pairs))
	for i, p := range f.Pairs {
		if i > 0 && bytes.Compare(f.Pairs[i-1].K, p.K) >= 0 {
			return nil, fmt.Errorf("%w: peer state keys not sorted and unique", ErrCorrupt)
		}
		if p.V == nil {
			p.V = []byte{}
		}
		m[string(p.K)] = p.V
	}
	return m, nil
}

func kvSize(m map[string][]byte) uint64 {
	var n uint64
	for k, v := range m {
		n += uint64(len(k) + len(v))
	}
	return n
}

func (h *Host) peerDir(id key.ID) string { return filepath.Join(h.dir, "peers", id.String()) }

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (h *Host) writeMeta(id key.ID, m meta) error {
	m.V = stateVersion
	return writeFileAtomic(filepath.Join(h.peerDir(id), "meta"), canon.MustMarshal(m))
}

func (h *Host) readMeta(id key.ID) (meta, error) {
	var m meta
	b, err := os.ReadFile(filepath.Join(h.peerDir(id), "meta"))
	if err != nil {
		if os.IsNotExist(err) {
			return m, fmt.Errorf("%w: %s", ErrUnknownPeer, id)
		}
		return m, err
	}
	if err := canon.Unmarshal(b, &m); err != nil || m.V != stateVersion {
		return m, fmt.Errorf("%w: peer %s meta: %v", ErrCorrupt, id, err)
	}
	return m, nil
}

func (h *Host) readKV(id key.ID) (map[string][]byte, error) {
	b, err := os.ReadFile(filepath.Join(h.peerDir(id), "kv"))
	if os.IsNotExist(err) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeKV(b)
}

func (h *Host) writeKV(id key.ID, m map[string][]byte) error {
	return writeFileAtomic(filepath.Join(h.peerDir(id), "kv"), encodeKV(m))
}
