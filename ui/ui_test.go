package ui

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
)

// Identities and cards of the fake control API below.
const (
	fakeSelf  = "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
	fakeHost  = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	fakeGrant = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	fakeObs   = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	fakeInt   = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
)

var fakeJSON = map[string]string{
	"/v1/status": `{"identity":"` + fakeSelf + `","pid":42,"roles":["host"],"uptime":"1m","cards":3,"logs":2,"sessions":[]}`,
	"/v1/state": `{"desired":[{"owner":"` + fakeSelf + `","service":"web","replicas":2,"version":"1.2.0","heads":[],"changes":1,
   "conflicts":[{"path":"spec.version","winner":{"value":"\"1.2.0\"","actor":"a1","tag":"` + fakeInt + `"},"losers":[{"value":"\"1.1.0\"","actor":"a2","tag":"` + fakeObs + `"}]}]}],
 "observed":[{"host":"` + fakeHost + `","profile":{"card":"` + fakeObs + `","cpu":2000,"memory":1073741824,"disk":0,"gpu":0},
   "grants":[{"card":"` + fakeGrant + `","service":"web","owner":"` + fakeSelf + `","limits":{},"revoked_by":""}],
   "instances":[{"owner":"` + fakeSelf + `","service":"web","peer":"` + fakeSelf + `","state":"running","card":"` + fakeObs + `","time":"2023-11-14T22:13:20Z"}]}],
 "plan":{"at":"2023-11-14T22:13:20Z","actions":[],"unmet":[{"owner":"` + fakeSelf + `","service":"web","missing":1,"reasons":["no other host"]}]},
 "hosts":[{"id":"` + fakeSelf + `","self":true,"roles":["host"],"live":true,"cards":1},{"id":"` + fakeHost + `","roles":[],"live":true,"cards":2}]}`,
	"/v1/audit": `{"summary":{"cards":3,"logs":2,"kinds":{"intent":1,"grant":1,"observe":1}},
 "timeline":[{"time":"2023-11-14T22:13:20Z","author":"` + fakeSelf + `","seq":1,"kind":"intent","id":"` + fakeInt + `"},
  {"time":"2023-11-14T22:13:21Z","author":"` + fakeHost + `","seq":1,"kind":"grant","id":"` + fakeGrant + `"},
  {"time":"2023-11-14T22:13:22Z","author":"` + fakeHost + `","seq":2,"kind":"observe","id":"` + fakeObs + `"}],
 "decisions":[{"card":"` + fakeInt + `","kind":"intent","verdict":"applied","reason":"ok"},{"card":"` + fakeGrant + `","kind":"grant","verdict":"live","reason":"consent"},{"card":"` + fakeObs + `","kind":"observe","verdict":"live","reason":"latest"}],
 "about":[{"service":"web","owner":"` + fakeSelf + `"},{"service":"web","hosts":["` + fakeHost + `"]},{"service":"web","hosts":["` + fakeHost + `"]}],
 "plan":{"at":"1970-01-01T00:00:00Z","actions":[]},"filter":{"limit":1000},"matched":3}`,
	"/v1/topology": `{"self":"` + fakeSelf + `","nodes":[{"id":"` + fakeSelf + `","role":"self","live":true},{"id":"` + fakeHost + `","role":"peer","live":true}],
 "links":[{"from":"` + fakeSelf + `","to":"` + fakeHost + `","addr":"127.0.0.1:7411","initiator":true,"since":"2023-11-14T22:13:20Z","last_round":"2023-11-14T22:13:22Z","rounds":3,"bytes_in":2048,"bytes_out":1024}],"relays":[]}`,
	"/v1/progress": `{"sessions":[{"peer":"` + fakeHost + `","addr":"127.0.0.1:7411","since":"2023-11-14T22:13:20Z","rounds":3,"received":2,"sent":1,"bytes_in":2048,"bytes_out":1024,"cards_to_go":5,"cards_to_send":2}],
 "cards":3,"logs":2,"cards_to_go":5,"blobs":{"held":1,"partial":[],"missing":[{"hash":"` + fakeInt + `","card":"` + fakeObs + `"}]}}`,
	"/v1/cards/" + fakeGrant: `{"id":"` + fakeGrant + `","author":"` + fakeHost + `","seq":1,"kind":"grant","time":"2023-11-14T22:13:21Z","net":"net:sublog","size":200,
 "body":{"service":"web"},"decision":{"card":"` + fakeGrant + `","kind":"grant","verdict":"live","reason":"consent"},"about":{"service":"web","hosts":["` + fakeHost + `"]}}`,
}

// fakeAPI answers GETs from fakeJSON and records every request it gets.
type fakeAPI struct {
	mu   stdsync.Mutex
	seen []string
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen = append(f.seen, r.Method+" "+r.URL.Path)
	f.mu.Unlock()
	if r.URL.Path == "/v1/events" {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "event: status\ndata: {}\n\n")
		return
	}
	b, ok := fakeJSON[r.URL.Path]
	if !ok {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"log: not found"}`)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, b)
}

func (f *fakeAPI) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func newTestServer(t *testing.T) (*Server, *httptest.Server, *fakeAPI) {
	t.Helper()
	api := &fakeAPI{}
	s, err := New(Config{API: api})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts, api
}

func noRedirect(jar http.CookieJar) *http.Client {
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func get(t *testing.T, c *http.Client, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// signedIn is a client holding the page's cookie.
func signedIn(t *testing.T, s *Server, ts *httptest.Server) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := noRedirect(jar)
	code, h, _ := get(t, c, ts.URL+"/?token="+s.token)
	if code != http.StatusSeeOther || h.Get("Location") != "/" {
		t.Fatalf("first visit with the token: %d, Location %q; want 303 to /", code, h.Get("Location"))
	}
	return c
}

func TestCheckListen(t *testing.T) {
	for _, a := range []string{"127.0.0.1:0", "127.0.0.1:8080", "127.1.2.3:0", "[::1]:0", "localhost:0"} {
		if err := CheckListen(a); err != nil {
			t.Errorf("CheckListen(%q) = %v, want nil", a, err)
		}
	}
	for _, a := range []string{"0.0.0.0:0", ":0", ":8080", "[::]:0", "192.168.1.10:80", "10.0.0.1:0", "example.com:80",
		"127.0.0.1", "127.0.0.1:99999", "127.0.0.1:http", "[fe80::1%lo]:0", "", "local host:0", "127.0.0.1:-1"} {
		err := CheckListen(a)
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("CheckListen(%q) = %v, want ErrNotLoopback", a, err)
		}
	}
}

// TestStartRefusesNonLoopback: no listener is opened on a wildcard or
// outside address.
func TestStartRefusesNonLoopback(t *testing.T) {
	for _, a := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0"} {
		s, err := Start(context.Background(), Config{Listen: a, API: &fakeAPI{}})
		if !errors.Is(err, ErrNotLoopback) || s != nil {
			t.Errorf("Start(%q) = %v, %v; want ErrNotLoopback", a, s, err)
		}
	}
	if _, err := New(Config{}); !errors.Is(err, ErrNoAPI) {
		t.Errorf("New without an API: %v", err)
	}
}

// TestStartListensOnLoopback: the link names the loopback address and the
// token; the page answers there.
func TestStartListensOnLoopback(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := Start(ctx, Config{Listen: "127.0.0.1:0", API: &fakeAPI{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	host, _, _ := net.SplitHostPort(s.Addr())
	if host != "127.0.0.1" {
		t.Fatalf("listening on %s", s.Addr())
	}
	u, err := url.Parse(s.Link())
	if err != nil || u.Query().Get("token") != s.token || len(s.token) < 40 {
		t.Fatalf("link %q", s.Link())
	}
	if strings.Contains(s.URL(), s.token) {
		t.Fatalf("URL %q carries the token", s.URL())
	}
	jar, _ := cookiejar.New(nil)
	code, _, body := get(t, &http.Client{Jar: jar}, s.Link())
	if code != http.StatusOK || !strings.Contains(body, fakeSelf) {
		t.Fatalf("following the link: %d\n%s", code, body)
	}
}

// TestNoTokenNoData: without the token (or with a wrong one, in the query
// or the cookie) every path answers 401 and nothing of the instance.
func TestNoTokenNoData(t *testing.T) {
	s, ts, api := newTestServer(t)
	c := noRedirect(nil)
	wrong := strings.Repeat("A", len(s.token))
	paths := []string{"/", "/audit", "/topology", "/sync", "/card/" + fakeGrant, "/api/v1/status", "/api/v1/state",
		"/api/v1/events", "/static/ui.js", "/?token=" + wrong, "/?token=", "/?token=" + s.token[:len(s.token)-1], "/nonexistent"}
	for _, p := range paths {
		code, _, body := get(t, c, ts.URL+p)
		if code != http.StatusUnauthorized {
			t.Errorf("GET %s without the token: %d, want 401", p, code)
		}
		if strings.Contains(body, fakeSelf) || strings.Contains(body, fakeHost) || strings.Contains(body, "<html") {
			t.Errorf("GET %s without the token answered data:\n%s", p, body)
		}
	}
	for _, v := range []string{wrong, "", s.token + "x", "\x00"} {
		req, _ := http.NewRequest("GET", ts.URL+"/api/v1/status", nil)
		req.AddCookie(&http.Cookie{Name: s.cookie, Value: url.QueryEscape(v)})
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("cookie %q: %d, want 401", v, resp.StatusCode)
		}
	}
	if r := api.requests(); len(r) != 0 {
		t.Errorf("unauthorized requests reached the control API: %v", r)
	}
}

// TestTokenSetsCookie: the token in the link sets an HttpOnly cookie and
// sends the browser to the same page without the token; the cookie alone
// then opens every page.
func TestTokenSetsCookie(t *testing.T) {
	s, ts, _ := newTestServer(t)
	jar, _ := cookiejar.New(nil)
	c := noRedirect(jar)
	code, h, _ := get(t, c, ts.URL+"/audit?service=web&token="+s.token)
	if code != http.StatusSeeOther || h.Get("Location") != "/audit?service=web" {
		t.Fatalf("%d, Location %q", code, h.Get("Location"))
	}
	sc := h.Get("Set-Cookie")
	if !strings.Contains(sc, s.cookie+"=") || !strings.Contains(sc, "HttpOnly") || !strings.Contains(sc, "SameSite=Lax") {
		t.Fatalf("Set-Cookie %q", sc)
	}
	code, h, body := get(t, c, ts.URL+"/")
	if code != http.StatusOK || !strings.Contains(body, fakeSelf) {
		t.Fatalf("with the cookie: %d\n%s", code, body)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	if h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("headers %v", h)
	}
	// Another instance's cookie name differs (the token differs).
	s2, _ := New(Config{API: &fakeAPI{}})
	if s2.cookie == s.cookie {
		t.Errorf("two servers share the cookie name %s", s.cookie)
	}
}

// TestHostMustBeLoopback: a request naming another host (DNS rebinding)
// is refused even with the token.
func TestHostMustBeLoopback(t *testing.T) {
	s, ts, _ := newTestServer(t)
	for _, host := range []string{"evil.example", "evil.example:80", "192.168.0.1", "0.0.0.0:1"} {
		req, _ := http.NewRequest("GET", ts.URL+"/?token="+s.token, nil)
		req.Host = host
		resp, err := noRedirect(nil).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMisdirectedRequest || strings.Contains(string(b), fakeSelf) {
			t.Errorf("Host %q: %d %s", host, resp.StatusCode, b)
		}
	}
}

// TestProxyReadOnly: the page's API reaches only the control API's
// read-only paths, by GET.
func TestProxyReadOnly(t *testing.T) {
	s, ts, api := newTestServer(t)
	c := signedIn(t, s, ts)
	for _, p := range []string{"/api/v1/run", "/api/v1/shutdown", "/api/v1/config", "/api/v1/cards/a/b", "/api/v1/../run", "/api/v1/logs/x"} {
		code, _, _ := get(t, c, ts.URL+p)
		if code != http.StatusNotFound && code != http.StatusMovedPermanently && code != http.StatusTemporaryRedirect {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	resp, err := c.Post(ts.URL+"/api/v1/status", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/v1/status: %d, want 405", resp.StatusCode)
	}
	for _, r := range api.requests() {
		if !strings.HasPrefix(r, "GET ") || strings.Contains(r, "run") || strings.Contains(r, "shutdown") || strings.Contains(r, "config") {
			t.Errorf("the control API got %q", r)
		}
	}
	code, h, body := get(t, c, ts.URL+"/api/v1/topology")
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || !strings.Contains(body, fakeHost) {
		t.Errorf("GET /api/v1/topology: %d %s", code, body)
	}
}

// TestPagesWithoutJS: every page carries its data in the HTML itself, with
// the accessibility basics: a language, one h1, labelled form fields,
// table headers, no inline script.
func TestPagesWithoutJS(t *testing.T) {
	s, ts, _ := newTestServer(t)
	c := signedIn(t, s, ts)
	pages := []struct {
		path string
		want []string
	}{
		{"/", []string{`data-host="` + fakeSelf + `"`, `data-host="` + fakeHost + `"`, "(this instance)", `data-service="web"`,
			`data-desired="2"`, `data-observed="1"`, `data-grant="` + fakeGrant + `" data-state="live"`, `data-replica-host="` + fakeHost + `" data-state="running"`,
			"1 more replica(s) wanted", "2 cores", "1.0 GiB", `aria-current="page"`, "Conflicts", "Plan and unmet intent",
			`data-conflict="web spec.version"`, "&#34;1.1.0&#34; lost"}},
		{"/audit", []string{`data-card="` + fakeInt + `"`, `data-card="` + fakeGrant + `"`, `data-card="` + fakeObs + `"`,
			`href="/card/` + fakeGrant + `"`, `<label for="f-service">`, `<label for="f-host">`, `<label for="f-author">`, `data-verdict="applied"`, "3 of 3 matching"}},
		{"/topology", []string{`id="graph"`, `data-node="` + fakeHost + `" data-live="true"`, `data-link="` + fakeHost + `"`, "2.0 KiB", "127.0.0.1:7411"}},
		{"/sync", []string{`data-session="` + fakeHost + `"`, `data-session-to-go="5">5<`, `data-session-to-send="2">2<`,
			`Cards still to come: <span data-cards-to-go="5">5</span>`, `data-blobs-held="1"`, "named by"}},
		{"/card/" + fakeGrant, []string{`data-card="` + fakeGrant + `"`, `data-verdict="live"`, `&#34;service&#34;: &#34;web&#34;`}},
	}
	for _, p := range pages {
		code, h, body := get(t, c, ts.URL+p.path)
		if code != http.StatusOK {
			t.Errorf("GET %s: %d\n%s", p.path, code, body)
			continue
		}
		if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", p.path, ct)
		}
		for _, w := range append(p.want, `<html lang="en">`, `<main id="main"`, `<a class="skip" href="#main">`, `<nav aria-label="Pages">`) {
			if !strings.Contains(body, w) {
				t.Errorf("GET %s: no %q in\n%s", p.path, w, body)
			}
		}
		if n := strings.Count(body, "<h1"); n != 1 {
			t.Errorf("GET %s: %d h1 headings", p.path, n)
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") || strings.Contains(body, " style=") {
			t.Errorf("GET %s: inline script or style", p.path)
		}
		if strings.Contains(body, s.token) {
			t.Errorf("GET %s: the page carries the token", p.path)
		}
		if strings.Contains(body, "not known") {
			t.Errorf("GET %s: a count shown as not known", p.path)
		}
		for _, th := range []string{"<table"} {
			if strings.Count(body, th) != strings.Count(body, "<thead>") {
				t.Errorf("GET %s: a table without header row", p.path)
			}
		}
	}
}

// TestContentPart: ?part=content is the part live updates swap in, not a
// whole page.
func TestContentPart(t *testing.T) {
	s, ts, _ := newTestServer(t)
	c := signedIn(t, s, ts)
	code, _, body := get(t, c, ts.URL+"/audit?part=content")
	if code != http.StatusOK || strings.Contains(body, "<html") || strings.Contains(body, "<h1") || !strings.Contains(body, `data-card="`+fakeObs+`"`) {
		t.Fatalf("%d\n%s", code, body)
	}
}

// TestAPIRefusalShown: a refusal of the control API (an unknown card) is
// shown with its code, not as an empty page.
func TestAPIRefusalShown(t *testing.T) {
	s, ts, _ := newTestServer(t)
	c := signedIn(t, s, ts)
	code, _, body := get(t, c, ts.URL+"/card/sha256:00")
	if code != http.StatusNotFound || !strings.Contains(body, `role="alert"`) || !strings.Contains(body, "not found") {
		t.Fatalf("%d\n%s", code, body)
	}
}

func TestStatic(t *testing.T) {
	s, ts, _ := newTestServer(t)
	c := signedIn(t, s, ts)
	code, h, body := get(t, c, ts.URL+"/static/ui.js")
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/javascript") || !strings.Contains(body, "EventSource") {
		t.Fatalf("%d %v", code, h)
	}
	if code, _, _ := get(t, c, ts.URL+"/static/nope.js"); code != http.StatusNotFound {
		t.Fatalf("missing file: %d", code)
	}
}

// FuzzCheckListen: whatever CheckListen accepts is host:port on a loopback
// address (or localhost) with a port in range; it never panics.
func FuzzCheckListen(f *testing.F) {
	for _, s := range []string{"127.0.0.1:0", "[::1]:80", "localhost:1", "0.0.0.0:0", ":0", "[::ffff:127.0.0.1]:1", "[fe80::1%lo]:0", "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if CheckListen(addr) != nil {
			return
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatalf("accepted %q: %v", addr, err)
		}
		if !loopbackHost(host) || (host != "localhost" && !strings.HasPrefix(host, "127.") && !strings.Contains(host, ":")) {
			t.Fatalf("accepted %q: host %q", addr, host)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			t.Fatalf("accepted %q: port %q", addr, port)
		}
	})
}
