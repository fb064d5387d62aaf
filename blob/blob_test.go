package blob

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sublog/sublog/log/canon"
)

func testData(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed+1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHashText(t *testing.T) {
	h := Sum([]byte("x"))
	got, err := ParseHash(h.String())
	if err != nil || got != h {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range []string{"", "sha256:", "sha256:" + h.Hex()[:63], "SHA256:" + h.Hex(), "sha256:" + string(bytes.ToUpper([]byte(h.Hex()))), "sha256:" + h.Hex()[:62] + "zz"} {
		if _, err := ParseHash(bad); !errors.Is(err, ErrBadHash) {
			t.Errorf("ParseHash(%q) = %v, want ErrBadHash", bad, err)
		}
	}
}

func TestManifest(t *testing.T) {
	for _, n := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3*ChunkSize + 7} {
		d := testData(n, uint64(n))
		m := ManifestOf(d)
		if len(m.Chunks) != chunkCount(uint64(n)) {
			t.Fatalf("%d bytes: %d chunks", n, len(m.Chunks))
		}
		got, err := DecodeManifest(m.Encode())
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !bytes.Equal(got.Encode(), m.Encode()) {
			t.Fatalf("%d bytes: re-encoding differs", n)
		}
	}
	m := ManifestOf(testData(ChunkSize+1, 1))
	bad := map[string][]byte{
		"short hashes": canon.MustMarshal(wireManifest{V: 1, Size: m.Size, Chunk: ChunkSize, Hashes: make([]byte, 32)}),
		"chunk size":   canon.MustMarshal(wireManifest{V: 1, Size: m.Size, Chunk: 1024, Hashes: make([]byte, 64)}),
		"version":      canon.MustMarshal(wireManifest{V: 2, Size: m.Size, Chunk: ChunkSize, Hashes: make([]byte, 64)}),
		"too large":    canon.MustMarshal(wireManifest{V: 1, Size: MaxSize + 1, Chunk: ChunkSize, Hashes: make([]byte, 64)}),
		"trailing":     append(m.Encode(), 0),
		"not cbor":     []byte("hello"),
	}
	for name, b := range bad {
		if _, err := DecodeManifest(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPutGetRemove(t *testing.T) {
	s := openStore(t)
	d := testData(ChunkSize*2+5, 2)
	h, err := s.Put(d)
	if err != nil || h != Sum(d) || !s.Has(h) {
		t.Fatalf("Put: %v %v", h, err)
	}
	got, err := s.Get(h)
	if err != nil || !bytes.Equal(got, d) {
		t.Fatalf("Get: %v", err)
	}
	m, err := s.Manifest(h)
	if err != nil || !bytes.Equal(m.Encode(), ManifestOf(d).Encode()) {
		t.Fatalf("Manifest: %v", err)
	}
	// A damaged blob is reported, never returned.
	raw, _ := os.ReadFile(s.path(h))
	raw[10] ^= 1
	os.WriteFile(s.path(h), raw, 0o600)
	if _, err := s.Get(h); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("damaged Get = %v, want ErrCorrupt", err)
	}
	if err := s.Remove(h); err != nil || s.Has(h) {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := s.Get(h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Remove = %v", err)
	}
}

func TestGC(t *testing.T) {
	s := openStore(t)
	keep, _ := s.Put([]byte("keep"))
	drop, _ := s.Put([]byte("drop"))
	fresh, _ := s.Put([]byte("fresh"))
	// A partial nobody names goes too.
	d := testData(ChunkSize+1, 3)
	ph := Sum(d)
	p, err := s.Begin(ph, ManifestOf(d))
	if err != nil {
		t.Fatal(err)
	}
	p.Put(0, d[:ChunkSize])
	p.Close()
	old := time.Now().Add(-2 * time.Hour)
	for _, h := range []Hash{keep, drop} {
		os.Chtimes(s.path(h), old, old)
	}
	os.Chtimes(s.partData(ph), old, old)
	gone, err := s.GC(func(h Hash) bool { return h == keep }, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 2 || s.Has(drop) || !s.Has(keep) || !s.Has(fresh) {
		t.Fatalf("GC removed %v; drop held %v, keep %v, fresh %v", gone, s.Has(drop), s.Has(keep), s.Has(fresh))
	}
	if _, err := os.Stat(s.partData(ph)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("unreferenced partial kept")
	}
}

// pipe gives a client and a server end; the server side serves st.
func servePipe(t *testing.T, st *Store, entitled func(Hash) bool, wrap func(net.Conn) io.ReadWriteCloser) (net.Conn, chan ServeStats) {
	t.Helper()
	c, sv := net.Pipe()
	done := make(chan ServeStats, 1)
	go func() {
		var rw io.ReadWriteCloser = sv
		if wrap != nil {
			rw = wrap(sv)
		}
		ss, _ := Serve(context.Background(), rw, st, entitled)
		rw.Close()
		done <- ss
	}()
	t.Cleanup(func() { c.Close() })
	return c, done
}

func all(Hash) bool { return true }

func TestFetch(t *testing.T) {
	src, dst := openStore(t), openStore(t)
	d := testData(5<<20+123, 4)
	h, _ := src.Put(d)
	c, done := servePipe(t, src, all, nil)
	st, err := Fetch(context.Background(), c, dst, h, FetchOptions{Size: int64(len(d))})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	ss := <-done
	if st.Fetched != st.Chunks || st.BytesFetched != int64(len(d)) || ss.BytesSent != int64(len(d)) {
		t.Fatalf("stats %+v served %+v", st, ss)
	}
	got, err := dst.Get(h)
	if err != nil || !bytes.Equal(got, d) {
		t.Fatalf("fetched blob differs: %v", err)
	}
	// A second fetch asks nothing.
	st, err = Fetch(context.Background(), nil, dst, h, FetchOptions{})
	if err != nil || !st.AlreadyStored {
		t.Fatalf("second fetch: %+v %v", st, err)
	}
}

func TestFetchEmptyBlob(t *testing.T) {
	src, dst := openStore(t), openStore(t)
	h, _ := src.Put(nil)
	c, _ := servePipe(t, src, all, nil)
	if _, err := Fetch(context.Background(), c, dst, h, FetchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := dst.Get(h); err != nil || len(got) != 0 {
		t.Fatalf("%v %d", err, len(got))
	}
}

// countConn counts bytes read by the client.
type countConn struct {
	net.Conn
	in int64
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in += int64(n)
	return n, err
}

func TestNotEntitledReceivesNoChunk(t *testing.T) {
	src, dst := openStore(t), openStore(t)
	d := testData(3*ChunkSize, 5)
	h, _ := src.Put(d)
	asked := 0
	c, done := servePipe(t, src, func(got Hash) bool { asked++; return false }, nil)
	cc := &countConn{Conn: c}
	st, err := Fetch(context.Background(), cc, dst, h, FetchOptions{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Fetch = %v, want ErrUnavailable", err)
	}
	ss := <-done
	// The only bytes the client got are the 5-byte unavailable frame.
	if cc.in != 5 || st.BytesFetched != 0 || ss.Chunks != 0 || ss.Entitled || asked != 1 {
		t.Fatalf("received %d bytes, stats %+v, served %+v, asked %d", cc.in, st, ss, asked)
	}
	if dst.Has(h) {
		t.Fatal("stored a blob it was not given")
	}
	// A blob the server does not hold gets the very same answer.
	c2, _ := servePipe(t, src, all, nil)
	cc2 := &countConn{Conn: c2}
	if _, err := Fetch(context.Background(), cc2, dst, Sum([]byte("absent")), FetchOptions{}); !errors.Is(err, ErrUnavailable) || cc2.in != 5 {
		t.Fatalf("absent blob: %v after %d bytes", err, cc2.in)
	}
}

// cutConn closes the server's side after limit bytes written: the sender
// dies mid-transfer.
type cutConn struct {
	net.Conn
	limit int64
}

func (c *cutConn) Write(p []byte) (int, error) {
	if int64(len(p)) > c.limit {
		n, _ := c.Conn.Write(p[:c.limit])
		c.limit = 0
		c.Conn.Close()
		return n, io.ErrClosedPipe
	}
	c.limit -= int64(len(p))
	return c.Conn.Write(p)
}

func TestResumeAfterCut(t *testing.T) {
	src, dst := openStore(t), openStore(t)
	d := testData(5<<20, 6)
	h, _ := src.Put(d)
	c, _ := servePipe(t, src, all, func(c net.Conn) io.ReadWriteCloser { return &cutConn{Conn: c, limit: int64(len(d)) / 2} })
	st1, err := Fetch(context.Background(), c, dst, h, FetchOptions{})
	if err == nil {
		t.Fatal("fetch through a cut connection succeeded")
	}
	if dst.Has(h) {
		t.Fatal("an incomplete blob is usable")
	}
	if st1.Fetched == 0 || st1.Fetched >= st1.Chunks {
		t.Fatalf("first attempt kept %d of %d chunks", st1.Fetched, st1.Chunks)
	}
	c2, done := servePipe(t, src, all, nil)
	st2, err := Fetch(context.Background(), c2, dst, h, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ss := <-done
	if st2.Reused != st1.Fetched {
		t.Fatalf("resume reused %d chunks, the first attempt kept %d", st2.Reused, st1.Fetched)
	}
	want := int64(len(d)) - int64(st1.Fetched)*ChunkSize
	if st2.BytesFetched != want || ss.BytesSent != want {
		t.Fatalf("resume fetched %d bytes (served %d), want %d", st2.BytesFetched, ss.BytesSent, want)
	}
	if got, err := dst.Get(h); err != nil || !bytes.Equal(got, d) {
		t.Fatalf("resumed blob differs: %v", err)
	}
}

// evil serves a blob but flips a byte in chunk bad the first times times
// it sends it (a damaged link or a lying peer).
func evilServe(t *testing.T, rw io.ReadWriteCloser, d []byte, bad, times int, manifest []byte) {
	defer rw.Close()
	f := newFrames(rw)
	if _, _, err := f.read(); err != nil {
		return
	}
	m := ManifestOf(d)
	if manifest == nil {
		manifest = m.Encode()
	}
	f.write(tManifest, manifest)
	for {
		typ, b, err := f.read()
		if err != nil || typ != tGet {
			return
		}
		var g getMsg
		canon.Unmarshal(b, &g)
		for _, i := range g.I {
			lo, hi := m.span(int(i))
			c := bytes.Clone(d[lo:hi])
			if int(i) == bad && times > 0 {
				times--
				c[len(c)/2] ^= 0x40
			}
			var idx [4]byte
			binary.BigEndian.PutUint32(idx[:], uint32(i))
			if f.write(tChunk, idx[:], c) != nil {
				return
			}
		}
	}
}

func TestFlippedByteRefusedAndRefetched(t *testing.T) {
	dst := openStore(t)
	d := testData(4*ChunkSize+9, 7)
	h := Sum(d)
	c, sv := net.Pipe()
	go evilServe(t, sv, d, 2, 1, nil)
	st, err := Fetch(context.Background(), c, dst, h, FetchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Refused != 1 || st.Fetched != st.Chunks || st.BytesFetched != int64(len(d))+ChunkSize {
		t.Fatalf("stats %+v", st)
	}
	if got, _ := dst.Get(h); !bytes.Equal(got, d) {
		t.Fatal("blob differs")
	}
	// A peer that keeps sending the bad chunk is given up on; the good
	// chunks stay for another peer.
	dst2 := openStore(t)
	c, sv = net.Pipe()
	go evilServe(t, sv, d, 1, 100, nil)
	st, err = Fetch(context.Background(), c, dst2, h, FetchOptions{})
	if !errors.Is(err, ErrBadChunk) || dst2.Has(h) {
		t.Fatalf("persistent bad chunk: %+v %v", st, err)
	}
	p, _ := dst2.Begin(h, ManifestOf(d))
	if p.Held() != len(ManifestOf(d).Chunks)-1 || p.Have(1) {
		t.Fatalf("held %d after a bad peer", p.Held())
	}
	p.Close()
}

func TestLyingManifestNeverUsed(t *testing.T) {
	dst := openStore(t)
	real := testData(2*ChunkSize, 8)
	fake := testData(2*ChunkSize, 9)
	h := Sum(real)
	// The peer sends fake bytes under a manifest that matches them: every
	// chunk checks, the whole hash does not.
	c, sv := net.Pipe()
	go evilServe(t, sv, fake, -1, 0, nil)
	_, err := Fetch(context.Background(), c, dst, h, FetchOptions{})
	if !errors.Is(err, ErrMismatch) || dst.Has(h) {
		t.Fatalf("lying manifest: %v, held %v", err, dst.Has(h))
	}
	if _, err := os.Stat(dst.partData(h)); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("the partial of a false manifest was kept")
	}
	// A size other than the card's is refused before any chunk.
	c, sv = net.Pipe()
	go evilServe(t, sv, real, -1, 0, nil)
	if _, err := Fetch(context.Background(), c, dst, h, FetchOptions{Size: 7}); !errors.Is(err, ErrSizeUnmatched) {
		t.Fatalf("wrong size: %v", err)
	}
}

func TestServeRefusesBadFrames(t *testing.T) {
	src := openStore(t)
	h, _ := src.Put(testData(ChunkSize, 10))
	for name, send := range map[string][]byte{
		"huge frame":    {0xff, 0xff, 0xff, 0xff, 1},
		"zero frame":    {0, 0, 0, 0},
		"not a want":    {0, 0, 0, 1, tDone},
		"bad want cbor": {0, 0, 0, 2, tWant, 0xff},
	} {
		c, sv := net.Pipe()
		errc := make(chan error, 1)
		go func() { _, err := Serve(context.Background(), sv, src, all); sv.Close(); errc <- err }()
		go func() { c.Write(send); c.Close() }()
		if err := <-errc; err == nil {
			t.Errorf("%s: served without error", name)
		}
	}
	// An index past the end ends the stream.
	c, sv := net.Pipe()
	errc := make(chan error, 1)
	go func() { _, err := Serve(context.Background(), sv, src, all); sv.Close(); errc <- err }()
	f := newFrames(c)
	f.write(tWant, canon.MustMarshal(wantMsg{V: 1, H: h[:]}))
	f.read()
	f.write(tGet, canon.MustMarshal(getMsg{I: []uint64{5}}))
	if err := <-errc; !errors.Is(err, ErrProtocol) {
		t.Fatalf("index past the end: %v", err)
	}
	c.Close()
}

func FuzzDecodeManifest(f *testing.F) {
	f.Add(ManifestOf(testData(ChunkSize+3, 1)).Encode())
	f.Add(ManifestOf(nil).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeManifest(b)
		if err != nil {
			return
		}
		if !bytes.Equal(m.Encode(), b) {
			t.Fatal("accepted a manifest that does not re-encode to itself")
		}
	})
}

// FuzzServe: whatever a client sends, Serve answers within the protocol or
// stops with an error; it never panics and never sends a chunk of a blob
// the client is not entitled to.
func FuzzServe(f *testing.F) {
	st, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	h, _ := st.Put(testData(ChunkSize+10, 11))
	want := func(v uint64) []byte {
		b := canon.MustMarshal(wantMsg{V: v, H: h[:]})
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b)+1)), append([]byte{tWant}, b...)...)
	}
	get := func(i ...uint64) []byte {
		b := canon.MustMarshal(getMsg{I: i})
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(b)+1)), append([]byte{tGet}, b...)...)
	}
	f.Add(append(want(1), get(0, 1)...), true)
	f.Add(append(want(1), get(7)...), true)
	f.Add(want(2), true)
	f.Add(append(want(1), get(0)...), false)
	f.Add([]byte{0, 0, 0, 1, tDone}, true)
	f.Fuzz(func(t *testing.T, in []byte, entitled bool) {
		var out bytes.Buffer
		rw := struct {
			io.Reader
			io.Writer
		}{bytes.NewReader(in), &out}
		ss, _ := Serve(context.Background(), rw, st, func(Hash) bool { return entitled })
		if !entitled && (ss.Chunks != 0 || out.Len() > 5) {
			t.Fatalf("sent %d chunks, %d bytes to a client not entitled", ss.Chunks, out.Len())
		}
	})
}

// TestSyncWhileFetching writes a blob of several sync steps chunk by chunk:
// the flusher runs beside the writes, stops on Close and Finish, and neither
// a resume nor the completed blob loses a byte to it.
func TestSyncWhileFetching(t *testing.T) {
	s := openStore(t)
	d := testData(3*syncEvery+ChunkSize/2, 9)
	h, m := Sum(d), ManifestOf(d)
	p, err := s.Begin(h, m)
	if err != nil {
		t.Fatal(err)
	}
	half := len(m.Chunks) / 2
	for i := range half {
		lo, hi := m.span(i)
		if err := p.Put(i, d[lo:hi]); err != nil {
			t.Fatal(err)
		}
	}
	if p.flush == nil {
		t.Fatalf("%d bytes written and the flusher never woke", int64(half)*ChunkSize)
	}
	flushed := p.flushed
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-flushed:
	default:
		t.Fatal("Close returned with the flusher still running")
	}
	p, err = s.Begin(h, m)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if p.Held() != half {
		t.Fatalf("resume holds %d chunks, %d were written", p.Held(), half)
	}
	for _, i := range p.Missing() {
		lo, hi := m.span(i)
		if err := p.Put(i, d[lo:hi]); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Finish(); err != nil {
		t.Fatal(err)
	}
	if p.flush != nil {
		t.Fatal("Finish left the flusher running")
	}
	if got, err := s.Get(h); err != nil || !bytes.Equal(got, d) {
		t.Fatalf("blob differs after a fetch with background syncs: %v", err)
	}
}
