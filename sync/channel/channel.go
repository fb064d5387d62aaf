// Package channel owns the authenticated, encrypted channel that every sync
// connection runs in, over any byte stream (TCP, a pipe, stdio, a serial line).
//
// The construction is Noise XX from github.com/flynn/noise, over X25519 and
// SHA-256 with one of two ciphers the initiator picks and names in message
// 1 (channel v2): AES-256-GCM when its CPU has AES instructions, else
// ChaCha20-Poly1305 (v1 always used ChaChaPoly). Both sides use fresh X25519
// static keys per session; each side
// proves its Ed25519 identity by signing the Noise handshake hash under the
// domain-separation label LabelHandshake, so a proof names one session and
// cannot be lifted into another. Order of messages:
//
//	1  I -> R  e           payload: hello          (version and cipher, in clear)
//	2  R -> I  e, ee, s, es   payload: empty       (s is a fresh, unlinkable key)
//	3  I -> R  s, se          payload: proof_I over h2 (hash after message 2)
//	4  R -> I  transport      payload: proof_R over h3 (hash after message 3)
//
// The responder reveals its identity only after it has verified the
// initiator's proof, so a party that connects without proving an identity
// learns nothing identifying from a listening node. The initiator reveals its
// identity, encrypted, to whoever completes the Noise handshake; that is the
// price of going first (see ARCHITECTURE.md, Sync).
//
// Every message travels in a frame: a 2-byte big-endian length and that many
// bytes, at most MaxFrame; a frame never needs more memory than that. Frames
// are encrypted with counter nonces, so a dropped, duplicated, reordered or
// altered frame fails decryption and ends the channel.
package channel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	stdsync "sync"
	"time"

	"github.com/flynn/noise"
	"golang.org/x/sys/cpu"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
)

// Protocol constants (channel version 2).
const (
	// Version is the channel version: 2 is Noise_XX_25519_AESGCM_SHA256 or
	// Noise_XX_25519_ChaChaPoly_SHA256 as the initiator names it in message
	// 1, 1 was ChaChaPoly only (see ARCHITECTURE.md, Sync).
	Version = 2
	// Prologue is mixed into the handshake and begins message 1's payload
	// (in clear), followed by a space and the cipher (CipherAESGCM or
	// CipherChaChaPoly), so a responder names the version a peer of
	// another one speaks (ErrVersion); the payload and the suite's name are
	// both in the handshake hash, so an altered one fails at message 2.
	Prologue = "sublog/v2/sync-channel"
	// The ciphers message 1 may name.
	CipherAESGCM     = "AESGCM"
	CipherChaChaPoly = "ChaChaPoly"
	// prologueV1 is what channel v1 mixed in; its message 1 had no payload.
	prologueV1 = "sublog/v1/sync-channel"
	// LabelHandshake separates handshake proofs from every other signature.
	LabelHandshake = "sublog/v1/sync-handshake"
	// MaxFrame is the largest frame body (the Noise message limit).
	MaxFrame = noise.MaxMsgLen
	// MaxPlain is the most plaintext one frame carries.
	MaxPlain = MaxFrame - 16
	roleI    = "initiator"
	roleR    = "responder"
)

// Errors of the channel.
var (
	// ErrHandshake: the handshake failed (bad message, wrong protocol, tampering,
	// replay); the connection must be dropped.
	ErrHandshake = errors.New("channel: handshake failed")
	// ErrBadProof: the peer's identity proof does not verify for this session.
	ErrBadProof = errors.New("channel: bad identity proof")
	// ErrRefused: the peer authenticated but Config.Accept refused it.
	ErrRefused = errors.New("channel: peer refused")
	// ErrHandshakeTimeout: the peer did not finish the handshake within
	// Config.Timeout and was dropped.
	ErrHandshakeTimeout = errors.New("channel: handshake not finished in time")
	// ErrFrame: a frame is malformed or fails decryption; the channel is dead.
	ErrFrame = errors.New("channel: bad frame")
	// ErrVersion: the peer speaks another channel version (also an
	// ErrHandshake).
	ErrVersion = errors.New("channel: unsupported channel version")
)

var suites = map[string]noise.CipherSuite{
	CipherAESGCM:     noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256),
	CipherChaChaPoly: noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256),
}

// hardwareAES tells whether this CPU runs AES-GCM in hardware (AES and
// carry-less multiply instructions): Go's AES is then both about 2.5 times
// ChaCha20-Poly1305 here and constant-time; without them it falls back to
// table lookups, which are slower and not constant-time (crypto/aes).
var hardwareAES = (cpu.X86.HasAES && cpu.X86.HasPCLMULQDQ) || (cpu.ARM64.HasAES && cpu.ARM64.HasPMULL)

// ownCipher is the cipher this side picks when it initiates.
func ownCipher() string {
	if hardwareAES {
		return CipherAESGCM
	}
	return CipherChaChaPoly
}

func hello(cipher string) []byte { return []byte(Prologue + " " + cipher) }

// readHello tells which cipher message 1 (a whole frame: the 32-byte
// ephemeral key, then the payload in clear) names, or what version it
// speaks when that is not this one.
func readHello(f []byte) (string, error) {
	if len(f) < 32 {
		return "", fmt.Errorf("%d-byte message 1", len(f))
	}
	p := f[32:]
	if len(p) == 0 {
		return "", fmt.Errorf("%w: the peer speaks channel v1 (%s), this node v%d (%s)", ErrVersion, prologueV1, Version, Prologue)
	}
	for name := range suites {
		if string(p) == string(hello(name)) {
			return name, nil
		}
	}
	return "", fmt.Errorf("%w: the peer speaks %s, this node v%d (%s with %s or %s)", ErrVersion,
		strconv.Quote(string(p[:min(len(p), 64)])), Version, Prologue, CipherAESGCM, CipherChaChaPoly)
}

// Config configures one side of a channel. Secret and Rand are required.
type Config struct {
	Secret *key.Secret
	Rand   io.Reader // randomness for the ephemeral and static Noise keys
	// Accept, when set, is asked about the peer's proven identity before this
	// side reveals or sends anything more; an error refuses the peer.
	Accept func(peer key.ID) error
	// Timeout, when positive, bounds the whole handshake: a peer that has not
	// finished it in this time is dropped, however it paces its bytes (a
	// handshake dribbled one byte at a time is cut at the deadline). The
	// underlying stream must be an io.Closer for the cut to interrupt a read.
	Timeout time.Duration
}

// proof is the identity proof carried in handshake payloads.
type proof struct {
	ID  []byte `cbor:"id"`
	Sig []byte `cbor:"sig"`
}

// proofMessage is what a proof signs: label, role and the handshake hash.
func proofMessage(role string, h []byte) []byte {
	m := make([]byte, 0, len(LabelHandshake)+1+len(role)+1+len(h))
	m = append(m, LabelHandshake...)
	m = append(m, 0)
	m = append(m, role...)
	m = append(m, 0)
	return append(m, h...)
}

func makeProof(sk *key.Secret, role string, h []byte) []byte {
	return canon.MustMarshal(proof{ID: sk.ID().Bytes(), Sig: sk.Sign(proofMessage(role, h))})
}

// checkProof decodes and verifies a proof for role over h.
func checkProof(b []byte, role string, h []byte) (key.ID, error) {
	var p proof
	if err := canon.Unmarshal(b, &p); err != nil {
		return key.ID{}, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	id, err := key.IDFromBytes(p.ID)
	if err != nil {
		return key.ID{}, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	if err := id.Verify(proofMessage(role, h), p.Sig); err != nil {
		return key.ID{}, fmt.Errorf("%w: %s", ErrBadProof, id)
	}
	return id, nil
}

// Conn is an established channel: an io.ReadWriteCloser of plaintext whose
// peer has proven its identity.
type Conn struct {
	rw     io.ReadWriter
	peer   key.ID
	h      []byte
	cipher string

	wmu  stdsync.Mutex
	send *noise.CipherState
	wbuf []byte

	rmu   stdsync.Mutex
	recv  *noise.CipherState
	rbuf  []byte // undelivered plaintext (a tail of pbuf)
	pbuf  []byte // plaintext buffer
	rfrm  []byte // frame buffer
	rerr  error
	close stdsync.Once
}

// Peer is the proven identity of the other side.
func (c *Conn) Peer() key.ID { return c.peer }

// Cipher is the session's cipher: CipherAESGCM or CipherChaChaPoly.
func (c *Conn) Cipher() string { return c.cipher }

// Binding is the final handshake hash, unique to this session.
func (c *Conn) Binding() []byte { return append([]byte(nil), c.h...) }

// Client runs the initiator's side of the handshake over rw. If ctx ends
// first and rw is an io.Closer, rw is closed so the handshake cannot hang.
func Client(ctx context.Context, rw io.ReadWriter, cfg Config) (*Conn, error) {
	return handshake(ctx, rw, cfg, true)
}

// Server runs the responder's side of the handshake over rw.
func Server(ctx context.Context, rw io.ReadWriter, cfg Config) (*Conn, error) {
	return handshake(ctx, rw, cfg, false)
}

func handshake(ctx context.Context, rw io.ReadWriter, cfg Config, initiator bool) (*Conn, error) {
	if cfg.Secret == nil || cfg.Rand == nil {
		return nil, fmt.Errorf("%w: config needs Secret and Rand", ErrHandshake)
	}
	if cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, cfg.Timeout, fmt.Errorf("%w after %v", ErrHandshakeTimeout, cfg.Timeout))
		defer cancel()
	}
	if cl, ok := rw.(io.Closer); ok {
		// (Registered after the timeout's cancel, so it is stopped first:
		// a finished handshake never closes the stream.)
		stop := context.AfterFunc(ctx, func() { cl.Close() })
		defer stop()
	}
	c := &Conn{rw: rw, rfrm: make([]byte, MaxFrame), pbuf: make([]byte, 0, MaxFrame)}
	var hs *noise.HandshakeState
	start := func(cipher string) error {
		suite := suites[cipher]
		static, err := suite.GenerateKeypair(cfg.Rand)
		if err != nil {
			return err
		}
		hs, err = noise.NewHandshakeState(noise.Config{
			CipherSuite:   suite,
			Random:        cfg.Rand,
			Pattern:       noise.HandshakeXX,
			Initiator:     initiator,
			Prologue:      []byte(Prologue),
			StaticKeypair: static,
		})
		c.cipher = cipher
		return err
	}
	wrap := func(err error) error {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", ErrHandshake, context.Cause(ctx))
		}
		if errors.Is(err, ErrBadProof) || errors.Is(err, ErrRefused) {
			return err
		}
		if errors.Is(err, ErrVersion) {
			return fmt.Errorf("%w: %w", ErrHandshake, err)
		}
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	write := func(payload []byte) (*noise.CipherState, *noise.CipherState, error) {
		msg, cs1, cs2, err := hs.WriteMessage(nil, payload)
		if err != nil {
			return nil, nil, err
		}
		return cs1, cs2, c.writeFrame(msg)
	}
	read := func() ([]byte, *noise.CipherState, *noise.CipherState, error) {
		f, err := c.readFrame()
		if err != nil {
			return nil, nil, nil, err
		}
		return hs.ReadMessage(nil, f)
	}
	accept := func(id key.ID) error {
		if cfg.Accept != nil {
			if err := cfg.Accept(id); err != nil {
				return fmt.Errorf("%w: %s: %v", ErrRefused, id, err)
			}
		}
		return nil
	}
	if initiator {
		if err := start(ownCipher()); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
		}
		if _, _, err := write(hello(c.cipher)); err != nil { // 1: e, hello
			return nil, wrap(err)
		}
		p, _, _, err := read() // 2: e, ee, s, es
		if errors.Is(err, io.EOF) && ctx.Err() == nil {
			// A responder of channel v1 ends the connection here: it
			// refuses a message 1 with a payload.
			return nil, wrap(fmt.Errorf("the peer closed the connection after message 1 (as a peer of another channel version than v%d does)", Version))
		}
		if err != nil {
			return nil, wrap(err)
		}
		if len(p) != 0 {
			return nil, wrap(errors.New("unexpected payload in message 2"))
		}
		h2 := append([]byte(nil), hs.ChannelBinding()...)
		cs1, cs2, err := write(makeProof(cfg.Secret, roleI, h2)) // 3: s, se, proof_I
		if err != nil {
			return nil, wrap(err)
		}
		c.send, c.recv = cs1, cs2
		c.h = append([]byte(nil), hs.ChannelBinding()...)
		f, err := c.readFrame() // 4: proof_R
		if err != nil {
			return nil, wrap(err)
		}
		pr, err := c.recv.Decrypt(nil, nil, f)
		if err != nil {
			return nil, wrap(err)
		}
		if c.peer, err = checkProof(pr, roleR, c.h); err != nil {
			return nil, wrap(err)
		}
		if err := accept(c.peer); err != nil {
			return nil, err
		}
		return c, nil
	}
	f, err := c.readFrame() // 1: e, hello
	if err != nil {
		return nil, wrap(err)
	}
	cipher, err := readHello(f)
	if err != nil {
		return nil, wrap(err)
	}
	if err := start(cipher); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandshake, err)
	}
	if _, _, _, err := hs.ReadMessage(nil, f); err != nil {
		return nil, wrap(err)
	}
	if _, _, err := write(nil); err != nil { // 2: e, ee, s, es
		return nil, wrap(err)
	}
	h2 := append([]byte(nil), hs.ChannelBinding()...)
	p, cs1, cs2, err := read() // 3: s, se, proof_I
	if err != nil {
		return nil, wrap(err)
	}
	if c.peer, err = checkProof(p, roleI, h2); err != nil {
		return nil, wrap(err)
	}
	if err := accept(c.peer); err != nil {
		return nil, err
	}
	c.send, c.recv = cs2, cs1
	c.h = append([]byte(nil), hs.ChannelBinding()...)
	if err := c.writeSealed(makeProof(cfg.Secret, roleR, c.h)); err != nil { // 4
		return nil, wrap(err)
	}
	return c, nil
}

func (c *Conn) writeFrame(b []byte) error {
	if len(b) > MaxFrame {
		return fmt.Errorf("%w: %d-byte frame", ErrFrame, len(b))
	}
	c.wbuf = append(c.wbuf[:0], 0, 0)
	binary.BigEndian.PutUint16(c.wbuf, uint16(len(b)))
	c.wbuf = append(c.wbuf, b...)
	_, err := c.rw.Write(c.wbuf)
	return err
}

// readFrame reads one frame into c.rfrm; the result is valid until the next call.
func (c *Conn) readFrame() ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c.rw, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	f := c.rfrm[:n]
	if _, err := io.ReadFull(c.rw, f); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return f, nil
}

func (c *Conn) writeSealed(p []byte) error {
	ct, err := c.send.Encrypt(nil, nil, p)
	if err != nil {
		return err
	}
	return c.writeFrame(ct)
}

// writeBatch is how many frames Write seals into one buffer and hands to
// the underlying stream in one write (one system call on a socket).
const writeBatch = 4

// sealBufs are the buffers Write seals frames into, shared by every
// channel: a buffer is held only during one Write, so a busy sender does
// not allocate (and the collector does not run) once per frame.
var sealBufs = stdsync.Pool{New: func() any {
	b := make([]byte, 0, writeBatch*(2+MaxFrame))
	return &b
}}

// Write encrypts p into as many frames as it needs, writeBatch frames per
// write to the underlying stream.
func (c *Conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	bp := sealBufs.Get().(*[]byte)
	defer sealBufs.Put(bp)
	n := 0
	for len(p) > 0 {
		buf := (*bp)[:0]
		sealed := 0
		for range writeBatch {
			if len(p) == sealed {
				break
			}
			k := min(len(p)-sealed, MaxPlain)
			at := len(buf)
			buf = append(buf, 0, 0)
			var err error
			if buf, err = c.send.Encrypt(buf, nil, p[sealed:sealed+k]); err != nil {
				return n, err
			}
			binary.BigEndian.PutUint16(buf[at:], uint16(len(buf)-at-2))
			sealed += k
		}
		*bp = buf[:0]
		if _, err := c.rw.Write(buf); err != nil {
			return n, err
		}
		n += sealed
		p = p[sealed:]
	}
	return n, nil
}

// Read returns decrypted bytes. A frame that fails to decrypt (tampered,
// replayed, reordered, truncated) ends the channel with ErrFrame.
func (c *Conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.rbuf) == 0 {
		if c.rerr != nil {
			return 0, c.rerr
		}
		f, err := c.readFrame()
		if err != nil {
			c.rerr = err
			return 0, err
		}
		if len(f) < 16 {
			c.rerr = fmt.Errorf("%w: %d-byte frame is shorter than its tag", ErrFrame, len(f))
			return 0, c.rerr
		}
		pt, err := c.recv.Decrypt(c.pbuf[:0], nil, f)
		if err != nil {
			c.rerr = fmt.Errorf("%w: %v", ErrFrame, err)
			return 0, c.rerr
		}
		c.rbuf = pt
	}
	n := copy(p, c.rbuf)
	c.rbuf = c.rbuf[n:]
	return n, nil
}

// Close closes the underlying stream if it can be closed.
func (c *Conn) Close() error {
	var err error
	c.close.Do(func() {
		if cl, ok := c.rw.(io.Closer); ok {
			err = cl.Close()
		}
	})
	return err
}
