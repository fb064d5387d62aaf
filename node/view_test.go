package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/sublog/sublog/blob"
	"github.com/sublog/sublog/log/card"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/projections"
)

var viewNow = time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)

// lockedBuf is a log destination tests read.
type lockedBuf struct {
	mu stdsync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func startAt(t *testing.T, h *home.Home, cfg Config, logs io.Writer) *Node {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	n, err := Start(context.Background(), Options{Home: h, Config: cfg, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Now: func() time.Time { return viewNow }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Shutdown)
	return n
}

// apiGet runs GET path on the node's control API in-process.
func apiGet(t *testing.T, n *Node, path string, v any) int {
	t.Helper()
	rec := httptest.NewRecorder()
	n.api.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	if rec.Code == http.StatusOK && v != nil {
		if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
			t.Fatalf("GET %s: %v\n%s", path, err, rec.Body)
		}
	}
	return rec.Code
}

func appendCard(t *testing.T, n *Node, sk *key.Secret, kind string, body any) *card.Card {
	t.Helper()
	c, err := n.Store().Append(sk, card.Draft{Kind: kind, TS: viewNow.Unix(), Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// hostCards are a host's profile, a grant for owner's service web and an
// observation of it running.
func hostCards(t *testing.T, n *Node, host *key.Secret, owner key.ID) (grant *card.Card) {
	appendCard(t, n, host, card.KindProfile, projections.ProfileBody{CPU: 2000, Memory: 1 << 30, Disk: 1 << 30})
	grant = appendCard(t, n, host, card.KindGrant, projections.GrantBody{Service: "web", Owner: owner.Bytes(),
		Limits: projections.GrantLimits{Memory: 64 << 20}})
	appendCard(t, n, host, card.KindObserve, projections.ObserveBody{Peer: owner.Bytes(), Service: "web", Owner: owner.Bytes(), State: "running"})
	return grant
}

func idBytes(c *card.Card) []byte { id := c.ID(); return id[:] }

// auditJSON is /v1/audit as a client reads it.
type auditJSON struct {
	Timeline []struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
	} `json:"timeline"`
	Decisions []projections.Status `json:"decisions"`
	About     []Subject            `json:"about"`
	Matched   int                  `json:"matched"`
}

// normal re-encodes JSON (so two answers compare as values).
func normal(t *testing.T, b []byte) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(v)
	return string(out)
}

func canonJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFoldedEqualsFullReplay: the views fold the store incrementally (only
// the cards stored since the last answer); what they answer equals a fold
// of every card from scratch, as `sublog status` and `replay --audit` do.
func TestFoldedEqualsFullReplay(t *testing.T) {
	h, sk := newHome(t, filepath.Join(t.TempDir(), "a"))
	n := startAt(t, h, quickConfig(), nil)
	var hosts []*key.Secret
	for i := range 3 {
		hk, err := key.Generate(bytes.NewReader(bytes.Repeat([]byte{byte(i + 1)}, 64)))
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, hk)
	}
	var grants []*card.Card
	for i, hk := range hosts {
		grants = append(grants, hostCards(t, n, hk, sk.ID()))
		var st StateView
		if code := apiGet(t, n, "/v1/state", &st); code != 200 {
			t.Fatalf("step %d: /v1/state %d", i, code)
		}
		if len(st.Observed) != i+1 {
			t.Fatalf("step %d: %d hosts observed", i, len(st.Observed))
		}
	}
	// A revoke after the grant was folded: the view sees it.
	appendCard(t, n, hosts[0], card.KindRevoke, projections.RevokeBody{Card: idBytes(grants[0])})
	appendCard(t, n, sk, card.KindNote, map[string]any{"text": "hello"})

	var st StateView
	var raw, au map[string]json.RawMessage
	if apiGet(t, n, "/v1/state", &st) != 200 || apiGet(t, n, "/v1/state", &raw) != 200 || apiGet(t, n, "/v1/audit", &au) != 200 {
		t.Fatal("views refused")
	}
	ps, tl := projections.New(), projections.NewTimeline()
	if err := n.Store().All(func(c *card.Card) error { tl.Add(c); _ = ps.Add(c); return nil }); err != nil {
		t.Fatal(err)
	}
	var decisions []projections.Status
	for _, e := range tl.Entries() {
		decisions = append(decisions, ps.Explain(e.ID, viewNow))
	}
	for _, c := range []struct {
		name string
		got  json.RawMessage
		want any
	}{
		{"desired", raw["desired"], ps.Desired()},
		{"observed", raw["observed"], ps.Observed()},
		{"plan", raw["plan"], ps.Plan(viewNow)},
		{"timeline", au["timeline"], tl.Entries()},
		{"decisions", au["decisions"], decisions},
		{"summary", au["summary"], tl.Summary()},
	} {
		if g, w := normal(t, c.got), normal(t, []byte(canonJSON(t, c.want))); g != w {
			t.Errorf("%s: incremental\n%s\nfull replay\n%s", c.name, g, w)
		}
	}
	revoked := 0
	for _, o := range st.Observed {
		for _, g := range o.Grants {
			if g.RevokedBy != "" {
				revoked++
			}
		}
	}
	if revoked != 1 {
		t.Errorf("%d revoked grants in the view, want 1", revoked)
	}
	if len(st.Hosts) != 4 || !st.Hosts[0].Self || st.Hosts[0].ID != sk.ID() {
		t.Errorf("hosts %+v", st.Hosts)
	}
}

// TestAuditFilter: filters by service, host and author (a prefix of the
// identity), the limit keeps the newest; bad filters are refused with 400.
func TestAuditFilter(t *testing.T) {
	h, sk := newHome(t, filepath.Join(t.TempDir(), "a"))
	n := startAt(t, h, quickConfig(), nil)
	hk, _ := key.Generate(bytes.NewReader(bytes.Repeat([]byte{7}, 64)))
	grant := hostCards(t, n, hk, sk.ID())
	revoke := appendCard(t, n, hk, card.KindRevoke, projections.RevokeBody{Card: idBytes(grant)})
	appendCard(t, n, sk, card.KindNote, map[string]any{"text": "x"})

	var all auditJSON
	apiGet(t, n, "/v1/audit", &all)
	if all.Matched != 5 || len(all.Timeline) != 5 || len(all.Decisions) != 5 || len(all.About) != 5 {
		t.Fatalf("unfiltered: %+v", all)
	}
	var web auditJSON
	apiGet(t, n, "/v1/audit?service=web", &web)
	// The grant, the observation and the revoke of the grant are about web.
	if web.Matched != 3 {
		t.Fatalf("service=web matched %d: %+v", web.Matched, web.Timeline)
	}
	var byRevoke bool
	for _, e := range web.Timeline {
		byRevoke = byRevoke || e.ID == revoke.ID().String()
	}
	if !byRevoke {
		t.Error("the revoke of web's grant is not in web's timeline")
	}
	var host auditJSON
	apiGet(t, n, "/v1/audit?host="+hk.ID().String()[:8], &host)
	if host.Matched != 4 { // profile, grant, observe, revoke
		t.Errorf("host prefix matched %d", host.Matched)
	}
	var author auditJSON
	apiGet(t, n, "/v1/audit?author="+sk.ID().String(), &author)
	if author.Matched != 1 || author.Timeline[0].Kind != card.KindNote {
		t.Errorf("author matched %+v", author.Timeline)
	}
	var one auditJSON
	apiGet(t, n, "/v1/audit?limit=1", &one)
	if one.Matched != 5 || len(one.Timeline) != 1 || len(one.Decisions) != 1 {
		t.Errorf("limit=1: %+v", one)
	}
	for _, q := range []string{"host=0lv", "author=" + url.QueryEscape("<script>"), "host=" + strings.Repeat("y", 53),
		"limit=0", "limit=-1", "limit=abc", "limit=10001", "service=" + strings.Repeat("s", 257)} {
		if code := apiGet(t, n, "/v1/audit?"+q, nil); code != http.StatusBadRequest {
			t.Errorf("audit?%s: %d, want 400", q, code)
		}
	}
}

// TestCardView: one card with its decision; a malformed ID is 400, an
// unknown one 404.
func TestCardView(t *testing.T) {
	h, sk := newHome(t, filepath.Join(t.TempDir(), "a"))
	n := startAt(t, h, quickConfig(), nil)
	g := hostCards(t, n, sk, sk.ID())
	var v struct {
		ID       string             `json:"id"`
		Kind     string             `json:"kind"`
		Body     any                `json:"body"`
		Decision projections.Status `json:"decision"`
		About    Subject            `json:"about"`
	}
	if code := apiGet(t, n, "/v1/cards/"+g.ID().String(), &v); code != 200 {
		t.Fatalf("%d", code)
	}
	if v.ID != g.ID().String() || v.Kind != card.KindGrant || v.Decision.Verdict != "live" || v.About.Service != "web" {
		t.Fatalf("%+v", v)
	}
	body, _ := v.Body.(map[string]any)
	if body["owner"] != strings.ToLower(hexOf(sk.ID().Bytes())) {
		t.Errorf("body %v", v.Body)
	}
	for path, want := range map[string]int{"/v1/cards/sha256:zz": 400, "/v1/cards/nonsense": 400,
		"/v1/cards/sha256:" + strings.Repeat("0", 64): 404} {
		if code := apiGet(t, n, path, nil); code != want {
			t.Errorf("%s: %d, want %d", path, code, want)
		}
	}
}

func hexOf(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// TestUIListenMustBeLoopback: the configuration refuses a status page on
// any address but loopback, from the file and from the struct.
func TestUIListenMustBeLoopback(t *testing.T) {
	if Default().UI.Listen != "127.0.0.1:0" {
		t.Fatalf("default ui.listen %q", Default().UI.Listen)
	}
	for _, a := range []string{"0.0.0.0:0", ":8080", "[::]:0", "192.168.1.2:80", "example.com:80"} {
		c := Default()
		if err := ParseConfig([]byte("ui:\n  listen: \""+a+"\"\n"), &c); !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), "ui.listen") {
			t.Errorf("ui.listen %q: %v", a, err)
		}
	}
	c := Default()
	if err := ParseConfig([]byte("ui:\n  listen: \"\"\n"), &c); err != nil || c.UI.Listen != "" {
		t.Errorf("ui off: %v %q", err, c.UI.Listen)
	}
	c = Default()
	if err := ParseConfig([]byte("ui:\n  port: 80\n"), &c); !errors.Is(err, ErrBadConfig) {
		t.Errorf("unknown ui key: %v", err)
	}
}

// TestStatusPageServed: the instance serves the page on loopback with the
// token in the link only: 401 without it, the page with it, /v1/ui gives
// the link, and the log never carries the token.
func TestStatusPageServed(t *testing.T) {
	h, sk := newHome(t, filepath.Join(t.TempDir(), "a"))
	logs := &lockedBuf{}
	n := startAt(t, h, quickConfig(), logs)
	link := n.Info().UILink()
	u, err := url.Parse(link)
	if err != nil || u.Hostname() != "127.0.0.1" || u.Query().Get("token") == "" {
		t.Fatalf("link %q", link)
	}
	token := u.Query().Get("token")
	var ui UIInfo
	if apiGet(t, n, "/v1/ui", &ui) != 200 || ui.Link != link || !ui.Enabled || strings.Contains(ui.URL, token) {
		t.Fatalf("/v1/ui %+v", ui)
	}
	if strings.Contains(n.Info().UI, token) {
		t.Fatalf("Info.UI %q carries the token", n.Info().UI)
	}
	resp, err := http.Get(n.Info().UI)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || strings.Contains(string(b), sk.ID().String()) {
		t.Fatalf("without the token: %d %s", resp.StatusCode, b)
	}
	jar, _ := cookiejar.New(nil)
	resp, err = (&http.Client{Jar: jar}).Get(link)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), sk.ID().String()) {
		t.Fatalf("with the token: %d %s", resp.StatusCode, b)
	}
	inf, err := ReadInfo(h.Dir)
	if err != nil || inf.UI != n.Info().UI || inf.UILink() != "" {
		t.Fatalf("instance.json: %+v, %v", inf, err)
	}
	b, _ = os.ReadFile(filepath.Join(h.Dir, RunDir, "instance.json"))
	if strings.Contains(string(b), token) {
		t.Fatal("instance.json carries the token")
	}
	n.Shutdown()
	if l := logs.String(); strings.Contains(l, token) || !strings.Contains(l, "status page up") {
		t.Fatalf("log:\n%s", l)
	}
	if _, err := http.Get(n.Info().UI); err == nil {
		t.Fatal("the status page still answers after shutdown")
	}
}

// TestProgressBlobs: a blob a held card names is missing until the home
// holds it.
func TestProgressBlobs(t *testing.T) {
	h, sk := newHome(t, filepath.Join(t.TempDir(), "a"))
	n := startAt(t, h, quickConfig(), nil)
	data := []byte("the bundle's bytes")
	sum := blob.Sum(data)
	c := appendCard(t, n, sk, card.KindObserve, projections.ObserveBody{Peer: sk.ID().Bytes(), Bundle: sum[:], State: "running"})
	var p Progress
	if apiGet(t, n, "/v1/progress", &p) != 200 {
		t.Fatal("progress refused")
	}
	if len(p.Blobs.Missing) != 1 || p.Blobs.Missing[0].Hash != sum.String() || p.Blobs.Missing[0].Card != c.ID().String() || p.Blobs.Held != 0 {
		t.Fatalf("before: %+v", p.Blobs)
	}
	if p.CardsToGo != 0 || p.Cards == 0 {
		t.Fatalf("cards: %+v", p)
	}
	if _, err := n.blobs.Put(data); err != nil {
		t.Fatal(err)
	}
	p = Progress{}
	apiGet(t, n, "/v1/progress", &p)
	if len(p.Blobs.Missing) != 0 || p.Blobs.Held != 1 {
		t.Fatalf("after: %+v", p.Blobs)
	}
}
