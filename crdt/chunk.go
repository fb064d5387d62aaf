package crdt

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
)

// The Automerge binary format frames every change as a chunk:
//
//	magic 85 6f 4a 83 | checksum (4) | type (1: change, 2: deflated change) | uLEB length | body
//
// and the change hash is SHA-256(type 1 ‖ uLEB length ‖ body) of the
// uncompressed form; the checksum is its first four bytes. The body starts
// with the dependencies, the actor and the actor's sequence number. This
// file reads exactly that much (what the projections need to order changes
// without a document); Automerge itself validates the operations.

var chunkMagic = []byte{0x85, 0x6f, 0x4a, 0x83}

const (
	chunkChange     = 1
	chunkCompressed = 2
	maxChangeBody   = 1 << 20
)

type rawChange struct {
	hash  Hash
	deps  []Hash
	actor string
	seq   uint64
	raw   []byte // the chunk as carried
	body  []byte // the uncompressed change body
	ops   []op
}

func uleb(b []byte) (uint64, int, error) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			if i > 0 && b[i] == 0 {
				return 0, 0, fmt.Errorf("non-minimal LEB128")
			}
			return v, i + 1, nil
		}
	}
	return 0, 0, fmt.Errorf("bad LEB128")
}

func putUleb(v uint64) []byte {
	var out []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, c|0x80)
			continue
		}
		return append(out, c)
	}
}

// splitChanges parses a concatenation of change chunks.
func splitChanges(b []byte) ([]rawChange, error) {
	var out []rawChange
	for len(b) > 0 {
		if len(b) < 9 || !bytes.Equal(b[:4], chunkMagic) {
			return nil, fmt.Errorf("%w: chunk %d: bad magic", ErrBadChanges, len(out))
		}
		typ := b[8]
		n, w, err := uleb(b[9:])
		if err != nil || n > maxChangeBody || uint64(len(b)-9-w) < n {
			return nil, fmt.Errorf("%w: chunk %d: bad length", ErrBadChanges, len(out))
		}
		end := 9 + w + int(n)
		body := b[9+w : end]
		switch typ {
		case chunkChange:
		case chunkCompressed:
			r := flate.NewReader(bytes.NewReader(body))
			body, err = io.ReadAll(io.LimitReader(r, maxChangeBody+1))
			if err != nil || len(body) > maxChangeBody {
				return nil, fmt.Errorf("%w: chunk %d: bad compressed change", ErrBadChanges, len(out))
			}
		default:
			return nil, fmt.Errorf("%w: chunk %d: type %d is not a change", ErrBadChanges, len(out), typ)
		}
		h := sha256.New()
		h.Write([]byte{chunkChange})
		h.Write(putUleb(uint64(len(body))))
		h.Write(body)
		var hash Hash
		copy(hash[:], h.Sum(nil))
		if !bytes.Equal(hash[:4], b[4:8]) {
			return nil, fmt.Errorf("%w: chunk %d: checksum mismatch", ErrBadChanges, len(out))
		}
		rc, err := parseHeader(body)
		if err != nil {
			return nil, fmt.Errorf("%w: chunk %d: %v", ErrBadChanges, len(out), err)
		}
		rc.hash, rc.raw, rc.body = hash, b[:end], body
		if _, rc.ops, err = decodeOps(body); err != nil {
			return nil, fmt.Errorf("%w: chunk %d: %v", ErrBadChanges, len(out), err)
		}
		out = append(out, rc)
		b = b[end:]
	}
	return out, nil
}

func parseHeader(body []byte) (rawChange, error) {
	var rc rawChange
	nd, w, err := uleb(body)
	if err != nil || nd > 1024 || uint64(len(body)-w) < nd*32 {
		return rc, fmt.Errorf("bad dependencies")
	}
	body = body[w:]
	for i := uint64(0); i < nd; i++ {
		var h Hash
		copy(h[:], body[:32])
		rc.deps = append(rc.deps, h)
		body = body[32:]
	}
	na, w, err := uleb(body)
	if err != nil || na == 0 || na > 64 || uint64(len(body)-w) < na {
		return rc, fmt.Errorf("bad actor")
	}
	rc.actor = hex.EncodeToString(body[w : w+int(na)])
	body = body[w+int(na):]
	seq, _, err := uleb(body)
	if err != nil || seq == 0 {
		return rc, fmt.Errorf("bad sequence number")
	}
	rc.seq = seq
	return rc, nil
}
