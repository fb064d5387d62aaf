package transport

import (
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// MuxConfig is the yamux configuration sync uses: quiet, with keepalives so a
// dead link is noticed, and stream windows big enough for card streaming.
func MuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = io.Discard
	c.EnableKeepAlive = true
	c.KeepAliveInterval = 15 * time.Second
	c.ConnectionWriteTimeout = 30 * time.Second
	c.StreamOpenTimeout = 30 * time.Second
	c.MaxStreamWindowSize = 1 << 20
	return c
}

// Session is a yamux session over an established channel (or any
// io.ReadWriteCloser); the dialling side is the client.
type Session = yamux.Session

// Mux starts yamux over c.
func Mux(c io.ReadWriteCloser, client bool) (*Session, error) {
	if client {
		return yamux.Client(c, MuxConfig())
	}
	return yamux.Server(c, MuxConfig())
}
