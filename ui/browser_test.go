package ui_test

// The acceptance test of the status page: a real instance (with another
// host syncing to it live) and headless Chromium driven over the DevTools
// protocol.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sublog/sublog/cli"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/node"
)

// chromium finds the browser: $CHROMIUM when set (only it), else chromium
// on PATH or /usr/bin/chromium. Missing, the test fails under CI=true and
// skips (saying so) otherwise.
func chromium(t *testing.T) string {
	t.Helper()
	cands := []string{"chromium", "/usr/bin/chromium", "chromium-browser"}
	if c := os.Getenv("CHROMIUM"); c != "" {
		cands = []string{c}
	}
	for _, c := range cands {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no chromium (looked for %v), and CI=true: the browser test must run (.ci/setup.d/chromium.sh installs it: apt-get install -y chromium)", cands)
	}
	t.Skipf("SKIPPED: no chromium (looked for %v; apt-get install -y chromium, or set $CHROMIUM); CI is unset, so the browser test is skipped locally", cands)
	return ""
}

// artifacts is where screenshots go: $SUBLOG_UI_ARTIFACTS, else a
// temporary directory of the test.
func artifacts(t *testing.T) string {
	dir := os.Getenv("SUBLOG_UI_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sublog runs a command line in-process (forwarded to the home's instance
// when one runs, as for a user) and fails the test unless it exits 0.
func sublog(t *testing.T, homeDir, stdin string, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	env := func(k string) string {
		if k == "SUBLOG_HOME" {
			return homeDir
		}
		return ""
	}
	code := cli.Main(append([]string{"--home", homeDir}, args...), strings.NewReader(stdin), &out, &errb, env)
	if code != 0 {
		t.Fatalf("sublog %s: exit %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

// cardID takes the card ID out of `append`'s "AUTHOR@SEQ CARD-ID".
func cardID(t *testing.T, out string) string {
	t.Helper()
	f := strings.Fields(out)
	if len(f) < 2 || !strings.HasPrefix(f[len(f)-1], "sha256:") {
		t.Fatalf("append printed %q", out)
	}
	return f[len(f)-1]
}

func startNode(t *testing.T, dir string, cfg node.Config) *node.Node {
	t.Helper()
	h, err := home.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	lg := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := node.Start(context.Background(), node.Options{Home: h, Config: cfg, Run: cli.RunIn, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

func testConfig() node.Config {
	c := node.Default()
	c.Listen = []string{"127.0.0.1:0"}
	c.Roles = []string{"host"}
	c.Sync.BackoffMin = node.Duration(50 * time.Millisecond)
	c.Sync.BackoffMax = node.Duration(500 * time.Millisecond)
	return c
}

// waitFor polls cond until it holds or the (generous) deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// world is two homes, each with a running instance: alice owns service
// web and is a host; bob is a host that grants web and reports it running.
// Alice's instance syncs live with bob's and serves the status page.
type world struct {
	a, b     *node.Node
	da, db   string
	ida, idb key.ID
	grant    string // bob's grant for web
}

func newWorld(t *testing.T) *world {
	dir := t.TempDir()
	w := &world{da: filepath.Join(dir, "alice"), db: filepath.Join(dir, "bob")}
	var err error
	if w.ida, err = key.ParseID(strings.TrimSpace(sublog(t, w.da, "", "init"))); err != nil {
		t.Fatal(err)
	}
	if w.idb, err = key.ParseID(strings.TrimSpace(sublog(t, w.db, "", "init"))); err != nil {
		t.Fatal(err)
	}
	sublog(t, w.da, "", "trust", w.idb.String())
	sublog(t, w.db, "", "trust", w.ida.String())
	sublog(t, w.da, "kind: profile\ncpu: 2000m\nmemory: 1Gi\ndisk: 10Gi\ngpu: 0\n", "append", "-")
	sublog(t, w.db, "kind: profile\ncpu: 4000m\nmemory: 2Gi\ndisk: 20Gi\ngpu: 0\nlabels: {zone: lab}\n", "append", "-")
	sublog(t, w.da, "kind: intent\nservice: web\nspec:\n  replicas: 1\n  resources: {cpu: 500m, memory: 64Mi}\n  version: 1.0.0\n", "append", "-")
	w.grant = cardID(t, sublog(t, w.db, "kind: grant\nservice: web\nowner: "+w.ida.String()+"\nlimits: {memory: 64Mi}\n", "append", "-"))
	sublog(t, w.db, "kind: observe\npeer: "+w.ida.String()+"\nservice: web\nowner: "+w.ida.String()+"\nstate: running\n", "append", "-")

	cb := testConfig()
	cb.UI.Listen = ""
	w.b = startNode(t, w.db, cb)
	ca := testConfig()
	ca.Sync.Peers = []string{w.idb.String() + "@" + w.b.Info().Listen[0]}
	w.a = startNode(t, w.da, ca)
	// Alice's instance holds bob's log (and bob alice's) over the live session.
	waitFor(t, 60*time.Second, "alice's instance does not hold bob's log", func() bool {
		hb, _ := w.b.Store().Head(w.idb)
		ha, ok := w.a.Store().Head(w.idb)
		return ok && ha.Seq >= hb.Seq
	})
	return w
}

// cardIDs are every card alice's store holds.
func (w *world) cardIDs(t *testing.T) []string {
	var ids []string
	if err := w.a.Store().All(func(c *card.Card) error { ids = append(ids, c.ID().String()); return nil }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

// browser starts headless Chromium (chrome) for the test; it lives until
// the test ends (give each step a deadline of its own).
func browser(t *testing.T, chrome string) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelA)
	bctx, cancelB := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(cancelB)
	// The first run starts the browser; it lives as long as bctx (no
	// timeout on it).
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting %s: %v", chrome, err)
	}
	return bctx
}

// TestBrowserStatusPage: the acceptance test of issue 16. Headless Chromium
// opens the link of an instance with two hosts and a service; the DOM shows
// both hosts, the service's desired and observed state, a timeline entry
// per card and the topology drawn from the control API's JSON; bob revokes
// his grant and the open page shows it revoked without a reload.
// Screenshots are saved in $SUBLOG_UI_ARTIFACTS (or a temporary directory).
func TestBrowserStatusPage(t *testing.T) {
	chrome := chromium(t)
	shots := artifacts(t)
	w := newWorld(t)
	link := w.a.Info().UILink()
	if !strings.HasPrefix(link, "http://127.0.0.1:") || !strings.Contains(link, "?token=") {
		t.Fatalf("link %q", link)
	}
	if got := strings.TrimSpace(sublog(t, w.da, "", "ui")); got != link {
		t.Fatalf("sublog ui printed %q, the instance started with %q", got, link)
	}

	bctx := browser(t, chrome)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluating %s: %v", expr, err)
		}
		return v
	}
	attr := func(sel, name string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
		if err != nil {
			t.Fatalf("attribute %s of %s: %v", name, sel, err)
		}
		return v.Value
	}
	shot := func(name string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(shots, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s", p)
	}
	visible := func(sel string) chromedp.Action[chromedp.Void] { return chromedp.WaitVisible(chromedp.CSS(sel)) }
	base := strings.Split(link, "?")[0]
	hostA := fmt.Sprintf(`[data-host=%q]`, w.ida.String())
	hostB := fmt.Sprintf(`[data-host=%q]`, w.idb.String())
	svc := `article[data-service="web"]`
	grantSel := fmt.Sprintf(`[data-service="web"] [data-grant=%q]`, w.grant)

	// Overview: both hosts, the service's desired and observed state.
	do("opening the link", chromedp.Navigate(link), visible(hostA), visible(hostB))
	if u := eval(`window.location.href`); strings.Contains(u, "token=") {
		t.Errorf("the address bar keeps the token: %s", u)
	}
	desired := attr(svc+` [data-desired]`, "data-desired")
	observed := attr(svc+` [data-observed]`, "data-observed")
	replica := attr(fmt.Sprintf(`%s [data-replica-host=%q]`, svc, w.idb.String()), "data-state")
	grantState := attr(grantSel, "data-state")
	lang := eval(`document.documentElement.lang`)
	if desired != "1" || observed != "1" || replica != "running" || grantState != "live" || lang != "en" {
		t.Fatalf("overview: desired %q observed %q bob's replica %q grant %q lang %q", desired, observed, replica, grantState, lang)
	}
	// Keyboard: the first Tab reaches the skip link, which leads to the content.
	do("pressing Tab", chromedp.KeyEvent("\t"))
	if f := eval(`document.activeElement.className + ' ' + document.activeElement.getAttribute('href')`); f != "skip #main" {
		t.Errorf("the first Tab focuses %q, want the skip link", f)
	}
	if roles := eval(`document.querySelector('` + hostB + ` td').textContent`); roles != "host" {
		t.Errorf("bob's roles shown as %q, want host (published by his instance's profile)", roles)
	}
	shot("overview")

	// Audit timeline: one entry per card alice holds, each linking to its card.
	want := w.cardIDs(t)
	do("opening the audit timeline", chromedp.Navigate(base+"audit"), visible(`table.audit`))
	got := strings.Fields(eval(`Array.from(document.querySelectorAll('table.audit tr[data-card]')).filter(r => r.querySelector('a[href="/card/'+r.dataset.card+'"]')).map(r => r.dataset.card).sort().join(' ')`))
	if !slices.Equal(got, want) {
		t.Fatalf("timeline entries with a card link\n%v\nwant one per card\n%v", got, want)
	}
	shot("audit")
	// Filtered by service (the form, no script): web's intent, grant and observation.
	do("filtering by service", chromedp.SetValue(chromedp.CSS(`#f-service`), "web"), chromedp.Submit(chromedp.CSS(`#f-service`)),
		visible(`#audit-count[data-matched="3"]`))
	if kinds := eval(`Array.from(document.querySelectorAll('table.audit tr[data-card]')).map(r => r.dataset.kind).sort().join(' ')`); kinds != "grant intent observe" {
		t.Errorf("audit?service=web shows %q", kinds)
	}
	// The card page the timeline links to.
	do("following the grant's link", chromedp.Click(chromedp.CSS(fmt.Sprintf(`a[href="/card/%s"]`, w.grant))),
		visible(fmt.Sprintf(`dl[data-card=%q]`, w.grant)))
	if v := attr(`dd[data-verdict]`, "data-verdict"); v != "live" {
		t.Errorf("grant card's verdict %q", v)
	}
	shot("card")

	// Topology: the SVG the script draws from /v1/topology: both
	// identities and the live link between them.
	do("drawing the topology", chromedp.Navigate(base+"topology"), visible(fmt.Sprintf(`#graph svg circle[data-node=%q]`, w.idb.String())))
	if n := eval(`String(document.querySelectorAll('#graph svg circle').length) + ' ' + document.querySelectorAll('#graph svg line[data-link]').length`); n != "2 1" {
		t.Errorf("topology drawing: %s (nodes, links); want 2 1", n)
	}
	shot("topology")

	// Sync progress: the live session with bob.
	do("opening sync progress", chromedp.Navigate(base+"sync"), visible(fmt.Sprintf(`[data-session=%q]`, w.idb.String())))
	// Cards to come, in total and for the session: a number (0 unless a
	// round is moving cards just now).
	if n := eval(`document.querySelector('[data-cards-to-go]').textContent + ' ' + document.querySelector('[data-session-to-go]').textContent`); !regexp.MustCompile(`^[0-9]+ [0-9]+$`).MatchString(n) {
		t.Errorf("cards to come on the sync page: %q, want two numbers", n)
	}
	shot("sync")

	// Live update: bob revokes his grant (through his instance); it reaches
	// alice's instance over the live session and the open page shows it,
	// with no reload (a marker set in the page survives).
	do("opening the overview", chromedp.Navigate(base), visible(grantSel+`[data-state="live"]`),
		visible(`body[data-live="yes"]`)) // the event stream is up
	eval(`window.sublogMarker = 'no reload'`)
	revoked := time.Now()
	revoke := cardID(t, sublog(t, w.db, "", "revoke", "--reason", "need the machine back", w.grant))
	pctx, cancel := context.WithTimeout(bctx, 90*time.Second)
	defer cancel()
	_, err := chromedp.Run(pctx, chromedp.Poll[bool](fmt.Sprintf(`(function(){var g=document.querySelector(%q); return g !== null && g.dataset.state === 'revoked';})()`, grantSel),
		chromedp.WithPollingTimeout(60*time.Second), chromedp.WithPollingInterval(100*time.Millisecond)))
	if err != nil {
		t.Fatalf("the page did not show the revoke: %v", err)
	}
	// Reported, not asserted (the machine is shared): the target is 2 s.
	t.Logf("the page showed the revoke %v after it was written on the other host", time.Since(revoked).Round(time.Millisecond))
	if m := eval(`String(window.sublogMarker)`); m != "no reload" {
		t.Fatalf("the page was reloaded (marker %q)", m)
	}
	if by := attr(grantSel+` a + code + strong + a`, "href"); by != "/card/"+revoke {
		t.Errorf("after the revoke: revoked by %q, want /card/%s", by, revoke)
	}
	shot("overview-revoked")
}

// TestPageMatchesCLI: the control API's views the page renders say what
// the command line says through the same instance: /v1/state is `sublog
// status --json` (plus hosts), /v1/audit's timeline and decisions are
// `sublog replay --audit --json`'s. And the pages, fetched without a
// browser (no JavaScript), carry the same data.
func TestPageMatchesCLI(t *testing.T) {
	w := newWorld(t)
	cl, err := node.Dial(w.da)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var st map[string]json.RawMessage
	if err := cl.Get(ctx, "/state", &st); err != nil {
		t.Fatal(err)
	}
	var cliSt map[string]json.RawMessage
	if err := json.Unmarshal([]byte(sublog(t, w.da, "", "status", "--json")), &cliSt); err != nil {
		t.Fatal(err)
	}
	same := func(what string, a, b json.RawMessage) {
		t.Helper()
		var x, y any
		json.Unmarshal(a, &x)
		json.Unmarshal(b, &y)
		if m, ok := x.(map[string]any); ok {
			delete(m, "at") // the plan's judging time: the second each was asked in
		}
		if m, ok := y.(map[string]any); ok {
			delete(m, "at")
		}
		xa, _ := json.Marshal(x)
		ya, _ := json.Marshal(y)
		if !bytes.Equal(xa, ya) {
			t.Errorf("%s differs:\ncontrol API %s\ncommand line %s", what, xa, ya)
		}
	}
	for _, k := range []string{"desired", "observed", "plan"} {
		same("status "+k, st[k], cliSt[k])
	}
	var au map[string]json.RawMessage
	if err := cl.Get(ctx, "/audit", &au); err != nil {
		t.Fatal(err)
	}
	var cliAu map[string]json.RawMessage
	if err := json.Unmarshal([]byte(sublog(t, w.da, "", "replay", "--audit", "--json")), &cliAu); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"summary", "timeline", "decisions", "plan"} {
		same("audit "+k, au[k], cliAu[k])
	}

	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	page := func(path string) string {
		u := w.a.Info().UILink()
		if path != "" {
			u = strings.Replace(u, "/?", "/"+path+"?", 1)
		}
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	ov := page("")
	for _, s := range []string{`data-host="` + w.ida.String() + `"`, `data-host="` + w.idb.String() + `"`, `data-desired="1"`, `data-observed="1"`,
		`data-grant="` + w.grant + `" data-state="live"`} {
		if !strings.Contains(ov, s) {
			t.Errorf("overview without JavaScript lacks %q", s)
		}
	}
	audit := page("audit")
	for _, id := range w.cardIDs(t) {
		if !strings.Contains(audit, `data-card="`+id+`"`) {
			t.Errorf("audit without JavaScript lacks card %s", id)
		}
	}
	if topo := page("topology"); !strings.Contains(topo, `data-link="`+w.idb.String()+`"`) {
		t.Error("topology without JavaScript lacks the link to bob")
	}
	if sy := page("sync"); !strings.Contains(sy, `data-session="`+w.idb.String()+`"`) || !strings.Contains(sy, `data-cards-to-go="`) {
		t.Error("sync progress without JavaScript lacks the session with bob or the cards to come")
	}
}

// TestUICommand: `sublog ui` without an instance fails (exit 1) with a
// hint; `sublog up --ui` refuses a non-loopback address as a usage error
// (exit 2) before it starts anything.
func TestUICommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "h")
	sublog(t, dir, "", "init")
	run := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := cli.Main(append([]string{"--home", dir}, args...), strings.NewReader(""), &out, &errb, func(string) string { return "" })
		return code, out.String() + errb.String()
	}
	if code, out := run("ui"); code != 1 || !strings.Contains(out, "sublog up") {
		t.Errorf("ui without an instance: exit %d\n%s", code, out)
	}
	for _, a := range []string{"0.0.0.0:0", "192.0.2.1:80", ":0", "example.com:80"} {
		code, out := run("up", "--listen=", "--ui", a)
		if code != 2 || !strings.Contains(out, "loopback") {
			t.Errorf("up --ui %s: exit %d\n%s", a, code, out)
		}
	}
	if _, err := node.Dial(dir); err == nil {
		t.Fatal("an instance runs after refused starts")
	}
}
