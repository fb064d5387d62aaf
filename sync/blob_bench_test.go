package sync

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sublog/sublog/blob"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/transport"
)

// rawTCPRate measures loopback TCP throughput in bytes per second: n bytes
// written in 256 KiB writes and read on the other end, one connection.
func rawTCPRate(b *testing.B, n int64) float64 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	done := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- 0
			return
		}
		m, _ := io.Copy(io.Discard, c)
		c.Close()
		done <- m
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, blob.ChunkSize)
	start := time.Now()
	for sent := int64(0); sent < n; sent += int64(len(buf)) {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.Close()
	got := <-done
	return float64(got) / time.Since(start).Seconds()
}

// rawDiskRate measures writing n bytes to a new file in dir and syncing it,
// in bytes per second: what any receiver must do with a blob.
func rawDiskRate(b *testing.B, dir string, n int64) float64 {
	f, err := os.CreateTemp(dir, "raw-*")
	if err != nil {
		b.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, blob.ChunkSize)
	start := time.Now()
	for w := int64(0); w < n; w += int64(len(buf)) {
		if _, err := f.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	return float64(n) / time.Since(start).Seconds()
}

// rawCryptoRate measures, in bytes per second on one core, the work every
// byte of an encrypted and verified transfer needs at the least: sealed
// once (AES-256-GCM, the channel's cipher on a CPU with AES instructions, in 64 KiB frames as
// the channel does), opened once and hashed twice (SHA-256: the chunk
// against the manifest, the whole blob against its address). It is the
// transfer's compute floor: a fetch can be no faster on one core, and on
// two it can gain at most the overlap of these four passes.
func rawCryptoRate(b *testing.B, n int64) float64 {
	blk, err := aes.NewCipher(make([]byte, 32))
	if err != nil {
		b.Fatal(err)
	}
	aead, err := cipher.NewGCM(blk)
	if err != nil {
		b.Fatal(err)
	}
	const frame = 65535 - 16
	pt := make([]byte, frame)
	ct := make([]byte, 0, frame+16)
	out := make([]byte, 0, frame)
	nonce := make([]byte, aead.NonceSize())
	hs := sha256.New()
	start := time.Now()
	for done := int64(0); done < n; done += frame {
		binary.BigEndian.PutUint64(nonce[4:], uint64(done))
		ct = aead.Seal(ct[:0], nonce, pt, nil)
		var err error
		if out, err = aead.Open(out[:0], nonce, ct, nil); err != nil {
			b.Fatal(err)
		}
		hs.Write(out)
		sha256.Sum256(out)
	}
	hs.Sum(nil)
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkBlobTransfer fetches a 32 MiB blob over a real sync connection
// (TCP loopback, Noise channel, yamux, blob/1, every chunk hashed and
// written to disk, the whole hash checked, the file synced) and reports the
// rate against raw loopback TCP measured in the same run (`x-raw-tcp`;
// target ≥ 0.5) and against the slower of raw TCP and raw disk (write and
// sync of the same bytes in the same directory: `x-raw-min`).
func BenchmarkBlobTransfer(b *testing.B) {
	const size = 32 << 20
	owner, friend := secret(b, "owner"), secret(b, "friend")
	st := newStore()
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	h := blob.Sum(data)
	c, err := card.Sign(owner, 1, card.ID{}, card.Draft{Kind: card.KindBundle, TS: 1,
		Body: map[string]any{"hash": h[:], "name": "x", "version": "1", "peer": owner.ID().Bytes(), "size": size}}, testCaps)
	if err != nil {
		b.Fatal(err)
	}
	st.Import(c.Bytes())
	src, _ := blob.Open(b.TempDir())
	if _, err := src.Put(data); err != nil {
		b.Fatal(err)
	}
	pol := NewLists([]key.ID{owner.ID()}, []key.ID{friend.ID()}, nil)
	ln, err := transport.TCP{}.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, ln, st, Options{Secret: owner, Rand: newRand(1), Policy: pol,
		Handlers: map[byte]PeerStream{StreamBlob: BlobHandler(st, pol, src, nil)}}, nil)
	dir := b.TempDir()
	// The machine is shared and its load swings from second to second, so
	// every iteration times the raw limits right next to the fetch and the
	// ratios compare the sums (each side sees the same contention).
	var el, rawEl, diskEl, floorEl time.Duration
	var rawCPU, fetchCPU float64 // seconds
	secs := func(rate float64) time.Duration { return time.Duration(float64(size) / rate * float64(time.Second)) }
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dst, _ := blob.Open(filepath.Join(dir, strconv.Itoa(i)))
		c0 := cpuTime()
		rawEl += secs(rawTCPRate(b, size))
		rawCPU += cpuTime() - c0
		diskEl += secs(rawDiskRate(b, dir, size))
		floorEl += secs(rawCryptoRate(b, size))
		b.StartTimer()
		start, c1 := time.Now(), cpuTime()
		conn, err := DialStreams(ctx, transport.TCP{}, ln.Addr(), Options{Secret: friend, Rand: newRand(2)})
		if err != nil {
			b.Fatal(err)
		}
		stats, err := blob.FetchAny(ctx, dst, h, blob.FetchOptions{Size: size}, []blob.Opener{BlobSource{C: conn, Addr: ln.Addr()}})
		conn.Close()
		el += time.Since(start)
		fetchCPU += cpuTime() - c1
		if err != nil || stats.BytesFetched != size {
			b.Fatalf("%+v %v", stats, err)
		}
	}
	b.StopTimer()
	mib := func(d time.Duration) float64 { return float64(size) * float64(b.N) / d.Seconds() / (1 << 20) }
	b.ReportMetric(mib(el), "MiB/s")
	b.ReportMetric(mib(rawEl), "raw-tcp-MiB/s")
	b.ReportMetric(rawEl.Seconds()/el.Seconds(), "x-raw-tcp")
	b.ReportMetric(mib(diskEl), "raw-disk-MiB/s")
	b.ReportMetric(max(rawEl, diskEl).Seconds()/el.Seconds(), "x-raw-min")
	b.ReportMetric(mib(floorEl), "crypto-floor-MiB/s")
	b.ReportMetric(floorEl.Seconds()/el.Seconds(), "x-crypto-floor")
	// CPU time per byte (both ends, every thread) barely depends on the
	// load: where the fetch and raw TCP are both bound by two cores, the
	// throughput ratio an idle machine can reach is about rawCPU/fetchCPU.
	perByte := func(sec float64) float64 { return sec * 1e9 / float64(size) / float64(b.N) }
	b.ReportMetric(perByte(fetchCPU), "cpu-ns/B")
	b.ReportMetric(perByte(rawCPU), "raw-tcp-cpu-ns/B")
	b.ReportMetric(rawCPU/fetchCPU, "x-raw-tcp-cpu")
}

// BenchmarkSideStreamRaw moves 32 MiB through one side stream of a sync
// connection (TCP loopback, Noise channel, yamux) with no protocol on top:
// the transport's own ceiling for a blob transfer, beside BenchmarkBlobTransfer.
func BenchmarkSideStreamRaw(b *testing.B) {
	const size = 32 << 20
	owner, friend := secret(b, "owner"), secret(b, "friend")
	st := newStore()
	pol := NewLists([]key.ID{owner.ID()}, []key.ID{friend.ID()}, nil)
	ln, err := transport.TCP{}.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Serve(ctx, ln, st, Options{Secret: owner, Rand: newRand(1), Policy: pol,
		Handlers: map[byte]PeerStream{StreamProxy: func(ctx context.Context, _ key.ID, s io.ReadWriteCloser) {
			buf := make([]byte, blob.ChunkSize)
			for sent := 0; sent < size; sent += len(buf) {
				if _, err := s.Write(buf); err != nil {
					break
				}
			}
			s.Close()
		}}}, nil)
	raw := rawTCPRate(b, size)
	b.SetBytes(size)
	b.ResetTimer()
	var el time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		conn, err := DialStreams(ctx, transport.TCP{}, ln.Addr(), Options{Secret: friend, Rand: newRand(2)})
		if err != nil {
			b.Fatal(err)
		}
		s, err := conn.Open(StreamProxy)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, s)
		conn.Close()
		el += time.Since(start)
		if n != size {
			b.Fatalf("%d bytes", n)
		}
	}
	b.StopTimer()
	raw = (raw + rawTCPRate(b, size)) / 2
	rate := float64(size) * float64(b.N) / el.Seconds()
	b.ReportMetric(rate/(1<<20), "MiB/s")
	b.ReportMetric(raw/(1<<20), "raw-tcp-MiB/s")
	b.ReportMetric(rate/raw, "x-raw-tcp")
}
