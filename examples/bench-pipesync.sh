#!/usr/bin/env bash
# Pipe sync against TCP for the same work (BENCHMARKS.md, "Sync over pipes").
# Usage: bench-pipesync.sh BIN [CARDS] [RUNS]
# For each case (CARDS cards to move, then nothing to move) and each run:
# fresh copies of two homes that trust each other, then one
#   pipe: a sync --command "BIN --home b sync --stdio"   (the ssh path, minus ssh)
#   tcp:  a sync 127.0.0.1:PORT against 'b serve' started beforehand
# and the wall time of the syncing command. Prints the median of each and
# pipe/tcp, the ratio the target (<= 2x) is judged by, and the physical
# cost the pipe path pays on top of TCP's (whose server is already up): one
# more process that opens and closes a store, measured as the median time
# of 'BIN --home b heads' in the same run.
set -euo pipefail
BIN=${1:-bin/sublog}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
N=${2:-1000}
RUNS=${3:-5}
W=$(mktemp -d "${TMPDIR:-/tmp}/sublog-pipebench.XXXXXX")
SERVE=
trap '[ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null; rm -rf "$W"' EXIT

"$BIN" --home "$W/a0" init >"$W/a.id"
"$BIN" --home "$W/b0" init >"$W/b.id"
"$BIN" --home "$W/a0" trust "$(cat "$W/b.id")"
"$BIN" --home "$W/b0" trust "$(cat "$W/a.id")"
# N cards in a0: appends are one process each, so make them once.
for i in $(seq 1 "$N"); do printf 'kind: note\ntext: card %d of the pipe benchmark\n' "$i"; done >"$W/notes"
i=0
while IFS= read -r l1 && IFS= read -r l2; do
  printf '%s\n%s\n' "$l1" "$l2" | "$BIN" --home "$W/a0" append - >/dev/null
  i=$((i + 1))
done <"$W/notes"

ms() { echo $(( $(date +%s%N) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() { # run CASE MODE: prints the milliseconds of one sync
  local c=$1 mode=$2
  rm -rf "$W/a" "$W/b"
  cp -a "$W/a0" "$W/a"
  cp -a "$W/b0" "$W/b"
  if [ "$c" = nothing ]; then # both already hold the N cards
    "$BIN" --home "$W/a" sync --command "$BIN --home $W/b sync --stdio" >/dev/null 2>&1
  fi
  local t0 t1
  if [ "$mode" = pipe ]; then
    t0=$(ms)
    "$BIN" --home "$W/a" sync --command "$BIN --home $W/b sync --stdio" >"$W/out" 2>"$W/err"
    t1=$(ms)
  else
    local p
    p=$(port)
    "$BIN" --home "$W/b" serve --listen "127.0.0.1:$p" 2>"$W/serve.err" &
    SERVE=$!
    for _ in $(seq 1 200); do grep -q 'serving on' "$W/serve.err" 2>/dev/null && break; sleep 0.05; done
    t0=$(ms)
    "$BIN" --home "$W/a" sync "127.0.0.1:$p" >"$W/out" 2>"$W/err"
    t1=$(ms)
    kill "$SERVE"; wait "$SERVE" 2>/dev/null || true; SERVE=
  fi
  grep -q "received 0 cards in 0 logs, sent $([ "$c" = nothing ] && echo 0 || echo "$N")," "$W/out" || {
    echo "unexpected result ($c $mode): $(cat "$W/out" "$W/err")" >&2; exit 1; }
  echo $((t1 - t0))
}

for _ in $(seq 1 "$RUNS"); do
  s=$(ms); "$BIN" --home "$W/b0" heads >/dev/null; echo $(( $(ms) - s ))
done | median >"$W/open"
echo "a process that opens and closes the store ('heads'): $(cat "$W/open") ms"
for c in cards nothing; do
  for mode in pipe tcp; do
    for _ in $(seq 1 "$RUNS"); do run "$c" "$mode"; done | median >"$W/$c.$mode"
  done
  p=$(cat "$W/$c.pipe") t=$(cat "$W/$c.tcp")
  label=$([ "$c" = cards ] && echo "$N cards" || echo "nothing to send")
  awk -v l="$label" -v p="$p" -v t="$t" 'BEGIN {printf "%-16s pipe %5d ms  tcp %5d ms  pipe/tcp %.2fx\n", l, p, t, p / t}'
done
