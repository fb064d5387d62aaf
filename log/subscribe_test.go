package log_test

import (
	"testing"
	"time"

	"github.com/sublog/sublog/golden"
	sublog "github.com/sublog/sublog/log"
)

// TestSubscribeSignalsDurableCards: an append and an import each signal a
// subscriber once the card is readable; a cancelled subscription gets
// nothing more.
func TestSubscribeSignalsDurableCards(t *testing.T) {
	a := open(t, t.TempDir())
	b := open(t, t.TempDir())
	sub := b.Subscribe()
	defer sub.Cancel()
	select {
	case <-sub.C:
		t.Fatal("signalled before anything was stored")
	default:
	}
	c, err := a.Append(golden.Fixture("alice"), note("hi", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Import(c.Bytes()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.C:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal after an import")
	}
	if _, ok := b.Head(c.Author()); !ok {
		t.Fatal("signalled before the card was readable")
	}
	own := a.Subscribe()
	if _, err := a.Append(golden.Fixture("alice"), note("again", 2)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-own.C:
	case <-time.After(10 * time.Second):
		t.Fatal("no signal after an append")
	}
	own.Cancel()
	if _, err := a.Append(golden.Fixture("alice"), note("third", 3)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-own.C:
		t.Fatal("signalled after Cancel")
	case <-time.After(50 * time.Millisecond):
	}
	var _ *sublog.Subscription = own
}
