// Package ui is the instance's status page: a small web server on a
// loopback address that renders the control API's JSON as HTML (Overview,
// Audit timeline, Topology, Sync progress, one card) and streams its events
// to the page. It reads nothing but the control API, which it is handed as
// an http.Handler (node's /v1 mux), so the page and the command line can
// never disagree. Every request needs the access token: in the link the
// instance prints (?token=...), which sets a cookie, or in that cookie.
// Templates, script and style are embedded: there is no build step, and the
// pages work without JavaScript (the script adds live updates and draws the
// topology).
package ui

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Errors of the status page.
var (
	// ErrNotLoopback: the listen address is not a loopback address.
	ErrNotLoopback = errors.New("ui: the status page listens on loopback addresses only")
	// ErrNoAPI: the server was given no control API.
	ErrNoAPI = errors.New("ui: no control API")
)

// Config is what the instance gives the status page.
type Config struct {
	// Listen is a loopback host:port: 127.0.0.0/8, ::1 or localhost
	// (port 0 picks a free one).
	Listen string
	// API is the control API (paths /v1/...); the page only GETs from it.
	API http.Handler
	// Rand makes the access token (nil: crypto/rand).
	Rand io.Reader
	// Logger (nil: discard). The token never reaches it.
	Logger *slog.Logger
}

// CheckListen refuses an address that is not host:port on a loopback
// address. Host names other than localhost are refused (a name could
// resolve anywhere).
func CheckListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrNotLoopback, addr, err)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%w: %q: the port must be 0..65535", ErrNotLoopback, addr)
	}
	if !loopbackHost(host) {
		return fmt.Errorf("%w: %q (use 127.0.0.1:PORT or [::1]:PORT)", ErrNotLoopback, addr)
	}
	return nil
}

func loopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback() && a.Zone() == ""
}

// Server is a running status page.
type Server struct {
	cfg    Config
	log    *slog.Logger
	token  string
	cookie string // the cookie's name (per token, so pages of two instances on one machine do not clash)
	ln     net.Listener
	srv    *http.Server
	h      http.Handler
	pages  *pages
}

// New makes the status page's handler with a fresh token, without
// listening (Start listens).
func New(cfg Config) (*Server, error) {
	if cfg.API == nil {
		return nil, ErrNoAPI
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	var b [32]byte
	if _, err := io.ReadFull(cfg.Rand, b[:]); err != nil {
		return nil, fmt.Errorf("ui: making the access token: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, token: base64.RawURLEncoding.EncodeToString(b[:])}
	sum := sha256.Sum256([]byte("sublog/v1/ui-cookie\x00" + s.token))
	s.cookie = "sublog_ui_" + hex.EncodeToString(sum[:6])
	p, err := loadPages()
	if err != nil {
		return nil, err
	}
	s.pages = p
	s.h = s.routes()
	return s, nil
}

// Start makes the server and serves it on cfg.Listen until ctx ends or
// Close is called.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if err := CheckListen(cfg.Listen); err != nil {
		return nil, err
	}
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	addr := cfg.Listen
	if h, p, _ := net.SplitHostPort(addr); h == "localhost" {
		addr = net.JoinHostPort("127.0.0.1", p)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("ui: listening on %s: %w", cfg.Listen, err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("%w: bound %s", ErrNotLoopback, ln.Addr())
	}
	s.ln = ln
	s.srv = &http.Server{Handler: s.h, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("status page", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		s.Close()
	}()
	return s, nil
}

// Handler is the status page (token checked).
func (s *Server) Handler() http.Handler { return s.h }

// Addr is the address the server listens on ("" before Start).
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL is the page's address without the token (safe to log).
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.Addr() + "/"
}

// Link is the page's address with the access token: give it only to the
// home's owner (`sublog ui` prints it through the control socket).
func (s *Server) Link() string {
	if s.ln == nil {
		return ""
	}
	return s.URL() + "?token=" + s.token
}

// Close stops the server; event streams in flight end.
func (s *Server) Close() error {
	if s.srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		s.srv.Close()
	}
	return nil
}

// authorized checks the token of the query or the cookie, in constant time.
func (s *Server) authorized(r *http.Request) (viaQuery bool, ok bool) {
	want := []byte(s.token)
	if t := r.URL.Query().Get("token"); t != "" {
		return true, subtle.ConstantTimeCompare([]byte(t), want) == 1
	}
	if c, err := r.Cookie(s.cookie); err == nil {
		return false, subtle.ConstantTimeCompare([]byte(c.Value), want) == 1
	}
	return false, false
}

// guard applies to every request: a loopback Host (no DNS rebinding), the
// token, and headers that keep the page to itself.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Cache-Control", "no-store")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if !loopbackHost(strings.Trim(host, "[]")) {
			http.Error(w, "421 misdirected request: the status page answers only to loopback addresses", http.StatusMisdirectedRequest)
			return
		}
		viaQuery, ok := s.authorized(r)
		if !ok {
			hd.Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, "401 unauthorized: open the link 'sublog up' printed ('sublog ui' prints it again)\n")
			return
		}
		if viaQuery {
			// Keep the token out of the address bar and history: set the
			// cookie and send the browser to the same page without it.
			http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
			q := r.URL.Query()
			q.Del("token")
			u := *r.URL
			u.RawQuery = q.Encode()
			http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page("overview"))
	mux.HandleFunc("GET /audit", s.page("audit"))
	mux.HandleFunc("GET /topology", s.page("topology"))
	mux.HandleFunc("GET /sync", s.page("sync"))
	mux.HandleFunc("GET /card/{id}", s.page("card"))
	mux.HandleFunc("GET /static/{file}", serveStatic)
	mux.HandleFunc("GET /api/v1/{path...}", s.proxy)
	return s.guard(mux)
}

// apiPaths are the control API's read-only paths the page may read (never
// /v1/run or /v1/shutdown).
var apiPaths = []string{"status", "state", "audit", "topology", "progress", "sessions", "peers", "heads", "events"}

func apiAllowed(p string) bool {
	if strings.HasPrefix(p, "cards/") && !strings.Contains(p[len("cards/"):], "/") {
		return true
	}
	for _, a := range apiPaths {
		if p == a {
			return true
		}
	}
	return false
}

// proxy answers /api/v1/PATH with the control API's GET /v1/PATH (the
// topology script and the event stream read it).
func (s *Server) proxy(w http.ResponseWriter, r *http.Request) {
	p := r.PathValue("path")
	if !apiAllowed(p) {
		http.Error(w, "404 not a path of the status page's API", http.StatusNotFound)
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = "/v1/" + p
	r2.URL.RawPath = ""
	r2.RequestURI = ""
	r2.Header.Del("Cookie")
	s.cfg.API.ServeHTTP(w, r2)
}
