#!/usr/bin/env bash
# make demo: two homes from nothing (a laptop and a host), a few cards from
# the YAML files in examples/, verify, and the audit replay.
set -euo pipefail
BIN=${1:-bin/sublog}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
EX=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$EX/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sublog-demo.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
laptop() { "$BIN" --home "$WORK/laptop" "$@"; }
host() { "$BIN" --home "$WORK/host" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Two homes from nothing: a laptop and a host, each with its own identity"
echo "laptop: $(laptop init)"
echo "host:   $(host init)"

step "The host advertises its capability profile ($EX/host-profile.yaml)"
host append "$EX/host-profile.yaml"

step "The laptop writes a note and a service intent"
laptop append "$EX/note.yaml"
laptop append "$EX/intent.yaml"
echo 'kind: note
msg: written from stdin' | laptop append -

step "The laptop's log: a hash chain, each card naming the one before"
laptop log

step "One card in full"
laptop show "$(laptop log --json | sed -n 's/.*"id": "\(sha256:[0-9a-f]*\)".*/\1/p' | head -1)"

step "The two homes trust each other, then sync over a pipe (any byte stream works: ssh, TCP, a file)"
laptop trust "$(host id)"
host trust "$(laptop id)"
laptop sync --command "'$BIN' --home '$WORK/host' sync --stdio"

step "Both homes now hold both logs, and agree on every head"
laptop log --heads
host log --heads

step "Re-verify every card in both homes (signatures, canonical bytes, chains)"
laptop verify
host verify

step "Audit: the timeline of every card across both logs, with author, seq, kind, time and ID"
host replay --audit

step "The laptop holds the counter micro-app's key (its publisher's, never the host's) and signs its bundle card"
install -m 0600 "$EX/counter/peer.key" "$WORK/laptop/keys/counter.key"
laptop bundle publish --as counter "$EX/counter/counter.bundle"
laptop sync --command "'$BIN' --home '$WORK/host' sync --stdio"

step "The host consents to run the counter (WASM) by its identity, under caps, and serves requests"
COUNTER=$(host bundle inspect --json "$EX/counter/counter.bundle" | sed -n 's/.*"peer": "\([a-z0-9]*\)".*/\1/p' | head -1)
GRANT=$(host grant "$COUNTER" --caps req,kv --memory 64Mi --cpu 500ms | awk '{print $2}')
echo "grant $GRANT"
host deploy "$EX/counter/counter.bundle"
for i in 1 2 3; do echo "counter says: $(host call "$COUNTER" inc)"; done
host suspend "$COUNTER"
host resume "$COUNTER"
echo "after suspend and resume: $(host call "$COUNTER" inc)"

step "The host withdraws its consent: the peer stops and cannot be resumed"
host revoke "$GRANT"
host call "$COUNTER" inc || echo "(refused, exit code $?)"

step "Bad input is refused with a clear error and exit code 1, nothing stored"
printf 'kind: note\na: &x 1\nb: *x\n' | laptop append - || echo "(exit code $?)"
laptop log --heads

step "Golden vectors: this build reproduces every pinned byte and refuses every bad one"
"$BIN" golden check "$ROOT/golden/vectors" | tail -1
