package transport

import (
	"io"
	"time"

	"github.com/hashicorp/yamux"
)

// MaxStreamBacklog is how many streams a peer may have opened that this side
// has not accepted yet; a further stream is reset at once. yamux gives every
// stream a 256 KiB receive window, so without this bound a peer that opens
// streams nobody reads pins 256 KiB (about twice that in buffer growth) per
// stream; with it, at most MaxStreamBacklog such streams per session.
const MaxStreamBacklog = 4

// StreamWindow is the most a stream buffers unread (its flow-control window).
const StreamWindow = 1 << 20

// MuxConfig is the yamux configuration sync uses: quiet, with keepalives so a
// dead link is noticed, stream windows big enough for card streaming, and a
// small backlog of unaccepted streams (MaxStreamBacklog).
func MuxConfig() *yamux.Config {
	c := yamux.DefaultConfig()
	c.AcceptBacklog = MaxStreamBacklog
	c.LogOutput = io.Discard
	c.EnableKeepAlive = true
	c.KeepAliveInterval = 15 * time.Second
	c.ConnectionWriteTimeout = 30 * time.Second
	c.StreamOpenTimeout = 30 * time.Second
	c.MaxStreamWindowSize = StreamWindow
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
