#!/usr/bin/env bash
# tests/clients/run.sh: real clients against the real binary, on SQLite and
# (when MXSTACK_TEST_PG is set) PostgreSQL:
#   js_chat.mjs   matrix-js-sdk (npm), the SDK Element Web is built on
#   js_e2ee.mjs   matrix-js-sdk with its Rust crypto: encrypted room, cross-signing,
#                 secret storage, key backup, device lists, dehydrated devices
#   nio_chat.py   matrix-nio (Debian python3-matrix-nio), r0 paths
#   console.spec.mjs  the admin console in headless Debian chromium (npm
#                 playwright-core); starts its own server (SQLite)
#   oidc_login.mjs  MSC3861 login as Element Web runs it (auth_metadata,
#                 registration, PKCE, login form in chromium, whoami, refresh,
#                 revoke); starts its own server (SQLite)
# MX_VERBOSE=1 keeps the SDK's own logging.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${MXSTACK_BIN:?set MXSTACK_BIN}"
( cd "$HERE" && [ -d node_modules/matrix-js-sdk ] && [ -d node_modules/playwright-core ] ||
  npm install --no-audit --no-fund --loglevel=error >/dev/null )

run_on() {
  local engine="$1" dir port
  dir="$(mktemp -d)"; port=$(/usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  local db="database: {name: sqlite3, args: {database: $dir/hs.db}}"
  if [ "$engine" = postgres ]; then
    local name="mxcl_$$_$RANDOM"
    psql "$MXSTACK_TEST_PG dbname=postgres" -qc "CREATE DATABASE $name" >/dev/null
    db="database: {name: psycopg2, args: {dsn: \"$MXSTACK_TEST_PG dbname=$name\"}}"
  fi
  cat > "$dir/c.yaml" <<YAML
server_name: "localhost:$port"
public_baseurl: "http://127.0.0.1:$port/"
listeners: [{port: $port, bind_addresses: ['127.0.0.1'], type: http,
             resources: [{names: [client, federation, media, admin, health]}]}]
$db
signing_key_path: $dir/signing.key
enable_registration: true
log_file: $dir/server.log
homeserver: {rc_message_per_second: 1000, rc_message_burst: 1000, rc_login_per_second: 1000,
             rc_login_burst: 1000, rc_registration_per_second: 1000, rc_registration_burst: 1000,
             argon2_opslimit: 1, argon2_memlimit_kib: 64}
YAML
  "$BIN" serve -c "$dir/c.yaml" & local pid=$!
  local up=0
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && { up=1; break; }; sleep 0.05; done
  local rc=0
  [ $up -eq 1 ] || { echo "server did not start"; rc=1; }
  echo "-- $engine: matrix-js-sdk"
  ( cd "$HERE" && timeout 120 node js_chat.mjs "http://127.0.0.1:$port" ) || rc=1
  echo "-- $engine: matrix-js-sdk, rust crypto"
  ( cd "$HERE" && timeout 120 node js_e2ee.mjs "http://127.0.0.1:$port" ) || rc=1
  echo "-- $engine: matrix-nio"
  timeout 120 /usr/bin/python3 "$HERE/nio_chat.py" "http://127.0.0.1:$port" || rc=1
  kill -TERM $pid; wait $pid || rc=1
  [ $rc -eq 0 ] || tail -n 30 "$dir/server.log"
  rm -rf "$dir"
  [ "$engine" = postgres ] && psql "$MXSTACK_TEST_PG dbname=postgres" -qc "DROP DATABASE $name" >/dev/null
  return $rc
}
rc=0
run_on sqlite || rc=1
if [ -n "${MXSTACK_TEST_PG:-}" ]; then run_on postgres || rc=1; fi
echo "-- admin console: chromium + playwright-core"
( cd "$HERE" && MXSTACK_BIN="$BIN" timeout 300 node console.spec.mjs ) || rc=1
echo "-- OAuth login as Element Web runs it: chromium + playwright-core"
( cd "$HERE" && MXSTACK_BIN="$BIN" timeout 300 node oidc_login.mjs ) || rc=1
[ $rc -eq 0 ] || { echo "real clients: FAILED"; exit 1; }
echo "real clients: OK"
