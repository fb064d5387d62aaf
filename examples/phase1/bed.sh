#!/usr/bin/env bash
# make demo-hosts: the spec pack's Phase 1 demo (section 5) across separate
# hosts. Builds a test bed of Linux network namespaces, one per node, joined
# by veth pairs to a bridge that lives in a namespace of its own (nothing is
# added to the machine's own network, and nothing routes out of the bed):
#
#   signal  PKARR relay (sublog relay) and the DNS hint server (hintdns)
#   relay   data relay (placeholder until the relay role exists)
#   host1   host role, behind a userspace faulty link (faultylink)
#   host2   host role, behind a faulty link
#   owner   service role
#   client  an external client
#
# Each node has its own home and one 'sublog up'. Without root or without
# 'ip netns', the same nodes run as separate processes on 127.0.15.x (said
# clearly at the start). Then the demo's steps run in order (steps/*.sh),
# each check printed as it passes; the first failure prints what it saw and
# exits 1. Everything the bed made is removed on exit, also when
# interrupted; a run that was killed leaves namespaces named sublogbed-*,
# which the next run removes first.
#
# Usage: bed.sh [--short] [--fallback] [--keep]
#   --short     the quick version (run by 'make test'): a milder faulty link
#   --fallback  do not try namespaces; use processes on 127.0.15.x
#   --keep      keep the work directory (homes, logs) for inspection
# Binaries: $SUBLOG, $FAULTYLINK, $HINTDNS (default bin/sublog,
# bin/faultylink, bin/hintdns, as 'make demo-hosts' builds them).
set -euo pipefail
EX=$(cd "$(dirname "$0")/.." && pwd)
PHASE1=$EX/phase1
ROOT=$(cd "$EX/.." && pwd)
abs() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
SUBLOG=$(abs "${SUBLOG:-bin/sublog}")
FAULTYLINK=$(abs "${FAULTYLINK:-bin/faultylink}")
HINTDNS=$(abs "${HINTDNS:-bin/hintdns}")
SHORT=0 FALLBACK=0 KEEP=0
for a in "$@"; do
  case $a in
    --short) SHORT=1 ;;
    --fallback) FALLBACK=1 ;;
    --keep) KEEP=1 ;;
    *) echo "bed.sh: unknown argument $a (--short, --fallback, --keep)" >&2; exit 2 ;;
  esac
done
for b in "$SUBLOG" "$FAULTYLINK" "$HINTDNS"; do
  [ -x "$b" ] || { echo "bed.sh: $b is missing: run 'make demo-hosts' (or set SUBLOG, FAULTYLINK, HINTDNS)" >&2; exit 2; }
done

PREFIX=sublogbed-
NET=${PREFIX}net
NODES=(signal relay host1 host2 owner client)
declare -A NUM=([signal]=10 [relay]=11 [host1]=21 [host2]=22 [owner]=30 [client]=40)
declare -A IP
DOMAIN=hosts.bed.test
PIDS=()
# The processes of the bed, also in a file so that a run killed with -9 is
# cleaned up by the next one (in namespaces, removing them is enough).
PIDFILE=${TMPDIR:-/tmp}/sublogbed.pids
WORKFILE=${TMPDIR:-/tmp}/sublogbed.work
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sublogbed.XXXXXX")
LOCKED=0
MODE=

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
say() { printf '%s\n' "$*"; }

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Stop what this run started (by process ID), politely first.
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ $LOCKED = 1 ]; then
    [ "$MODE" = netns ] && remove_namespaces
    rm -f "$PIDFILE" "$WORKFILE"
  fi
  if [ $KEEP = 1 ]; then say "bed: kept $WORK"; else rm -rf "$WORK"; fi
  exit $rc
}
trap cleanup EXIT
trap 'say "bed: interrupted"; exit 130' INT
trap 'say "bed: terminated"; exit 143' TERM

# remove_namespaces deletes every namespace of the bed (this run's, or a
# killed run's), first ending the processes still inside them.
remove_namespaces() {
  local ns p
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$PREFIX" || true); do
    for p in $(ip netns pids "$ns" 2>/dev/null || true); do kill -KILL "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

# Namespaces, or why not.
try_namespaces() {
  [ $FALLBACK = 1 ] && { WHY="--fallback given"; return 1; }
  [ "$(id -u)" = 0 ] || { WHY="not root"; return 1; }
  command -v ip >/dev/null || { WHY="no 'ip' command (install iproute2)"; return 1; }
  remove_namespaces
  ip netns add "$NET" 2>/dev/null || { WHY="'ip netns add' failed"; return 1; }
  ip -n "$NET" link add br0 type bridge && ip -n "$NET" link set br0 up && ip -n "$NET" link set lo up || { WHY="setting up the namespaces failed"; return 1; }
  local n
  for n in "${NODES[@]}"; do
    local ns=$PREFIX$n
    IP[$n]=10.77.15.${NUM[$n]}
    ip netns add "$ns" || { WHY="setting up the namespaces failed"; return 1; }
    ip -n "$ns" link add eth0 type veth peer name "v-$n" netns "$NET" || { WHY="setting up the namespaces failed"; return 1; }
    ip -n "$NET" link set "v-$n" master br0 up || { WHY="setting up the namespaces failed"; return 1; }
    ip -n "$ns" addr add "${IP[$n]}/24" dev eth0 || { WHY="setting up the namespaces failed"; return 1; }
    ip -n "$ns" link set eth0 up && ip -n "$ns" link set lo up || { WHY="setting up the namespaces failed"; return 1; }
  done
  # The hosts' uplinks are rate limited by the kernel (tbf; these kernels
  # have no netem: delay, jitter, loss and cuts come from faultylink).
  for n in host1 host2; do
    ip netns exec "$PREFIX$n" tc qdisc add dev eth0 root tbf rate 20mbit burst 64kb latency 200ms 2>/dev/null ||
      echo "bed: note: tc tbf unavailable, the hosts' uplinks are not rate limited"
  done
  return 0
}

# One bed at a time on a machine (they share names and addresses): a
# second waits for the first.
# (The bed's processes do not inherit the lock: 9>&- in on and start.)
exec 9>"${TMPDIR:-/tmp}/sublogbed.lock"
if command -v flock >/dev/null && ! flock -w 300 9; then
  echo "bed.sh: another bed still runs after 5 minutes (it holds ${TMPDIR:-/tmp}/sublogbed.lock)" >&2
  exit 1
fi
LOCKED=1
if [ -f "$WORKFILE" ]; then
  old=$(cat "$WORKFILE")
  case $old in "${TMPDIR:-/tmp}"/sublogbed.??????) rm -rf "$old" ;; esac
fi
echo "$WORK" >"$WORKFILE"
# A killed run's processes: ended by their IDs, when they are still the
# bed's programs.
if [ -f "$PIDFILE" ]; then
  for p in $(cat "$PIDFILE"); do
    cmdline=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true)
    if grep -qE "$(basename "$SUBLOG")|$(basename "$FAULTYLINK")|$(basename "$HINTDNS")" <<<"$cmdline"; then
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  rm -f "$PIDFILE"
fi
WHY=
if try_namespaces 2>"$WORK/netns.err"; then
  MODE=netns
  bold "Test bed: ${#NODES[@]} network namespaces (${PREFIX}*) on a bridge, 10.77.15.0/24, no route out"
else
  MODE=loopback
  [ -n "$(ip netns list 2>/dev/null | grep "^$PREFIX" || true)" ] && remove_namespaces
  bold "Test bed: NO network namespaces ($WHY$([ -s "$WORK/netns.err" ] && printf ': %s' "$(head -1 "$WORK/netns.err")")): falling back to separate processes on 127.0.15.x"
  for n in "${NODES[@]}"; do IP[$n]=127.0.15.${NUM[$n]}; done
fi
# The DNS hint server: port 53 in a namespace, an unprivileged port on loopback.
if [ $MODE = netns ]; then DNS=${IP[signal]}:53; else DNS=${IP[signal]}:10053; fi

# on NODE CMD...: run CMD on NODE (in its namespace).
on() {
  local n=$1
  shift
  if [ $MODE = netns ]; then ip netns exec "$PREFIX$n" "$@" 9>&-; else "$@" 9>&-; fi
}
# sl NODE ARGS...: the sublog command of NODE's home.
sl() {
  local n=$1
  shift
  on "$n" "$SUBLOG" --home "$WORK/$n" "$@"
}
# start NODE NAME CMD...: run CMD on NODE in the background, its output in
# $WORK/logs/NODE-NAME.log; the process ID is kept for cleanup.
start() {
  local n=$1 name=$2
  shift 2
  if [ $MODE = netns ]; then
    ip netns exec "$PREFIX$n" "$@" >"$WORK/logs/$n-$name.log" 2>&1 9>&- &
  else
    "$@" >"$WORK/logs/$n-$name.log" 2>&1 9>&- &
  fi
  PIDS+=($!)
  echo $! >>"$PIDFILE"
  eval "PID_${n}_${name}=$!"
}
pidof_() { eval "echo \${PID_$1_$2}"; }
# The address a host's sync listener has inside the node (the faulty link
# in front of it listens on IP:7411).
inner() { if [ $MODE = netns ]; then echo 127.0.0.1:7511; else echo "${IP[$1]}:7511"; fi; }
inner_serve() { if [ $MODE = netns ]; then echo 127.0.0.1:7513; else echo "${IP[$1]}:7513"; fi; }

# Checks. check TEXT CMD...: run CMD; print TEXT as passed, or its output and exit 1.
STEP=0 CHECKS=0
step() {
  STEP=$((STEP + 1))
  printf '\n'
  bold "Step $STEP: $*"
}
OUT=
check() {
  local text=$1
  shift
  if OUT=$("$@" 2>&1); then
    CHECKS=$((CHECKS + 1))
    printf '  \033[32mok\033[0m    %s\n' "$text"
  else
    printf '  \033[31mFAIL\033[0m  %s\n' "$text"
    printf '        %s\n' "$*" >&2
    printf '%s\n' "$OUT" | sed 's/^/        | /' >&2
    say "bed: FAILED at step $STEP: $text (logs: $WORK/logs; --keep keeps them)"
    exit 1
  fi
}
# refuse TEXT CMD...: CMD must fail.
refuse() {
  local text=$1
  shift
  check "$text" negate "$@"
}
negate() { if "$@"; then return 1; fi; return 0; }
# expect PATTERN: the output of the last check matches PATTERN (grep -E),
# else that check fails after all.
expect() {
  # (A here-string, not a pipe: under pipefail, grep -q's early exit would
  # fail the writer with SIGPIPE.)
  grep -Eq -- "$1" <<<"$OUT" && return 0
  printf '  \033[31mFAIL\033[0m  the output above does not match /%s/\n' "$1"
  printf '%s\n' "$OUT" | sed 's/^/        | /' >&2
  say "bed: FAILED at step $STEP (logs: $WORK/logs; --keep keeps them)"
  exit 1
}
# first TEXT: its first line (instead of 'head -1', whose early exit could
# fail a pipe under pipefail).
first() { printf '%s' "${1%%$'\n'*}"; }
pending() { printf '  \033[33mpending\033[0m  %s\n' "$*"; }
# poll SECONDS CMD...: until CMD succeeds.
poll() {
  local until=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -ge "$until" ] && { "$@"; return 1; }
    sleep 0.2
  done
}

mkdir -p "$WORK/logs" "$WORK/oob"
# The faulty links' settings (re-read on SIGHUP; SIGUSR1 cuts, SIGUSR2 heals).
if [ $SHORT = 1 ]; then
  printf 'delay=10ms\njitter=10ms\nloss=5%%\nrto=50ms\n' >"$WORK/link.conf"
else
  printf 'delay=40ms\njitter=20ms\nloss=10%%\nrto=200ms\n' >"$WORK/link.conf"
fi

# Homes and instances.
up() { # up NODE ROLES LISTEN
  local n=$1
  start "$n" up "$SUBLOG" --home "$WORK/$n" up --roles "$2" --listen "$3" --ui ''
}
wait_up() {
  local n=$1 log=$WORK/logs/$1-up.log
  local until=$(($(date +%s) + 30))
  until grep -q 'msg="instance up"' "$log" 2>/dev/null; do
    if ! kill -0 "$(pidof_ "$n" up)" 2>/dev/null || [ "$(date +%s)" -ge "$until" ]; then
      echo "$n's instance did not come up:"
      cat "$log"
      return 1
    fi
    sleep 0.1
  done
}
for n in "${NODES[@]}"; do sl "$n" init >"$WORK/$n.id" 2>/dev/null; done
declare -A ID
for n in "${NODES[@]}"; do ID[$n]=$(cat "$WORK/$n.id"); done
for n in host1 host2; do
  # Hosts answer strangers' handshakes (they see nothing but their own
  # logs), so anyone holding a hint can check a host's identity.
  printf 'sync:\n  open: true\n' >"$WORK/$n/instance.yaml"
done

say "nodes ($MODE):"
for n in "${NODES[@]}"; do printf '  %-7s %-13s %s\n' "$n" "${IP[$n]}" "${ID[$n]}"; done

: >"$WORK/zone"
start signal relay "$SUBLOG" relay --listen "${IP[signal]}:7412"
start signal dns "$HINTDNS" -listen "$DNS" -zone "$WORK/zone"
PKARR=http://${IP[signal]}:7412
up signal signal ''
up relay relay "${IP[relay]}:7411"
up owner service "${IP[owner]}:7411"
up client '' ''
printf '\n'
bold "The bed's other nodes"
check "signal: PKARR relay at $PKARR" poll 10 on owner bash -c "exec 3<>/dev/tcp/${IP[signal]}/7412"
check "signal: DNS hint server at $DNS (hintdns)" poll 10 grep -q 'hintdns: serving' "$WORK/logs/signal-dns.log"
check "signal: instance up (signal role)" wait_up signal
check "relay: instance up (relay role; a placeholder until the data relay exists, issue 19)" wait_up relay
check "owner: instance up (service role) at ${IP[owner]}:7411" wait_up owner
check "client: instance up (no role, no listener)" wait_up client

# The demo: steps/N-*.sh in order. A step that cannot run yet says
# 'pending' with the issue that brings it; the steps after it still run.
for f in "$PHASE1"/steps/[0-9]*.sh; do
  # shellcheck source=/dev/null
  . "$f"
done

printf '\n'
bold "bed: all $CHECKS checks passed ($MODE)"
