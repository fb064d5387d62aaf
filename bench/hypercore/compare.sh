#!/usr/bin/env bash
# Side by side (issue 17): sublog's BenchmarkSyncCards (100,000 cards over
# loopback TCP) and Hypercore's two-process replication of 100,000 entries of
# the same size as those cards' bodies (61 bytes), interleaved, ROUNDS rounds
# (default 5), medians and their ratio. Then the wire bytes per block at a
# 300-byte body on both sides (BenchmarkWireBytes300; 10,000 entries).
# Run by `make bench-hypercore` after `npm ci` in this directory.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=${ROUNDS:-5}
entries=${ENTRIES:-100000}
body=${BODY:-61}
go=${GO:-go}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== building sync.test"
(cd "$root" && $go test -c -o "$work/sync.test" ./sync)

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# metric NAME: the value before " NAME" on a benchmark line.
metric() { awk -v m="$1" '/^Benchmark/ {for (i = 2; i <= NF; i++) if ($i == m) print $(i-1)}'; }
json() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[process.argv[1]]))' "$1"; }

: >"$work/go"; : >"$work/hc"
for r in $(seq 1 "$rounds"); do
  (cd "$root/sync" && SUBLOG_BENCH_CARDS=$entries "$work/sync.test" -test.run '^$' -test.bench '^BenchmarkSyncCards$' -test.benchtime 1x) >"$work/go.$r"
  g=$(metric cards/s <"$work/go.$r"); raw=$(metric raw-verify/s <"$work/go.$r"); old=$(metric circl-verify/s <"$work/go.$r")
  node "$here/replicate.js" --entries "$entries" --size "$body" >"$work/hc.$r"
  h=$(json entries_per_s <"$work/hc.$r"); hw=$(json wire_per_block <"$work/hc.$r")
  echo "$g" >>"$work/go"; echo "$h" >>"$work/hc"
  printf 'round %d: sublog %.0f cards/s (raw verify %.0f/s, circl %.0f/s), hypercore %.0f entries/s (%.1f wire B/block): %.2fx\n' \
    "$r" "$g" "$raw" "$old" "$h" "$hw" "$(echo "$g / $h" | bc -l)"
done
mg=$(median <"$work/go"); mh=$(median <"$work/hc")
printf 'median of %d rounds: sublog %.0f cards/s, hypercore %s %.0f entries/s: %.2fx (target >= 5x)\n' \
  "$rounds" "$mg" "$(json hypercore <"$work/hc.1")" "$mh" "$(echo "$mg / $mh" | bc -l)"

echo "== wire bytes at a 300-byte body (10,000 entries)"
(cd "$root/sync" && "$work/sync.test" -test.run '^$' -test.bench '^BenchmarkWireBytes300$' -test.benchtime 1x) >"$work/go300"
node "$here/replicate.js" --entries 10000 --size 300 >"$work/hc300"
gw=$(metric wire-B/card <"$work/go300"); hw=$(json wire_per_block <"$work/hc300")
printf 'sublog %.1f wire B/card, hypercore %.1f wire B/block: %.3fx (target <= 1.15x)\n' "$gw" "$hw" "$(echo "$gw / $hw" | bc -l)"
