package discovery

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNSClient looks up DNS hints: TXT records at _sublog.<domain> whose
// strings are tokens (the same signed text `sublog token` prints), so a
// hint is checked before use exactly like a token handed over by hand. A
// domain may name several identities, one TXT record each.
type DNSClient struct {
	// Server is the resolver to ask, HOST:PORT. Empty means the first
	// nameserver of /etc/resolv.conf.
	Server string
	// Timeout per exchange (default 5 s).
	Timeout time.Duration
}

// HintName is the DNS name queried for a domain: the domain itself if its
// first label is _sublog, else _sublog.<domain>.
func HintName(domain string) string {
	d := dns.Fqdn(strings.ToLower(strings.TrimSpace(domain)))
	if strings.HasPrefix(d, RecordLabel+".") {
		return d
	}
	return RecordLabel + "." + d
}

func (c *DNSClient) server() (string, error) {
	if c != nil && c.Server != "" {
		return c.Server, nil
	}
	conf, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil || len(conf.Servers) == 0 {
		return "", fmt.Errorf("no DNS server configured: %v", err)
	}
	return net.JoinHostPort(conf.Servers[0], conf.Port), nil
}

// TXT returns the TXT strings at name (each record's strings joined), over
// UDP with a retry over TCP when the answer is truncated.
func (c *DNSClient) TXT(ctx context.Context, name string) ([]string, error) {
	if _, ok := dns.IsDomainName(name); !ok {
		return nil, fmt.Errorf("%w: %q is not a DNS name", ErrMalformed, clip(name))
	}
	srv, err := c.server()
	if err != nil {
		return nil, err
	}
	timeout := 5 * time.Second
	if c != nil && c.Timeout > 0 {
		timeout = c.Timeout
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	q.SetEdns0(4096, false)
	cl := &dns.Client{Net: "udp", Timeout: timeout}
	resp, _, err := cl.ExchangeContext(ctx, q, srv)
	if err == nil && resp.Truncated {
		cl.Net = "tcp"
		resp, _, err = cl.ExchangeContext(ctx, q, srv)
	}
	if err != nil {
		return nil, fmt.Errorf("DNS %s at %s: %w", name, srv, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return nil, fmt.Errorf("%w: DNS %s: no such name", ErrNotFound, name)
	default:
		return nil, fmt.Errorf("DNS %s at %s: %s", name, srv, dns.RcodeToString[resp.Rcode])
	}
	var out []string
	for _, rr := range resp.Answer {
		if t, ok := rr.(*dns.TXT); ok && strings.EqualFold(t.Hdr.Name, dns.Fqdn(name)) {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: DNS %s has no TXT records", ErrNotFound, name)
	}
	return out, nil
}

// SplitTXT cuts a token into the 255-byte strings one TXT record holds
// (for zone files: "part1" "part2").
func SplitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}
