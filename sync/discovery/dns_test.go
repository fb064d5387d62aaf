package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/sublog/sublog/log/key"
)

// startDNS serves TXT records (name → one token per record) on a loopback
// port: dnsmasq, a real DNS server process, when it is installed (CI
// installs it from .ci/setup.d/dnsmasq.sh), else a miekg/dns server in
// process. It returns the server address and which server it is.
func startDNS(t testing.TB, records map[string][]string) (string, string) {
	t.Helper()
	if path, err := exec.LookPath("dnsmasq"); err == nil {
		return startDnsmasq(t, path, records), "dnsmasq"
	}
	if _, err := os.Stat("/usr/sbin/dnsmasq"); err == nil {
		return startDnsmasq(t, "/usr/sbin/dnsmasq", records), "dnsmasq"
	}
	return startMiekgDNS(t, records), "miekg/dns in-process"
}

func freeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func startDnsmasq(t testing.TB, path string, records map[string][]string) string {
	t.Helper()
	var names []string
	for n := range records {
		names = append(names, n)
	}
	sort.Strings(names)
	for attempt := 0; attempt < 5; attempt++ {
		port := freeUDPPort(t)
		args := []string{"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
			"--listen-address=127.0.0.1", "--bind-interfaces", fmt.Sprintf("--port=%d", port),
			"--pid-file=", "--log-facility=-", "--local=/example.org/", "--user=" + currentUser()}
		for _, n := range names {
			for _, v := range records[n] {
				args = append(args, "--txt-record="+strings.TrimSuffix(n, ".")+","+strings.Join(SplitTXT(v), ","))
			}
		}
		cmd := exec.Command(path, args...)
		out := &strings.Builder{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		// Ready when it answers a query.
		c := &dns.Client{Timeout: 200 * time.Millisecond}
		q := new(dns.Msg)
		q.SetQuestion("ready.invalid.", dns.TypeA)
		ok := false
		for i := 0; i < 50; i++ {
			select {
			case <-exited:
				i = 50
				continue
			default:
			}
			if _, _, err := c.Exchange(q, addr); err == nil {
				ok = true
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if ok {
			t.Cleanup(func() {
				cmd.Process.Kill()
				<-exited
			})
			return addr
		}
		cmd.Process.Kill()
		<-exited
		t.Logf("dnsmasq on port %d did not start: %s", port, out)
	}
	t.Fatal("dnsmasq did not start")
	return ""
}

func currentUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if os.Geteuid() == 0 {
		return "root"
	}
	return "nobody"
}

func startMiekgDNS(t testing.TB, records map[string][]string) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		q := req.Question[0]
		vals, ok := records[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		} else if q.Qtype == dns.TypeTXT {
			for _, v := range vals {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: SplitTXT(v)})
			}
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// TestDNSHints runs against dnsmasq when installed, and always against the
// in-process miekg/dns server too, so both paths stay working.
func TestDNSHints(t *testing.T) {
	for _, inProcess := range []bool{false, true} {
		name := "dnsmasq-or-fallback"
		if inProcess {
			name = "miekg-in-process"
		}
		t.Run(name, func(t *testing.T) { testDNSHints(t, inProcess) })
	}
}

func testDNSHints(t *testing.T, inProcess bool) {
	alice, mallory := secret(t, "alice"), secret(t, "mallory")
	aliceAddr := startProver(t, alice)
	impostor := startProver(t, mallory)
	now := time.Now()
	tok := func(sk *key.Secret, addrs ...string) string {
		t.Helper()
		return mustToken(t, sk, now, addrs...).String()
	}
	// example.org lists mallory's own token, a hint of alice's that points at
	// an impostor, then alice's real hint; long.example.org has a token longer
	// than one TXT string.
	many := []string{}
	for i := 0; i < MaxAddrs-1; i++ {
		many = append(many, fmt.Sprintf("host-%d.a-rather-long-domain-name.example.org:%d", i, 7000+i))
	}
	records := map[string][]string{
		"_sublog.example.org.": {
			"v=spf1 -all",
			tok(mallory, impostor),
			issuedToken(t, alice, now.Add(-time.Second), now, impostor).String(),
			issuedToken(t, alice, now.Add(-time.Hour), now, aliceAddr).String(),
		},
		"_sublog.long.example.org.":   {tok(alice, append(many, aliceAddr)...)},
		"_sublog.forged.example.org.": {forgedToken(t, alice, mallory, now, impostor)},
	}
	server, kind := "", "miekg/dns in-process"
	if inProcess {
		server = startMiekgDNS(t, records)
	} else {
		server, kind = startDNS(t, records)
	}
	t.Logf("DNS server: %s at %s", kind, server)
	dc := &DNSClient{Server: server, Timeout: 2 * time.Second}

	txts, err := dc.TXT(context.Background(), "_sublog.long.example.org")
	if err != nil || len(txts) != 1 || len(txts[0]) <= 255 {
		t.Fatalf("long TXT: %v %d", err, len(txts))
	}
	if _, err := dc.TXT(context.Background(), "_sublog.nothing.example.org"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing name: %v", err)
	}

	r := &Resolver{DNSNames: []string{"example.org"}, DNS: dc, Prover: &ChallengeProver{Timeout: 2 * time.Second}}
	res, err := r.Resolve(context.Background(), alice.ID())
	if err != nil {
		t.Fatalf("%v\n%+v", err, res.Attempts)
	}
	if res.Addr != aliceAddr || res.Source != SourceDNS || res.Where != "_sublog.example.org" {
		t.Fatalf("result %+v", res)
	}
	// The hint to the impostor was tried and refused first.
	if len(res.Attempts) != 2 || res.Attempts[0].Outcome != Rejected || res.Attempts[0].Candidates[0].Addr != impostor ||
		!strings.Contains(res.Attempts[0].Candidates[0].Reason, "answered as "+mallory.ID().String()) {
		t.Fatalf("attempts %+v", res.Attempts)
	}

	r.DNSNames = []string{"long.example.org"}
	if res, err := r.Resolve(context.Background(), alice.ID()); err != nil || res.Addr != aliceAddr {
		t.Fatalf("long: %v %+v", err, res)
	}
	r.DNSNames = []string{"forged.example.org", "nothing.example.org"}
	res, err = r.Resolve(context.Background(), alice.ID())
	if !errors.Is(err, ErrUnreachable) || res.Addr != "" || res.Attempts[0].Outcome != Rejected || res.Attempts[1].Outcome != Empty {
		t.Fatalf("forged: %v %+v", err, res)
	}
}
