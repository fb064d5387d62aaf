package exec

import (
	"fmt"
	stdsync "sync"

	"github.com/sublog/sublog/log/caps"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// MemLog is an in-memory Log: each author's cards in chain order. It is for
// tests and for tools that run the executor without a store.
type MemLog struct {
	mu   stdsync.Mutex
	logs map[key.ID][]*card.Card
}

var _ Log = (*MemLog)(nil)

// NewMemLog makes an empty MemLog.
func NewMemLog() *MemLog { return &MemLog{logs: map[key.ID][]*card.Card{}} }

// Append signs d as the next card of sk's log.
func (l *MemLog) Append(sk *key.Secret, d card.Draft) (*card.Card, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	chain := l.logs[sk.ID()]
	var prev card.ID
	if n := len(chain); n > 0 {
		prev = chain[n-1].ID()
	}
	c, err := card.Sign(sk, uint64(len(chain))+1, prev, d, caps.Builtin())
	if err != nil {
		return nil, err
	}
	l.logs[sk.ID()] = append(chain, c)
	return c, nil
}

// Scan calls fn with author's cards from seq fromSeq on, in chain order.
func (l *MemLog) Scan(author key.ID, fromSeq uint64, fn func(*card.Card) error) error {
	l.mu.Lock()
	chain := l.logs[author]
	l.mu.Unlock()
	if fromSeq == 0 {
		fromSeq = 1
	}
	for i := fromSeq - 1; i < uint64(len(chain)); i++ {
		if err := fn(chain[i]); err != nil {
			return err
		}
	}
	return nil
}

// Cards returns author's cards.
func (l *MemLog) Cards(author key.ID) []*card.Card {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*card.Card(nil), l.logs[author]...)
}

// Get returns author's card at seq.
func (l *MemLog) Get(author key.ID, seq uint64) (*card.Card, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	chain := l.logs[author]
	if seq == 0 || seq > uint64(len(chain)) {
		return nil, fmt.Errorf("memlog: no card %s@%d", author.Short(), seq)
	}
	return chain[seq-1], nil
}
