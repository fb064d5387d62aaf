// Package transport owns how sync connections are made: a small Transport
// interface, TCP, stdio and in-memory implementations, and yamux stream
// multiplexing over an established channel. A link that is not IP (a serial
// line, a radio, a message broker) needs only a file that implements Dial and
// Listen over its own byte stream; everything above it is unchanged.
package transport

import (
	"context"
	"errors"
	"io"
	"net"
)

// Conn is a byte stream between two nodes. Any reliable, ordered stream will
// do; the channel above it authenticates and encrypts.
type Conn = io.ReadWriteCloser

// Transport makes connections to addresses and accepts them. Addresses are
// hints, never identities.
type Transport interface {
	Dial(ctx context.Context, addr string) (Conn, error)
	Listen(addr string) (Listener, error)
}

// Listener accepts connections until it is closed.
type Listener interface {
	Accept(ctx context.Context) (Conn, error)
	Close() error
	Addr() string
}

// ErrClosed is returned by a closed listener or pipe.
var ErrClosed = errors.New("transport: closed")

// Source names where a connection comes from, for per-source limits: the
// remote IP address of a network connection (without the port), or "" when
// the transport has no such notion (pipes, stdio).
func Source(c Conn) string {
	ra, ok := c.(interface{ RemoteAddr() net.Addr })
	if !ok || ra.RemoteAddr() == nil {
		return ""
	}
	switch a := ra.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.IP.String()
	case *net.UDPAddr:
		return a.IP.String()
	}
	s := ra.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return s
}
