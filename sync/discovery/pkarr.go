package discovery

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/key"
)

// PKARR sizes (the relay payload is sig ‖ timestamp ‖ DNS packet).
const (
	MaxDNSPacket   = 1000
	payloadHeader  = key.SignatureSize + 8
	MaxPayload     = payloadHeader + MaxDNSPacket // 1072
	RecordLabel    = "_sublog"                    // sublog's records live at _sublog.<key>
	DefaultTTL     = 3600
	maxTimestampUS = math.MaxInt64 // bencode integers are signed 64-bit in every implementation
)

// Record is what sublog publishes under an identity's key: address hints and
// the capability profile card. Each becomes one TXT string at
// _sublog.<z-base-32 key>: "addr=HOST:PORT" or "profile=sha256:<hex>".
type Record struct {
	Addrs   []string
	Profile card.ID // zero when absent
	TTL     uint32  // seconds; DefaultTTL when zero
}

// SignedPacket is a verified PKARR signed packet. Values only come from
// NewPacket, SignPacket or ParsePayload, so the signature is always valid for
// the identity it carries.
type SignedPacket struct {
	id     key.ID
	sig    []byte
	ts     uint64 // microseconds since the Unix epoch
	packet []byte
	msg    *dns.Msg
}

// BEP44Signable is the byte string a PKARR (BEP 44 mutable item) signature
// covers: the bencoded dictionary entries seq and v without the enclosing d…e.
func BEP44Signable(ts uint64, v []byte) []byte {
	b := make([]byte, 0, 32+len(v))
	b = append(b, "3:seqi"...)
	b = strconv.AppendUint(b, ts, 10)
	b = append(b, "e1:v"...)
	b = strconv.AppendInt(b, int64(len(v)), 10)
	b = append(b, ':')
	return append(b, v...)
}

// Origin is the DNS name a key's records are relative to: its z-base-32 form.
func Origin(id key.ID) string { return id.String() + "." }

// NewPacket builds the DNS packet for r and signs it with timestamp at.
func NewPacket(sk *key.Secret, at time.Time, r Record) (*SignedPacket, error) {
	if err := checkAddrs(r.Addrs); err != nil {
		return nil, err
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	name := RecordLabel + "." + Origin(sk.ID())
	m := new(dns.Msg)
	m.Response = true
	m.Authoritative = true
	txt := func(s string) dns.RR {
		return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: []string{s}}
	}
	for _, a := range r.Addrs {
		m.Answer = append(m.Answer, txt("addr="+a))
	}
	if !r.Profile.IsZero() {
		m.Answer = append(m.Answer, txt("profile="+r.Profile.String()))
	}
	m.Compress = true
	packet, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("%w: building DNS packet: %v", ErrMalformed, err)
	}
	us := at.UnixMicro()
	if us <= 0 {
		return nil, fmt.Errorf("%w: timestamp %s before 1970", ErrMalformed, at)
	}
	return SignPacket(sk, uint64(us), packet)
}

// SignPacket signs an encoded DNS packet at timestamp ts (microseconds).
func SignPacket(sk *key.Secret, ts uint64, packet []byte) (*SignedPacket, error) {
	if len(packet) > MaxDNSPacket {
		return nil, fmt.Errorf("%w: DNS packet is %d bytes, limit %d", ErrTooLarge, len(packet), MaxDNSPacket)
	}
	if ts > maxTimestampUS {
		return nil, fmt.Errorf("%w: timestamp %d out of range", ErrMalformed, ts)
	}
	msg := new(dns.Msg)
	if err := msg.Unpack(packet); err != nil {
		return nil, fmt.Errorf("%w: DNS packet: %v", ErrMalformed, err)
	}
	sig := sk.Sign(BEP44Signable(ts, packet))
	return &SignedPacket{id: sk.ID(), sig: sig, ts: ts, packet: append([]byte(nil), packet...), msg: msg}, nil
}

// ParsePayload parses and verifies a relay payload (sig ‖ timestamp ‖ DNS
// packet) for id: sizes first, then the signature under id, then the DNS
// packet. A payload signed by any other key fails with ErrBadSignature.
func ParsePayload(id key.ID, b []byte) (*SignedPacket, error) {
	if len(b) > MaxPayload {
		return nil, fmt.Errorf("%w: payload is %d bytes, limit %d", ErrTooLarge, len(b), MaxPayload)
	}
	if len(b) < payloadHeader {
		return nil, fmt.Errorf("%w: payload is %d bytes, need at least %d", ErrMalformed, len(b), payloadHeader)
	}
	sig, packet := b[:key.SignatureSize], b[payloadHeader:]
	ts := binary.BigEndian.Uint64(b[key.SignatureSize:payloadHeader])
	if ts > maxTimestampUS {
		return nil, fmt.Errorf("%w: timestamp %d out of range", ErrMalformed, ts)
	}
	if err := id.Verify(BEP44Signable(ts, packet), sig); err != nil {
		return nil, fmt.Errorf("%w: packet is not signed by %s", ErrBadSignature, id)
	}
	msg := new(dns.Msg)
	if err := msg.Unpack(packet); err != nil {
		return nil, fmt.Errorf("%w: DNS packet: %v", ErrMalformed, err)
	}
	return &SignedPacket{id: id, sig: append([]byte(nil), sig...), ts: ts,
		packet: append([]byte(nil), packet...), msg: msg}, nil
}

// ID is the key the packet is signed by.
func (p *SignedPacket) ID() key.ID { return p.id }

// Timestamp is the packet's time in microseconds (its BEP 44 seq).
func (p *SignedPacket) Timestamp() uint64 { return p.ts }

// Time is the timestamp as a time.
func (p *SignedPacket) Time() time.Time { return time.UnixMicro(int64(p.ts)).UTC() }

// Packet is the encoded DNS packet.
func (p *SignedPacket) Packet() []byte { return append([]byte(nil), p.packet...) }

// Payload is the relay payload: sig ‖ timestamp (8 bytes BE) ‖ DNS packet.
func (p *SignedPacket) Payload() []byte {
	b := make([]byte, payloadHeader, payloadHeader+len(p.packet))
	copy(b, p.sig)
	binary.BigEndian.PutUint64(b[key.SignatureSize:], p.ts)
	return append(b, p.packet...)
}

// MinTTL is the smallest TTL among the packet's answers (DefaultTTL if none).
func (p *SignedPacket) MinTTL() uint32 {
	min := uint32(0)
	for i, rr := range p.msg.Answer {
		if t := rr.Header().Ttl; i == 0 || t < min {
			min = t
		}
	}
	if len(p.msg.Answer) == 0 {
		return DefaultTTL
	}
	return min
}

// TXT returns the TXT strings (each RR's strings joined) at name relative to
// the packet's origin ("@" or "" for the origin itself).
func (p *SignedPacket) TXT(name string) []string {
	full := Origin(p.id)
	if name != "" && name != "@" {
		full = strings.TrimSuffix(name, ".") + "." + full
	}
	var out []string
	for _, rr := range p.msg.Answer {
		t, ok := rr.(*dns.TXT)
		if ok && strings.EqualFold(t.Hdr.Name, full) {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out
}

// Record reads sublog's records from the packet: every TXT string at
// _sublog.<key> must be "addr=HOST:PORT" or "profile=sha256:<hex>" (other
// keys are ignored, for later versions); a malformed value refuses the packet.
func (p *SignedPacket) Record() (Record, error) {
	r := Record{TTL: p.MinTTL()}
	for _, s := range p.TXT(RecordLabel) {
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return Record{}, fmt.Errorf("%w: TXT %q is not key=value", ErrMalformed, clip(s))
		}
		switch k {
		case "addr":
			if len(r.Addrs) == MaxAddrs {
				return Record{}, fmt.Errorf("%w: more than %d address hints", ErrTooLarge, MaxAddrs)
			}
			if err := CheckAddr(v); err != nil {
				return Record{}, err
			}
			r.Addrs = append(r.Addrs, v)
		case "profile":
			if !r.Profile.IsZero() {
				return Record{}, fmt.Errorf("%w: two profile records", ErrMalformed)
			}
			id, err := card.ParseID(v)
			if err != nil {
				return Record{}, fmt.Errorf("%w: profile record: %v", ErrMalformed, err)
			}
			r.Profile = id
		}
	}
	return r, nil
}
