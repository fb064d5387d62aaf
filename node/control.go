package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	stdsync "sync"
	"time"

	"github.com/sublog/sublog/exec"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// APIVersion is the control API's version: every path starts /v1/.
const APIVersion = "v1"

// RunUpgrade is the protocol a forwarded command switches to (see
// ARCHITECTURE.md, The instance): after `POST /v1/run` answered 101, both
// sides exchange frames: kind (1 byte), length (4 bytes, big endian) and
// data.
const RunUpgrade = "sublog-run/1"

// Frame kinds of a forwarded command.
const (
	frameStdout    = 'o' // node → client: stdout bytes
	frameStderr    = 'e' // node → client: stderr bytes
	frameWantStdin = 'w' // node → client: the command reads stdin; start sending it
	frameExit      = 'x' // node → client: exit code (4 bytes); the last frame
	frameStdin     = 'i' // client → node: stdin bytes
	frameStdinEOF  = 'c' // client → node: stdin is at its end
)

// maxFrame bounds one frame's data (stdin is sent in pieces of at most this).
const maxFrame = 64 << 10

// maxRequest bounds a forwarded command's header (argv, cwd, env).
const maxRequest = 1 << 20

// runRequest is the JSON body of POST /v1/run.
type runRequest struct {
	Args []string `json:"args"`
	Dir  string   `json:"dir"`
	Env  []string `json:"env"`
}

func (n *Node) listenControl() error {
	path := n.info.Socket
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// We hold the home's lock: a socket file left here is stale.
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("node: control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return err
	}
	n.sock = l
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", n.handleStatus)
	mux.HandleFunc("GET /v1/config", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.cfg) })
	mux.HandleFunc("GET /v1/heads", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.headsJSON()) })
	mux.HandleFunc("GET /v1/logs", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.headsJSON()) })
	mux.HandleFunc("GET /v1/logs/{author}", n.handleLog)
	mux.HandleFunc("GET /v1/peers", n.handlePeers)
	mux.HandleFunc("GET /v1/sessions", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.live.sessions()) })
	mux.HandleFunc("GET /v1/events", n.handleEvents)
	n.viewRoutes(mux)
	mux.HandleFunc("POST /v1/run", n.handleRun)
	mux.HandleFunc("POST /v1/shutdown", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"stopping": true, "pid": os.Getpid()})
		if f, ok := w.(http.Flusher); ok {
			f.Flush() // the answer is out before the shutdown starts closing things
		}
		go n.Shutdown()
	})
	n.api = mux
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		err := srv.Serve(credListener{l, n})
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("control socket", "err", err)
		}
	}()
	go func() {
		<-n.ctx.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	return nil
}

// credListener refuses connections of other users.
type credListener struct {
	net.Listener
	n *Node
}

func (l credListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if err := sameUser(c); err != nil {
			l.n.log.Warn("control socket: refused", "err", err)
			c.Close()
			continue
		}
		return c, nil
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Status is GET /v1/status.
type Status struct {
	Info
	Uptime   string        `json:"uptime"`
	Cards    uint64        `json:"cards"`
	Logs     int           `json:"logs"`
	Peers    int           `json:"peers"` // peers held by the executor
	Sessions []SessionInfo `json:"sessions"`
}

func (n *Node) status() Status {
	cards, logs := n.st.Count()
	s := Status{Info: n.info, Uptime: time.Since(n.info.Started).Round(time.Second).String(), Cards: cards, Logs: logs,
		Sessions: n.live.sessions()}
	if n.host != nil {
		if l, err := n.host.Peers(); err == nil {
			s.Peers = len(l)
		}
	}
	return s
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) { writeJSON(w, n.status()) }

type headJSON struct {
	Author key.ID `json:"author"`
	Seq    uint64 `json:"seq"`
	ID     string `json:"id"`
	Forked bool   `json:"forked,omitempty"`
}

func (n *Node) headsJSON() []headJSON {
	out := []headJSON{}
	for _, h := range n.st.Heads() {
		out = append(out, headJSON{h.Author, h.Seq, h.ID.String(), h.Forked})
	}
	return out
}

type cardJSON struct {
	Seq  uint64 `json:"seq"`
	ID   string `json:"id"`
	Kind string `json:"kind"`
	TS   int64  `json:"ts"`
}

// maxLogPage bounds one /v1/logs/{author} answer; ?from=SEQ pages on.
const maxLogPage = 1000

func (n *Node) handleLog(w http.ResponseWriter, r *http.Request) {
	id, err := key.ParseID(r.PathValue("author"))
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	from := uint64(1)
	if f := r.URL.Query().Get("from"); f != "" {
		if _, err := fmt.Sscan(f, &from); err != nil || from == 0 {
			httpError(w, http.StatusBadRequest, fmt.Errorf("from: %q is not a sequence number", f))
			return
		}
	}
	out := []cardJSON{}
	err = n.st.Scan(id, from, func(c *card.Card) error {
		if len(out) == maxLogPage {
			return io.EOF
		}
		out = append(out, cardJSON{c.Seq(), c.ID().String(), c.Kind(), c.TS()})
		return nil
	})
	if err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, out)
}

// PeerStatus is one executor peer in /v1/peers and peer events.
type PeerStatus struct {
	Peer   key.ID `json:"peer"`
	Name   string `json:"name"`
	Bundle string `json:"bundle"`
	State  string `json:"state"`
	Grant  string `json:"grant,omitempty"`
	Reason string `json:"reason,omitempty"`
	CPUMS  uint64 `json:"cpu_used_ms"`
}

func peerJSON(s exec.Status) PeerStatus {
	p := PeerStatus{Peer: s.Peer, Name: s.Name, Bundle: s.Bundle.String(), State: s.State, Reason: s.Reason, CPUMS: s.CPUMS}
	if !s.Grant.IsZero() {
		p.Grant = s.Grant.String()
	}
	return p
}

func (n *Node) handlePeers(w http.ResponseWriter, r *http.Request) {
	out := []PeerStatus{}
	if n.host != nil {
		list, err := n.host.Peers()
		if err != nil {
			httpError(w, http.StatusInternalServerError, err)
			return
		}
		for _, s := range list {
			out = append(out, peerJSON(s))
		}
	}
	writeJSON(w, out)
}

// handleEvents streams events as server-sent events until the client goes.
func (n *Node) handleEvents(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		httpError(w, http.StatusInternalServerError, errors.New("streaming unsupported"))
		return
	}
	l := n.ev.subscribe()
	if l == nil {
		httpError(w, http.StatusServiceUnavailable, fmt.Errorf("at most %d event listeners", maxListeners))
		return
	}
	defer n.ev.unsubscribe(l)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	b, _ := json.Marshal(n.status())
	fmt.Fprintf(w, "event: status\ndata: %s\n\n", b)
	fl.Flush()
	ping := time.NewTicker(15 * time.Second)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-n.ctx.Done():
			return
		case <-ping.C:
			fmt.Fprint(w, ": ping\n\n")
		case ev := <-l.c:
			if d := n.ev.takeDropped(l); d > 0 {
				fmt.Fprintf(w, "event: dropped\ndata: {\"dropped\":%d}\n\n", d)
			}
			b, _ := json.Marshal(ev)
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Type, b)
		}
		fl.Flush()
	}
}

// handleRun runs one forwarded CLI command in-process (see RunUpgrade).
func (n *Node) handleRun(w http.ResponseWriter, r *http.Request) {
	if n.opt.Run == nil {
		httpError(w, http.StatusNotImplemented, errors.New("this instance runs no commands"))
		return
	}
	if r.Header.Get("Upgrade") != RunUpgrade {
		httpError(w, http.StatusBadRequest, fmt.Errorf("want Upgrade: %s", RunUpgrade))
		return
	}
	var req runRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequest)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	if !filepath.IsAbs(req.Dir) {
		httpError(w, http.StatusBadRequest, errors.New("dir must be absolute"))
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		httpError(w, http.StatusInternalServerError, errors.New("cannot switch protocols"))
		return
	}
	n.cmds.Add(1)
	defer n.cmds.Done()
	conn, brw, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", RunUpgrade)
	if err := brw.Flush(); err != nil {
		return
	}
	ctx, cancel := context.WithCancel(n.ctx)
	defer cancel()
	fw := &frameWriter{w: conn}
	in := &stdinPipe{fw: fw}
	in.cond = stdsync.NewCond(&in.mu)
	// The client's frames: stdin, and the end of the connection (the client
	// went away: cancel the command).
	go func() {
		defer cancel()
		defer in.close(io.ErrUnexpectedEOF)
		for {
			kind, data, err := readFrame(brw.Reader)
			if err != nil {
				return
			}
			switch kind {
			case frameStdin:
				in.put(data)
			case frameStdinEOF:
				in.close(io.EOF)
			}
		}
	}()
	code := n.opt.Run(ctx, n, Command{Args: req.Args, Dir: req.Dir, Env: req.Env, Stdin: in,
		Stdout: fw.stream(frameStdout), Stderr: fw.stream(frameStderr)})
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(code))
	fw.write(frameExit, b[:])
	n.Reconfigure()
}

// frameWriter writes frames to the client, one at a time.
type frameWriter struct {
	mu  stdsync.Mutex
	w   io.Writer
	err error
}

func (f *frameWriter) write(kind byte, data []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	for first := true; first || len(data) > 0; first = false {
		chunk := data[:min(len(data), maxFrame)]
		data = data[len(chunk):]
		var h [5]byte
		h[0] = kind
		binary.BigEndian.PutUint32(h[1:], uint32(len(chunk)))
		if _, err := f.w.Write(append(h[:], chunk...)); err != nil {
			f.err = err
			return err
		}
	}
	return nil
}

type frameStream struct {
	f    *frameWriter
	kind byte
}

func (s frameStream) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if err := s.f.write(s.kind, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (f *frameWriter) stream(kind byte) io.Writer { return frameStream{f, kind} }

func readFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("node: frame of %d bytes (at most %d)", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return 0, nil, err
	}
	return h[0], b, nil
}

// stdinPipe is the command's stdin: on its first read it asks the client to
// start sending (so a command that never reads stdin never consumes it).
// It holds at most one frame (the reader goroutine waits for it to be read).
type stdinPipe struct {
	fw    *frameWriter
	mu    stdsync.Mutex
	cond  *stdsync.Cond
	asked bool
	buf   []byte
	err   error
}

func (p *stdinPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	if !p.asked {
		p.asked = true
		p.mu.Unlock()
		if err := p.fw.write(frameWantStdin, nil); err != nil {
			return 0, err
		}
		p.mu.Lock()
	}
	defer p.mu.Unlock()
	for len(p.buf) == 0 && p.err == nil {
		p.cond.Wait()
	}
	if len(p.buf) > 0 {
		n := copy(b, p.buf)
		p.buf = p.buf[n:]
		p.cond.Broadcast()
		return n, nil
	}
	return 0, p.err
}

func (p *stdinPipe) put(b []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) > 0 && p.err == nil {
		p.cond.Wait()
	}
	if p.err == nil {
		p.buf = b
		p.cond.Broadcast()
	}
}

func (p *stdinPipe) close(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

var _ = bufio.NewReader
