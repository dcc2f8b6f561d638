#!/usr/bin/env bash
# tests/bench/bench-core.sh: the core's benchmark (not a timed test).
#  1. wrk, keep-alive, 64 connections, against GET /_matrix/client/versions on
#     mxstack and, in the same run, against trivial-server (libuv + llhttp,
#     fixed answer): requests/s and p99 for both, and the ratio.
#  2. idle RSS of `mxstack serve` with every module loaded;
#  3. start-up time to /ready on SQLite (fresh data dir, and warm).
# Usage: tests/bench/bench-core.sh [BUILD_DIR]   (default build/)
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "${1:-$SRC/build}" && pwd)"
DUR="${BENCH_DURATION:-10}"
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)"; exit 2; }
make -s -C "$BUILD" tests/bench/trivial-server >/dev/null
TMP="$(mktemp -d)"; trap 'kill $MXPID $TRPID 2>/dev/null; rm -rf "$TMP"' EXIT
MXPORT=18408; TRPORT=18409
cat > "$TMP/c.yaml" <<YAML
server_name: localhost
listeners: [{port: $MXPORT, bind_addresses: ['127.0.0.1'], type: http,
             resources: [{names: [client, federation, media, admin, metrics, health, web, auth]}]}]
database: {name: sqlite3, args: {database: $TMP/hs.db}}
signing_key_path: $TMP/signing.key
log_level: warn
YAML
ms() { date +%s%N | cut -c1-13; }
wait_ready() { while ! curl -fs "http://127.0.0.1:$MXPORT/ready" >/dev/null 2>&1; do sleep 0.002; done; }

t0=$(ms); "$BUILD/mxstack" serve -c "$TMP/c.yaml" & MXPID=$!; wait_ready; t1=$(ms)
kill -TERM $MXPID; wait $MXPID || true
t2=$(ms); "$BUILD/mxstack" serve -c "$TMP/c.yaml" & MXPID=$!; wait_ready; t3=$(ms)
sleep 1
rss_kb=$(awk '/VmRSS/{print $2}' /proc/$MXPID/status)
"$BUILD/tests/bench/trivial-server" $TRPORT & TRPID=$!
sleep 0.3
run_wrk() { wrk -t2 -c64 -d"${DUR}s" --latency "$1" 2>&1; }
out_mx=$(run_wrk "http://127.0.0.1:$MXPORT/_matrix/client/versions")
out_tr=$(run_wrk "http://127.0.0.1:$TRPORT/_matrix/client/versions")
rps() { echo "$1" | awk '/Requests\/sec/{print $2}'; }
p99() { echo "$1" | awk '$1=="99%"{print $2}'; }
printf "start-up to /ready (fresh data dir): %s ms; warm: %s ms\n" $((t1-t0)) $((t3-t2))
printf "idle RSS, all modules loaded: %s kB\n" "$rss_kb"
printf "mxstack  /versions: %s req/s, p99 %s\n" "$(rps "$out_mx")" "$(p99 "$out_mx")"
printf "trivial  server   : %s req/s, p99 %s\n" "$(rps "$out_tr")" "$(p99 "$out_tr")"
awk -v a="$(rps "$out_mx")" -v b="$(rps "$out_tr")" 'BEGIN{printf "ratio: %.1f%%\n", 100*a/b}'
