package cli

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/discovery"
)

type discRun struct {
	code           int
	stdout, stderr string
}

func sublogRun(t *testing.T, dir, stdin string, args ...string) discRun {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"--home", dir}, args...), strings.NewReader(stdin), &out, &errb, func(string) string { return "" })
	return discRun{code, out.String(), errb.String()}
}

// discoveryHome creates a home and answers identity proofs for its
// identity on loopback.
func discoveryHome(t *testing.T) (dir string, sk *key.Secret, proveAddr string) {
	t.Helper()
	dir = t.TempDir()
	if r := sublogRun(t, dir, "", "init"); r.code != 0 {
		t.Fatalf("init: %+v", r)
	}
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if sk, err = h.Identity(""); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go discovery.ServeProofs(ln, sk)
	t.Cleanup(func() { ln.Close() })
	return dir, sk, ln.Addr().String()
}

func TestCLITokenAndResolve(t *testing.T) {
	dir, sk, addr := discoveryHome(t)
	r := sublogRun(t, dir, "", "token", "--addr", addr, "--expires", "1h")
	if r.code != 0 || !strings.HasPrefix(r.stdout, discovery.TokenPrefix) {
		t.Fatalf("token: %+v", r)
	}
	tok := strings.TrimSpace(r.stdout)
	if r := sublogRun(t, dir, "", "token", "--qr", "--addr", addr); r.code != 0 || !strings.Contains(r.stdout, "█") {
		t.Fatalf("token --qr: %+v", r)
	}

	// Resolved from a second home that only has the token.
	other := t.TempDir()
	r = sublogRun(t, other, "", "resolve", sk.ID().String(), "--token", tok, "--json")
	if r.code != 0 {
		t.Fatalf("resolve: %+v", r)
	}
	var res discovery.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Addr != addr || res.Source != "token" || res.ID != sk.ID() {
		t.Fatalf("resolve JSON %v: %s", err, r.stdout)
	}

	// An altered token: exit 1, the reason named, no address printed.
	raw := []byte(tok)
	raw[len(raw)-5] = map[bool]byte{true: 'A', false: 'B'}[raw[len(raw)-5] != 'A']
	r = sublogRun(t, other, "", "resolve", sk.ID().String(), "--token", string(raw), "--no-cache")
	if r.code != 1 || !strings.Contains(r.stderr, "sublog: error: discovery: identity not reachable") || strings.Contains(r.stdout, "addr ") {
		t.Fatalf("altered token: %+v", r)
	}
	// A token for another identity does not resolve this one.
	bob, err := key.Generate(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r = sublogRun(t, other, "", "resolve", bob.ID().String(), "--token", tok, "--no-cache", "--json")
	if r.code != 1 || !strings.Contains(r.stdout, "wrong identity") {
		t.Fatalf("wrong identity resolved: %+v", r)
	}

	// Usage errors: exit 2.
	for _, args := range [][]string{
		{"resolve", "not-an-identity"},
		{"resolve"},
		{"token", "--expires", "-1h"},
		{"token", "--addr", "nohost"},
		{"publish"},
		{"relay"},
		{"resolve", sk.ID().String(), "--pkarr", "ftp://x"},
	} {
		if r := sublogRun(t, dir, "", args...); r.code != 2 || !strings.HasPrefix(r.stderr, "sublog: error: ") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	// --profile without a profile card: exit 1 with a hint.
	if r := sublogRun(t, dir, "", "token", "--profile"); r.code != 1 || !strings.Contains(r.stderr, "sublog: hint: append one") {
		t.Fatalf("--profile: %+v", r)
	}
}

func TestCLIPublishAndResolve(t *testing.T) {
	dir, sk, addr := discoveryHome(t)
	relay := discovery.NewRelay(discovery.RelayConfig{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: relay}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String()

	if r := sublogRun(t, dir, "kind: profile\ncpu: 1000\nmemory: 1Gi\ndisk: 1Gi\ngpu: 0\n", "append", "-"); r.code != 0 {
		t.Fatalf("append profile: %+v", r)
	}
	// Dry run: says what would become public, sends nothing.
	r := sublogRun(t, dir, "", "publish", "--pkarr", url, "--addr", addr, "--profile", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "This becomes public") || !strings.Contains(r.stdout, "address    "+addr) ||
		!strings.Contains(r.stdout, "profile    sha256:") || relay.Len() != 0 {
		t.Fatalf("dry run: %+v (relay holds %d)", r, relay.Len())
	}
	r = sublogRun(t, dir, "", "publish", "--pkarr", url, "--addr", addr, "--profile", "--json")
	if r.code != 0 || relay.Len() != 1 || !strings.Contains(r.stdout, `"ok": true`) {
		t.Fatalf("publish: %+v", r)
	}
	other := t.TempDir()
	if r := sublogRun(t, other, "", "init"); r.code != 0 {
		t.Fatal(r)
	}
	r = sublogRun(t, other, "", "resolve", sk.ID().String(), "--pkarr", url)
	if r.code != 0 || !strings.Contains(r.stdout, "addr      "+addr) || !strings.Contains(r.stdout, "source    pkarr") || !strings.Contains(r.stdout, "profile   sha256:") {
		t.Fatalf("resolve: %+v", r)
	}
	// Cached in the home, with its expiry; proved again on use.
	r = sublogRun(t, other, "", "resolve", sk.ID().String(), "--json")
	if r.code != 0 || !strings.Contains(r.stdout, `"source": "cache"`) {
		t.Fatalf("cached resolve: %+v", r)
	}
	// A relay that refuses everything: publish fails with exit 1.
	bad := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 500) })}
	bl, _ := net.Listen("tcp", "127.0.0.1:0")
	go bad.Serve(bl)
	t.Cleanup(func() { bad.Close() })
	if r := sublogRun(t, dir, "", "publish", "--pkarr", "http://"+bl.Addr().String(), "--addr", addr); r.code != 1 || !strings.Contains(r.stdout, "NOT published") {
		t.Fatalf("refusing relay: %+v", r)
	}
}

// syncBuf is a bytes.Buffer safe for one writer and a polling reader.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// `sublog relay` serves the relay API and identity proofs until interrupted.
func TestCLIRelayCommand(t *testing.T) {
	dir, sk, _ := discoveryHome(t)
	var out, errb syncBuf
	done := make(chan int, 1)
	go func() {
		done <- Main([]string{"--home", dir, "relay", "--listen", "127.0.0.1:0", "--prove", "127.0.0.1:0"},
			strings.NewReader(""), &out, &errb, func(string) string { return "" })
	}()
	var relayURL, proveAddr string
	for i := 0; i < 200 && relayURL == ""; i++ {
		time.Sleep(10 * time.Millisecond)
		for _, line := range strings.Split(out.String(), "\n") {
			if u, ok := strings.CutPrefix(line, "relay listening on "); ok {
				relayURL = u
			}
			if _, a, ok := strings.Cut(line, " on "); ok && strings.HasPrefix(line, "answering identity proofs") {
				proveAddr = a
			}
		}
	}
	if relayURL == "" || proveAddr == "" {
		t.Fatalf("relay did not start: %q %q", out.String(), errb.String())
	}
	p, err := discovery.NewPacket(sk, time.Now(), discovery.Record{Addrs: []string{proveAddr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := (&discovery.RelayClient{}).Put(ctx, relayURL, p); err != nil {
		t.Fatal(err)
	}
	res, err := (&discovery.Resolver{Relays: []string{relayURL}, Prover: &discovery.ChallengeProver{}}).Resolve(ctx, sk.ID())
	if err != nil || res.Addr != proveAddr {
		t.Fatalf("resolve through `sublog relay`: %v %+v", err, res)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("relay exited %d: %s", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not stop on SIGINT")
	}
}

// startServe runs `sublog serve` in-process and returns its address and a
// stop function (SIGINT, as a user would).
func startServe(t *testing.T, dir string, args ...string) (string, func()) {
	t.Helper()
	var out, errb syncBuf
	done := make(chan int, 1)
	go func() {
		done <- Main(append([]string{"--home", dir, "serve", "--listen", "127.0.0.1:0"}, args...),
			strings.NewReader(""), &out, &errb, func(string) string { return "" })
	}()
	addr := ""
	for i := 0; i < 300 && addr == ""; i++ {
		time.Sleep(10 * time.Millisecond)
		for _, line := range strings.Split(errb.String(), "\n") {
			if a, ok := strings.CutPrefix(line, "sublog: serving on "); ok {
				addr = a
			}
		}
	}
	if addr == "" {
		t.Fatalf("serve did not start: %q", errb.String())
	}
	return addr, func() {
		syscall.Kill(os.Getpid(), syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("serve did not stop")
		}
	}
}

// Candidates proved by the sync channel handshake of a real `sublog serve`.
func TestCLIResolveProvedBySyncChannel(t *testing.T) {
	host := t.TempDir()
	if r := sublogRun(t, host, "", "init"); r.code != 0 {
		t.Fatal(r)
	}
	hostID := strings.TrimSpace(sublogRun(t, host, "", "id").stdout)
	other := t.TempDir()
	if r := sublogRun(t, other, "", "init"); r.code != 0 {
		t.Fatal(r)
	}

	// An open server answers a throwaway identity: auto and channel resolve.
	addr, stop := startServe(t, host, "--open")
	tok := strings.TrimSpace(sublogRun(t, host, "", "token", "--addr", addr).stdout)
	for _, mode := range []string{"auto", "channel"} {
		r := sublogRun(t, other, "", "resolve", hostID, "--token", tok, "--no-cache", "--prove", mode)
		if r.code != 0 || !strings.Contains(r.stdout, "addr      "+addr) {
			t.Fatalf("--prove %s: %+v", mode, r)
		}
	}
	if r := sublogRun(t, other, "", "resolve", hostID, "--token", tok, "--no-cache", "--prove", "challenge"); r.code != 1 {
		t.Fatalf("challenge against a sync server: %+v", r)
	}
	stop()

	// A server that serves only identities it knows refuses the throwaway
	// (nothing revealed, no proof) and this unknown home's identity too.
	addr, stop = startServe(t, host)
	defer stop()
	tok = strings.TrimSpace(sublogRun(t, host, "", "token", "--addr", addr).stdout)
	for _, mode := range []string{"auto", "channel-self"} {
		r := sublogRun(t, other, "", "resolve", hostID, "--token", tok, "--no-cache", "--prove", mode)
		if r.code != 1 || !strings.Contains(r.stdout, "did not complete the channel handshake") {
			t.Fatalf("--prove %s against a closed server: %+v", mode, r)
		}
	}
	// The host's own home is known to it: channel-self proves.
	if r := sublogRun(t, host, "", "resolve", hostID, "--token", tok, "--no-cache", "--prove", "channel-self"); r.code != 0 {
		t.Fatalf("channel-self as a known identity: %+v", r)
	}
	if r := sublogRun(t, other, "", "resolve", hostID, "--token", tok, "--prove", "bogus"); r.code != 2 {
		t.Fatalf("--prove bogus: %+v", r)
	}
}
