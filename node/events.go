package node

import (
	"encoding/json"
	stdsync "sync"
	"time"
)

// Event is one line of the control socket's event stream (/v1/events).
type Event struct {
	Seq  uint64          `json:"seq"`
	Type string          `json:"type"` // heads, peer, session
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// eventBuffer bounds what one slow listener can hold back: past it, the
// listener's oldest events are dropped and it is told how many it missed.
const eventBuffer = 256

// maxListeners bounds event-stream subscribers.
const maxListeners = 32

type events struct {
	mu   stdsync.Mutex
	seq  uint64
	subs map[*listener]struct{}
}

type listener struct {
	c       chan Event
	dropped uint64
}

func newEvents() *events { return &events{subs: map[*listener]struct{}{}} }

func (e *events) publish(typ string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	ev := Event{Seq: e.seq, Type: typ, Time: time.Now().UTC(), Data: b}
	for l := range e.subs {
		select {
		case l.c <- ev:
		default:
			l.dropped++
		}
	}
}

func (e *events) subscribe() *listener {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.subs) >= maxListeners {
		return nil
	}
	l := &listener{c: make(chan Event, eventBuffer)}
	e.subs[l] = struct{}{}
	return l
}

func (e *events) unsubscribe(l *listener) {
	e.mu.Lock()
	delete(e.subs, l)
	e.mu.Unlock()
}

func (e *events) takeDropped(l *listener) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	d := l.dropped
	l.dropped = 0
	return d
}
