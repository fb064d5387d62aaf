package discovery

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// The public-profile request (version 1), answered beside the challenge
// protocol on the same listener, so that a stranger who learned a host's
// identity and profile card ID (from a token or a PKARR packet) can check
// that profile without being known to the host:
//
//	client → server: "SLPROFL1" ‖ card ID (32)
//	server → client: 0x00 ‖ length (4, BE) ‖ the card's exact bytes
//	             or: 0x01 (not published here)
//
// The server answers only for cards its Profiles function publishes (the
// home's own unsealed profile cards); everything else gets 0x01, so asking
// reveals nothing but "not published". The client trusts nothing it reads:
// the card must hash to the asked ID, verify in full (signature, canonical
// form), be authored by the wanted identity, be a profile and be unsealed.
const profileMagic = "SLPROFL1"

// Answers to a profile request.
const (
	profileHere    = 0
	profileMissing = 1
)

// Profiles gives the exact bytes of a card the server publishes by ID, or
// false.
type Profiles func(id card.ID) ([]byte, bool)

// FetchProfile asks the node at addr for the profile card id of want and
// returns it verified against want: its bytes hash to id, it verifies (with
// caps), want signed it, it is a profile and it is not sealed. A node that
// does not publish it gives ErrNotFound; anything else wrong is ErrProof.
func FetchProfile(ctx context.Context, addr string, want key.ID, id card.ID, caps card.Caps) (*card.Card, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write(append([]byte(profileMagic), id[:]...)); err != nil {
		return nil, fmt.Errorf("%s: %w", addr, err)
	}
	return ReadProfileReply(conn, addr, want, id, caps)
}

// ReadProfileReply reads a profile reply (after the request was written)
// from r and checks the card as CheckProfile does; addr names the server
// in errors. It reads at most 5 bytes plus one card (card.MaxSize): a
// longer announced length is refused before anything is buffered.
func ReadProfileReply(r io.Reader, addr string, want key.ID, id card.ID, caps card.Caps) (*card.Card, error) {
	var status [1]byte
	if _, err := io.ReadFull(r, status[:]); err != nil {
		return nil, fmt.Errorf("%w: %s gave no answer (does it serve public profiles?): %v", ErrProof, addr, err)
	}
	switch status[0] {
	case profileMissing:
		return nil, fmt.Errorf("%w: %s does not publish %s", ErrNotFound, addr, id)
	case profileHere:
	default:
		return nil, fmt.Errorf("%w: %s answered %#x", ErrProof, addr, status[0])
	}
	var n [4]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrProof, addr, err)
	}
	size := binary.BigEndian.Uint32(n[:])
	if size > card.MaxSize {
		return nil, fmt.Errorf("%w: %s offers %d bytes, over a card's %d", ErrTooLarge, addr, size, card.MaxSize)
	}
	b := make([]byte, size)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrProof, addr, err)
	}
	return CheckProfile(b, want, id, caps)
}

// CheckProfile verifies fetched bytes as want's published profile card id.
func CheckProfile(b []byte, want key.ID, id card.ID, caps card.Caps) (*card.Card, error) {
	if card.IDOf(b) != id {
		return nil, fmt.Errorf("%w: the bytes are card %s, not %s", ErrProof, card.IDOf(b), id)
	}
	c, err := card.Decode(b, caps)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProof, err)
	}
	switch {
	case c.Author() != want:
		return nil, fmt.Errorf("%w: card %s is by %s, not %s", ErrWrongIdentity, id, c.Author(), want)
	case c.Kind() != card.KindProfile:
		return nil, fmt.Errorf("%w: card %s is a %s card, not a profile", ErrProof, id, c.Kind())
	case c.PolicyRef() != nil:
		return nil, fmt.Errorf("%w: card %s is sealed", ErrProof, id)
	}
	return c, nil
}

func answerProfile(conn net.Conn, profiles Profiles) {
	var id card.ID
	if _, err := io.ReadFull(conn, id[:]); err != nil {
		return
	}
	var b []byte
	ok := false
	if profiles != nil {
		b, ok = profiles(id)
	}
	if !ok || len(b) > card.MaxSize {
		conn.Write([]byte{profileMissing})
		return
	}
	out := make([]byte, 0, 5+len(b))
	out = append(out, profileHere)
	out = binary.BigEndian.AppendUint32(out, uint32(len(b)))
	conn.Write(append(out, b...))
}
