package exec

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sublog/sublog/exec/bundle"
	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/capsule"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/log/kinds"
)

// A move hands a peer from a source host to one receiving host:
//
//   - the source halts the peer and encrypts its state to the receiver
//     (HPKE base mode to the receiver's identity, info
//     "sublog/v1/handoff-state", AAD canonical {from, to, peer, bundle}): the
//     state blob;
//   - it appends a `handoff` card (kinds.HandoffBody: peer, bundle hash, to,
//     the state blob's SHA-256 and size, the grant it ran under): the move,
//     signed by the source;
//   - it marks the peer `moved` here, durably, and drops its state: the
//     source can never resume what it handed over;
//   - the receiver takes the handoff (card, state blob, bundle) only if the
//     card verifies, names this host, the state and bundle match the hashes
//     the card signs, the state opens with this host's key, it holds a live
//     grant of its own, and it never took this handoff card before (the card
//     ID is recorded durably before the peer is installed: single use).
//
// The handoff file (`move --out`, `deploy --handoff`) is the canonical CBOR
// {v: 2, card: bstr, state: bstr, bundle: bstr}; the state and the bundle are
// also blobs named by the card, so they can travel by hash.
const (
	handoffVersion = 2
	handoffInfo    = "sublog/v1/handoff-state"
	// maxHandoff bounds a handoff file: a bundle, a state, a card.
	maxHandoff = 2*bundle.MaxFileSize + 128<<10
)

// More errors of moves.
var (
	ErrHandedOver    = errors.New("exec: peer was handed over to another host")
	ErrNotAddressed  = errors.New("exec: handoff is for another host")
	ErrHandoffReplay = errors.New("exec: handoff already taken")
	ErrTampered      = errors.New("exec: handoff does not match its signed card")
)

// Handoff is one move's signed card and the bytes it names.
type Handoff struct {
	Card   *card.Card
	Body   kinds.HandoffBody
	State  []byte // the encrypted state blob
	Bundle []byte // the bundle file
}

type handoffFile struct {
	V      uint64 `cbor:"v"`
	Card   []byte `cbor:"card"`
	State  []byte `cbor:"state"`
	Bundle []byte `cbor:"bundle"`
}

type handoffState struct {
	V      uint64 `cbor:"v"`
	Peer   []byte `cbor:"peer"`
	Bundle []byte `cbor:"bundle"`
	KV     []byte `cbor:"kv"`
}

type handoffAAD struct {
	From   []byte `cbor:"from"`
	To     []byte `cbor:"to"`
	Peer   []byte `cbor:"peer"`
	Bundle []byte `cbor:"bundle"`
}

// Encode is the handoff file.
func (ho *Handoff) Encode() []byte {
	return canon.MustMarshal(handoffFile{V: handoffVersion, Card: ho.Card.Bytes(), State: ho.State, Bundle: ho.Bundle})
}

// ID is the handoff card's ID.
func (ho *Handoff) ID() card.ID { return ho.Card.ID() }

// noReqs refuses every required capability: a handoff card needs none.
type noReqs struct{}

func (noReqs) Require(reqs []string) error {
	if len(reqs) > 0 {
		return fmt.Errorf("%w: a handoff card requires no capabilities, this one %v", ErrBadHandoff, reqs)
	}
	return nil
}

// DecodeHandoff reads a handoff file strictly and checks what needs no
// keys: the card's signature and form, its body, and that the state and
// bundle are the bytes the card names.
func DecodeHandoff(b []byte) (*Handoff, error) {
	if len(b) > maxHandoff {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadHandoff, len(b))
	}
	var f handoffFile
	if err := canon.UnmarshalExact(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadHandoff, err)
	}
	if f.V != handoffVersion {
		return nil, fmt.Errorf("%w: version %d (an unsigned handoff of an older sublog is not taken)", ErrBadHandoff, f.V)
	}
	c, err := card.Decode(f.Card, noReqs{})
	if err != nil {
		return nil, fmt.Errorf("%w: card: %w", ErrBadHandoff, err)
	}
	if c.Kind() != kinds.KindHandoff {
		return nil, fmt.Errorf("%w: card is a %s card", ErrBadHandoff, c.Kind())
	}
	ho := &Handoff{Card: c, State: f.State, Bundle: f.Bundle}
	if err := canon.UnmarshalExact(c.Body(), &ho.Body); err != nil {
		return nil, fmt.Errorf("%w: card body: %w", ErrBadHandoff, err)
	}
	if err := ho.Body.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadHandoff, err)
	}
	if sum := sha256.Sum256(f.State); string(sum[:]) != string(ho.Body.State) || uint64(len(f.State)) != ho.Body.Size {
		return nil, fmt.Errorf("%w: the state is not the blob %x the card names", ErrTampered, ho.Body.State[:8])
	}
	if sum := sha256.Sum256(f.Bundle); string(sum[:]) != string(ho.Body.Bundle) {
		return nil, fmt.Errorf("%w: the bundle is not the one the card names", ErrTampered)
	}
	return ho, nil
}

// Receiver takes a moved peer: another Host, or a transport to one.
type Receiver interface {
	ID() key.ID
	Receive(ctx context.Context, handoff []byte) error
}

// Move suspends a peer here, hands it to dst (which needs its own live
// grant) with a handoff signed here and encrypted to dst, and on success
// deletes everything of it here and records `moved` naming dst. If dst
// refuses, the peer stays here suspended (the handoff card stays in this
// log, unused: its state never left this process).
func (h *Host) Move(ctx context.Context, id key.ID, dst Receiver) error {
	to := dst.ID()
	ho, p, err := h.export(ctx, id, to)
	if err != nil {
		return err
	}
	defer p.life.Unlock()
	if err := dst.Receive(ctx, ho.Encode()); err != nil {
		p.mu.Lock()
		p.state, p.reason = kinds.StateSuspended, "move refused: "+err.Error()
		g := p.grant
		p.mu.Unlock()
		p.saveMeta()
		h.record(p.b, g, kinds.StateSuspended, truncate([]byte("move to "+to.String()+" refused: "+err.Error()), 512), nil, p.usage())
		return fmt.Errorf("exec: moving %s to %s: %w", p.b.Manifest.Name, to.Short(), err)
	}
	p.mu.Lock()
	p.state = kinds.StateMoved
	g := p.grant
	p.mu.Unlock()
	h.mu.Lock()
	delete(h.peers, id)
	h.mu.Unlock()
	if err := os.RemoveAll(h.peerDir(id)); err != nil {
		return fmt.Errorf("exec: removing moved %s: %w", p.b.Manifest.Name, err)
	}
	return h.record(p.b, g, kinds.StateMoved, fmt.Sprintf("moved to host %s by handoff %s", to, ho.ID()), &to, p.usage())
}

// Export halts a peer and hands it over to host `to`: it returns the signed,
// encrypted handoff (for a file or a transfer by hash) and marks the peer
// `moved` here for good, with its state dropped: this host cannot resume it
// (ErrHandedOver). Remove deletes what is left of it.
func (h *Host) Export(ctx context.Context, id, to key.ID) (*Handoff, error) {
	ho, p, err := h.export(ctx, id, to)
	if err != nil {
		return nil, err
	}
	defer p.life.Unlock()
	reason := fmt.Sprintf("handed over to host %s by handoff %s", to, ho.ID())
	p.mu.Lock()
	p.state, p.reason = kinds.StateMoved, reason
	g := p.grant
	p.mu.Unlock()
	p.kvmu.Lock()
	p.kv = map[string][]byte{}
	p.kvmu.Unlock()
	if err := h.writeKV(id, map[string][]byte{}); err != nil {
		return nil, err
	}
	if err := p.saveMeta(); err != nil {
		return nil, err
	}
	if err := h.record(p.b, g, kinds.StateMoved, reason, &to, p.usage()); err != nil {
		return nil, err
	}
	return ho, nil
}

// export halts the peer, seals its state to `to` and appends the handoff
// card; it returns with p.life held.
func (h *Host) export(ctx context.Context, id, to key.ID) (*Handoff, *peer, error) {
	if to == h.id {
		return nil, nil, fmt.Errorf("%w: a peer cannot be handed to the host it is on", ErrBadHandoff)
	}
	p, err := h.load(id)
	if err != nil {
		return nil, nil, err
	}
	p.life.Lock()
	p.mu.Lock()
	st := p.state
	p.mu.Unlock()
	if st == kinds.StateMoved {
		p.life.Unlock()
		return nil, nil, fmt.Errorf("%w: %s: %s", ErrHandedOver, p.b.Manifest.Name, p.reason)
	}
	p.halt()
	p.kvmu.RLock()
	kv := encodeKV(p.kv)
	p.kvmu.RUnlock()
	hash := p.b.Hash()
	ho, err := h.seal(p, hash, kv, to)
	if err != nil {
		p.life.Unlock()
		return nil, nil, err
	}
	return ho, p, nil
}

func (h *Host) seal(p *peer, hash bundle.Hash, kv []byte, to key.ID) (*Handoff, error) {
	aad := canon.MustMarshal(handoffAAD{From: h.id.Bytes(), To: to.Bytes(), Peer: p.id.Bytes(), Bundle: hash[:]})
	pt := canon.MustMarshal(handoffState{V: 1, Peer: p.id.Bytes(), Bundle: hash[:], KV: kv})
	ct, err := capsule.SealTo(to, handoffInfo, pt, aad, rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("exec: sealing the state of %s: %w", p.b.Manifest.Name, err)
	}
	sum := sha256.Sum256(ct)
	body := kinds.HandoffBody{Peer: p.id.Bytes(), Bundle: hash[:], To: to.Bytes(), State: sum[:], Size: uint64(len(ct))}
	p.mu.Lock()
	if p.grant != nil {
		body.Grant = p.grant.id[:]
	}
	p.mu.Unlock()
	h.logMu.Lock()
	c, err := h.cfg.Log.Append(h.cfg.Key, card.Draft{Kind: kinds.KindHandoff, TS: h.cfg.Now().Unix(), Body: body})
	h.logMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("exec: signing the handoff of %s: %w", p.b.Manifest.Name, err)
	}
	return &Handoff{Card: c, Body: body, State: ct, Bundle: p.b.Bytes()}, nil
}

// Receive takes a handoff file: see DecodeHandoff and Take.
func (h *Host) Receive(ctx context.Context, file []byte) error {
	ho, err := DecodeHandoff(file)
	if err != nil {
		return err
	}
	return h.Take(ctx, ho)
}

func (h *Host) takenPath(id card.ID) string {
	return filepath.Join(h.dir, "handoffs", hex.EncodeToString(id[:]))
}

// Take installs a decoded handoff: it must name this host, its state must
// open with this host's key and agree with the card, the bundle must be the
// card's, this host needs its own live grant, and this handoff card must
// not have been taken here before. The peer then runs here with the state
// it had.
func (h *Host) Take(ctx context.Context, ho *Handoff) error {
	to, _ := key.IDFromBytes(ho.Body.To)
	if to != h.id {
		return fmt.Errorf("%w: handoff %s is for host %s, this is %s", ErrNotAddressed, ho.ID(), to, h.id)
	}
	from := ho.Card.Author()
	aad := canon.MustMarshal(handoffAAD{From: from.Bytes(), To: to.Bytes(), Peer: ho.Body.Peer, Bundle: ho.Body.Bundle})
	pt, err := capsule.OpenSealed(h.cfg.Key, handoffInfo, ho.State, aad)
	if err != nil {
		return fmt.Errorf("%w: the state does not open with this host's key: %w", ErrTampered, err)
	}
	var st handoffState
	if err := canon.UnmarshalExact(pt, &st); err != nil || st.V != 1 {
		return fmt.Errorf("%w: state: %v", ErrBadHandoff, err)
	}
	if string(st.Peer) != string(ho.Body.Peer) || string(st.Bundle) != string(ho.Body.Bundle) {
		return fmt.Errorf("%w: the state is of another peer or bundle than the card's", ErrTampered)
	}
	want, _ := bundle.HashFromBytes(ho.Body.Bundle)
	b, err := bundle.Open(ho.Bundle, want)
	if err != nil {
		return err
	}
	if string(b.Manifest.Peer) != string(ho.Body.Peer) {
		return fmt.Errorf("%w: the handoff's peer is not the bundle's", ErrBadHandoff)
	}
	kv, err := decodeKV(st.KV)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadHandoff, err)
	}
	// Single use: the card is marked taken (durably, exclusively) before
	// the peer is installed, and unmarked only if the install fails.
	if err := os.MkdirAll(filepath.Join(h.dir, "handoffs"), 0o700); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	mark := h.takenPath(ho.ID())
	f, err := os.OpenFile(mark, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("%w: handoff %s (from host %s) was taken here before", ErrHandoffReplay, ho.ID(), from)
	}
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	_, werr := f.Write(ho.Card.Bytes())
	if werr == nil {
		werr = f.Sync()
	}
	f.Close()
	if werr == nil {
		werr = syncDir(filepath.Dir(mark))
	}
	if werr != nil {
		os.Remove(mark)
		return fmt.Errorf("exec: recording handoff %s: %w", ho.ID(), werr)
	}
	if _, err := h.install(ctx, b, kv, fmt.Sprintf("%s by handoff %s", from, ho.ID()), As{}); err != nil {
		os.Remove(mark)
		return err
	}
	return nil
}
