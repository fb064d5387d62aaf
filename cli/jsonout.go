package cli

// The JSON contract (docs/json.md, docs/schema/*.json): identities in
// z-base-32, card IDs and content hashes as sha256:<hex>, times as RFC 3339
// in UTC, field names in snake_case, and errors under --json as one object
// on stderr with a stable code.

import (
	"errors"
	"time"

	"github.com/sublog/sublog/exec"
	"github.com/sublog/sublog/exec/bundle"
	sublog "github.com/sublog/sublog/log"
	"github.com/sublog/sublog/log/home"
	"github.com/sublog/sublog/names"
	lsync "github.com/sublog/sublog/sync"
)

// jsonError is the object a failing command writes on stderr with --json.
type jsonError struct {
	Code       string   `json:"code"`
	Exit       int      `json:"exit"`
	Error      string   `json:"error"`
	Hint       string   `json:"hint,omitempty"`
	Candidates []string `json:"candidates,omitempty"`
}

// jsonRequested finds --json among the arguments (for errors found before
// the flags are parsed).
func jsonRequested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return false
}

// errorCodes are the stable codes of --json errors, by the sentinel error
// they wrap (the first match wins); docs/json.md lists them.
var errorCodes = []struct {
	err  error
	code string
}{
	{names.ErrAmbiguous, "ambiguous"},
	{names.ErrUnknown, "not_found"},
	{names.ErrMalformed, "bad_argument"},
	{sublog.ErrNotFound, "not_found"},
	{home.ErrNoHome, "no_home"},
	{home.ErrNoID, "no_identity"},
	{home.ErrBadName, "bad_name"},
	{sublog.ErrLocked, "store_locked"},
	{ErrInput, "bad_input"},
	{exec.ErrNoGrant, "no_grant"},
	{exec.ErrExceedsGrant, "exceeds_grant"},
	{exec.ErrUnknownPeer, "unknown_peer"},
	{exec.ErrUnprovenPeer, "unproven_peer"},
	{bundle.ErrHashMismatch, "hash_mismatch"},
	{lsync.ErrPeerRefused, "peer_refused"},
}

// errorCode is the stable code of an error: a known sentinel's, else
// "usage" (exit 2) or "rejected" (exit 1).
func errorCode(err error, exit int) string {
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	if exit == ExitUsage {
		return "usage"
	}
	return "rejected"
}

// jsonTime is a time as the contract writes it: RFC 3339, UTC.
func jsonTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// unixTime is a Unix-seconds time as the contract writes it.
func unixTime(s int64) string { return jsonTime(time.Unix(s, 0)) }
