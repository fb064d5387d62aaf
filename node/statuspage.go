package node

import (
	"fmt"

	"github.com/sublog/sublog/ui"
)

// UIInfo is GET /v1/ui: where the status page is, with its access token
// (the control socket is readable by the home's user only).
type UIInfo struct {
	Enabled bool   `json:"enabled"`
	URL     string `json:"url,omitempty"`  // without the token
	Link    string `json:"link,omitempty"` // with the token
}

// startUI serves the status page on cfg.UI.Listen (a loopback address;
// "" = off). It reads the control API in-process.
func (n *Node) startUI() error {
	if n.cfg.UI.Listen == "" {
		return nil
	}
	s, err := ui.Start(n.ctx, ui.Config{Listen: n.cfg.UI.Listen, API: n.api, Rand: n.opt.Rand, Logger: n.log.With("part", "ui")})
	if err != nil {
		return fmt.Errorf("node: status page: %w", err)
	}
	n.ui = s
	n.info.UI = s.URL()
	n.info.uiLink = s.Link()
	n.log.Info("status page up", "url", s.URL(), "hint", "'sublog ui' prints the link with its access token")
	return nil
}

func (n *Node) uiInfo() UIInfo {
	if n.ui == nil {
		return UIInfo{}
	}
	return UIInfo{Enabled: true, URL: n.ui.URL(), Link: n.ui.Link()}
}

// UIInfo says where the status page is (Enabled false when it is off).
func (n *Node) UIInfo() UIInfo { return n.uiInfo() }
