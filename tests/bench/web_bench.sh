#!/usr/bin/env bash
# tests/bench/web_bench.sh: static serving by the web module against Debian's
# nginx serving the same directory with the same headers (not a timed test).
#
# A fixture shaped like an Element Web release (index.html, a 2 MB hashed
# bundle bundles/<hash>/vendor.js with .gz and .br siblings, config.json) is
# served by `mxstack serve` (web module only) and by nginx on other loopback
# ports: nginx with `worker_processes auto` (= the CPU count) and with one
# worker.  nginx: sendfile on, tcp_nopush on, gzip_static on, ETag on,
# access_log off, the same Cache-Control and security headers; mxstack:
# log_level warn (no access log).  wrk runs against each server in turn,
# the rounds interleaved (mx, nginx, nginx-1w, mx, ...), for
#   - the 2 MB bundle, identity and Accept-Encoding: gzip (the .gz sibling)
#   - index.html, identity and Accept-Encoding: gzip (no sibling: as is)
# and prints requests/s and MB/s of each (best of BENCH_ROUNDS), the CPU
# time the server spent per request (user + system of its processes, the
# least of the rounds: a figure that holds up better than requests/s on a
# busy machine), and mxstack's ratio to both nginx figures, with the load
# average.  With BASE_BUILD_DIR, a second mxstack from that build (e.g. the
# previous commit) runs in the same rounds, for A/B comparisons.
#
# Usage: tests/bench/web_bench.sh [BUILD_DIR [BASE_BUILD_DIR]]   (default build/)
# Env: BENCH_DURATION (s per run, 5), BENCH_ROUNDS (3), BENCH_CONNS (32),
#      BENCH_THREADS (wrk threads, 2), BENCH_KEEP=1 (leave servers running
#      for profiling: prints their pids and ports, waits for Enter).
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="$(cd "${1:-$SRC/build}" && pwd)"
BASE="${2:+$(cd "$2" && pwd)}"
DUR="${BENCH_DURATION:-5}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONNS="${BENCH_CONNS:-32}"
THREADS="${BENCH_THREADS:-2}"
# shellcheck source=../../contrib/deps.sh
. "$SRC/contrib/deps.sh"
command -v wrk >/dev/null || mx_apt_install wrk
[ -x /usr/sbin/nginx ] || mx_apt_install nginx
command -v brotli >/dev/null || mx_apt_install brotli
NGINX=/usr/sbin/nginx

TMP="$(mktemp -d)"
MXPID=""; MXBPID=""; NGPIDS=""
cleanup() {
    [ -n "$MXPID" ] && kill "$MXPID" 2>/dev/null
    [ -n "$MXBPID" ] && kill "$MXBPID" 2>/dev/null
    for p in $NGPIDS; do kill -QUIT "$p" 2>/dev/null; done
    sleep 0.3
    rm -rf "$TMP"
}
trap cleanup EXIT
MXPORT=18430; NGPORT=18431; NG1PORT=18432; MXBPORT=18433

# ------------------------------------------------------------ the release ---
ROOT="$TMP/element-web"
HASH=5f1c3a9e7b2d4f608a1c
mkdir -p "$ROOT/bundles/$HASH" "$ROOT/i18n"
/usr/bin/python3 - "$ROOT" "$HASH" <<'PY'
import random, sys
root, h = sys.argv[1], sys.argv[2]
rnd = random.Random(6)
words = ["function", "return", "const", "this", "props", "state", "null", "undefined",
         "matrix", "room", "event", "client", "await", "async", "export", "default"]
lines, size = [], 0
while size < 2 * 1024 * 1024:   # minified-looking JS, about 4:1 under gzip
    ident = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz_$") for _ in range(rnd.randint(1, 6)))
    s = "var %s=%s(%d,'%s');" % (ident, rnd.choice(words), rnd.randint(0, 99999),
                                 " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 8))))
    lines.append(s); size += len(s)
open(f"{root}/bundles/{h}/vendor.js", "w").write("".join(lines)[: 2 * 1024 * 1024])
index = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Element</title>"
         "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
         f"<link rel=\"preload\" as=\"script\" href=\"bundles/{h}/vendor.js\">"
         + "".join(f"<link rel=\"stylesheet\" href=\"bundles/{h}/theme-{t}.css\">"
                   for t in ("light", "dark", "light-hc", "dark-hc"))
         + "</head><body><noscript>You need to enable JavaScript to run this app.</noscript>"
         f"<section id=\"matrixchat\" style=\"height: 100%;\"></section>"
         f"<script src=\"bundles/{h}/bundle.js\"></script></body></html>\n")
open(f"{root}/index.html", "w").write(index)
open(f"{root}/config.json", "w").write('{"default_server_config": {"m.homeserver": '
                                       '{"base_url": "https://matrix.example.org"}}}\n')
open(f"{root}/version", "w").write("1.11.100\n")
open(f"{root}/i18n/en_EN.json", "w").write('{"Hello": "Hello"}\n')
PY
gzip -9 -k "$ROOT/bundles/$HASH/vendor.js"
brotli -q 9 -k "$ROOT/bundles/$HASH/vendor.js"
chmod -R a+rX "$TMP"   # nginx's workers run as nobody/www-data

# ----------------------------------------------------------------- mxstack ---
mxconf() {   # $1 name, $2 port
    mkdir -p "$TMP/$1"
    cat > "$TMP/$1/mx.yaml" <<YAML
server_name: localhost
listeners: [{port: $2, bind_addresses: ['127.0.0.1'], type: http,
             resources: [{names: [web, health]}]}]
modules: [web]
database: {name: sqlite3, args: {database: $TMP/$1/hs.db}}
signing_key_path: $TMP/$1/signing.key
log_level: warn
web: {element_web_path: $ROOT}
YAML
}
mxconf mx $MXPORT
"$BUILD/mxstack" serve -c "$TMP/mx/mx.yaml" & MXPID=$!
if [ -n "$BASE" ]; then
    mxconf mxb $MXBPORT
    "$BASE/mxstack" serve -c "$TMP/mxb/mx.yaml" & MXBPID=$!
fi

# ------------------------------------------------------------------- nginx ---
SEC="add_header Content-Security-Policy \"frame-ancestors 'self'\";
        add_header X-Frame-Options SAMEORIGIN;
        add_header X-Content-Type-Options nosniff;
        add_header Referrer-Policy no-referrer;
        add_header X-Robots-Tag \"noindex, nofollow, noarchive, noimageindex\";"
ngconf() {   # $1 name, $2 workers, $3 port
    mkdir -p "$TMP/$1"
    cat > "$TMP/$1/nginx.conf" <<NGX
worker_processes $2;
pid $TMP/$1/nginx.pid;
error_log $TMP/$1/error.log warn;
daemon off;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    types { text/javascript js mjs; }
    default_type application/octet-stream;
    charset utf-8;
    charset_types text/html text/css text/javascript application/json;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    access_log off;
    server_tokens off;
    client_body_temp_path $TMP/$1/cb;
    proxy_temp_path $TMP/$1/px;
    fastcgi_temp_path $TMP/$1/fc;
    uwsgi_temp_path $TMP/$1/uw;
    scgi_temp_path $TMP/$1/sc;
    server {
        listen 127.0.0.1:$3;
        root $ROOT;
        gzip_static on;
        gzip_vary on;
        location / {
            $SEC
            add_header Cache-Control no-cache;
            try_files \$uri /index.html;
        }
        location /bundles/ {
            $SEC
            add_header Cache-Control "public, max-age=31536000, immutable";
        }
    }
}
NGX
    "$NGINX" -c "$TMP/$1/nginx.conf" -p "$TMP/$1" & NGPIDS="$NGPIDS $!"
}
ngconf nginx auto $NGPORT
ngconf nginx1 1 $NG1PORT
NGW=$(grep -c ^processor /proc/cpuinfo)

wait_up() { for _ in $(seq 1 500); do curl -fs --max-time 2 -o /dev/null "http://127.0.0.1:$1/index.html" && return 0; sleep 0.02; done; echo "port $1 did not come up"; exit 1; }
wait_up $MXPORT; wait_up $NGPORT; wait_up $NG1PORT
[ -z "$BASE" ] || wait_up $MXBPORT
# Whose CPU time counts: mxstack's process, nginx's workers.
ngworkers() { pgrep -P "$(cat "$TMP/$1/nginx.pid")" | tr '\n' ' '; }
declare -A PORT PIDS
PORT[mx]=$MXPORT; PIDS[mx]=$MXPID
PORT[ng]=$NGPORT; PIDS[ng]=$(ngworkers nginx)
PORT[ng1]=$NG1PORT; PIDS[ng1]=$(ngworkers nginx1)
SERVERS="mx ng ng1"
if [ -n "$BASE" ]; then PORT[mxb]=$MXBPORT; PIDS[mxb]=$MXBPID; SERVERS="mx mxb ng ng1"; fi

BUNDLE="/bundles/$HASH/vendor.js"
echo "== headers (mxstack, then nginx) for $BUNDLE with Accept-Encoding: gzip"
for p in $MXPORT $NGPORT; do
    curl -s -o /dev/null -D - -H 'Accept-Encoding: gzip' "http://127.0.0.1:$p$BUNDLE" | tr -d '\r' | sort
    echo
done
if [ -n "${BENCH_KEEP:-}" ]; then
    echo "mxstack pid $MXPID port $MXPORT${BASE:+ (base: pid $MXBPID port $MXBPORT)};" \
         "nginx pids (masters) $NGPIDS ports $NGPORT $NG1PORT"
    read -r _
fi

# --------------------------------------------------------------------- wrk ---
declare -A BEST_RPS BEST_MBS BEST_US
cpu_ticks() {   # user + system clock ticks of the processes (all threads) $@
    local t=0 p f
    for p in "$@"; do
        for f in /proc/"$p"/task/*/stat; do
            t=$((t + $(sed 's/.*) //' "$f" | awk '{print $12 + $13}')))
        done
    done
    echo "$t"
}
TICK=$(getconf CLK_TCK)
run() {   # $1 key, $2 server, $3 path, $4 accept-encoding or ""
    local out rps mbs n us t0 t1 h=()
    [ -n "$4" ] && h=(-H "Accept-Encoding: $4")
    # shellcheck disable=SC2086
    t0=$(cpu_ticks ${PIDS[$2]})
    out=$(wrk -t"$THREADS" -c"$CONNS" -d"${DUR}s" "${h[@]}" "http://127.0.0.1:${PORT[$2]}$3" 2>&1)
    # shellcheck disable=SC2086
    t1=$(cpu_ticks ${PIDS[$2]})
    rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
    n=$(echo "$out" | awk '/requests in/{print $1}')
    mbs=$(echo "$out" | awk '/Transfer\/sec/{v=$2; if (v ~ /GB$/) {sub(/GB/,"",v); v*=1024}
          else if (v ~ /KB$/) {sub(/KB/,"",v); v/=1024} else sub(/MB/,"",v); print v}')
    us=$(awk -v d=$((t1 - t0)) -v t="$TICK" -v n="$n" 'BEGIN{printf "%.2f", n ? d / t * 1e6 / n : 0}')
    if echo "$out" | grep -q "Non-2xx"; then echo "$1: non-2xx answers!"; echo "$out"; fi
    if awk -v a="$rps" -v b="${BEST_RPS[$1]:-0}" 'BEGIN{exit !(a>b)}'; then
        BEST_RPS[$1]=$rps; BEST_MBS[$1]=$mbs
    fi
    if awk -v a="$us" -v b="${BEST_US[$1]:-1e9}" 'BEGIN{exit !(a<b)}'; then
        BEST_US[$1]=$us
    fi
}
CASES=("bundle|$BUNDLE|" "bundle-gzip|$BUNDLE|gzip" "index|/index.html|" "index-gzip|/index.html|gzip")
echo "== wrk -t$THREADS -c$CONNS -d${DUR}s, best of $ROUNDS interleaved rounds; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
for c in "${CASES[@]}"; do
    IFS='|' read -r name path ae <<<"$c"
    for _ in $(seq 1 "$ROUNDS"); do
        for sv in $SERVERS; do
            run "$sv-$name" "$sv" "$path" "$ae"
        done
    done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
declare -A LABEL=([mx]="mxstack (1 loop)" [mxb]="mxstack base" [ng]="nginx ($NGW workers)"
                  [ng1]="nginx (1 worker)")
echo "r/s and MB/s: best round; us: server CPU time per request (least of the rounds)"
printf "%-12s" case
for sv in $SERVERS; do printf " %28s" "${LABEL[$sv]}"; done
printf " %8s %8s" "mx/ng" "mx/ng1"
[ -z "$BASE" ] || printf " %8s" "mx/base"
printf "   %s\n" "(r/s ratios; CPU/req ratios mx/ng, mx/ng1)"
for c in "${CASES[@]}"; do
    IFS='|' read -r name _ _ <<<"$c"
    printf "%-12s" "$name"
    for sv in $SERVERS; do
        awk -v a="${BEST_RPS[$sv-$name]}" -v m="${BEST_MBS[$sv-$name]}" -v u="${BEST_US[$sv-$name]}" \
            'BEGIN{printf " %7.0f r/s %5.0f MB/s %5.1fus", a, m, u}'
    done
    awk -v a="${BEST_RPS[mx-$name]}" -v b="${BEST_RPS[ng-$name]}" -v d="${BEST_RPS[ng1-$name]}" \
        -v e="${BEST_RPS[mxb-$name]:-0}" -v ua="${BEST_US[mx-$name]}" -v ub="${BEST_US[ng-$name]}" \
        -v ud="${BEST_US[ng1-$name]}" 'BEGIN{
        printf " %7.1f%% %7.1f%%", 100*a/b, 100*a/d
        if (e > 0) printf " %7.1f%%", 100*a/e
        printf "   %5.1f%% %5.1f%%\n", ub ? 100*ua/ub : 0, ud ? 100*ua/ud : 0 }'
done
