package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	alog "github.com/anacrolix/log"
	"github.com/anacrolix/torrent/bencode"
	"golang.org/x/time/rate"

	"github.com/anacrolix/dht/v2"
	"github.com/anacrolix/dht/v2/bep44"
	"github.com/anacrolix/dht/v2/exts/getput"

	"github.com/sublog/sublog/log/key"
)

// DHT publishes and resolves PKARR packets directly on the Mainline DHT
// (BEP 44 mutable items, no salt: the item's seq is the packet timestamp,
// its v the DNS packet, its signature the packet's) through
// github.com/anacrolix/dht. Used only when the user asks for it.
type DHT struct {
	s    *dht.Server
	logf func(string, ...any)
}

// DHTConfig configures a DHT node.
type DHTConfig struct {
	// Conn is the UDP socket (default: a new one on ListenAddr).
	Conn net.PacketConn
	// ListenAddr is used when Conn is nil (default ":0").
	ListenAddr string
	// Bootstrap nodes HOST:PORT. Empty means the public Mainline routers.
	Bootstrap []string
	// Serve answers other nodes' queries (and stores their items); a
	// client-only node leaves it false.
	Serve bool
	// SendRate bounds the packets sent per second (default 100).
	SendRate int
	// Logf receives the library's warnings (default: discarded).
	Logf func(format string, args ...any)
}

func (c DHTConfig) sendRate() int {
	if c.SendRate > 0 {
		return c.SendRate
	}
	return 100
}

// NewDHT starts a DHT node.
func NewDHT(cfg DHTConfig) (*DHT, error) {
	conn := cfg.Conn
	if conn == nil {
		addr := cfg.ListenAddr
		if addr == "" {
			addr = ":0"
		}
		var err error
		if conn, err = net.ListenPacket("udp", addr); err != nil {
			return nil, fmt.Errorf("DHT: %w", err)
		}
	}
	c := dht.NewDefaultServerConfig()
	c.Conn = conn
	c.Passive = !cfg.Serve
	c.NoSecurity = true
	c.QueryResendDelay = func() time.Duration { return 500 * time.Millisecond }
	// The library's default send limiter is one shared by every node in the
	// process; each node gets its own.
	c.SendLimiter = rate.NewLimiter(rate.Limit(cfg.sendRate()), 2*cfg.sendRate())
	if len(cfg.Bootstrap) > 0 {
		boot := append([]string(nil), cfg.Bootstrap...)
		c.StartingNodes = func() ([]dht.Addr, error) {
			var out []dht.Addr
			for _, b := range boot {
				ua, err := net.ResolveUDPAddr("udp", b)
				if err != nil {
					return nil, err
				}
				out = append(out, dht.NewAddr(ua))
			}
			return out, nil
		}
	}
	h := alog.DiscardHandler
	if cfg.Logf != nil {
		logf := cfg.Logf
		h = alog.StreamHandler{W: logWriter(logf), Fmt: alog.LineFormatter}
	}
	c.Logger = alog.Logger{}.WithNames("dht")
	c.Logger.Handlers = []alog.Handler{h}
	s, err := dht.NewServer(c)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("DHT: %w", err)
	}
	return &DHT{s: s, logf: cfg.Logf}, nil
}

type logWriter func(string, ...any)

func (w logWriter) Write(b []byte) (int, error) { w("%s", b); return len(b), nil }

// Addr is the node's UDP address.
func (d *DHT) Addr() net.Addr { return d.s.Addr() }

// Bootstrap fills the routing table from the starting nodes.
func (d *DHT) Bootstrap(ctx context.Context) error {
	_, err := d.s.BootstrapContext(ctx)
	return err
}

// Close stops the node.
func (d *DHT) Close() { d.s.Close() }

// Put stores p on the nodes closest to its key.
func (d *DHT) Put(ctx context.Context, p *SignedPacket) error {
	k := p.ID().Array()
	var sig [64]byte
	copy(sig[:], p.sig)
	put := bep44.Put{V: p.packet, K: &k, Seq: int64(p.ts), Sig: sig}
	stats, err := getput.Put(ctx, put.Target(), d.s, nil, func(int64) bep44.Put { return put })
	if err != nil {
		return fmt.Errorf("DHT put: %w", err)
	}
	if d.logf != nil {
		d.logf("DHT put %s: %+v", p.ID(), *stats)
	}
	return nil
}

// Get finds the newest packet for id on the DHT and verifies it like a
// relay's: the signature must be id's.
func (d *DHT) Get(ctx context.Context, id key.ID) (*SignedPacket, error) {
	res, _, err := getput.Get(ctx, bep44.MakeMutableTarget(id.Array(), nil), d.s, nil, nil)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("DHT get: %w", err)
		}
		return nil, fmt.Errorf("%w: DHT has no packet for %s: %v", ErrNotFound, id, err)
	}
	if !res.Mutable || res.Seq < 0 {
		return nil, fmt.Errorf("%w: DHT answered an immutable item", ErrMalformed)
	}
	var v []byte
	if err := bencode.Unmarshal(res.V, &v); err != nil {
		return nil, fmt.Errorf("%w: DHT value is not a byte string: %v", ErrMalformed, err)
	}
	payload := make([]byte, payloadHeader, payloadHeader+len(v))
	copy(payload, res.Sig[:])
	putUint64(payload[key.SignatureSize:], uint64(res.Seq))
	return ParsePayload(id, append(payload, v...))
}

func putUint64(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = byte(v)
		v >>= 8
	}
}
