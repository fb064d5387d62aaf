package channel

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/flynn/noise"

	"github.com/sublog/sublog/log/key"
)

func secret(t testing.TB, name string) *key.Secret {
	t.Helper()
	sk, err := key.FromSeed(key.DeriveSeed([]byte("channel-test"), name))
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

type res struct {
	c   *Conn
	err error
}

// pair runs a handshake over a net.Pipe.
func pair(t *testing.T, ci, cr Config) (res, res) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	ch := make(chan res, 1)
	go func() {
		c, err := Server(ctx(t), b, cr)
		if err != nil {
			b.Close() // as a caller would: the initiator sees the end
		}
		ch <- res{c, err}
	}()
	c, err := Client(ctx(t), a, ci)
	if err != nil {
		a.Close() // let the server side end
	}
	return res{c, err}, <-ch
}

func TestHandshakeProvesBothIdentities(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	i, r := pair(t, Config{Secret: alice, Rand: rand.Reader}, Config{Secret: bob, Rand: rand.Reader})
	if i.err != nil || r.err != nil {
		t.Fatal(i.err, r.err)
	}
	if i.c.Peer() != bob.ID() || r.c.Peer() != alice.ID() {
		t.Fatal("wrong peer identities")
	}
	if !bytes.Equal(i.c.Binding(), r.c.Binding()) {
		t.Fatal("sides disagree on the session binding")
	}
	// A write bigger than a frame arrives whole, in order.
	big := make([]byte, 3*MaxPlain+17)
	rand.Read(big)
	go func() { i.c.Write(big) }()
	got := make([]byte, len(big))
	if _, err := io.ReadFull(r.c, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("payload: %v", err)
	}
}

func TestAcceptRefusesBeforeResponderReveals(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	no := func(key.ID) error { return errors.New("not on my list") }
	i, r := pair(t, Config{Secret: alice, Rand: rand.Reader}, Config{Secret: bob, Rand: rand.Reader, Accept: no})
	if !errors.Is(r.err, ErrRefused) || i.err == nil {
		t.Fatalf("responder %v, initiator %v", r.err, i.err)
	}
}

// recorder keeps every byte each way.
type recorder struct {
	net.Conn
	in, out bytes.Buffer
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.Conn.Read(p)
	r.in.Write(p[:n])
	return n, err
}
func (r *recorder) Write(p []byte) (int, error) { r.out.Write(p); return r.Conn.Write(p) }

func readFrames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(b) > 0 {
		n := int(binary.BigEndian.Uint16(b))
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

func TestReplayedHandshakeFails(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	a, b := net.Pipe()
	rec := &recorder{Conn: a}
	go func() { Server(ctx(t), b, Config{Secret: bob, Rand: rand.Reader}) }()
	if _, err := Client(ctx(t), rec, Config{Secret: alice, Rand: rand.Reader}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	sent := readFrames(t, rec.out.Bytes()) // message 1 and message 3
	if len(sent) != 2 {
		t.Fatalf("initiator sent %d frames", len(sent))
	}
	// Replay alice's messages to a fresh responder: message 3 cannot be
	// decrypted under the new ephemeral keys, so no identity is accepted.
	c, d := net.Pipe()
	done := make(chan error, 1)
	go func() { _, err := Server(ctx(t), d, Config{Secret: bob, Rand: rand.Reader}); done <- err }()
	go func() {
		for _, f := range sent {
			var hdr [2]byte
			binary.BigEndian.PutUint16(hdr[:], uint16(len(f)))
			c.Write(append(hdr[:], f...))
		}
	}()
	go io.Copy(io.Discard, c)
	if err := <-done; !errors.Is(err, ErrHandshake) {
		t.Fatalf("replayed handshake: %v", err)
	}
	c.Close()
}

// manualInitiator runs the initiator's side by hand with a chosen message-3 payload.
func manualInitiator(t *testing.T, rw io.ReadWriter, payload func(h2 []byte) []byte) (*noise.CipherState, error) {
	t.Helper()
	static, _ := suite.GenerateKeypair(rand.Reader)
	hs, err := noise.NewHandshakeState(noise.Config{CipherSuite: suite, Random: rand.Reader, Pattern: noise.HandshakeXX,
		Initiator: true, Prologue: []byte(Prologue), StaticKeypair: static})
	if err != nil {
		t.Fatal(err)
	}
	c := &Conn{rw: rw, rfrm: make([]byte, MaxFrame)}
	m1, _, _, _ := hs.WriteMessage(nil, hello(ownCipher()))
	if err := c.writeFrame(m1); err != nil {
		return nil, err
	}
	f, err := c.readFrame()
	if err != nil {
		return nil, err
	}
	if _, _, _, err := hs.ReadMessage(nil, f); err != nil {
		return nil, err
	}
	m3, _, cs2, err := hs.WriteMessage(nil, payload(hs.ChannelBinding()))
	if err != nil {
		t.Fatal(err)
	}
	return cs2, c.writeFrame(m3)
}

func TestForgedIdentityRefused(t *testing.T) {
	alice, mallory, bob := secret(t, "alice"), secret(t, "mallory"), secret(t, "bob")
	cases := map[string]func(h2 []byte) []byte{
		// Mallory claims alice's identity, signing with her own key.
		"claims another key": func(h2 []byte) []byte {
			p := makeProof(mallory, roleI, h2)
			return bytes.Replace(p, mallory.ID().Bytes(), alice.ID().Bytes(), 1)
		},
		// A proof alice really made, but for another session (lifted).
		"lifted from another session": func(h2 []byte) []byte {
			other := make([]byte, len(h2))
			copy(other, h2)
			other[0] ^= 1
			return makeProof(alice, roleI, other)
		},
		// Alice's proof for this session but as the responder (reflected).
		"wrong role": func(h2 []byte) []byte { return makeProof(alice, roleR, h2) },
		"empty":      func([]byte) []byte { return nil },
		"garbage":    func([]byte) []byte { return []byte{0xa1, 0x61, 0x78, 0x01} },
	}
	for name, payload := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			rec := &recorder{Conn: a}
			done := make(chan error, 1)
			go func() {
				_, err := Server(ctx(t), b, Config{Secret: bob, Rand: rand.Reader})
				b.Close()
				done <- err
			}()
			manualInitiator(t, rec, payload)
			io.Copy(io.Discard, rec)
			if err := <-done; !errors.Is(err, ErrBadProof) {
				t.Fatalf("server accepted or failed otherwise: %v", err)
			}
			// Privacy: the refused party got message 2 only: 2+32+48+16 bytes,
			// with no identity of bob's in it.
			if rec.in.Len() != 98 || bytes.Contains(rec.in.Bytes(), bob.ID().Bytes()) {
				t.Fatalf("refused initiator received %d bytes", rec.in.Len())
			}
		})
	}
}

func TestLiftedProofFromRealSessionRefused(t *testing.T) {
	// Mallory runs a real session with alice (as responder), learns alice's
	// genuine message-3 proof, and replays it into her own session with bob.
	alice, mallory, bob := secret(t, "alice"), secret(t, "mallory"), secret(t, "bob")
	a, m := net.Pipe()
	var stolen []byte
	got := make(chan struct{})
	go func() {
		static, _ := suite.GenerateKeypair(rand.Reader)
		hs, _ := noise.NewHandshakeState(noise.Config{CipherSuite: suite, Random: rand.Reader, Pattern: noise.HandshakeXX,
			Prologue: []byte(Prologue), StaticKeypair: static})
		c := &Conn{rw: m, rfrm: make([]byte, MaxFrame)}
		f, _ := c.readFrame()
		hs.ReadMessage(nil, f)
		m2, _, _, _ := hs.WriteMessage(nil, nil)
		c.writeFrame(m2)
		f, _ = c.readFrame()
		stolen, _, _, _ = hs.ReadMessage(nil, f)
		close(got)
		m.Close()
	}()
	Client(ctx(t), a, Config{Secret: alice, Rand: rand.Reader})
	<-got
	if _, err := checkProof(stolen, roleI, make([]byte, 32)); err == nil {
		t.Fatal("a proof verified for the wrong hash")
	}
	b, s := net.Pipe()
	defer b.Close()
	done := make(chan error, 1)
	go func() { _, err := Server(ctx(t), s, Config{Secret: bob, Rand: rand.Reader}); s.Close(); done <- err }()
	manualInitiator(t, b, func([]byte) []byte { return stolen })
	io.Copy(io.Discard, b)
	if err := <-done; !errors.Is(err, ErrBadProof) {
		t.Fatalf("lifted proof: %v", err)
	}
	_ = mallory
}

// flipper flips one bit of the n-th frame it forwards.
type flipper struct {
	net.Conn
	frame, at int
	seen      int
	buf       []byte
}

func TestTamperedHandshakeFails(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	for frame := range 4 {
		for _, at := range []int{0, 1, 2, 40, 97} {
			a, b := net.Pipe()
			mid1, mid2 := net.Pipe()
			// alice <-> a | b <-> tamper <-> mid1 | mid2 <-> bob
			go relay(b, mid1, frame, at)
			done := make(chan error, 1)
			go func() {
				_, err := Server(ctx(t), mid2, Config{Secret: bob, Rand: rand.Reader})
				mid2.Close()
				done <- err
			}()
			_, err := Client(ctx(t), a, Config{Secret: alice, Rand: rand.Reader})
			a.Close()
			serr := <-done
			if err == nil && serr == nil {
				t.Fatalf("frame %d byte %d flipped: handshake succeeded", frame, at)
			}
			b.Close()
			mid1.Close()
		}
	}
}

// relay forwards frames both ways, flipping a bit of frame number `frame`
// (counted over both directions) at offset at (mod its length).
func relay(x, y net.Conn, frame, at int) {
	n := 0
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	pump := func(src, dst net.Conn) {
		defer dst.Close()
		for {
			var hdr [2]byte
			if _, err := io.ReadFull(src, hdr[:]); err != nil {
				return
			}
			f := make([]byte, binary.BigEndian.Uint16(hdr[:]))
			if _, err := io.ReadFull(src, f); err != nil {
				return
			}
			<-mu
			if n == frame && len(f) > 0 {
				f[at%len(f)] ^= 0x10
			}
			n++
			mu <- struct{}{}
			if _, err := dst.Write(append(hdr[:], f...)); err != nil {
				return
			}
		}
	}
	go pump(x, y)
	pump(y, x)
}

func TestFramesTamperedDuplicatedOrEndlessFail(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	a, b := net.Pipe()
	defer a.Close()
	recA := &recorder{Conn: a}
	ch := make(chan res, 1)
	go func() { c, err := Server(ctx(t), b, Config{Secret: bob, Rand: rand.Reader}); ch <- res{c, err} }()
	ci, err := Client(ctx(t), recA, Config{Secret: alice, Rand: rand.Reader})
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	recA.out.Reset()
	go ci.Write([]byte("first"))
	buf := make([]byte, 64)
	if n, err := r.c.Read(buf); err != nil || string(buf[:n]) != "first" {
		t.Fatal(n, err)
	}
	frame := append([]byte(nil), recA.out.Bytes()...)
	// The same frame again (a duplicate or replay): the nonce moved on.
	go a.Write(frame)
	if _, err := r.c.Read(buf); !errors.Is(err, ErrFrame) {
		t.Fatalf("duplicated frame: %v", err)
	}
	// And the channel stays dead.
	if _, err := r.c.Read(buf); !errors.Is(err, ErrFrame) {
		t.Fatalf("after a bad frame: %v", err)
	}
}

func TestEndlessGarbageBoundedMemory(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	i, r := pair(t, Config{Secret: alice, Rand: rand.Reader}, Config{Secret: bob, Rand: rand.Reader})
	if i.err != nil || r.err != nil {
		t.Fatal(i.err, r.err)
	}
	// Replace the initiator's writes with an endless stream of maximal
	// frames of noise: the reader takes one frame (at most MaxFrame bytes)
	// and fails; it never buffers more.
	raw := i.c.rw.(net.Conn)
	go func() {
		junk := make([]byte, 2+MaxFrame)
		binary.BigEndian.PutUint16(junk, MaxFrame)
		for {
			if _, err := raw.Write(junk); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, 10)
	if _, err := r.c.Read(buf); !errors.Is(err, ErrFrame) {
		t.Fatalf("garbage frame: %v", err)
	}
	if cap(r.c.rfrm) != MaxFrame || cap(r.c.pbuf) != MaxFrame {
		t.Fatal("frame buffers grew")
	}
	raw.Close()
}

func freshCipher() *noise.CipherState {
	var k [32]byte
	rand.Read(k[:])
	return noise.UnsafeNewCipherState(suite, k, 0)
}

// A peer that dribbles the handshake (a real first message, one byte at a
// time, each well within any idle timeout) is cut at Config.Timeout; a
// prompt handshake under the same timeout succeeds.
func TestHandshakeDeadlineCutsDribble(t *testing.T) {
	bob := secret(t, "bob")
	a, b := net.Pipe()
	defer a.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := Server(context.Background(), b, Config{Secret: bob, Rand: rand.Reader, Timeout: 300 * time.Millisecond})
		errc <- err
	}()
	go func() {
		msg := append([]byte{0, 32}, make([]byte, 32)...)
		for _, c := range msg {
			if _, err := a.Write([]byte{c}); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		io.Copy(io.Discard, a)
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrHandshake) || !errors.Is(err, ErrHandshakeTimeout) {
			t.Fatalf("dribbled handshake: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handshake deadline did not cut a dribbling peer")
	}
	alice := secret(t, "alice")
	cfg := func(sk *key.Secret) Config { return Config{Secret: sk, Rand: rand.Reader, Timeout: 5 * time.Second} }
	if i, r := pair(t, cfg(alice), cfg(bob)); i.err != nil || r.err != nil {
		t.Fatal(i.err, r.err)
	}
}

// oldHello writes channel v1's message 1 (ChaChaPoly suite, v1 prologue,
// no payload), or a message 1 whose payload names another version.
func oldHello(t *testing.T, w io.Writer, payload []byte) {
	t.Helper()
	old := noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256)
	static, _ := old.GenerateKeypair(rand.Reader)
	hs, err := noise.NewHandshakeState(noise.Config{CipherSuite: old, Random: rand.Reader, Pattern: noise.HandshakeXX,
		Initiator: true, Prologue: []byte(prologueV1), StaticKeypair: static})
	if err != nil {
		t.Fatal(err)
	}
	m1, _, _, _ := hs.WriteMessage(nil, payload)
	c := &Conn{rw: struct {
		io.Reader
		io.Writer
	}{nil, w}}
	if err := c.writeFrame(m1); err != nil {
		t.Fatal(err)
	}
}

// A peer of another channel version is refused at message 1 with an error
// naming both versions, and is sent nothing.
func TestOtherVersionNamed(t *testing.T) {
	bob := secret(t, "bob")
	cases := map[string]struct {
		payload []byte
		want    string
	}{
		"v1":     {nil, "channel v1 (sublog/v1/sync-channel), this node v2 (sublog/v2/sync-channel)"},
		"later":  {[]byte("sublog/v3/sync-channel AESGCM"), `"sublog/v3/sync-channel AESGCM", this node v2`},
		"cipher": {[]byte("sublog/v2/sync-channel AESOCB"), `"sublog/v2/sync-channel AESOCB", this node v2 (sublog/v2/sync-channel with AESGCM or ChaChaPoly)`},
		"junk":   {bytes.Repeat([]byte{0xff}, 200), `"\xff`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			done := make(chan error, 1)
			go func() {
				_, err := Server(ctx(t), b, Config{Secret: bob, Rand: rand.Reader})
				b.Close()
				done <- err
			}()
			oldHello(t, a, tc.payload)
			got, _ := io.ReadAll(a)
			err := <-done
			if !errors.Is(err, ErrVersion) || !errors.Is(err, ErrHandshake) || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Fatalf("server: %v", err)
			}
			if len(got) != 0 {
				t.Fatalf("a peer of another version was sent %d bytes", len(got))
			}
		})
	}
}

// A client whose message 1 a v1 responder refuses (it closes the
// connection) says the peer may speak another version.
func TestClientAgainstV1Responder(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	go func() {
		// What a v1 responder does: read message 1, find a payload, close.
		c := &Conn{rw: b, rfrm: make([]byte, MaxFrame)}
		f, err := c.readFrame()
		if err == nil && len(f) > 32 {
			b.Close()
		}
	}()
	_, err := Client(ctx(t), a, Config{Secret: secret(t, "alice"), Rand: rand.Reader})
	if !errors.Is(err, ErrHandshake) || !bytes.Contains([]byte(err.Error()), []byte("another channel version than v2")) {
		t.Fatalf("client: %v", err)
	}
}

// suite is the suite this machine's initiator picks.
var suite = suites[ownCipher()]

// Either cipher works whatever the responder's CPU: the initiator names it
// and both sides run it (the suite's name starts the handshake hash).
func TestBothCiphers(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	defer func(v bool) { hardwareAES = v }(hardwareAES)
	for _, hw := range []bool{true, false} {
		hardwareAES = hw
		want := map[bool]string{true: CipherAESGCM, false: CipherChaChaPoly}[hw]
		ci, cr := pair(t, Config{Secret: alice, Rand: rand.Reader}, Config{Secret: bob, Rand: rand.Reader})
		if ci.err != nil || cr.err != nil {
			t.Fatalf("%s: %v / %v", want, ci.err, cr.err)
		}
		if ci.c.Cipher() != want || cr.c.Cipher() != want {
			t.Fatalf("hardware AES %v: ciphers %s / %s, want %s", hw, ci.c.Cipher(), cr.c.Cipher(), want)
		}
		go ci.c.Write([]byte("over " + want))
		got := make([]byte, len("over "+want))
		if _, err := io.ReadFull(cr.c, got); err != nil || string(got) != "over "+want {
			t.Fatalf("%s: read %q, %v", want, got, err)
		}
	}
}

// A party in the middle that rewrites message 1 to name the other cipher
// (a downgrade) makes the handshake fail at message 2.
func TestCipherDowngradeFails(t *testing.T) {
	alice, bob := secret(t, "alice"), secret(t, "bob")
	a, m := net.Pipe()
	m2, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		in := &Conn{rw: m, rfrm: make([]byte, MaxFrame)}
		out := &Conn{rw: m2}
		f, err := in.readFrame()
		if err != nil {
			return
		}
		other := CipherChaChaPoly
		if ownCipher() == CipherChaChaPoly {
			other = CipherAESGCM
		}
		out.writeFrame(append(append([]byte(nil), f[:32]...), hello(other)...))
		go io.Copy(m, m2)
		io.Copy(m2, m)
	}()
	done := make(chan error, 1)
	go func() {
		_, err := Server(ctx(t), b, Config{Secret: bob, Rand: rand.Reader})
		b.Close()
		done <- err
	}()
	_, err := Client(ctx(t), a, Config{Secret: alice, Rand: rand.Reader})
	a.Close()
	if !errors.Is(err, ErrHandshake) {
		t.Fatalf("client after a downgrade: %v", err)
	}
	if err := <-done; err == nil {
		t.Fatal("server completed a downgraded handshake")
	}
}
