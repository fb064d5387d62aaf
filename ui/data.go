package ui

// The control API's JSON, as far as the pages show it. These mirror the
// answers of node's /v1 handlers (the page imports nothing of the node: it
// reads the JSON the command line reads).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// apiError is a control API answer other than 200.
type apiError struct {
	Code int
	Msg  string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Msg)
}

// recorder collects one in-process answer of the control API.
type recorder struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }
func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.buf.Write(b)
}
func (r *recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

// maxAnswer bounds one control API answer the page decodes.
const maxAnswer = 64 << 20

// get decodes the control API's GET /v1/PATH?q into v.
func (s *Server) get(ctx context.Context, path string, q url.Values, v any) error {
	u := "http://sublog/v1/" + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	rec := &recorder{h: http.Header{}}
	s.cfg.API.ServeHTTP(rec, req)
	if rec.code == 0 {
		rec.code = http.StatusOK
	}
	if rec.code != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(rec.buf.Bytes(), &e)
		return &apiError{Code: rec.code, Msg: e.Error}
	}
	if rec.buf.Len() > maxAnswer {
		return &apiError{Code: http.StatusInternalServerError, Msg: "answer too large"}
	}
	return json.Unmarshal(rec.buf.Bytes(), v)
}

type session struct {
	Peer      string    `json:"peer"`
	Addr      string    `json:"addr"`
	Initiator bool      `json:"initiator"`
	Since     time.Time `json:"since"`
	Rounds    int       `json:"rounds"`
	Received  int       `json:"received"`
	Sent      int       `json:"sent"`
	Rejected  int       `json:"rejected"`
	BytesIn   int64     `json:"bytes_in"`
	BytesOut  int64     `json:"bytes_out"`
	LastRound time.Time `json:"last_round"`
	// What the session's rounds in flight still expect to receive and send.
	CardsToGo   int `json:"cards_to_go"`
	CardsToSend int `json:"cards_to_send"`
}

type status struct {
	Identity string    `json:"identity"`
	PID      int       `json:"pid"`
	Listen   []string  `json:"listen"`
	Roles    []string  `json:"roles"`
	Started  time.Time `json:"started"`
	Uptime   string    `json:"uptime"`
	Cards    uint64    `json:"cards"`
	Logs     int       `json:"logs"`
	Peers    int       `json:"peers"`
	Sessions []session `json:"sessions"`
}

type write struct {
	Value   any    `json:"value"` // the JSON value of its type (docs/json.md)
	Deleted bool   `json:"deleted"`
	Actor   string `json:"actor"`
	Card    string `json:"card"`
}

type conflict struct {
	Path   string  `json:"path"`
	Winner write   `json:"winner"`
	Losers []write `json:"losers"`
}

type desired struct {
	Owner     string            `json:"owner"`
	Service   string            `json:"service"`
	Removed   bool              `json:"removed"`
	Bundle    string            `json:"bundle"`
	Version   string            `json:"version"`
	Replicas  int64             `json:"replicas"`
	CPU       int64             `json:"cpu"`
	Memory    int64             `json:"memory"`
	Disk      int64             `json:"disk"`
	GPU       int64             `json:"gpu"`
	Hosts     []string          `json:"hosts"`
	Avoid     []string          `json:"avoid"`
	Labels    map[string]string `json:"labels"`
	Problems  []string          `json:"problems"`
	Conflicts []conflict        `json:"conflicts"`
	Pending   []string          `json:"pending"`
	Changes   int               `json:"changes"`
}

type profileView struct {
	Card   string            `json:"card"`
	CPU    uint64            `json:"cpu"`
	Memory uint64            `json:"memory"`
	Disk   uint64            `json:"disk"`
	GPU    uint64            `json:"gpu"`
	Labels map[string]string `json:"labels"`
}

type grantView struct {
	Card      string    `json:"card"`
	Service   string    `json:"service"`
	Owner     string    `json:"owner"`
	Bundle    string    `json:"bundle"`
	Peer      string    `json:"peer"`
	Expires   time.Time `json:"expires"` // zero: none
	RevokedBy string    `json:"revoked_by"`
}

type instance struct {
	Owner   string    `json:"owner"`
	Service string    `json:"service"`
	Peer    string    `json:"peer"`
	State   string    `json:"state"`
	Reason  string    `json:"reason"`
	Card    string    `json:"card"`
	Time    time.Time `json:"time"`
}

type hostView struct {
	Host      string       `json:"host"`
	Profile   *profileView `json:"profile"`
	Grants    []grantView  `json:"grants"`
	Instances []instance   `json:"instances"`
}

type cause struct {
	Card      string    `json:"card"`
	Kind      string    `json:"kind"`
	Author    string    `json:"author"`
	Time      time.Time `json:"time"`
	Authority string    `json:"authority"`
}

type action struct {
	Action  string  `json:"action"`
	Owner   string  `json:"owner"`
	Service string  `json:"service"`
	Host    string  `json:"host"`
	To      string  `json:"to"`
	Reason  string  `json:"reason"`
	Causes  []cause `json:"causes"`
}

type unmet struct {
	Owner   string   `json:"owner"`
	Service string   `json:"service"`
	Missing int64    `json:"missing"`
	Reasons []string `json:"reasons"`
}

type plan struct {
	At      time.Time `json:"at"`
	Actions []action  `json:"actions"`
	Unmet   []unmet   `json:"unmet"`
}

type hostInfo struct {
	ID        string     `json:"id"`
	Self      bool       `json:"self"`
	Profile   string     `json:"profile"`
	Roles     []string   `json:"roles"`
	Live      bool       `json:"live"`
	Since     *time.Time `json:"since"`
	LastRound *time.Time `json:"last_round"`
	LastCard  *time.Time `json:"last_card"`
	Cards     uint64     `json:"cards"`
}

type stateView struct {
	Desired  []desired  `json:"desired"`
	Observed []hostView `json:"observed"`
	Plan     plan       `json:"plan"`
	Hosts    []hostInfo `json:"hosts"`
}

type entry struct {
	Time   time.Time `json:"time"`
	Author string    `json:"author"`
	Seq    uint64    `json:"seq"`
	Kind   string    `json:"kind"`
	ID     string    `json:"id"`
}

type verdict struct {
	Card    string `json:"card"`
	Kind    string `json:"kind"`
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
}

type subject struct {
	Service string   `json:"service"`
	Owner   string   `json:"owner"`
	Hosts   []string `json:"hosts"`
}

type summary struct {
	Cards  int            `json:"cards"`
	Logs   int            `json:"logs"`
	Kinds  map[string]int `json:"kinds"`
	First  time.Time      `json:"first"`
	Last   time.Time      `json:"last"`
	Forked []string       `json:"forked"`
}

type auditFilter struct {
	Service string `json:"service"`
	Host    string `json:"host"`
	Author  string `json:"author"`
	Limit   int    `json:"limit"`
}

type auditView struct {
	Summary   summary     `json:"summary"`
	Timeline  []entry     `json:"timeline"`
	Decisions []verdict   `json:"decisions"`
	About     []subject   `json:"about"`
	Plan      plan        `json:"plan"`
	Filter    auditFilter `json:"filter"`
	Matched   int         `json:"matched"`
}

type topoNode struct {
	ID   string `json:"id"`
	Role string `json:"role"`
	Live bool   `json:"live"`
}

type topoLink struct {
	From      string    `json:"from"`
	To        string    `json:"to"`
	Addr      string    `json:"addr"`
	Initiator bool      `json:"initiator"`
	Via       string    `json:"via"`
	Since     time.Time `json:"since"`
	LastRound time.Time `json:"last_round"`
	Rounds    int       `json:"rounds"`
	Received  int       `json:"received"`
	Sent      int       `json:"sent"`
	BytesIn   int64     `json:"bytes_in"`
	BytesOut  int64     `json:"bytes_out"`
}

type topology struct {
	Self   string     `json:"self"`
	Nodes  []topoNode `json:"nodes"`
	Links  []topoLink `json:"links"`
	Relays []topoNode `json:"relays"`
}

type blobPending struct {
	Hash string `json:"hash"`
	Card string `json:"card"`
	Size int64  `json:"size"`
}

type progress struct {
	Sessions  []session `json:"sessions"`
	Cards     uint64    `json:"cards"`
	Logs      int       `json:"logs"`
	CardsToGo int       `json:"cards_to_go"`
	Blobs     struct {
		Held    int           `json:"held"`
		Partial []blobPending `json:"partial"`
		Missing []blobPending `json:"missing"`
	} `json:"blobs"`
}

type cardView struct {
	ID       string          `json:"id"`
	Author   string          `json:"author"`
	Seq      uint64          `json:"seq"`
	Prev     string          `json:"prev"`
	Kind     string          `json:"kind"`
	Time     time.Time       `json:"time"`
	Net      string          `json:"net"`
	Size     int             `json:"size"`
	Body     json.RawMessage `json:"body"`
	Decision verdict         `json:"decision"`
	About    subject         `json:"about"`
}
