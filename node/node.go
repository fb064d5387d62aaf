// Package node is the composition root of a running instance (`sublog up`):
// it is the one holder of a home's store while it runs, and owns the
// executor (role host), the sync listener and the live sessions with the
// peers the home has reason to talk to, the control socket (versioned
// HTTP+JSON on a Unix socket in the home), the roles it publishes, and a
// clean shutdown. The command line is not here: cli parses `sublog up` and
// hands the node a callback that runs any other CLI command in-process
// against the node's open store, so every command works while an instance
// runs, with the same output and exit codes.
package node

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	stdsync "sync"
	"syscall"
	"time"

	"github.com/sublog/sublog/blob"
	"github.com/sublog/sublog/exec"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/ui"
)

// Errors of the instance.
var (
	// ErrRunning: another instance holds the home.
	ErrRunning = errors.New("node: an instance is already running on this home")
	// ErrNotRunning: no instance answers on the home's socket.
	ErrNotRunning = errors.New("node: no instance is running on this home")
)

// RunDir is the instance's directory in the home (mode 0700): the lock, the
// instance record and (when the path is short enough) the control socket.
const RunDir = "run"

// Command is one CLI command forwarded through the control socket.
type Command struct {
	Args   []string // without the program name
	Dir    string   // the client's working directory: relative paths resolve here
	Env    []string // the client's environment (KEY=VALUE)
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// RunFunc runs a CLI command in-process against the node and returns its
// exit code. The cli package provides it (the node does not import cli).
type RunFunc func(ctx context.Context, n *Node, c Command) int

// Options are what the caller (cli's `sublog up`) gives the node.
type Options struct {
	Home   *home.Home
	Config Config
	Run    RunFunc      // nil: forwarded commands are refused
	Logger *slog.Logger // nil: from Config.Log on Stderr
	Stderr io.Writer    // the log's destination when Logger is nil
	Rand   io.Reader    // nil: crypto/rand
	Now    func() time.Time
	// Ready, when set, is called once everything listens.
	Ready func(Info)
}

// Info says where a running instance is.
type Info struct {
	PID     int       `json:"pid"`
	Home    string    `json:"home"`
	Socket  string    `json:"socket"`
	Listen  []string  `json:"listen"`
	Roles   []string  `json:"roles"`
	RoleIDs []string  `json:"role_ids"`
	ID      key.ID    `json:"identity"`
	Started time.Time `json:"started"`
	Profile string    `json:"profile,omitempty"` // card ID of the profile publishing the roles
	UI      string    `json:"ui,omitempty"`      // the status page's address (without its token)

	uiLink string // the status page's link with its token (never written or logged)
}

// UILink is the status page's link with its access token ("" when off).
func (i Info) UILink() string { return i.uiLink }

// Node is a running instance.
type Node struct {
	opt   Options
	cfg   Config
	home  *home.Home
	log   *slog.Logger
	sk    *key.Secret
	st    *sublog.Store
	host  *exec.Host
	blobs *blob.Store
	info  Info

	lock  *os.File
	sock  net.Listener
	ctx   context.Context
	stop  context.CancelFunc
	wg    stdsync.WaitGroup
	ev    *events
	live  *live
	fold  *folded      // the projections the views of the control API read
	api   http.Handler // the control API (the status page reads it in-process)
	ui    *ui.Server
	cmds  stdsync.WaitGroup // forwarded commands in flight
	close stdsync.Once
}

// SocketPath is where the control socket of the home in dir lives:
// HOME/run/control.sock, or, when that path is too long for a Unix socket
// address, a per-home name in a private directory under the system's
// temporary directory.
func SocketPath(dir string) string {
	p := filepath.Join(dir, RunDir, "control.sock")
	if len(p) < 100 {
		return p
	}
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join(os.TempDir(), fmt.Sprintf("sublog-%d", os.Getuid()), hex.EncodeToString(sum[:8])+".sock")
}

// Start takes the home (failing with ErrRunning, naming the first
// instance, if another holds it), opens the store and the executor, starts
// the control socket, the sync listener and the live sessions, and
// publishes the roles. Wait for it with Wait; stop it with Shutdown.
func Start(ctx context.Context, opt Options) (_ *Node, err error) {
	cfg := opt.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opt.Rand == nil {
		opt.Rand = rand.Reader
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	lg := opt.Logger
	if lg == nil {
		lg = NewLogger(opt.Stderr, cfg.Log.Format, cfg.Log.Level)
	}
	h := opt.Home
	n := &Node{opt: opt, cfg: cfg, home: h, log: lg, ev: newEvents(), fold: newFolded()}
	n.ctx, n.stop = context.WithCancel(ctx)
	defer func() {
		if err != nil {
			n.teardown()
		}
	}()
	if err := n.takeLock(); err != nil {
		return nil, err
	}
	if n.sk, err = h.Identity(cfg.Identity); err != nil {
		return nil, err
	}
	if n.st, err = h.OpenStore(sublog.Options{}); err != nil {
		return nil, err
	}
	dir, err := h.Path("blobs")
	if err != nil {
		return nil, err
	}
	if n.blobs, err = blob.Open(dir); err != nil {
		return nil, err
	}
	if cfg.Has("host") {
		dir, err := h.Path("exec")
		if err != nil {
			return nil, err
		}
		n.host, err = exec.Open(exec.Config{Dir: dir, Key: n.sk, Log: n.st, Now: opt.Now, Rand: opt.Rand,
			PeerLog: &peerLog{lg}, Logger: lg.With("part", "exec")})
		if err != nil {
			return nil, err
		}
		if err := n.host.Warm(n.ctx); err != nil {
			lg.Warn("warming peers", "err", err)
		}
	}
	n.info = Info{PID: os.Getpid(), Home: h.Dir, Socket: SocketPath(h.Dir), Roles: cfg.Roles,
		RoleIDs: RoleIDs(cfg.Roles), ID: n.sk.ID(), Started: opt.Now().UTC()}
	if n.info.Profile, err = n.publishRoles(); err != nil {
		return nil, fmt.Errorf("node: publishing roles: %w", err)
	}
	if n.live, err = startLive(n); err != nil {
		return nil, err
	}
	n.info.Listen = n.live.addrs()
	if err := n.listenControl(); err != nil {
		return nil, err
	}
	if err := n.startUI(); err != nil {
		return nil, err
	}
	if err := n.writeInfo(); err != nil {
		return nil, err
	}
	n.wg.Add(1)
	go n.watchStore()
	if n.cfg.Blobs.GCInterval > 0 {
		n.wg.Add(1)
		go n.collectBlobs()
	}
	lg.Info("instance up", "identity", n.sk.ID().String(), "socket", n.info.Socket, "listen", n.info.Listen,
		"roles", cfg.Roles, "profile", n.info.Profile)
	if opt.Ready != nil {
		opt.Ready(n.info)
	}
	return n, nil
}

// NewLogger makes the instance's slog logger on w.
func NewLogger(w io.Writer, format, level string) *slog.Logger {
	if w == nil {
		w = os.Stderr
	}
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	o := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// peerLog turns log lines of peers granted `log` into slog lines.
type peerLog struct{ l *slog.Logger }

func (p *peerLog) Write(b []byte) (int, error) {
	p.l.Info("peer log", "line", string(trimNL(b)))
	return len(b), nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Store is the node's open store.
func (n *Node) Store() *sublog.Store { return n.st }

// Host is the node's executor (nil without the host role).
func (n *Node) Host() *exec.Host { return n.host }

// Home is the node's home.
func (n *Node) Home() *home.Home { return n.home }

// ID is the identity the instance acts as.
func (n *Node) ID() key.ID { return n.sk.ID() }

// Info says where the instance is.
func (n *Node) Info() Info { return n.info }

// Logger is the instance's log.
func (n *Node) Logger() *slog.Logger { return n.log }

// Reconfigure re-reads the home's lists (trust, follow, devices) and the
// peers to talk to; forwarded commands call it after they ran.
func (n *Node) Reconfigure() {
	if set, err := n.home.Caps(); err == nil {
		n.st.SetCaps(set)
	} else {
		n.log.Warn("reloading the home's capabilities", "err", err)
	}
	if n.live != nil {
		n.live.reconfigure()
	}
}

// Wait blocks until the node has shut down.
func (n *Node) Wait() { <-n.ctx.Done(); n.wg.Wait() }

// Done is closed when shutdown begins.
func (n *Node) Done() <-chan struct{} { return n.ctx.Done() }

// Shutdown stops the instance cleanly: no new commands or sessions;
// forwarded commands and sessions in flight end (a command still running
// after the grace period is cut, its client sees the connection end); the
// executor halts its peers with their state saved (they start again with
// the next `sublog up`); the store closes after its last commit.
func (n *Node) Shutdown() {
	n.close.Do(func() {
		n.log.Info("shutting down")
		n.stop()
		if n.sock != nil {
			n.sock.Close()
		}
		done := make(chan struct{})
		go func() { n.cmds.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			n.log.Warn("commands still running at shutdown were cut")
		}
		n.wg.Wait()
		n.teardown()
		n.log.Info("instance down")
	})
}

// teardown closes what Start opened, in reverse order.
func (n *Node) teardown() {
	if n.stop != nil {
		n.stop()
	}
	if n.ui != nil {
		n.ui.Close()
	}
	if n.live != nil {
		n.live.close()
	}
	if n.sock != nil {
		n.sock.Close()
		os.Remove(n.info.Socket)
	}
	if n.host != nil {
		if err := n.host.Close(); err != nil {
			n.log.Error("closing the executor", "err", err)
		}
	}
	if n.st != nil {
		if err := n.st.Close(); err != nil {
			n.log.Error("closing the store", "err", err)
		}
	}
	if n.lock != nil {
		os.Remove(filepath.Join(n.home.Dir, RunDir, "instance.json"))
		n.lock.Close() // releases the flock
	}
}

// takeLock holds HOME/run/lock (flock) for the instance's life.
func (n *Node) takeLock() error {
	dir := filepath.Join(n.home.Dir, RunDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		who := "another process"
		if inf, err := ReadInfo(n.home.Dir); err == nil {
			who = fmt.Sprintf("pid %d, socket %s", inf.PID, inf.Socket)
		}
		return fmt.Errorf("%w (%s)", ErrRunning, who)
	}
	n.lock = f
	return nil
}

// ReadInfo reads the record a running instance keeps in the home.
func ReadInfo(dir string) (Info, error) {
	var inf Info
	b, err := os.ReadFile(filepath.Join(dir, RunDir, "instance.json"))
	if err != nil {
		return inf, err
	}
	err = json.Unmarshal(b, &inf)
	return inf, err
}

func (n *Node) writeInfo() error {
	b, _ := json.MarshalIndent(n.info, "", "  ")
	p := filepath.Join(n.home.Dir, RunDir, "instance.json")
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// watchStore acts on every stored card: the executor re-reads its grants
// at once (a revoke, expiry or crl entry stops the peer as soon as it is
// stored here), live sessions push to their peers, and event listeners hear
// of the new heads.
func (n *Node) watchStore() {
	defer n.wg.Done()
	sub := n.st.Subscribe()
	defer sub.Cancel()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-sub.C:
		}
		if n.host != nil {
			n.checkPeers()
		}
		if n.live != nil {
			n.live.kickAll()
		}
		n.ev.publish("heads", n.headsJSON())
	}
}

// checkPeers runs the executor's check and logs each peer it stopped, with
// the reason (which names the grant and the revoke).
func (n *Node) checkPeers() {
	before := map[key.ID]string{}
	if list, err := n.host.Peers(); err == nil {
		for _, s := range list {
			before[s.Peer] = s.State
		}
	}
	n.host.Check()
	list, err := n.host.Peers()
	if err != nil {
		return
	}
	for _, s := range list {
		if s.State != before[s.Peer] {
			// (The executor logs a stop itself, once, where it decides.)
			if s.State != "stopped" { // kinds.StateStopped
				n.log.Info("peer "+s.State, "peer", s.Peer.String(), "name", s.Name, "grant", s.Grant.String(), "reason", s.Reason)
			}
			n.ev.publish("peer", peerJSON(s))
		}
	}
}
