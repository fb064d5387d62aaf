// Package sync runs log-diff sync sessions between a store and a peer: over
// any transport connection (the channel authenticates and encrypts, yamux
// carries the protocol stream) or as store-and-forward bundle files. The
// protocol's decisions are made by the pure state machine in sync/proto;
// this package does the I/O around it, verifies every received card through
// the Store before it is kept, and reports progress.
package sync

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	stdsync "sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

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
	// Handlers serve accepted streams of other kinds than StreamSync (blob
	// transfers, ...); a kind with no handler is closed. See streams.go.
	Handlers map[byte]PeerStream
	// Limits bound the session (and, for Serve, the connections); zero
	// fields take defaults.
	Limits Limits
	// Quota bounds what the peer may push. Nil: DefaultQuota, for every
	// session alike (Run, Dial, Connect's live rounds, Serve); &Quota{} for
	// none. It is read when a Guard is made for the session(s).
	Quota *Quota
	// Guard is shared state about peers (backoff, quota windows, the total
	// receive buffer). Nil: Run makes one for its session, Serve one for all
	// of its sessions.
	Guard *Guard

	source  string      // where the connection comes from (Serve)
	onShook func() bool // the handshake is over; false: the slot was taken back
}

// Stats describes one session.
type Stats struct {
	Peer     key.ID `json:"peer"`
	Received int    `json:"received"` // cards verified and stored
	Logs     int    `json:"logs"`     // logs that received cards
	Sent     int    `json:"sent"`     // cards sent
	Rejected int    `json:"rejected"` // cards refused (bad, not in chain order, of the wrong log)
	Checked  int    `json:"checked"`  // cards handed to the store to verify (signature work spent)
	Dropped  int    `json:"dropped"`  // cards of logs not taken from this peer, dropped unread
	Forks    int    `json:"forks"`    // fork proofs stored
	// Forked names the authors whose fork proof this side stored, in order
	// of author; Refused says why cards were refused (the first MaxListed).
	Forked  []key.ID    `json:"forked,omitempty"`
	Refused []Rejection `json:"refused,omitempty"`
	// Withheld lists the cards this side sent as stubs because they may not
	// leave for the peer (the first MaxListed; StubsOut counts every stub
	// sent, those this side holds as stubs itself included). StubsIn counts
	// the stubs received: cards the peer withheld (their IDs only; stored
	// when the next card proves them).
	Withheld []Withheld `json:"withheld,omitempty"`
	StubsOut int        `json:"stubs_out,omitempty"`
	StubsIn  int        `json:"stubs_in,omitempty"`
	// DroppedLogs says whose cards make up Dropped and why they were not
	// taken (sorted by author, the first MaxListed logs).
	DroppedLogs []DroppedLog `json:"dropped_logs,omitempty"`
	Rounds      int          `json:"rounds"`   // reconciliation messages this side sent
	BytesIn     int64        `json:"bytes_in"` // on the wire, handshake included
	BytesOut    int64        `json:"bytes_out"`

	// ToReceive and ToSend are the cards rounds in flight still expect to
	// receive and to send (ARCHITECTURE.md, "cards to go"): set in what
	// Progress and Link.Totals report while rounds run, zero in a finished
	// round's Stats.
	ToReceive int `json:"to_receive,omitempty"`
	ToSend    int `json:"to_send,omitempty"`
}

// DroppedLog is one log whose cards a peer sent and this side did not take
// (the trust rule), dropped before any signature work.
type DroppedLog struct {
	Author key.ID `json:"author"`
	Cards  int    `json:"cards"`
	Reason string `json:"reason"`
}

// Drop reasons of DroppedLog.
const (
	DropOwnLog   = "this home's own log, from a peer that is neither this user's identity or device nor trusted"
	DropNotTaken = "not taken from this peer: it is neither this user's identity, device or owner nor trusted here, and the log is not followed"
)

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

	lim   Limits
	guard *Guard
	quota sessionQuota
	buf   *semaphore.Weighted // this session's share of received bytes

	mu       stdsync.Mutex
	cond     *stdsync.Cond
	m        *proto.Machine
	queue    []job
	sentDone bool
	failed   error
	refusal  *Refusal    // this side's reason to end the session, for the peer
	over     bool        // the reader is done: the writer may return after Done
	halt     atomic.Bool // a forged card came: verify nothing more
	stats    Stats
	logs     map[key.ID]bool
	dropped  map[key.ID]int // cards dropped per log (mu)

	// Cards to go: per log, the seqs the peer's heads put ahead of this
	// side's (mu); what is still expected from the peer; what this
	// round's pushes have not sent yet.
	coming         map[key.ID]*coming
	toRecv, toSend atomic.Int64
}

// coming is what a log still has to come: seqs next..to.
type coming struct{ next, to uint64 }

// span is the number of seqs from..to, bounded (a peer's announced head
// is its claim; no sum of these overflows).
func span(from, to uint64) int64 {
	if to < from {
		return 0
	}
	return int64(min(to-from+1, 1<<32))
}

// toGo is what the session still expects to receive and to send.
func (s *session) toGo() (in, out int) {
	return int(max(s.toRecv.Load(), 0)), int(max(s.toSend.Load(), 0))
}

// arrived counts down what was expected of author once cards from..from+n-1
// have been stored or refused (each seq once; the answers to this side's
// Wants lie below the expected seqs and do not count). Caller holds mu.
func (s *session) arrived(author key.ID, from uint64, n int) {
	c := s.coming[author]
	if c == nil || n == 0 {
		return
	}
	lo, hi := max(from, c.next), min(from+uint64(n-1), c.to)
	if hi < lo || hi < from {
		return
	}
	c.next = hi + 1
	s.toRecv.Add(-span(lo, hi))
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
	lim := opt.Limits.withDefaults()
	opt.Guard = guardFor(opt, lim)
	counter := &checkCounter{Store: st}
	s := &session{st: counter, opt: opt, initiator: initiator, conn: &meter{Conn: conn}, logs: map[key.ID]bool{},
		lim: lim, guard: opt.Guard, buf: semaphore.NewWeighted(lim.SessionBuffer)}
	s.quota.g = opt.Guard
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
	st2.DroppedLogs = droppedLogs(s.dropped, opt.Secret.ID())
	s.mu.Unlock()
	st2.BytesIn, st2.BytesOut = s.conn.in.Load(), s.conn.out.Load()
	st2.Checked = int(counter.n.Load())
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

// droppedLogs lists the dropped cards per log with the reason, sorted by
// author, at most MaxListed logs.
func droppedLogs(d map[key.ID]int, self key.ID) []DroppedLog {
	var out []DroppedLog
	for a, n := range d {
		r := DropNotTaken
		if a == self {
			r = DropOwnLog
		}
		out = append(out, DroppedLog{Author: a, Cards: n, Reason: r})
	}
	slices.SortFunc(out, func(x, y DroppedLog) int { return x.Author.Compare(y.Author) })
	if len(out) > MaxListed {
		out = out[:MaxListed]
	}
	return out
}

// watch drops the connection when the session makes no progress for the
// timeout, so a stalled peer cannot hang this side, or when ctx ends.
func (s *session) watch(ctx context.Context, cancel func(), stalled chan struct{}) {
	t := time.NewTicker(s.opt.Timeout / 8)
	defer t.Stop()
	life := time.NewTimer(s.lim.MaxLifetime)
	defer life.Stop()
	for {
		select {
		case <-ctx.Done():
			// Cancelled by the caller (or the session is over): unblock
			// every read and write.
			s.fail(ctx.Err())
			s.conn.Close()
			return
		case <-life.C:
			// However busy the peer keeps it, a session ends at its
			// lifetime; the peer is told, and a live peer reconnects.
			s.refuse(&Refusal{Reason: fmt.Sprintf("session lifetime of %v reached", s.lim.MaxLifetime)})
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

// refuse ends the session on purpose: the writer tells the peer why (a
// Refuse message) before the connection closes. The first reason wins.
func (s *session) refuse(r *Refusal) {
	s.mu.Lock()
	if s.failed == nil {
		s.failed = r
		s.refusal = r
		if r.Penalize {
			s.halt.Store(true)
			// Backed off at once, not when the connection is gone: the
			// peer may reconnect before this session has lingered out.
			s.guard.Penalize(s.peer, s.opt.source)
		}
		// The writer sends the reason at once; the reader discards what
		// still arrives. The connection closes after lingerFor, so the peer
		// has that long to read why before a reset could lose it.
		time.AfterFunc(lingerFor, func() { s.conn.Close() })
	}
	s.cond.Broadcast()
	s.mu.Unlock()
}

func (s *session) isFailed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed != nil
}

// hold takes n bytes of this session's and the guard's receive budget,
// waiting while either is spent (the peer's sending then waits on flow
// control); release gives them back.
func (s *session) hold(ctx context.Context, n int64) error {
	if err := s.buf.Acquire(ctx, n); err != nil {
		return err
	}
	if err := s.guard.buf.Acquire(ctx, n); err != nil {
		s.buf.Release(n)
		return err
	}
	return nil
}

func (s *session) release(n int64) {
	if n > 0 {
		s.guard.buf.Release(n)
		s.buf.Release(n)
	}
}

func (s *session) run(ctx context.Context) error {
	mux, err := s.connect(ctx)
	if err != nil {
		return err
	}
	defer mux.Close()
	var stream io.ReadWriteCloser
	if s.initiator {
		stream, err = openKind(mux, StreamSync)
	} else {
		var sideDone func()
		stream, sideDone, err = s.acceptSync(ctx, mux)
		// Side streams (blob transfers) end before the connection does.
		defer sideDone()
		if err != nil && (errors.Is(err, io.EOF) || mux.IsClosed()) && ctx.Err() == nil {
			return nil // a connection for side streams only: no round
		}
	}
	if err != nil {
		return fmt.Errorf("sync: opening stream: %w", err)
	}
	defer stream.Close()
	if err := s.round(ctx, stream); err != nil {
		mux.Close()
		return err
	}
	if s.initiator {
		// The responder closes first once it has our Done: the whole
		// connection (a one-shot responder) or only the stream (a live
		// node's link, which stays up); wait for either (bounded), so our
		// Done is never cut off in flight. A clean round ended at the
		// stream's end already (the responder closes it once it has read
		// our Done), so this does not wait: over a pipe (sync --command
		// "ssh HOST sublog sync --stdio") the responder's process cannot
		// end, and close the connection, while its read of our end blocks,
		// and ssh holds the pipe until it ends; waiting for the connection
		// to close there held both sides until a keepalive broke the tie
		// (15 s). TestPipeSessionEndsWhenBothAreDone.
		eof := make(chan struct{})
		go func() {
			io.Copy(io.Discard, stream)
			close(eof)
		}()
		select {
		case <-eof:
		case <-mux.CloseChan():
		case <-time.After(s.opt.Timeout):
		case <-ctx.Done():
		}
	}
	return nil
}

// connect runs the handshake and starts yamux (a Link keeps both for many
// rounds).
func (s *session) connect(ctx context.Context) (*transport.Session, error) {
	cfg := channel.Config{Secret: s.opt.Secret, Rand: s.opt.Rand, Accept: s.opt.Accept, Timeout: s.lim.HandshakeTimeout}
	var ch *channel.Conn
	var err error
	hsConn := &touchConn{Conn: s.conn, s: s}
	if s.initiator {
		ch, err = channel.Client(ctx, hsConn, cfg)
	} else {
		ch, err = channel.Server(ctx, hsConn, cfg)
	}
	if err != nil {
		return nil, err
	}
	s.shook.Store(true)
	s.touch()
	if s.opt.onShook != nil && !s.opt.onShook() {
		return nil, errors.New("sync: connection dropped to make room for another")
	}
	s.peer = ch.Peer()
	s.stats.Peer = s.peer
	s.quota.peer = s.peer
	return transport.Mux(ch, s.initiator)
}

// round runs one reconciliation round on stream (the caller closes it).
func (s *session) round(ctx context.Context, stream io.ReadWriteCloser) error {
	// A peer that is backed off (it sent a forged card) or has pushed its
	// quota for the window is told so and served nothing.
	if d, ok := s.guard.BackedOff(s.peer); ok {
		return s.refuseNow(stream, &Refusal{Reason: "backed off: a card from this identity failed verification", Retry: d})
	}
	if r := s.guard.windowFull(s.peer); r != nil {
		return s.refuseNow(stream, r)
	}

	var shown []proto.Head
	for _, h := range s.st.Heads() {
		if s.opt.Policy.Visible(s.peer, h.Author) {
			shown = append(shown, proto.Head(h))
		}
	}
	peer, self := s.peer, s.opt.Secret.ID()
	s.m = proto.New(proto.Config{
		Initiator: s.initiator,
		Heads:     shown,
		Lookup:    func(a key.ID, seq uint64) (card.ID, bool) { return idAt(s.st, a, seq) },
		// Cards of logs this side does not take from the peer are dropped
		// on their announced author, before any signature work; whatever
		// the policy says, this side's own log is taken only from a peer
		// the policy shares with (anyone else has no reason to send it).
		Want: func(a key.ID) bool {
			if a == self && !s.opt.Policy.Shares(peer) {
				return false
			}
			return s.opt.Policy.Accept(peer, a)
		},
	})
	s.mu.Lock()
	// First the seqs this side holds as stubs in logs both sides share:
	// the peer sends the cards there that may now come (the card of a stub
	// is otherwise never pushed again: pushes start at the peer's head).
	for _, w := range wants(s.st, shown, s.m.WantFrom) {
		s.queue = append(s.queue, job{msg: w})
	}
	s.enqueue(s.m.Start())
	s.mu.Unlock()

	wdone := make(chan error, 1)
	go func() { wdone <- s.writer(stream) }()
	rerr := s.reader(ctx, stream)
	if rerr != nil {
		s.fail(rerr)
		s.mu.Lock()
		if s.refusal != nil {
			rerr = s.refusal
		}
		s.mu.Unlock()
		stream.Close()
		<-wdone
		return rerr
	}
	s.mu.Lock()
	s.over = true
	s.cond.Broadcast()
	s.mu.Unlock()
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
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Rounds = s.m.Rounds()
	return nil
}

// refuseNow sends r as the session's only message and ends it.
func (s *session) refuseNow(stream io.ReadWriteCloser, r *Refusal) error {
	s.mu.Lock()
	s.refusal, s.failed = r, r
	s.mu.Unlock()
	s.writeRefusal(stream, r)
	s.linger(stream)
	return r
}

// refuseMsg is the wire form of a refusal.
func refuseMsg(r *Refusal) *proto.Msg {
	return &proto.Msg{T: proto.TRefuse, Reason: proto.CleanReason(r.Reason), Retry: uint64((r.Retry + time.Second - 1) / time.Second)}
}

func (s *session) writeRefusal(w io.Writer, r *Refusal) {
	bw := bufio.NewWriter(w)
	if _, err := proto.WriteMsg(bw, refuseMsg(r)); err == nil {
		bw.Flush()
	}
}

// lingerFor is how long a refusing side keeps reading (and discarding) after
// its Refuse message, so that closing with unread bytes in flight does not
// reset the connection before the peer has read why.
const lingerFor = 2 * time.Second

// linger discards what the peer still sends until it closes, or lingerFor.
func (s *session) linger(stream io.ReadWriteCloser) {
	t := time.AfterFunc(lingerFor, func() { stream.Close() })
	defer t.Stop()
	io.Copy(io.Discard, stream)
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
	for _, p := range out.Push {
		s.toSend.Add(span(p.From, p.To))
	}
	for _, e := range out.Expect {
		if s.coming == nil {
			s.coming = map[key.ID]*coming{}
		}
		if s.coming[e.Author] == nil { // (a log is in one range only)
			s.coming[e.Author] = &coming{next: e.From, to: e.To}
			s.toRecv.Add(span(e.From, e.To))
		}
	}
	s.cond.Broadcast()
}

// reader reads and steps messages until the peer is done. Every message is
// held against the receive budget from its length prefix on (before any of
// it is buffered) until it has been stepped or its cards stored. Only
// messages that move the session forward count as progress: reconciliation,
// Done, and cards that were stored; a peer that keeps sending what is
// dropped or already held is dropped at the idle timeout.
func (s *session) reader(ctx context.Context, r io.Reader) error {
	if s.opt.Trace != nil {
		r = io.TeeReader(r, s.opt.Trace)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	// Storing runs beside reading, so the next message is read and decoded
	// while the store verifies the last one. Importers are chosen by
	// author, so each log's cards are stored in order while two logs'
	// batches can be verified and committed at once.
	type work struct {
		r    proto.Received
		hold int64
	}
	var recv [importers]chan work
	var iwg stdsync.WaitGroup
	for i := range recv {
		recv[i] = make(chan work, 4)
		iwg.Add(1)
		go func(ch chan work) {
			defer iwg.Done()
			for w := range ch {
				if !s.halt.Load() { // after a forged card, nothing more is verified
					s.receive(w.r)
					s.report()
				}
				s.release(w.hold)
			}
		}(recv[i])
	}
	defer func() {
		for _, ch := range recv {
			close(ch)
		}
		iwg.Wait()
	}()
	readErr := func(err error) error {
		s.mu.Lock()
		failed := s.failed
		s.mu.Unlock()
		if failed != nil {
			return failed
		}
		return fmt.Errorf("sync: reading from peer: %w", err)
	}
	var hdr [4]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return readErr(err)
		}
		n := int64(binary.BigEndian.Uint32(hdr[:]))
		if n > proto.MaxMessage {
			return fmt.Errorf("%w: length prefix %d", proto.ErrTooLarge, n)
		}
		if s.isFailed() {
			// Refused: read on (discarding) until the peer has seen why
			// and closes, or the writer's linger ends the connection.
			if _, err := io.CopyN(io.Discard, br, n); err != nil {
				return readErr(err)
			}
			continue
		}
		hold := n + 4
		if err := s.hold(ctx, hold); err != nil {
			return readErr(err)
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(br, b); err != nil {
			s.release(hold)
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return readErr(err)
		}
		msg, err := proto.Decode(b)
		b = nil
		if err != nil {
			s.release(hold)
			return err
		}
		if msg.T == proto.TRefuse {
			s.release(hold)
			return &Refusal{Reason: msg.Reason, Retry: time.Duration(msg.Retry) * time.Second, Remote: true}
		}
		if msg.T == proto.TRanges || msg.T == proto.TDone {
			s.touch()
		}
		s.mu.Lock()
		out, err := s.m.Step(msg)
		if err != nil {
			s.mu.Unlock()
			s.release(hold)
			return err
		}
		s.enqueue(out)
		done := s.m.PeerDone()
		s.mu.Unlock()
		if len(out.Received) == 0 {
			if k := msg.T; k == proto.TCards || k == proto.TWitness || k == proto.TFork {
				s.mu.Lock()
				s.stats.Dropped += len(msg.Cards)
				if a, err := key.IDFromBytes(msg.Author); err == nil && len(msg.Cards) > 0 {
					if s.dropped == nil {
						s.dropped = map[key.ID]int{}
					}
					s.dropped[a] += len(msg.Cards)
				}
				s.mu.Unlock()
			}
			s.release(hold)
		}
		for i, r := range out.Received {
			if r.Kind == proto.TCards || r.Kind == proto.TWitness {
				if q := s.charge(r); q != nil {
					s.release(hold)
					s.refuse(q)
					break
				}
			}
			h := int64(0)
			if i == 0 {
				h = hold // (one message gives at most one Received)
			}
			a := r.Author.Array()
			recv[int(a[0]^a[31])%importers] <- work{r, h}
		}
		if done {
			if !s.initiator {
				return nil // the initiator's Done is the session's last word
			}
			// The responder is done, but it may still refuse what this
			// side pushes: read on until it closes.
			return s.drain(br)
		}
	}
}

// drain reads after the responder's Done (initiator only): a Refuse is the
// session's end with the peer's reason, anything else a protocol error, and
// the end of the stream once this side has sent its own Done a clean close.
func (s *session) drain(br *bufio.Reader) error {
	msg, _, err := proto.ReadMsg(br)
	if err == nil {
		if msg.T == proto.TRefuse {
			return &Refusal{Reason: msg.Reason, Retry: time.Duration(msg.Retry) * time.Second, Remote: true}
		}
		return fmt.Errorf("%w: type %d after done", proto.ErrUnexpected, msg.T)
	}
	s.mu.Lock()
	sent, failed := s.sentDone, s.failed
	s.mu.Unlock()
	if _, refused := failed.(*Refusal); sent && !refused {
		return nil
	}
	if failed != nil {
		return failed
	}
	return fmt.Errorf("sync: reading from peer: %w", err)
}

// charge counts what the peer offers for storing against its quota.
func (s *session) charge(r proto.Received) *Refusal {
	_, have := s.st.Head(r.Author)
	var n int64
	for _, c := range r.Cards {
		n += int64(len(c))
	}
	return s.quota.charge(r.Author, !have, len(r.Cards), n)
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
			err, r := s.failed, s.refusal
			s.mu.Unlock()
			if r != nil {
				// Tell the peer why, then keep the read side open a little
				// (the reader discards) so the reason is not lost to a reset.
				if _, werr := proto.WriteMsg(bw, refuseMsg(r)); werr == nil {
					bw.Flush()
				}
			}
			return err
		}
		if len(s.queue) == 0 {
			s.sentDone = true
			s.mu.Unlock()
			if err := s.send(bw, &proto.Msg{T: proto.TDone}); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return err
			}
			// Stay until the session is over: the responder's Done can come
			// before the peer's last pushes, and a refusal of those must
			// still reach the peer.
			s.mu.Lock()
			for s.failed == nil && !s.over {
				s.cond.Wait()
			}
			r := s.refusal
			s.mu.Unlock()
			if r != nil {
				if _, err := proto.WriteMsg(bw, refuseMsg(r)); err == nil {
					bw.Flush()
				}
			}
			return nil
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

// push streams a log's cards From..To in chain order; a card that may not
// leave for the peer goes as a stub (chain).
func (s *session) push(w io.Writer, p proto.Push) error {
	// What was counted to send and did not go (cards that may not leave
	// in an answer to a Want, past a fork, an error) is not to go either.
	left := span(p.From, p.To)
	defer func() { s.toSend.Add(-left) }()
	b := &batcher{only: p.Only, send: func(from uint64, cards [][]byte) error {
		if err := s.send(w, proto.CardsMsg(p.Author, from, cards)); err != nil {
			return err
		}
		sent := min(int64(len(cards)), left)
		left -= sent
		s.toSend.Add(-sent)
		n := 0
		for _, c := range cards {
			if proto.IsStub(c) {
				n++
			}
		}
		s.mu.Lock()
		s.stats.Sent += len(cards) - n
		s.stats.StubsOut += n
		s.mu.Unlock()
		s.report()
		return nil
	}}
	to := min(p.To, uncontested(s.st, p.Author))
	err := chain(s.st, p.Author, p.From, to,
		func(c *card.Card) bool { return MayLeave(c, &s.peer, s.opt.Policy) },
		func(c *card.Card) {
			if p.Only {
				return // (the peer holds its stub already)
			}
			s.mu.Lock()
			s.stats.withhold(c)
			s.mu.Unlock()
		},
		b.add)
	if err != nil {
		return err
	}
	return b.finish()
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
		var stubs int
		received, forks, stubs, rej = importRun(s.st, r.Author, r.From, r.Cards)
		s.mu.Lock()
		s.stats.StubsIn += stubs
		s.arrived(r.Author, r.From, len(r.Cards))
		s.mu.Unlock()
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
	s.refuseForged(rej)
	if received > 0 || forks > 0 {
		s.touch()
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
// store, which keeps it as a fork proof if it is valid, or puts it in the
// place of the stub it holds there. Stubs (cards the sender withheld) go
// to the store with the card after them, which proves them; stubs is how
// many came. Nothing is stored that the store did not verify.
func importRun(st Store, author key.ID, from uint64, cards [][]byte) (received, forks, stubs int, rej []Rejection) {
	for i, b := range cards {
		if proto.IsStub(b) {
			stubs++
			continue
		}
		if a, err := PeekAuthor(b); err != nil || a != author {
			if err == nil {
				err = fmt.Errorf("%w: %s", ErrWrongOwner, a)
			}
			for j := range cards[i:] {
				rej = append(rej, reject(author, from+uint64(i+j), err))
			}
			return 0, 0, stubs, rej
		}
	}
	head, ok := st.Head(author)
	i := 0
	for ; ok && i < len(cards) && from+uint64(i) <= head.Seq; i++ {
		seq := from + uint64(i)
		if proto.IsStub(cards[i]) {
			// A stub of a seq this store holds must agree with it.
			id, _ := card.IDFromBytes(cards[i])
			if have, known := idAt(st, author, seq); known && !id.IsZero() && have != id {
				// Refused; the cards after it still speak for themselves
				// (another signed card at a held seq is a fork).
				rej = append(rej, reject(author, seq, fmt.Errorf("%w: the stub at %s@%d names %s, this store holds %s there", sublog.ErrStubConflict, author, seq, id, have)))
			}
			continue
		}
		stored, err := st.Get(author, seq)
		if err == nil && card.IDOf(cards[i]) == stored.ID() {
			continue
		}
		withheld := errors.Is(err, sublog.ErrWithheld)
		_, err = st.Import(cards[i])
		switch {
		case withheld && err == nil:
			received++ // the card in place of its stub
			continue
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
		return received, forks, stubs, rej
	}
	if i == len(cards) {
		return received, forks, stubs, rej
	}
	res, err := st.ImportBatch(cards[i:])
	if err != nil {
		for j := i; j < len(cards); j++ {
			rej = append(rej, reject(author, from+uint64(j), err))
		}
		return received, forks, stubs, rej
	}
	received += len(res.Accepted)
	for j := range cards[i:] {
		e, ok := res.Errs[j]
		switch {
		case !ok, errors.Is(e, sublog.ErrDuplicate):
		case errors.Is(e, sublog.ErrFork):
			forks++
		case errors.Is(e, sublog.ErrStubUnproven) && proto.IsStub(cards[i+j]):
			// a withheld card at the end of what came: counted, not kept
		default:
			rej = append(rej, reject(author, from+uint64(i+j), e))
		}
	}
	return received, forks, stubs, rej
}

// refuseForged ends the session at the first card that was forged (see
// forged): the peer is told which, and backed off.
func (s *session) refuseForged(rej []Rejection) {
	for _, r := range rej {
		if forged(r.Err) {
			s.refuse(&Refusal{Reason: fmt.Sprintf("card %s@%d failed verification: %v", r.Author, r.Seq, r.Err), Penalize: true})
			return
		}
	}
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

// withhold records a card sent as a stub.
func (s *Stats) withhold(c *card.Card) {
	if len(s.Withheld) < MaxListed {
		s.Withheld = append(s.Withheld, withheld(c))
	}
}

func (s *Stats) fork(a key.ID) {
	i, found := slices.BinarySearchFunc(s.Forked, a, key.ID.Compare)
	if !found {
		s.Forked = slices.Insert(s.Forked, i, a)
	}
}

// forged reports whether a card was refused for its signature: what an
// honest peer, which verified every card it holds, never sends, and what
// costs this side real work. (A card that needs a capability this node
// lacks, breaks a newer limit, or is of another log than announced is
// refused cheaply, before any signature work, without ending the session.)
func forged(err error) bool {
	return errors.Is(err, card.ErrBadSignature)
}

// checkCounter counts the cards handed to the store for verification.
type checkCounter struct {
	Store
	n atomic.Int64
}

func (c *checkCounter) Import(b []byte) (*card.Card, error) {
	c.n.Add(1)
	return c.Store.Import(b)
}

func (c *checkCounter) ImportForkProof(b []byte) (*sublog.ForkProof, error) {
	c.n.Add(2) // a proof is two cards
	return c.Store.ImportForkProof(b)
}

func (c *checkCounter) ImportBatch(raw [][]byte) (sublog.ImportResult, error) {
	c.n.Add(int64(len(raw)))
	return c.Store.ImportBatch(raw)
}

func (s *session) report() {
	if s.opt.Progress == nil {
		return
	}
	s.mu.Lock()
	st := s.stats
	s.mu.Unlock()
	st.BytesIn, st.BytesOut = s.conn.in.Load(), s.conn.out.Load()
	if c, ok := s.st.(*checkCounter); ok {
		st.Checked = int(c.n.Load())
	}
	st.ToReceive, st.ToSend = s.toGo()
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
