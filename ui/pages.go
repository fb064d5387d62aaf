package ui

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/*
var staticFS embed.FS

// pageNames are the pages; each is templates/NAME.html over base.html and
// defines "title", "head" (the part that stays) and "content" (the part
// live updates replace, also served alone with ?part=content).
var pageNames = []string{"overview", "audit", "topology", "sync", "card"}

type pages struct{ t map[string]*template.Template }

var funcs = template.FuncMap{
	"short":     shortID,
	"shortcard": shortCard,
	"time":      fmtTime,
	"ptime":     fmtPTime,
	"unix":      fmtUnix,
	"bytes":     fmtBytes,
	"cpu":       fmtCPU,
	"join":      strings.Join,
}

func loadPages() (*pages, error) {
	p := &pages{t: map[string]*template.Template{}}
	for _, n := range pageNames {
		t, err := template.New(n).Funcs(funcs).ParseFS(templateFS, "templates/base.html", "templates/"+n+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: template %s: %w", n, err)
		}
		p.t[n] = t
	}
	return p, nil
}

// nav is one entry of the page's navigation.
type nav struct {
	Href, Label string
	Current     bool
}

// pageData is what every page's template gets.
type pageData struct {
	Page   string
	Title  string
	Nav    []nav
	Status status
	Now    time.Time
	Err    string // the control API's refusal, shown instead of the content
	Data   any
}

func (s *Server) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		d := pageData{Page: name, Now: time.Now().UTC()}
		for _, n := range []nav{{"/", "Overview", false}, {"/audit", "Audit timeline", false}, {"/topology", "Topology", false}, {"/sync", "Sync progress", false}} {
			n.Current = n.Href == "/"+name || (name == "overview" && n.Href == "/")
			d.Nav = append(d.Nav, n)
		}
		code := http.StatusOK
		err := s.get(r.Context(), "status", nil, &d.Status)
		if err == nil {
			d.Data, err = s.load(name, r)
		}
		if err != nil {
			code = http.StatusInternalServerError
			var ae *apiError
			if errors.As(err, &ae) {
				code = ae.Code
			}
			d.Err = err.Error()
		}
		var buf bytes.Buffer
		t := s.pages.t[name]
		which := "page"
		if r.URL.Query().Get("part") == "content" {
			which = "content"
		}
		if err := t.ExecuteTemplate(&buf, which, d); err != nil {
			s.log.Error("status page: rendering", "page", name, "err", err)
			http.Error(w, "500 rendering the page failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(code)
		w.Write(buf.Bytes())
	}
}

// load reads what a page shows from the control API.
func (s *Server) load(name string, r *http.Request) (any, error) {
	ctx := r.Context()
	switch name {
	case "overview":
		var st stateView
		if err := s.get(ctx, "state", nil, &st); err != nil {
			return nil, err
		}
		return overviewOf(st, time.Now()), nil
	case "audit":
		q := url.Values{}
		for _, k := range []string{"service", "host", "author", "limit"} {
			if v := r.URL.Query().Get(k); v != "" {
				q.Set(k, v)
			}
		}
		var a auditView
		if err := s.get(ctx, "audit", q, &a); err != nil {
			return auditPage{Filter: auditFilter{Service: q.Get("service"), Host: q.Get("host"), Author: q.Get("author")}}, err
		}
		return auditOf(a), nil
	case "topology":
		var t topology
		err := s.get(ctx, "topology", nil, &t)
		return t, err
	case "sync":
		var p progress
		err := s.get(ctx, "progress", nil, &p)
		return p, err
	case "card":
		var c cardView
		if err := s.get(ctx, "cards/"+url.PathEscape(r.PathValue("id")), nil, &c); err != nil {
			return nil, err
		}
		var body bytes.Buffer
		if len(c.Body) > 0 && string(c.Body) != "null" {
			json.Indent(&body, c.Body, "", "  ")
		}
		return cardPage{cardView: c, BodyText: body.String()}, nil
	}
	return nil, fmt.Errorf("no page %q", name)
}

type cardPage struct {
	cardView
	BodyText string
}

// overview is the Overview page: hosts, services (desired against
// observed, per replica), the plan, unmet intent and conflicts.
type overview struct {
	Hosts    []hostRow
	Services []serviceRow
	Orphans  []replicaRow // instances reported for services with no intent here
	Plan     plan
}

type hostRow struct {
	hostInfo
	Profile *profileView
	Grants  []grantRow
}

type grantRow struct {
	grantView
	Host  string
	State string // live, revoked, expired
}

type serviceRow struct {
	desired
	Running      int
	ObservedRows []replicaRow
	Grants       []grantRow
	Actions      []action
	Unmet        []unmet
}

// replicaRow is what one host reports about one service. Placement is the
// placement card behind it: empty until reconciliation writes placements
// (issue 14).
type replicaRow struct {
	Host      string
	Owner     string
	Service   string
	State     string
	Reason    string
	Card      string
	TS        int64
	Grant     string
	GrantSt   string
	Placement string
}

func grantState(g grantView, now time.Time) string {
	switch {
	case g.RevokedBy != "":
		return "revoked"
	case !g.Expires.IsZero() && !now.Before(g.Expires):
		return "expired"
	}
	return "live"
}

func overviewOf(st stateView, now time.Time) overview {
	o := overview{Plan: st.Plan}
	obs := map[string]hostView{}
	for _, h := range st.Observed {
		obs[h.Host] = h
	}
	var grants []grantRow
	for _, h := range st.Observed {
		for _, g := range h.Grants {
			grants = append(grants, grantRow{grantView: g, Host: h.Host, State: grantState(g, now)})
		}
	}
	for _, h := range st.Hosts {
		hr := hostRow{hostInfo: h}
		if v, ok := obs[h.ID]; ok {
			hr.Profile = v.Profile
			for _, g := range grants {
				if g.Host == h.ID {
					hr.Grants = append(hr.Grants, g)
				}
			}
		}
		o.Hosts = append(o.Hosts, hr)
	}
	type svcKey struct{ owner, service string }
	known := map[svcKey]bool{}
	for _, d := range st.Desired {
		known[svcKey{d.Owner, d.Service}] = true
		row := serviceRow{desired: d}
		for _, g := range grants {
			if g.Service == d.Service && (g.Owner == "" || g.Owner == d.Owner) {
				row.Grants = append(row.Grants, g)
			}
		}
		for _, h := range st.Observed {
			for _, in := range h.Instances {
				if in.Service != d.Service || (in.Owner != "" && in.Owner != d.Owner) {
					continue
				}
				rr := replicaOf(h.Host, in)
				for _, g := range row.Grants {
					if g.Host == h.Host && (rr.Grant == "" || rr.GrantSt != "live") {
						rr.Grant, rr.GrantSt = g.Card, g.State
					}
				}
				if in.State == "running" || in.State == "deployed" {
					row.Running++
				}
				row.ObservedRows = append(row.ObservedRows, rr)
			}
		}
		for _, a := range st.Plan.Actions {
			if a.Service == d.Service && a.Owner == d.Owner {
				row.Actions = append(row.Actions, a)
			}
		}
		for _, u := range st.Plan.Unmet {
			if u.Service == d.Service && u.Owner == d.Owner {
				row.Unmet = append(row.Unmet, u)
			}
		}
		o.Services = append(o.Services, row)
	}
	for _, h := range st.Observed {
		for _, in := range h.Instances {
			if in.Service != "" && !known[svcKey{in.Owner, in.Service}] {
				o.Orphans = append(o.Orphans, replicaOf(h.Host, in))
			}
		}
	}
	return o
}

func replicaOf(host string, in instance) replicaRow {
	return replicaRow{Host: host, Owner: in.Owner, Service: in.Service, State: in.State, Reason: in.Reason, Card: in.Card, TS: in.Time.Unix()}
}

// auditPage is the Audit timeline page.
type auditPage struct {
	Filter   auditFilter
	Summary  summary
	Matched  int
	Rows     []auditRow
	Services []string // services seen, for the filter's suggestions
	Authors  []string
}

type auditRow struct {
	entry
	Verdict, Reason string
	About           subject
}

func auditOf(a auditView) auditPage {
	p := auditPage{Filter: a.Filter, Summary: a.Summary, Matched: a.Matched}
	svcs, authors := map[string]bool{}, map[string]bool{}
	for i, e := range a.Timeline {
		row := auditRow{entry: e}
		if i < len(a.Decisions) {
			row.Verdict, row.Reason = a.Decisions[i].Verdict, a.Decisions[i].Reason
		}
		if i < len(a.About) {
			row.About = a.About[i]
		}
		if row.About.Service != "" {
			svcs[row.About.Service] = true
		}
		authors[e.Author] = true
		p.Rows = append(p.Rows, row)
	}
	// Newest first: what happened last is what people look for.
	for i, j := 0, len(p.Rows)-1; i < j; i, j = i+1, j-1 {
		p.Rows[i], p.Rows[j] = p.Rows[j], p.Rows[i]
	}
	for s := range svcs {
		p.Services = append(p.Services, s)
	}
	for s := range authors {
		p.Authors = append(p.Authors, s)
	}
	sort.Strings(p.Services)
	sort.Strings(p.Authors)
	return p
}

func serveStatic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	b, err := fs.ReadFile(staticFS, "static/"+path.Base(name))
	if err != nil || name != path.Base(name) {
		http.NotFound(w, r)
		return
	}
	switch path.Ext(name) {
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	}
	w.Write(b)
}

// Formatting for the templates.

func shortID(s string) string {
	if len(s) > 10 && !strings.HasPrefix(s, "sha256:") {
		return s[:10]
	}
	return shortCard(s)
}

func shortCard(s string) string {
	if strings.HasPrefix(s, "sha256:") && len(s) > 19 {
		return s[:19]
	}
	return s
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func fmtPTime(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return fmtTime(*t)
}

func fmtUnix(s int64) string {
	if s == 0 {
		return "-"
	}
	return time.Unix(s, 0).UTC().Format(time.RFC3339)
}

func fmtBytes(v any) string {
	var n float64
	switch t := v.(type) {
	case int64:
		n = float64(t)
	case uint64:
		n = float64(t)
	case int:
		n = float64(t)
	}
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

func fmtCPU(v any) string {
	var m float64
	switch t := v.(type) {
	case int64:
		m = float64(t)
	case uint64:
		m = float64(t)
	}
	if m == 0 {
		return "-"
	}
	return fmt.Sprintf("%g cores", m/1000)
}
