// Command hintdns is the Phase 1 test bed's DNS server for sublog's DNS
// hints: it answers TXT queries from a zone file of "NAME TEXT" lines (one
// TXT record per line, a name may have several; '#' starts a comment),
// re-read on every query so the bed can add hints while it runs. Names it
// does not hold get NXDOMAIN; other types at a held name get an empty
// answer. It serves UDP and TCP on -listen. The hints are signed tokens, so
// this server is trusted for nothing: a resolver verifies what it returns.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/miekg/dns"
)

func main() {
	listen := flag.String("listen", "", "address to serve on, HOST:PORT (UDP and TCP)")
	zone := flag.String("zone", "", "zone file: NAME TEXT lines")
	flag.Parse()
	if *listen == "" || *zone == "" {
		fmt.Fprintln(os.Stderr, "hintdns: -listen and -zone are required")
		os.Exit(2)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		if len(req.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
			w.WriteMsg(m)
			return
		}
		q := req.Question[0]
		recs, err := lookup(*zone, q.Name)
		switch {
		case err != nil:
			m.Rcode = dns.RcodeServerFailure
		case recs == nil:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeTXT:
			for _, txt := range recs {
				m.Answer = append(m.Answer, &dns.TXT{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
					Txt: split(txt)})
			}
		}
		w.WriteMsg(m)
	})
	errs := make(chan error, 2)
	for _, netw := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: *listen, Net: netw, Handler: h}
		go func() { errs <- srv.ListenAndServe() }()
	}
	fmt.Fprintf(os.Stderr, "hintdns: serving %s on %s (udp, tcp)\n", *zone, *listen)
	fmt.Fprintln(os.Stderr, "hintdns:", <-errs)
	os.Exit(1)
}

// lookup returns the TXT texts at name (nil when the zone has no such name).
func lookup(zone, name string) ([]string, error) {
	f, err := os.Open(zone)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		n, txt, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && strings.EqualFold(dns.Fqdn(n), name) {
			out = append(out, strings.TrimSpace(txt))
		}
	}
	return out, sc.Err()
}

// split cuts a text into the at most 255-byte strings a TXT record holds.
func split(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}
