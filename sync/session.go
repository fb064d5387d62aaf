// Package sync runs log-diff sync sessions between a store and a peer: over
// any transport connection (the channel authenticates and encrypts, yamux
// carries the protocol stream) or as store-and-forward bundle files. The
// protocol's decisions are made by the pure state machine in sync/proto;
// this package does the I/O around it, verifies every received card through
// the Store before it is kept, and reports progress.
package sync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	stdsync "sync"
	"sync/atomic"
	"time"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/channel"
	"github.com/sublog/sublog/sync/proto"
	"github.com/sublog/sublog/sync/transport"
)

// DefaultTimeout is how long a session waits without progress (a handshake
// message, or a protocol message read or written) before dropping the peer.
const DefaultTimeout = 30 * time.Second

// importers is how many goroutines store received cards (each owns a
// share of the logs).
const importers = 2

// maxBatchBytes bounds the card bytes of one Cards message.
const maxBatchBytes = 256 << 10

// Options configure a session. Secret and Rand are required.
type Options struct {
	Secret *key.Secret
	Rand   io.Reader
	// Policy decides what the peer sees and what is taken from it; nil
	// means NewLists with this side's own identity as Self only.
	Policy Policy
	// Accept may refuse a peer by identity after it has proven it.
	Accept func(peer key.ID) error
	// Timeout drops a peer that makes no progress for this long
	// (DefaultTimeout when zero).
	Timeout time.Duration
	// Progress, when set, is called with running totals as cards move.
	Progress func(Stats)
	// Trace, when set, receives a copy of every decrypted protocol byte
	// received from the peer (for debugging and for privacy tests).
	Trace io.Writer
}

// Stats describes one session.
type Stats struct {
	Peer     key.ID `json:"peer"`
	Received int    `json:"received"` // cards verified and stored
	Logs     int    `json:"logs"`     // logs that received cards
	Sent     int    `json:"sent"`     // cards sent
	Rejected int    `json:"rejected"` // cards refused (bad, not in chain order, of the wrong log)
	Forks    int    `json:"forks"`    // fork proofs stored
	// Forked names the authors whose fork proof this side stored, in order
	// of author; Refused says why cards were refused (the first MaxListed).
	Forked  []key.ID    `json:"forked,omitempty"`
	Refused []Rejection `json:"refused,omitempty"`
	// Withheld lists the logs this side sent only up to a card that may not
	// leave for the peer (the rest of each such log stayed here).
	Withheld []Withheld `json:"withheld,omitempty"`
	Rounds   int        `json:"rounds"`   // reconciliation messages this side sent
	BytesIn  int64      `json:"bytes_in"` // on the wire, handshake included
	BytesOut int64      `json:"bytes_out"`
}

// String is the one-line summary the CLI prints.
func (s Stats) String() string {
	return fmt.Sprintf("received %d cards in %d logs, sent %d, rejected %d", s.Received, s.Logs, s.Sent, s.Rejected)
}

// meter counts bytes on the raw connection.
type meter struct {
	transport.Conn
	in, out atomic.Int64
}

func (m *meter) Read(p []byte) (int, error) {
	n, err := m.Conn.Read(p)
	m.in.Add(int64(n))
	return n, err
}

func (m *meter) Write(p []byte) (int, error) {
	n, err := m.Conn.Write(p)
	m.out.Add(int64(n))
	return n, err
}

type job struct {
	msg  *proto.Msg
	push *proto.Push
	wit  *proto.WitnessOut
	fork *key.ID
}

type session struct {
	st        Store
	opt       Options
	initiator bool
	peer      key.ID
	conn      *meter
	progress  atomic.Int64 // unix nanos of the last progress
	shook     atomic.Bool  // the handshake is over

	mu       stdsync.Mutex
	cond     *stdsync.Cond
	m        *proto.Machine
	queue    []job
	sentDone bool
	failed   error
	stats    Stats
	logs     map[key.ID]bool
}

// Run runs one session over conn; initiator is the side that dialled. It
// returns when both sides have sent everything, or on the first error
// (cards stored before it stay stored: each was verified on its own, and a
// later session resumes from the heads). conn is closed on return.
func Run(ctx context.Context, conn transport.Conn, initiator bool, st Store, opt Options) (Stats, error) {
	if opt.Secret == nil || opt.Rand == nil {
		return Stats{}, errors.New("sync: Options need Secret and Rand")
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.Policy == nil {
		opt.Policy = NewLists([]key.ID{opt.Secret.ID()}, nil, nil)
	}
	s := &session{st: st, opt: opt, initiator: initiator, conn: &meter{Conn: conn}, logs: map[key.ID]bool{}}
	s.cond = stdsync.NewCond(&s.mu)
	s.touch()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stalled := make(chan struct{})
	go s.watch(ctx, cancel, stalled)
	err := s.run(ctx)
	cancel()
	s.conn.Close()
	s.mu.Lock()
	st2 := s.stats
	s.mu.Unlock()
	st2.BytesIn, st2.BytesOut = s.conn.in.Load(), s.conn.out.Load()
	select {
	case <-stalled:
		if err != nil {
			err = fmt.Errorf("%w after %v: %v", ErrStalled, opt.Timeout, err)
		}
	default:
	}
	return st2, err
}

func (s *session) touch() { s.progress.Store(time.Now().UnixNano()) }

// watch drops the connection when the session makes no progress for the
// timeout, so a stalled peer cannot hang this side, or when ctx ends.
func (s *session) watch(ctx context.Context, cancel func(), stalled chan struct{}) {
	t := time.NewTicker(s.opt.Timeout / 8)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Cancelled by the caller (or the session is over): unblock
			// every read and write.
			s.fail(ctx.Err())
			s.conn.Close()
			return
		case <-t.C:
			if time.Since(time.Unix(0, s.progress.Load())) > s.opt.Timeout {
				close(stalled)
				s.fail(ErrStalled)
				cancel()
				s.conn.Close()
				return
			}
		}
	}
}

func (s *session) fail(err error) {
	s.mu.Lock()
	if s.failed == nil {
		s.failed = err
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

func (s *session) run(ctx context.Context) error {
	cfg := channel.Config{Secret: s.opt.Secret, Rand: s.opt.Rand, Accept: s.opt.Accept}
	var ch *channel.Conn
	var err error
	hsConn := &touchConn{Conn: s.conn, s: s}
	if s.initiator {
		ch, err = channel.Client(ctx, hsConn, cfg)
	} else {
		ch, err = channel.Server(ctx, hsConn, cfg)
	}
	if err != nil {
		return err
	}
	s.shook.Store(true)
	s.peer = ch.Peer()
	s.stats.Peer = s.peer
	mux, err := transport.Mux(ch, s.initiator)
	if err != nil {
		return err
	}
	defer mux.Close()
	var stream io.ReadWriteCloser
	if s.initiator {
		stream, err = mux.OpenStream()
	} else {
		stream, err = mux.AcceptStreamWithContext(ctx)
	}
	if err != nil {
		return fmt.Errorf("sync: opening stream: %w", err)
	}
	defer stream.Close()

	var shown []proto.Head
	for _, h := range s.st.Heads() {
		if s.opt.Policy.Visible(s.peer, h.Author) {
			shown = append(shown, proto.Head(h))
		}
	}
	peer := s.peer
	s.m = proto.New(proto.Config{
		Initiator: s.initiator,
		Heads:     shown,
		Lookup: func(a key.ID, seq uint64) (card.ID, bool) {
			c, err := s.st.Get(a, seq)
			if err != nil {
				return card.ID{}, false
			}
			return c.ID(), true
		},
		Want: func(a key.ID) bool { return s.opt.Policy.Accept(peer, a) },
	})
	s.mu.Lock()
	s.enqueue(s.m.Start())
	s.mu.Unlock()

	wdone := make(chan error, 1)
	go func() { wdone <- s.writer(stream) }()
	rerr := s.reader(stream)
	if rerr != nil {
		s.fail(rerr)
		stream.Close()
		mux.Close()
		<-wdone
		return rerr
	}
	if err := <-wdone; err != nil {
		s.mu.Lock()
		sent := s.sentDone
		s.mu.Unlock()
		// The initiator's Done is the session's last message: once it is
		// written, a shutdown racing with the write's acknowledgement is the
		// responder closing after reading it, not a failure.
		if !(s.initiator && sent) {
			return err
		}
	}
	if s.initiator {
		// The responder closes first once it has our Done; wait for that
		// (bounded), so our Done is never cut off in flight.
		select {
		case <-mux.CloseChan():
		case <-time.After(s.opt.Timeout):
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Rounds = s.m.Rounds()
	return nil
}

// touchConn marks progress on every read during the handshake.
type touchConn struct {
	transport.Conn
	s *session
}

func (t *touchConn) Read(p []byte) (int, error) {
	n, err := t.Conn.Read(p)
	if n > 0 && !t.s.shook.Load() {
		t.s.touch()
	}
	return n, err
}

// enqueue hands an output's sending work to the writer. Caller holds mu.
func (s *session) enqueue(out proto.Output) {
	for i := range out.Witness {
		s.queue = append(s.queue, job{wit: &out.Witness[i]})
	}
	for _, m := range out.Send {
		s.queue = append(s.queue, job{msg: m})
	}
	for i := range out.Push {
		s.queue = append(s.queue, job{push: &out.Push[i]})
	}
	for i := range out.Forks {
		s.queue = append(s.queue, job{fork: &out.Forks[i]})
	}
	s.cond.Broadcast()
}

// reader reads and steps messages until the peer is done.
func (s *session) reader(r io.Reader) error {
	if s.opt.Trace != nil {
		r = io.TeeReader(r, s.opt.Trace)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	// Storing runs beside reading, so the next message is read and decoded
	// while the store verifies the last one. Importers are chosen by
	// author, so each log's cards are stored in order while two logs'
	// batches can be verified and committed at once.
	var recv [importers]chan proto.Received
	var iwg stdsync.WaitGroup
	for i := range recv {
		recv[i] = make(chan proto.Received, 4)
		iwg.Add(1)
		go func(ch chan proto.Received) {
			defer iwg.Done()
			for r := range ch {
				s.receive(r)
				s.report()
			}
		}(recv[i])
	}
	defer func() {
		for _, ch := range recv {
			close(ch)
		}
		iwg.Wait()
	}()
	for {
		msg, _, err := proto.ReadMsg(br)
		if err != nil {
			s.mu.Lock()
			failed := s.failed
			s.mu.Unlock()
			if failed != nil {
				return failed
			}
			return fmt.Errorf("sync: reading from peer: %w", err)
		}
		s.touch()
		s.mu.Lock()
		out, err := s.m.Step(msg)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		s.enqueue(out)
		done := s.m.PeerDone()
		s.mu.Unlock()
		for _, r := range out.Received {
			a := r.Author.Array()
			recv[int(a[0]^a[31])%importers] <- r
		}
		if done {
			return nil
		}
	}
}

// writer sends queued work, then Done. The responder says Done as soon as it
// has nothing left; the initiator only after the responder's Done, so the
// initiator's Done is the last message of the session.
func (s *session) writer(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for {
		s.mu.Lock()
		for len(s.queue) == 0 && s.failed == nil && !s.canFinish() {
			s.cond.Wait()
		}
		if s.failed != nil {
			err := s.failed
			s.mu.Unlock()
			return err
		}
		if len(s.queue) == 0 {
			s.sentDone = true
			s.mu.Unlock()
			if err := s.send(bw, &proto.Msg{T: proto.TDone}); err != nil {
				return err
			}
			return bw.Flush()
		}
		j := s.queue[0]
		s.queue = s.queue[1:]
		s.mu.Unlock()
		if err := s.do(bw, j); err != nil {
			s.fail(err)
			return err
		}
		s.mu.Lock()
		idle := len(s.queue) == 0
		s.mu.Unlock()
		if idle {
			if err := bw.Flush(); err != nil {
				s.fail(err)
				return err
			}
		}
	}
}

func (s *session) canFinish() bool {
	return !s.sentDone && s.m.ReconDone() && (!s.initiator || s.m.PeerDone())
}

func (s *session) send(w io.Writer, m *proto.Msg) error {
	if _, err := proto.WriteMsg(w, m); err != nil {
		return err
	}
	s.touch()
	return nil
}

func (s *session) do(w io.Writer, j job) error {
	switch {
	case j.msg != nil:
		return s.send(w, j.msg)
	case j.push != nil:
		return s.push(w, *j.push)
	case j.wit != nil:
		c, err := s.st.Get(j.wit.Author, j.wit.Seq)
		if err != nil || !MayLeave(c, &s.peer, s.opt.Policy) {
			return nil // nothing to show at that seq
		}
		return s.send(w, &proto.Msg{T: proto.TWitness, Author: j.wit.Author.Bytes(), From: j.wit.Seq,
			Reply: j.wit.Reply, Cards: [][]byte{c.Bytes()}})
	case j.fork != nil:
		p, err := s.st.ForkProof(*j.fork)
		if err != nil {
			return nil // the proof is no longer there to show
		}
		if a, b := p.Cards(); !MayLeave(a, &s.peer, s.opt.Policy) || !MayLeave(b, &s.peer, s.opt.Policy) {
			return nil
		}
		return s.send(w, &proto.Msg{T: proto.TFork, Author: j.fork.Bytes(), Proof: p.Encode()})
	}
	return nil
}

// push streams a log's cards From..To in chain order.
func (s *session) push(w io.Writer, p proto.Push) error {
	var batch [][]byte
	size, first := 0, p.From
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := s.send(w, &proto.Msg{T: proto.TCards, Author: p.Author.Bytes(), From: first, Cards: batch})
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.stats.Sent += len(batch)
		s.mu.Unlock()
		s.report()
		first += uint64(len(batch))
		batch, size = nil, 0
		return nil
	}
	next := p.From
	to := min(p.To, uncontested(s.st, p.Author))
	err := s.st.Scan(p.Author, p.From, func(c *card.Card) error {
		if c.Seq() > to {
			return io.EOF
		}
		if !MayLeave(c, &s.peer, s.opt.Policy) {
			s.mu.Lock()
			s.stats.Withheld = append(s.stats.Withheld, withheld(c))
			s.mu.Unlock()
			return io.EOF // (a card that may not leave holds back the rest of its log)
		}
		if c.Seq() != next {
			return fmt.Errorf("sync: store scan of %s gave seq %d, want %d", p.Author, c.Seq(), next)
		}
		next++
		if len(batch) == proto.MaxBatch || size+len(c.Bytes()) > maxBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		batch = append(batch, bytes.Clone(c.Bytes())) // log.Store.Scan reuses its buffer after fn returns
		size += len(c.Bytes())
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// uncontested is the last seq of author's log that no fork proof of this
// store contests: cards at or past a fork's seq are never sent (the proof
// is, and every store that holds it refuses them).
func uncontested(st Store, author key.ID) uint64 {
	h, ok := st.Head(author)
	if !ok || !h.Forked {
		return h.Seq
	}
	if p, err := st.ForkProof(author); err == nil {
		return min(h.Seq, p.Seq()-1)
	}
	return h.Seq
}

// receive verifies and stores what the peer sent, counting what it refuses.
func (s *session) receive(r proto.Received) {
	var received, forks int
	var rej []Rejection
	switch r.Kind {
	case proto.TCards:
		received, forks, rej = importRun(s.st, r.Author, r.From, r.Cards)
	case proto.TWitness:
		if a, err := PeekAuthor(r.Cards[0]); err != nil || a != r.Author {
			if err == nil {
				err = fmt.Errorf("%w: %s", ErrWrongOwner, a)
			}
			rej = append(rej, reject(r.Author, r.From, err))
			break
		}
		switch _, err := s.st.Import(r.Cards[0]); {
		case errors.Is(err, sublog.ErrFork):
			forks++
		case err == nil:
			received++
		case !errors.Is(err, sublog.ErrDuplicate):
			rej = append(rej, reject(r.Author, r.From, err))
		}
	case proto.TFork:
		p, err := s.st.ImportForkProof(r.Proof)
		switch {
		case err != nil:
			rej = append(rej, reject(r.Author, 0, fmt.Errorf("fork proof: %w", err)))
		case p.Author() != r.Author:
			// (a proof of another author is still true evidence; keeping it is harmless)
			rej = append(rej, reject(r.Author, 0, fmt.Errorf("%w: fork proof of %s", ErrWrongOwner, p.Author())))
		default:
			forks++
		}
	}
	s.mu.Lock()
	s.stats.Received += received
	s.stats.Rejected += len(rej)
	s.stats.Forks += forks
	s.stats.refuse(rej)
	if forks > 0 {
		s.stats.fork(r.Author)
	}
	if received > 0 && !s.logs[r.Author] {
		s.logs[r.Author] = true
		s.stats.Logs++
	}
	s.mu.Unlock()
}

// Rejection says why one received card was not stored.
type Rejection struct {
	Author key.ID `json:"author"`
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
	Err    error  `json:"-"`
}

func (r Rejection) String() string { return fmt.Sprintf("%s@%d: %s", r.Author, r.Seq, r.Reason) }

func reject(a key.ID, seq uint64, err error) Rejection {
	return Rejection{Author: a, Seq: seq, Reason: err.Error(), Err: err}
}

// importRun stores a chain segment of author starting at seq from. Cards the
// store already has are skipped without a signature check (a replayed or
// resent card costs one hash); a different card at a taken seq goes to the
// store, which keeps it as a fork proof if it is valid. Nothing is stored
// that the store did not verify.
func importRun(st Store, author key.ID, from uint64, cards [][]byte) (received, forks int, rej []Rejection) {
	for i, b := range cards {
		if a, err := PeekAuthor(b); err != nil || a != author {
			if err == nil {
				err = fmt.Errorf("%w: %s", ErrWrongOwner, a)
			}
			for j := range cards[i:] {
				rej = append(rej, reject(author, from+uint64(i+j), err))
			}
			return 0, 0, rej
		}
	}
	head, ok := st.Head(author)
	i := 0
	for ; ok && i < len(cards) && from+uint64(i) <= head.Seq; i++ {
		seq := from + uint64(i)
		stored, err := st.Get(author, seq)
		if err == nil && card.IDOf(cards[i]) == stored.ID() {
			continue
		}
		_, err = st.Import(cards[i])
		switch {
		case errors.Is(err, sublog.ErrFork):
			forks++
		case errors.Is(err, sublog.ErrDuplicate):
			continue
		default:
			rej = append(rej, reject(author, seq, err))
		}
		// The rest of this segment cannot chain onto the stored log.
		for j := i + 1; j < len(cards); j++ {
			rej = append(rej, reject(author, from+uint64(j), sublog.ErrForked))
		}
		return received, forks, rej
	}
	res, err := st.ImportBatch(cards[i:])
	if err != nil {
		for j := i; j < len(cards); j++ {
			rej = append(rej, reject(author, from+uint64(j), err))
		}
		return received, forks, rej
	}
	received += len(res.Accepted)
	for j := range cards[i:] {
		e, ok := res.Errs[j]
		switch {
		case !ok, errors.Is(e, sublog.ErrDuplicate):
		case errors.Is(e, sublog.ErrFork):
			forks++
		default:
			rej = append(rej, reject(author, from+uint64(i+j), e))
		}
	}
	return received, forks, rej
}

// MaxListed bounds the refusals a Stats lists (the count stays exact).
const MaxListed = 64

func (s *Stats) refuse(rej []Rejection) {
	for _, r := range rej {
		if len(s.Refused) == MaxListed {
			return
		}
		s.Refused = append(s.Refused, r)
	}
}

func (s *Stats) fork(a key.ID) {
	i, found := slices.BinarySearchFunc(s.Forked, a, key.ID.Compare)
	if !found {
		s.Forked = slices.Insert(s.Forked, i, a)
	}
}

func (s *session) report() {
	if s.opt.Progress == nil {
		return
	}
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	st.BytesIn, st.BytesOut = s.conn.in.Load(), s.conn.out.Load()
	s.opt.Progress(st)
}

// Dial connects to addr over t and runs a session as the initiator.
func Dial(ctx context.Context, t transport.Transport, addr string, st Store, opt Options) (Stats, error) {
	c, err := t.Dial(ctx, addr)
	if err != nil {
		return Stats{}, err
	}
	return Run(ctx, c, true, st, opt)
}

// Serve accepts connections on l and runs a responder session for each, one
// at a time per connection in its own goroutine, until ctx ends. done, when
// set, is told how each session went.
func Serve(ctx context.Context, l transport.Listener, st Store, opt Options, done func(Stats, error)) error {
	var wg stdsync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			stats, err := Run(ctx, c, false, st, opt)
			if done != nil {
				done(stats, err)
			}
		}()
	}
}
