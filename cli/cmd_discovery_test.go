package cli

import (
	"bytes"
	crand "crypto/rand"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/sync/discovery"
)

type run struct {
	code           int
	stdout, stderr string
}

func sublogRun(t *testing.T, dir, stdin string, args ...string) run {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(append([]string{"--home", dir}, args...), strings.NewReader(stdin), &out, &errb, func(string) string { return "" })
	return run{code, out.String(), errb.String()}
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
