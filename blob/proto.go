package blob

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/sublog/sublog/log/canon"
)

// The transfer protocol (blob/1), spoken on one stream per blob. Every frame
// is a 4-byte big-endian length n (1 ≤ n ≤ maxFrame, refused before any
// buffering), a type byte, and n-1 bytes of payload:
//
//	1 want         C→S  canonical CBOR {v: 1, h: bstr32}: the blob wanted
//	2 manifest     S→C  the blob's manifest (canonical CBOR, see Manifest)
//	3 get          C→S  canonical CBOR {i: [uint]}: 1..maxGet chunk indices
//	4 chunk        S→C  index (4 bytes, big-endian) then the chunk's bytes
//	5 unavailable  S→C  empty: not held here, or not for this peer (the same
//	                     answer, so a peer not entitled learns nothing)
//	6 done         C→S  empty: the client has what it wanted
//
// The server answers gets in order, one chunk frame per index. The client
// keeps at most window chunks asked and not yet received, checks each chunk
// against the manifest before it is written, asks again for one that does
// not match (at most maxRetries times per chunk), and completes the blob only
// when the whole hash matches. Memory per transfer on either side is one
// frame buffer (a chunk plus a few bytes), whatever the blob's size.
const (
	tWant        = 1
	tManifest    = 2
	tGet         = 3
	tChunk       = 4
	tUnavailable = 5
	tDone        = 6

	protoVersion = 1
	maxFrame     = 1 + 4 + ChunkSize // the largest frame: a chunk
	maxGet       = 64
	// window is how many chunks the client keeps asked and not received
	// (indices only: the bytes in flight are bounded by the stream's flow
	// control); it asks again once half are in, so gets come in batches.
	window     = 16
	maxRetries = 3
	// pipeDepth is how many chunk buffers (maxFrame bytes each) one fetch
	// holds: the reader fills one while others are checked (chunk hash) on
	// one goroutine and kept (written, whole hash) on another, so the two
	// hashes and the reading overlap on as many cores as there are.
	pipeDepth = 4
	// sendBatch is how many chunk frames the server writes at once (one
	// write, so one multiplexer frame and one hand-off to its writer per
	// batch rather than per chunk): its send buffer is this many frames.
	sendBatch = 4
	// IdleTimeout is how long either side waits for the other's next frame.
	IdleTimeout = 30 * time.Second
)

type wantMsg struct {
	V uint64 `cbor:"v"`
	H []byte `cbor:"h"`
}

type getMsg struct {
	I []uint64 `cbor:"i"`
}

// frames reads and writes frames with one reused buffer.
type frames struct {
	rw   io.ReadWriter
	buf  []byte
	rhdr [5]byte // read and write may run on two goroutines
	whdr [5]byte
}

func newFrames(rw io.ReadWriter) *frames { return &frames{rw: rw} }

func (f *frames) deadline() {
	if d, ok := f.rw.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(time.Now().Add(IdleTimeout))
	}
}

// write sends one frame: typ, then the parts of the payload.
func (f *frames) write(typ byte, parts ...[]byte) error {
	n := 1
	for _, p := range parts {
		n += len(p)
	}
	if n > maxFrame {
		return fmt.Errorf("%w: frame of %d bytes", ErrProtocol, n)
	}
	f.deadline()
	binary.BigEndian.PutUint32(f.whdr[:4], uint32(n))
	f.whdr[4] = typ
	if _, err := f.rw.Write(f.whdr[:]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := f.rw.Write(p); err != nil {
			return err
		}
	}
	return nil
}

// read returns the next frame's type and payload (valid until the next read).
func (f *frames) read() (byte, []byte, error) {
	typ, b, err := f.readInto(f.buf)
	if cap(b) > cap(f.buf) {
		f.buf = b
	}
	return typ, b, err
}

// readInto reads the next frame's payload into buf (a larger one when buf
// is too small) and returns it with the frame's type.
func (f *frames) readInto(buf []byte) (byte, []byte, error) {
	f.deadline()
	if _, err := io.ReadFull(f.rw, f.rhdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(f.rhdr[:4])
	if n < 1 || n > maxFrame {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes", ErrProtocol, n)
	}
	if cap(buf) < int(n-1) {
		buf = make([]byte, n-1, max(int(n-1), 4<<10))
	}
	b := buf[:n-1]
	if _, err := io.ReadFull(f.rw, b); err != nil {
		return 0, nil, fmt.Errorf("%w: frame cut short: %v", ErrProtocol, err)
	}
	return f.rhdr[4], b, nil
}

// ServeStats tells what one served stream sent.
type ServeStats struct {
	Hash      Hash
	Entitled  bool
	Chunks    int
	BytesSent int64 // chunk bytes
}

// Serve answers one blob/1 stream from st: the blob the peer wants, if
// entitled says the peer may have it and it is held here (else the answer
// is unavailable, and no chunk is ever sent). It returns when the peer is
// done, closes the stream, errs or ctx ends. The caller closes rw.
func Serve(ctx context.Context, rw io.ReadWriter, st *Store, entitled func(Hash) bool) (ServeStats, error) {
	var ss ServeStats
	if c, ok := rw.(io.Closer); ok {
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
	}
	f := newFrames(rw)
	typ, b, err := f.read()
	if err != nil {
		return ss, err
	}
	var w wantMsg
	if typ != tWant {
		return ss, fmt.Errorf("%w: first frame is type %d, want a want", ErrProtocol, typ)
	}
	if err := canon.UnmarshalExact(b, &w); err != nil {
		return ss, fmt.Errorf("%w: want: %v", ErrProtocol, err)
	}
	h, err := HashFromBytes(w.H)
	if err != nil || w.V != protoVersion {
		f.write(tUnavailable)
		if err == nil {
			err = fmt.Errorf("%w: version %d", ErrProtocol, w.V)
		}
		return ss, err
	}
	ss.Hash = h
	if entitled == nil || !entitled(h) {
		return ss, f.write(tUnavailable)
	}
	ss.Entitled = true
	m, err := st.Manifest(h)
	if err != nil {
		f.write(tUnavailable)
		if errors.Is(err, ErrNotFound) {
			return ss, nil
		}
		return ss, err
	}
	file, err := st.reader(h)
	if err != nil {
		f.write(tUnavailable)
		return ss, err
	}
	defer file.Close()
	if err := f.write(tManifest, m.Encode()); err != nil {
		return ss, err
	}
	// Chunk frames are written sendBatch at a time, each batch in one
	// write (headers, indices and bytes in one buffer): every write on a
	// stream is a multiplexer frame, a hand-off to its writer goroutine and
	// channel frames of its own, so small writes cost as many of each.
	const frameLen = 5 + 4 + ChunkSize
	out := make([]byte, 0, sendBatch*frameLen)
	for {
		typ, b, err := f.read()
		if errors.Is(err, io.EOF) {
			return ss, nil
		}
		if err != nil {
			return ss, err
		}
		switch typ {
		case tDone:
			return ss, nil
		case tGet:
		default:
			return ss, fmt.Errorf("%w: frame type %d from the client", ErrProtocol, typ)
		}
		var g getMsg
		if err := canon.UnmarshalExact(b, &g); err != nil || len(g.I) == 0 || len(g.I) > maxGet {
			return ss, fmt.Errorf("%w: get of %d chunks (%v)", ErrProtocol, len(g.I), err)
		}
		for _, i := range g.I {
			if i >= uint64(len(m.Chunks)) {
				return ss, fmt.Errorf("%w: chunk %d of %d", ErrProtocol, i, len(m.Chunks))
			}
		}
		for len(g.I) > 0 {
			batch := g.I[:min(sendBatch, len(g.I))]
			g.I = g.I[len(batch):]
			out = out[:0]
			for _, i := range batch {
				lo, hi := m.span(int(i))
				at := len(out)
				out = out[:at+9+int(hi-lo)]
				c := out[at+9:]
				if _, err := file.ReadAt(c, lo); err != nil && !(errors.Is(err, io.EOF) && lo == hi) {
					return ss, fmt.Errorf("blob: reading %s: %w", h, err)
				}
				binary.BigEndian.PutUint32(out[at:], uint32(1+4+len(c)))
				out[at+4] = tChunk
				binary.BigEndian.PutUint32(out[at+5:], uint32(i))
				ss.Chunks++
				ss.BytesSent += int64(len(c))
			}
			f.deadline()
			if _, err := f.rw.Write(out); err != nil {
				return ss, err
			}
		}
	}
}

// Stats tells what one fetch did.
type Stats struct {
	Hash          Hash  `json:"-"`
	Size          int64 `json:"size"`
	Chunks        int   `json:"chunks"`
	Reused        int   `json:"reused"`         // chunks already held (a resumed fetch)
	Fetched       int   `json:"fetched"`        // chunks received and kept
	Refused       int   `json:"refused"`        // chunks received that did not match and were asked again
	Damaged       int   `json:"damaged"`        // chunks of a partial on disk that no longer matched (fetched again)
	BytesFetched  int64 `json:"bytes_fetched"`  // chunk bytes received (kept or refused)
	AlreadyStored bool  `json:"already_stored"` // nothing to fetch
}

// FetchOptions bound a fetch.
type FetchOptions struct {
	// Size, when positive, is the size the blob must have (from the card
	// that names it); a manifest of another size is refused before any chunk.
	Size int64
}

// Fetch gets blob h into st over one blob/1 stream, resuming a partial left
// by an earlier fetch. Each chunk is checked before it is written; the blob
// is complete (and usable) only when Fetch returns nil. After an error,
// the verified chunks stay for the next attempt. The caller closes rw;
// when rw is an io.Closer, Fetch also closes it on a failure after the
// manifest and when ctx ends.
func Fetch(ctx context.Context, rw io.ReadWriter, st *Store, h Hash, opt FetchOptions) (Stats, error) {
	stats := Stats{Hash: h}
	if st.Has(h) {
		stats.AlreadyStored = true
		return stats, nil
	}
	if c, ok := rw.(io.Closer); ok {
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
	}
	f := newFrames(rw)
	if err := f.write(tWant, canon.MustMarshal(wantMsg{V: protoVersion, H: h[:]})); err != nil {
		return stats, ctxErr(ctx, err)
	}
	typ, b, err := f.read()
	if err != nil {
		return stats, ctxErr(ctx, err)
	}
	switch typ {
	case tUnavailable:
		return stats, fmt.Errorf("%w: %s", ErrUnavailable, h)
	case tManifest:
	default:
		return stats, fmt.Errorf("%w: answer of type %d to a want", ErrProtocol, typ)
	}
	m, err := DecodeManifest(b)
	if err != nil {
		return stats, err
	}
	if opt.Size > 0 && uint64(opt.Size) != m.Size {
		return stats, fmt.Errorf("%w: the peer's manifest says %d bytes, the card %d", ErrSizeUnmatched, m.Size, opt.Size)
	}
	stats.Size, stats.Chunks = int64(m.Size), len(m.Chunks)
	p, err := st.Begin(h, m)
	if err != nil {
		return stats, err
	}
	defer p.Close()
	stats.Reused, stats.Damaged = p.Held(), p.Damaged()
	// Gets are written by their own goroutine, so the reader never waits
	// on a write while the server waits for its chunks to be read (a
	// stream with no buffering, such as net.Pipe, would deadlock). At most
	// window gets are ever queued (each asks for at least one chunk and at
	// most window chunks are in flight), so sends on out never block.
	out := make(chan []byte, window+1)
	werr := make(chan error, 1)
	go func() {
		var err error
		for b := range out {
			if err == nil {
				err = f.write(b[0], b[1:])
			}
		}
		werr <- err
	}()
	finish := func() error {
		close(out)
		return <-werr
	}
	queue := p.Missing()
	retries := map[int]int{}
	var asked []int // in flight, in order
	// The pipeline: the reader (this goroutine) reads a chunk frame into a
	// free buffer and hands it to check, which hashes it against the
	// manifest and hands it to keep, which writes it and feeds the whole
	// hash. Each buffer comes back to free after exactly one result, so at
	// most pipeDepth chunks are held, and no stage blocks on another but
	// by a result the reader takes while it waits for a buffer.
	type piece struct {
		i   int
		buf []byte // the frame payload: index, then the chunk
	}
	type result struct {
		i   int
		err error
	}
	free := make(chan []byte, pipeDepth)
	for range pipeDepth {
		free <- nil // (allocated by the first read into it)
	}
	toCheck := make(chan piece, pipeDepth)
	toKeep := make(chan piece, pipeDepth)
	results := make(chan result, pipeDepth)
	stagesDone := make(chan struct{})
	go func() {
		for pc := range toCheck {
			if err := p.check(pc.i, pc.buf[4:]); err != nil {
				results <- result{pc.i, err}
				free <- pc.buf
				continue
			}
			toKeep <- pc
		}
		close(toKeep)
	}()
	go func() {
		for pc := range toKeep {
			err := p.keep(pc.i, pc.buf[4:])
			results <- result{pc.i, err}
			free <- pc.buf
		}
		close(stagesDone)
	}()
	remaining, pending := len(queue), 0
	// take handles one result of the stages.
	take := func(r result) error {
		pending--
		switch {
		case r.err == nil:
			stats.Fetched++
			remaining--
		case errors.Is(r.err, ErrBadChunk):
			stats.Refused++
			if retries[r.i]++; retries[r.i] > maxRetries {
				return fmt.Errorf("%w (refused %d times)", r.err, retries[r.i])
			}
			queue = append(queue, r.i)
		default:
			return r.err
		}
		return nil
	}
	// stop ends the stages, counting what they still finish (kept chunks
	// stay for a resume, and the stats say so).
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		close(toCheck)
		for {
			select {
			case r := <-results:
				take(r)
			case <-stagesDone:
				for len(results) > 0 {
					take(<-results)
				}
				return
			}
		}
	}
	defer stop() // (before p.Close: the stages use p)
	fail := func(err error) (Stats, error) {
		if c, ok := rw.(io.Closer); ok {
			c.Close() // unblocks a get being written to a peer that no longer reads
		}
		stop()
		close(out)
		<-werr
		return stats, ctxErr(ctx, err)
	}
	for remaining > 0 {
		// Ask again once half the window is in (or when nothing is asked):
		// gets in batches let the server write its chunks in batches.
		if n := min(window-len(asked), len(queue), maxGet); n > 0 && (len(asked) <= window/2 || n == len(queue)) {
			g := getMsg{}
			for _, i := range queue[:n] {
				g.I = append(g.I, uint64(i))
			}
			out <- append([]byte{tGet}, canon.MustMarshal(g)...)
			asked = append(asked, queue[:n]...)
			queue = queue[n:]
		}
		if len(asked) == 0 {
			if pending > 0 { // what is left is in the stages: wait for it
				if err := take(<-results); err != nil {
					return fail(err)
				}
				continue
			}
			return fail(fmt.Errorf("%w: nothing asked and %d chunks missing", ErrProtocol, remaining))
		}
		var buf []byte
		for got := false; !got; {
			select {
			case buf = <-free:
				got = true
			case r := <-results:
				if err := take(r); err != nil {
					return fail(err)
				}
			}
		}
		typ, b, err := f.readInto(buf)
		if err != nil {
			return fail(err)
		}
		if typ != tChunk || len(b) < 4 {
			return fail(fmt.Errorf("%w: frame type %d while chunks were asked", ErrProtocol, typ))
		}
		i := int(binary.BigEndian.Uint32(b[:4]))
		if i != asked[0] {
			return fail(fmt.Errorf("%w: chunk %d sent, %d asked", ErrProtocol, i, asked[0]))
		}
		asked = asked[1:]
		stats.BytesFetched += int64(len(b) - 4)
		pending++
		toCheck <- piece{i, b}
	}
	stop()
	out <- []byte{tDone}
	finish() // (the done is a courtesy: the blob is complete either way)
	if err := p.Finish(); err != nil {
		return stats, err
	}
	return stats, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// Opener opens a new blob/1 stream to one peer.
type Opener interface {
	OpenBlobStream(ctx context.Context) (io.ReadWriteCloser, error)
	String() string
}

// FetchAny fetches h from the first source that gives it, each in turn
// resuming what the previous ones left. It returns the stats summed over the
// attempts and, if none gave the blob, ErrNoSource with every source's error.
func FetchAny(ctx context.Context, st *Store, h Hash, opt FetchOptions, sources []Opener) (Stats, error) {
	total := Stats{Hash: h}
	if st.Has(h) {
		total.AlreadyStored = true
		return total, nil
	}
	var errs []error
	for _, src := range sources {
		s, err := src.OpenBlobStream(ctx)
		if err == nil {
			var one Stats
			one, err = Fetch(ctx, s, st, h, opt)
			s.Close()
			total.add(one)
			if err == nil {
				return total, nil
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", src, err))
		if ctx.Err() != nil {
			break
		}
	}
	if len(sources) == 0 {
		errs = append(errs, errors.New("no peer to ask"))
	}
	return total, fmt.Errorf("%w %s: %w", ErrNoSource, h, errors.Join(errs...))
}

func (s *Stats) add(o Stats) {
	if o.Chunks != 0 {
		s.Size, s.Chunks = o.Size, o.Chunks
	}
	if s.Reused == 0 {
		s.Reused, s.Damaged = o.Reused, o.Damaged
	}
	s.Fetched += o.Fetched
	s.Refused += o.Refused
	s.BytesFetched += o.BytesFetched
}
