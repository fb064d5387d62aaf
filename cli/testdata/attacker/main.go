// Command attacker is the hostile peer of the serve attack tests
// (cli/serve_attack_test.go): each subcommand is one attack from issues 11
// and 18 against a real `sublog serve`, reported as "key value" lines on
// stdout. It is built without the race detector, so that it signs and sends
// at full speed while the server under test is the one measured.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	stdsync "sync"
	"sync/atomic"
	"time"

	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	lsync "github.com/sublog/sublog/sync"
	"github.com/sublog/sublog/sync/channel"
	"github.com/sublog/sublog/sync/proto"
	"github.com/sublog/sublog/sync/transport"

	"github.com/hashicorp/yamux"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: attacker idle|dribble|streams|trickle|forge|fill ...")
		os.Exit(2)
	}
	args := os.Args[2:]
	var err error
	switch os.Args[1] {
	case "idle":
		err = idle(args)
	case "dribble":
		err = dribble(args)
	case "streams":
		err = streams(args)
	case "trickle":
		err = trickle(args)
	case "forge":
		err = forge(args)
	case "fill":
		err = fill(args)
	case "push":
		err = push(args)
	default:
		err = fmt.Errorf("unknown attack %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "attacker:", err)
		os.Exit(1)
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

func dur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// dialFrom connects to addr from the loopback address src (127.0.0.0/8).
func dialFrom(addr, src string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	return d.Dial("tcp", addr)
}

// idle ADDR SRC N HOLD: open N connections from SRC that never say a word,
// hold them for HOLD, and report how many the server closed meanwhile.
func idle(a []string) error {
	addr, src, n, hold := a[0], a[1], atoi(a[2]), dur(a[3])
	var closed atomic.Int64
	var conns []net.Conn
	for range n {
		c, err := dialFrom(addr, src)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		go func() {
			io.Copy(io.Discard, c) // returns when the server closes it
			closed.Add(1)
		}()
	}
	fmt.Printf("open %d\n", len(conns))
	time.Sleep(hold)
	fmt.Printf("closed %d\n", closed.Load())
	return nil
}

// dribble ADDR SRC EVERY MAX: start a handshake and send one byte of it every
// EVERY; report how long the server held the connection (at most MAX).
func dribble(a []string) error {
	addr, src, every, maxWait := a[0], a[1], dur(a[2]), dur(a[3])
	c, err := dialFrom(addr, src)
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	gone := make(chan struct{})
	go func() { io.Copy(io.Discard, c); close(gone) }()
	// A real first handshake message (a 32-byte ephemeral key after the
	// 2-byte frame length), one byte at a time, then more bytes forever.
	msg := append([]byte{0, 32}, make([]byte, 32)...)
	rand.Read(msg[2:])
	sent := 0
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-gone:
			fmt.Printf("cut %.1f\nsent %d\n", time.Since(start).Seconds(), sent)
			return nil
		case <-t.C:
			b := byte(0)
			if sent < len(msg) {
				b = msg[sent]
			}
			if _, err := c.Write([]byte{b}); err != nil {
				fmt.Printf("cut %.1f\nsent %d\n", time.Since(start).Seconds(), sent)
				return nil
			}
			sent++
		}
		if time.Since(start) > maxWait {
			fmt.Printf("held %.1f\nsent %d\n", time.Since(start).Seconds(), sent)
			return nil
		}
	}
}

func identity(dir string) (*key.Secret, error) {
	h, err := home.Open(dir)
	if err != nil {
		return nil, err
	}
	return h.Identity(h.DefaultIdentity())
}

// session authenticates to addr (from the loopback address src) as sk and
// opens the protocol stream. Its yamux config lets it open streams without
// waiting for the server to accept them, as a hostile client would.
func session(ctx context.Context, addr, src string, sk *key.Secret) (*yamux.Session, io.ReadWriteCloser, error) {
	c, err := dialFrom(addr, src)
	if err != nil {
		return nil, nil, err
	}
	ch, err := channel.Client(ctx, c, channel.Config{Secret: sk, Rand: rand.Reader})
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	cfg := transport.MuxConfig()
	cfg.AcceptBacklog = 4096
	mux, err := yamux.Client(ch, cfg)
	if err != nil {
		return nil, nil, err
	}
	st, err := mux.OpenStream()
	if err != nil {
		mux.Close()
		return nil, nil, err
	}
	if _, err := st.Write([]byte{lsync.StreamSync}); err != nil { // the stream's kind
		mux.Close()
		return nil, nil, err
	}
	return mux, st, nil
}

// streams ADDR SRC HOME CONNS STREAMS HOLD: as HOME's identity, open CONNS
// sessions; in each, announce a maximal message on the protocol stream and
// send only part of it, and open STREAMS more streams that each fill their
// receive window and are never finished. Hold for HOLD.
func streams(a []string) error {
	addr, src, dir, conns, n, hold := a[0], a[1], a[2], atoi(a[3]), atoi(a[4]), dur(a[5])
	sk, err := identity(dir)
	if err != nil {
		return err
	}
	ctx := context.Background()
	var wg stdsync.WaitGroup
	var opened, reset atomic.Int64
	var muxes []*yamux.Session
	var mu stdsync.Mutex
	for range conns {
		mux, st, err := session(ctx, addr, src, sk)
		if err != nil {
			return err
		}
		mu.Lock()
		muxes = append(muxes, mux)
		mu.Unlock()
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], proto.MaxMessage)
		st.Write(hdr[:])
		go st.Write(make([]byte, 1<<20)) // blocks once the window is full
		junk := make([]byte, 256<<10)
		for range n {
			s, err := mux.OpenStream()
			if err != nil {
				reset.Add(1)
				continue
			}
			opened.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.Write(junk); err != nil {
					reset.Add(1)
				}
			}()
		}
	}
	fmt.Printf("open %d\n", opened.Load())
	time.Sleep(hold)
	fmt.Printf("reset %d\n", reset.Load())
	for _, m := range muxes {
		m.Close()
	}
	return nil
}

// readRefusal reads protocol messages until a Refuse (reported) or the end.
func readRefusal(r io.Reader) {
	br := bufio.NewReader(r)
	for {
		m, _, err := proto.ReadMsg(br)
		if err != nil {
			fmt.Printf("closed %v\n", err)
			return
		}
		if m.T == proto.TRefuse {
			fmt.Printf("refused %s\nretry %d\n", m.Reason, m.Retry)
			return
		}
	}
}

func startRanges() *proto.Msg {
	fp := make([]byte, 16)
	rand.Read(fp)
	return &proto.Msg{T: proto.TRanges, V: proto.Version, Ranges: []proto.Range{{Mode: proto.ModeFP, FP: fp}}}
}

// trickle ADDR SRC HOME EVERY MAX: as HOME's identity, start a session and then
// send a tiny message the server has no use for every EVERY; report how
// long the session lasted (at most MAX) and how it ended.
func trickle(a []string) error {
	addr, src, dir, every, maxWait := a[0], a[1], a[2], dur(a[3]), dur(a[4])
	sk, err := identity(dir)
	if err != nil {
		return err
	}
	mux, st, err := session(context.Background(), addr, src, sk)
	if err != nil {
		return err
	}
	defer mux.Close()
	start := time.Now()
	proto.WriteMsg(st, startRanges())
	ended := make(chan struct{})
	go func() { readRefusal(st); close(ended) }()
	// A Cards message of a log nobody here wants: dropped unread.
	other, _ := key.Generate(rand.Reader)
	c, _ := card.Sign(other, 1, card.ID{}, card.Draft{Kind: card.KindNote, TS: 1, Body: map[string]string{"t": "x"}}, caps.Builtin())
	m := &proto.Msg{T: proto.TCards, Author: other.ID().Bytes(), From: 1, Cards: [][]byte{c.Bytes()}}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ended:
			fmt.Printf("cut %.1f\n", time.Since(start).Seconds())
			return nil
		case <-t.C:
			proto.WriteMsg(st, m)
		}
		if time.Since(start) > maxWait {
			fmt.Printf("held %.1f\n", time.Since(start).Seconds())
			return nil
		}
	}
}

// forge ADDR SRC HOME N: as HOME's identity, push N cards of its own log whose
// signatures are all forged; report the server's refusal.
func forge(a []string) error {
	addr, src, dir, n := a[0], a[1], a[2], atoi(a[3])
	sk, err := identity(dir)
	if err != nil {
		return err
	}
	mux, st, err := session(context.Background(), addr, src, sk)
	if err != nil {
		fmt.Printf("closed %v\n", err)
		return nil
	}
	defer mux.Close()
	ended := make(chan struct{})
	go func() { readRefusal(st); close(ended) }()
	proto.WriteMsg(st, startRanges())
	var batch [][]byte
	prev := card.ID{}
	bw := bufio.NewWriter(st)
	sent := 0
	for seq := 1; seq <= n; seq++ {
		c, err := card.Sign(sk, uint64(seq), prev, card.Draft{Kind: card.KindNote, TS: int64(seq), Body: map[string]string{"t": "forged"}}, caps.Builtin())
		if err != nil {
			return err
		}
		b := append([]byte(nil), c.Bytes()...)
		b[len(b)-1] ^= 1 // the signature's last byte
		prev = card.IDOf(b)
		batch = append(batch, b)
		if len(batch) == proto.MaxBatch || seq == n {
			m := &proto.Msg{T: proto.TCards, Author: sk.ID().Bytes(), From: uint64(seq - len(batch) + 1), Cards: batch}
			if _, err := proto.WriteMsg(bw, m); err != nil {
				break
			}
			bw.Flush()
			sent += len(batch)
			batch = nil
		}
	}
	fmt.Printf("sent %d\n", sent)
	select {
	case <-ended:
	case <-time.After(15 * time.Second):
		fmt.Println("closed no answer")
	}
	return nil
}

// push ADDR SRC HOME FIRST LOGS PER: as HOME's identity, push PER valid
// cards in each of LOGS never-seen logs (fresh identities numbered from
// FIRST), signing as it goes, until the server refuses; report how many
// were sent and the refusal.
func push(a []string) error {
	addr, src, dir, first, logs, per := a[0], a[1], a[2], atoi(a[3]), atoi(a[4]), atoi(a[5])
	sk, err := identity(dir)
	if err != nil {
		return err
	}
	mux, st, err := session(context.Background(), addr, src, sk)
	if err != nil {
		fmt.Printf("closed %v\n", err)
		return nil
	}
	defer mux.Close()
	ended := make(chan struct{})
	go func() { readRefusal(st); close(ended) }()
	proto.WriteMsg(st, startRanges())
	bw := bufio.NewWriter(st)
	sent := 0
	defer func() { fmt.Printf("sent %d\n", sent) }()
	for i := first; i < first+logs; i++ {
		select {
		case <-ended:
			return nil
		default:
		}
		ak, err := key.FromSeed(key.DeriveSeed([]byte("attacker-push"), strconv.Itoa(i)))
		if err != nil {
			return err
		}
		var batch [][]byte
		prev := card.ID{}
		for seq := 1; seq <= per; seq++ {
			c, err := card.Sign(ak, uint64(seq), prev, card.Draft{Kind: card.KindNote, TS: int64(seq), Body: map[string]string{"t": "flood"}}, caps.Builtin())
			if err != nil {
				return err
			}
			prev = c.ID()
			batch = append(batch, c.Bytes())
		}
		if _, err := proto.WriteMsg(bw, &proto.Msg{T: proto.TCards, Author: ak.ID().Bytes(), From: 1, Cards: batch}); err != nil {
			break
		}
		if bw.Flush() != nil {
			break
		}
		sent += per
	}
	proto.WriteMsg(bw, &proto.Msg{T: proto.TDone})
	bw.Flush()
	select {
	case <-ended:
	case <-time.After(15 * time.Second):
		fmt.Println("closed no answer")
	}
	return nil
}

// fill HOME LOGS CARDS: put CARDS cards in each of LOGS new logs (fresh
// identities) into HOME's store, and follow them, so that HOME shows them
// to the peers it trusts.
func fill(a []string) error {
	dir, logs, per := a[0], atoi(a[1]), atoi(a[2])
	h, err := home.Open(dir)
	if err != nil {
		return err
	}
	st, err := h.OpenStore(sublog.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	ids := make([]key.ID, logs)
	errc := make(chan error, logs)
	sem := make(chan struct{}, 4)
	var wg stdsync.WaitGroup
	for i := range logs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			sk, err := key.FromSeed(key.DeriveSeed([]byte("attacker-fill"), strconv.Itoa(i)))
			if err != nil {
				errc <- err
				return
			}
			ids[i] = sk.ID()
			var raw [][]byte
			prev := card.ID{}
			for seq := 1; seq <= per; seq++ {
				c, err := card.Sign(sk, uint64(seq), prev, card.Draft{Kind: card.KindNote, TS: int64(seq), Body: map[string]string{"t": "flood"}}, caps.Builtin())
				if err != nil {
					errc <- err
					return
				}
				prev = c.ID()
				raw = append(raw, c.Bytes())
			}
			res, err := st.ImportBatch(raw)
			if err == nil && len(res.Errs) > 0 {
				for _, e := range res.Errs {
					err = e
				}
			}
			if err != nil {
				errc <- err
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return err
	}
	if _, err := h.EditPeers(func(p *home.Peers) { p.Follow = append(p.Follow, ids...) }); err != nil {
		return err
	}
	fmt.Printf("filled %d\n", logs*per)
	return nil
}
