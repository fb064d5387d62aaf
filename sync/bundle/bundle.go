// Package bundle owns store-and-forward bundle files: the log diff of a sync
// session written to a file (a USB stick, a mail attachment, a
// delay-tolerant link), signed by the exporter and optionally encrypted to
// one recipient with HPKE.
//
// Plain layout (format version 1):
//
//	"sublog-bundle/1\n"
//	record*            4-byte big-endian length, then canonical CBOR
//
// Record 0 is the Header; then proto messages (TCards, TFork) in chain order;
// the last record is the Trailer, whose signature (Ed25519 by the exporter,
// label LabelBundle) covers the SHA-256 of every byte before it. A bundle
// without a valid trailer is refused as a whole.
//
// Encrypted layout: "sublog-bundle-hpke/1\n", the recipient's identity (32
// bytes), the HPKE encapsulated key (32 bytes), then chunks: a 4-byte length
// and the AEAD ciphertext of up to ChunkSize bytes of the plain bundle. HPKE
// is X25519/HKDF-SHA256/ChaCha20-Poly1305 (RFC 9180, base mode) to the
// recipient's identity key in its X25519 form; each chunk's associated data
// says whether it is the last, and HPKE's sequence numbers refuse reordered,
// repeated or dropped chunks.
package bundle

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"

	"filippo.io/edwards25519"
	"github.com/cloudflare/circl/hpke"
	"github.com/cloudflare/circl/kem"

	"github.com/sublog/sublog/log/canon"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/proto"
)

// Format constants.
const (
	MagicPlain     = "sublog-bundle/1\n"
	MagicEncrypted = "sublog-bundle-hpke/1\n"
	// LabelBundle separates bundle signatures from every other signature.
	LabelBundle = "sublog/v1/bundle"
	// LabelHPKE is the HPKE info string.
	LabelHPKE = "sublog/v1/bundle-hpke"
	// ChunkSize is the plaintext size of one encrypted chunk.
	ChunkSize = 64 << 10
	maxRecord = proto.MaxMessage
)

// Errors of bundle reading.
var (
	ErrFormat     = errors.New("bundle: not a sublog bundle")
	ErrTruncated  = errors.New("bundle: truncated")
	ErrSignature  = errors.New("bundle: bad exporter signature")
	ErrDecrypt    = errors.New("bundle: cannot decrypt (not for this identity, or tampered)")
	ErrNotForYou  = errors.New("bundle: encrypted to another identity")
	ErrMalformed  = errors.New("bundle: malformed record")
	ErrNeedSecret = errors.New("bundle: encrypted; a secret key is needed")
)

var suite = hpke.NewSuite(hpke.KEM_X25519_HKDF_SHA256, hpke.KDF_HKDF_SHA256, hpke.AEAD_ChaCha20Poly1305)

// Header is the first record.
type Header struct {
	V        uint64 `cbor:"v"`
	Exporter []byte `cbor:"exporter"`
	Created  int64  `cbor:"created"`
	For      []byte `cbor:"for,omitempty"`
}

// Trailer is the last record.
type Trailer struct {
	Sig []byte `cbor:"sig"`
}

// record kinds on the wire are told apart by position (header first, trailer
// last); a trailer is recognised by its single "sig" key.

// Writer writes a bundle. Call Cards/Fork in chain order, then Close.
type Writer struct {
	sk    *key.Secret
	h     hash.Hash
	out   io.Writer // plain bytes go here (hashing, then maybe encrypting)
	enc   *chunker
	bw    *bufio.Writer
	err   error
	Count int // cards written
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	Created   int64   // Unix seconds
	Recipient *key.ID // encrypt to this identity when set
	Rand      io.Reader
}

// NewWriter starts a bundle on w signed by sk.
func NewWriter(w io.Writer, sk *key.Secret, o WriterOptions) (*Writer, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	bd := &Writer{sk: sk, h: sha256.New(), bw: bw}
	var sink io.Writer = bw
	hdr := Header{V: 1, Exporter: sk.ID().Bytes(), Created: o.Created}
	if o.Recipient != nil {
		pk, err := x25519Public(*o.Recipient)
		if err != nil {
			return nil, err
		}
		snd, err := suite.NewSender(pk, []byte(LabelHPKE))
		if err != nil {
			return nil, err
		}
		enc, sealer, err := snd.Setup(o.Rand)
		if err != nil {
			return nil, err
		}
		bw.WriteString(MagicEncrypted)
		bw.Write(o.Recipient.Bytes())
		bw.Write(enc)
		bd.enc = &chunker{w: bw, s: sealer}
		sink = bd.enc
		hdr.For = o.Recipient.Bytes()
	}
	bd.out = io.MultiWriter(bd.h, sink)
	bd.write([]byte(MagicPlain))
	bd.record(canon.MustMarshal(hdr))
	return bd, bd.err
}

func (b *Writer) write(p []byte) {
	if b.err == nil {
		_, b.err = b.out.Write(p)
	}
}

func (b *Writer) record(p []byte) {
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(p)))
	b.write(l[:])
	b.write(p)
}

// Msg writes one protocol message (TCards or TFork).
func (b *Writer) Msg(m *proto.Msg) error {
	if m.T != proto.TCards && m.T != proto.TFork {
		return fmt.Errorf("bundle: message type %d does not belong in a bundle", m.T)
	}
	p, err := proto.Encode(m)
	if err != nil {
		return err
	}
	b.record(p)
	b.Count += len(m.Cards)
	return b.err
}

// Close signs and finishes the bundle.
func (b *Writer) Close() error {
	sum := b.h.Sum(nil)
	sig := b.sk.Sign(signed(sum))
	// The trailer is not hashed: write it past the hash.
	t := canon.MustMarshal(Trailer{Sig: sig})
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(t)))
	if b.err != nil {
		return b.err
	}
	sink := io.Writer(b.bw)
	if b.enc != nil {
		sink = b.enc
	}
	if _, err := sink.Write(append(l[:], t...)); err != nil {
		return err
	}
	if b.enc != nil {
		if err := b.enc.finish(); err != nil {
			return err
		}
	}
	return b.bw.Flush()
}

func signed(sum []byte) []byte { return append([]byte(LabelBundle+"\x00"), sum...) }

// chunker encrypts plain bytes in ChunkSize chunks.
type chunker struct {
	w   io.Writer
	s   hpke.Sealer
	buf []byte
}

func (c *chunker) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), ChunkSize-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == ChunkSize {
			if err := c.flush(false); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunker) flush(last bool) error {
	aad := []byte{0}
	if last {
		aad[0] = 1
	}
	ct, err := c.s.Seal(c.buf, aad)
	if err != nil {
		return err
	}
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(ct)))
	if _, err := c.w.Write(append(l[:], ct...)); err != nil {
		return err
	}
	c.buf = c.buf[:0]
	return nil
}

func (c *chunker) finish() error { return c.flush(true) }

// x25519Public is an identity's public key in X25519 (Montgomery) form.
func x25519Public(id key.ID) (hpkePublic, error) {
	p, err := new(edwards25519.Point).SetBytes(id.Bytes())
	if err != nil {
		return nil, err
	}
	return hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPublicKey(p.BytesMontgomery())
}

// x25519Secret is the X25519 form of an identity's secret key: the first
// half of SHA-512 of its seed, the scalar Ed25519 signs with (X25519 clamps it).
func x25519Secret(sk *key.Secret) (hpkePrivate, error) {
	h := sha512.Sum512(sk.Seed())
	return hpke.KEM_X25519_HKDF_SHA256.Scheme().UnmarshalBinaryPrivateKey(h[:32])
}

// Reader reads a bundle's records after checking it whole.
type Reader struct {
	Header   Header
	Exporter key.ID
	msgs     []*proto.Msg
}

// Messages are the bundle's protocol messages, in order.
func (r *Reader) Messages() []*proto.Msg { return r.msgs }

// Cards counts the cards in the bundle.
func (r *Reader) Cards() int {
	n := 0
	for _, m := range r.msgs {
		n += len(m.Cards)
	}
	return n
}

// Read reads a whole bundle and checks it before anything is used: the
// format, every record, and the exporter's signature over all of it.
// An encrypted bundle needs sk (the recipient's key). A truncated or altered
// bundle gives an error and no messages. It holds every message in memory;
// Scan reads a bundle of any size in bounded memory.
func Read(r io.Reader, sk *key.Secret) (*Reader, error) {
	var msgs []*proto.Msg
	out, err := Scan(r, sk, func(m *proto.Msg) error { msgs = append(msgs, m); return nil })
	if err != nil {
		return nil, err
	}
	out.msgs = msgs
	return out, nil
}

// Scan reads a bundle as a stream, one record at a time, and calls fn (if
// not nil) with each protocol message in order; the exporter's signature is
// checked when the trailer is reached, so a caller that must not act on an
// unsigned bundle scans it twice: once with fn nil to verify, then again to
// use it (sync.Import does, over a private copy). Memory is bounded by one
// record (at most proto.MaxMessage bytes) and one encrypted chunk, whatever
// the size of the bundle; bytes that are not a bundle are refused after the
// magic, before anything else is read. An error from fn stops the scan and
// is returned.
func Scan(r io.Reader, sk *key.Secret, fn func(*proto.Msg) error) (*Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(len(MagicEncrypted))
	if err != nil && len(head) < len(MagicPlain) {
		return nil, fmt.Errorf("%w: %d bytes", ErrFormat, len(head))
	}
	if !bytes.HasPrefix(head, []byte(MagicPlain)) && !bytes.HasPrefix(head, []byte(MagicEncrypted)) {
		return nil, fmt.Errorf("%w: bad magic", ErrFormat)
	}
	var plain io.Reader = br
	if bytes.HasPrefix(head, []byte(MagicEncrypted)) {
		br.Discard(len(MagicEncrypted))
		if plain, err = decrypting(br, sk); err != nil {
			return nil, err
		}
	}
	h := sha256.New()
	tr := io.TeeReader(plain, h)
	magic := make([]byte, len(MagicPlain))
	if _, err := io.ReadFull(tr, magic); err != nil {
		if errors.Is(err, ErrTruncated) || errors.Is(err, ErrDecrypt) || errors.Is(err, ErrMalformed) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	if string(magic) != MagicPlain {
		return nil, fmt.Errorf("%w: bad magic", ErrFormat)
	}
	var buf []byte // one record at a time, reused
	readRec := func(src io.Reader) ([]byte, error) {
		var l [4]byte
		if _, err := io.ReadFull(src, l[:]); err != nil {
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, wrapRead(err)
		}
		n := binary.BigEndian.Uint32(l[:])
		if n > maxRecord {
			return nil, fmt.Errorf("%w: %d-byte record", ErrMalformed, n)
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		b := buf[:n]
		if _, err := io.ReadFull(src, b); err != nil {
			return nil, wrapRead(err)
		}
		return b, nil
	}
	hb, err := readRec(tr)
	if err != nil {
		if errors.Is(err, ErrMalformed) || errors.Is(err, ErrDecrypt) {
			return nil, fmt.Errorf("header: %w", err)
		}
		return nil, fmt.Errorf("%w: no header", ErrTruncated)
	}
	out := &Reader{}
	if err := canon.Unmarshal(hb, &out.Header); err != nil || out.Header.V != 1 {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	if out.Exporter, err = key.IDFromBytes(out.Header.Exporter); err != nil {
		return nil, fmt.Errorf("%w: exporter: %v", ErrMalformed, err)
	}
	// Records until the trailer; the hash must be taken before the
	// trailer's bytes are read, so read the length first, untee'd.
	for {
		sum := h.Sum(nil)
		b, err := readRec(plain)
		if err == io.EOF {
			return nil, fmt.Errorf("%w: no signature at the end", ErrTruncated)
		}
		if err != nil {
			return nil, err
		}
		var t Trailer
		if canon.Unmarshal(b, &t) == nil {
			if err := out.Exporter.Verify(signed(sum), t.Sig); err != nil {
				return nil, fmt.Errorf("%w: exporter %s", ErrSignature, out.Exporter)
			}
			if extra, _ := plain.Read(make([]byte, 1)); extra != 0 {
				return nil, fmt.Errorf("%w: bytes after the signature", ErrMalformed)
			}
			return out, nil
		}
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(b)))
		h.Write(l[:])
		h.Write(b)
		m, err := proto.Decode(b)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if m.T != proto.TCards && m.T != proto.TFork {
			return nil, fmt.Errorf("%w: message type %d", ErrMalformed, m.T)
		}
		if fn != nil {
			if err := fn(m); err != nil {
				return nil, err
			}
		}
	}
}

// wrapRead keeps the decryption layer's own errors and calls anything else
// a truncation.
func wrapRead(err error) error {
	if errors.Is(err, ErrDecrypt) || errors.Is(err, ErrMalformed) || errors.Is(err, ErrTruncated) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrTruncated, err)
}

// decrypting checks the recipient and returns the decrypted plain stream.
func decrypting(br *bufio.Reader, sk *key.Secret) (io.Reader, error) {
	var rcpt [key.IDSize]byte
	enc := make([]byte, 32)
	if _, err := io.ReadFull(br, rcpt[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	if _, err := io.ReadFull(br, enc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTruncated, err)
	}
	if sk == nil {
		return nil, ErrNeedSecret
	}
	if !bytes.Equal(rcpt[:], sk.ID().Bytes()) {
		id, _ := key.IDFromBytes(rcpt[:])
		return nil, fmt.Errorf("%w: %s", ErrNotForYou, id)
	}
	xs, err := x25519Secret(sk)
	if err != nil {
		return nil, err
	}
	rcv, err := suite.NewReceiver(xs, []byte(LabelHPKE))
	if err != nil {
		return nil, err
	}
	op, err := rcv.Setup(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrDecrypt, err)
	}
	return &dechunker{r: br, o: op}, nil
}

type dechunker struct {
	r    io.Reader
	o    hpke.Opener
	buf  []byte
	last bool
}

func (d *dechunker) Read(p []byte) (int, error) {
	for len(d.buf) == 0 {
		if d.last {
			return 0, io.EOF
		}
		var l [4]byte
		if _, err := io.ReadFull(d.r, l[:]); err != nil {
			return 0, fmt.Errorf("%w: encrypted chunks end without the last one", ErrTruncated)
		}
		n := binary.BigEndian.Uint32(l[:])
		if n > ChunkSize+16 {
			return 0, fmt.Errorf("%w: %d-byte chunk", ErrMalformed, n)
		}
		ct := make([]byte, n)
		if _, err := io.ReadFull(d.r, ct); err != nil {
			return 0, fmt.Errorf("%w: %v", ErrTruncated, err)
		}
		pt, err := d.o.Open(ct, []byte{0})
		if err != nil {
			// Same sequence number, last-chunk AAD: try it as the end.
			var err2 error
			if pt, err2 = d.o.Open(ct, []byte{1}); err2 != nil {
				return 0, fmt.Errorf("%w: chunk: %v", ErrDecrypt, err)
			}
			d.last = true
			if extra, _ := d.r.Read(make([]byte, 1)); extra != 0 {
				return 0, fmt.Errorf("%w: bytes after the last chunk", ErrMalformed)
			}
		}
		d.buf = pt
	}
	n := copy(p, d.buf)
	d.buf = d.buf[n:]
	return n, nil
}

type (
	hpkePublic  = kem.PublicKey
	hpkePrivate = kem.PrivateKey
)
