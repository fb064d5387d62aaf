package ui_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/sublog/sublog/log/key"
	"github.com/sublog/sublog/ui"
)

// TestBrowserSyncProgressRefreshes: the Sync progress page shows the cards
// to come and, while they are not 0, refreshes itself (no event says a
// count moved): the control API (a fake here, which sends no event that
// asks for a refresh) answers 5 to go, then 0, and the open page shows the
// 0 without a reload.
func TestBrowserSyncProgressRefreshes(t *testing.T) {
	chrome := chromium(t)
	sk, err := key.FromSeed(key.DeriveSeed([]byte("ui-test"), "peer"))
	if err != nil {
		t.Fatal(err)
	}
	var toGo atomic.Int32
	toGo.Store(5)
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/events":
			w.Header().Set("Content-Type", "text/event-stream")
			io.WriteString(w, "event: status\ndata: {}\n\n")
		case "/v1/status":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{}`)
		case "/v1/progress":
			n := toGo.Load()
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"sessions":[{"peer":%q,"since":"2023-11-14T22:13:20Z","rounds":1,"cards_to_go":%d,"cards_to_send":0}],
 "cards":3,"logs":1,"cards_to_go":%d,"blobs":{"held":0,"partial":[],"missing":[]}}`, sk.ID().String(), n, n)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"not found"}`)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := ui.Start(ctx, ui.Config{Listen: "127.0.0.1:0", API: api})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	link := s.Link()
	bctx := browser(t, chrome)
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	session := fmt.Sprintf(`[data-session=%q]`, sk.ID().String())
	do("opening sync progress", chromedp.Navigate(link), chromedp.Navigate(strings.Split(link, "?")[0]+"sync"),
		chromedp.WaitVisible(chromedp.CSS(`[data-cards-to-go="5"]`)), chromedp.WaitVisible(chromedp.CSS(session+` [data-session-to-go="5"]`)),
		chromedp.Evaluate[chromedp.Void](`document.body.setAttribute('data-kept', 'yes')`))
	toGo.Store(0)
	do("waiting for the page to show 0 to go", chromedp.WaitVisible(chromedp.CSS(`[data-cards-to-go="0"]`)),
		chromedp.WaitVisible(chromedp.CSS(session+` [data-session-to-go="0"]`)),
		chromedp.WaitVisible(chromedp.CSS(`body[data-kept="yes"][data-updated]`)))
}
