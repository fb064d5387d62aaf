package discovery

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sublog/sublog/log/key"
)

// The interop tests run the pkarr npm package (installed by
// .ci/setup.d/pkarr.sh into testdata/js): an independent implementation of
// the PKARR relay and client.
const jsDir = "testdata/js"

func needJS(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; .ci/setup.d/pkarr.sh needs node and npm")
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "pkarr", "package.json")); err != nil {
		t.Skip("the pkarr npm package is not installed: run .ci/setup.d/pkarr.sh")
	}
	return node
}

// startJSRelay starts the npm package's relay (over a loopback-only DHT)
// and returns its URL; it stops when the test ends.
func startJSRelay(t testing.TB) string {
	node := needJS(t)
	cmd := exec.Command(node, "relay.mjs")
	cmd.Dir = jsDir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	t.Cleanup(func() {
		stdin.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		for sc.Scan() { // the relay logs each request
		}
		done <- cmd.Wait()
	}()
	select {
	case url, ok := <-lines:
		if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") {
			t.Fatalf("JS relay did not start: %q", url)
		}
		return url
	case <-time.After(30 * time.Second):
		t.Fatal("JS relay did not start within 30 s")
	}
	return ""
}

func jsClient(t *testing.T, args ...string) []byte {
	t.Helper()
	node := needJS(t)
	cmd := exec.Command(node, append([]string{"client.mjs"}, args...)...)
	cmd.Dir = jsDir
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node client.mjs %v: %v\n%s", args, err, stderr)
	}
	return out
}

// startProver serves the challenge protocol for sk on loopback.
func startProver(t testing.TB, sk *key.Secret) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ServeProofs(ln, sk)
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// The npm relay accepts sublog's packets and serves them back; the npm
// client reads sublog's records from it.
func TestInteropJSRelayAcceptsSublogPackets(t *testing.T) {
	url := startJSRelay(t)
	ctx := context.Background()
	alice := secret(t, "alice")
	p := newPacket(t, "alice", time.Now(), "127.0.0.1:7000", "peer.example.org:7001")
	c := &RelayClient{}
	if err := c.Put(ctx, url, p); err != nil {
		t.Fatalf("JS relay refused sublog's packet: %v", err)
	}
	var got struct {
		Timestamp uint64   `json:"timestamp"`
		TXT       []string `json:"txt"`
	}
	if err := json.Unmarshal(jsClient(t, "get", url, alice.ID().String()), &got); err != nil {
		t.Fatal(err)
	}
	want := []string{"addr=127.0.0.1:7000", "addr=peer.example.org:7001", "profile=" + profileID("alice").String()}
	if got.Timestamp != p.Timestamp() || strings.Join(got.TXT, " ") != strings.Join(want, " ") {
		t.Fatalf("JS client read %+v, want %v at %d", got, want, p.Timestamp())
	}
	// And back through sublog's client, verified.
	q, err := c.Get(ctx, url, alice.ID())
	if err != nil || q.Timestamp() != p.Timestamp() {
		t.Fatalf("sublog get from JS relay: %v", err)
	}
	// A packet signed by another key is refused by the JS relay too.
	forged := newPacket(t, "mallory", time.Now(), "127.0.0.1:6666")
	forged.id = alice.ID()
	if err := c.Put(ctx, url, forged); err == nil {
		t.Fatal("JS relay accepted a packet signed by another key")
	}
}

// sublog resolves packets the npm client published, through the npm relay
// and through sublog's own relay (which verifies the JS-made packet).
func TestInteropResolveJSPublishedPackets(t *testing.T) {
	jsRelay := startJSRelay(t)
	goRelay := startRelay(t, NewRelay(RelayConfig{}))
	for _, tc := range []struct{ name, relay string }{{"npm relay", jsRelay}, {"sublog relay", goRelay}} {
		t.Run(tc.name, func(t *testing.T) {
			sk := secret(t, "js-"+tc.name)
			addr := startProver(t, sk)
			var put struct {
				Key       string `json:"key"`
				Timestamp uint64 `json:"timestamp"`
			}
			out := jsClient(t, "put", tc.relay, hex.EncodeToString(sk.Seed()), "addr="+addr, "profile="+profileID("js").String())
			if err := json.Unmarshal(out, &put); err != nil || put.Key != sk.ID().String() {
				t.Fatalf("JS put: %s %v", out, err)
			}
			r := &Resolver{Relays: []string{tc.relay}, Prover: &ChallengeProver{}}
			res, err := r.Resolve(context.Background(), sk.ID())
			if err != nil {
				t.Fatalf("resolve: %v\n%+v", err, res.Attempts)
			}
			if res.Addr != addr || res.Source != SourcePKARR || res.Profile != profileID("js").String() {
				t.Fatalf("result %+v", res)
			}
			if ts := res.Attempts[0].Gave.Timestamp; ts.UnixMicro() != int64(put.Timestamp) {
				t.Fatalf("timestamp %v, JS said %d", ts, put.Timestamp)
			}
		})
	}
}
