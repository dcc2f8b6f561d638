#!/usr/bin/env bash
# tests/run-all.sh: the whole test suite, from a fresh Debian 12 machine.
# Installs what the tests need, builds, starts a throwaway PostgreSQL on
# loopback, and runs: the C unit tests (`make check`, both storage engines),
# the integration tests against the real binary (pytest, both engines) and
# the real-client tests (matrix-js-sdk, matrix-nio) where present.
#
#   tests/run-all.sh              everything
#   MX_SKIP_CLIENTS=1 ...         skip the npm-based client tests
#   PYTEST_ARGS="-k sync" ...     pass arguments to pytest
set -euo pipefail
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$SRC"
. contrib/deps.sh
mx_apt_install $MX_BUILD_DEPS $MX_TEST_DEPS
mx_node_install

BUILD="${MX_BUILD_DIR:-$SRC/build}"
mx_build "$BUILD"
export MXSTACK_BIN="$BUILD/mxstack" MXSTACK_BUILD_DIR="$BUILD"

# ---------------------------------------------------------- PostgreSQL
PGPORT="${MX_PG_PORT:-5544}"
PGDIR="$(mktemp -d /tmp/mxstack-pg.XXXXXX)"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"
chown postgres "$PGDIR" 2>/dev/null || true
as_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
as_pg "'$PGBIN/initdb' -D '$PGDIR/data' -A trust -U postgres >'$PGDIR/initdb.log' 2>&1"
as_pg "'$PGBIN/pg_ctl' -D '$PGDIR/data' -l '$PGDIR/pg.log' -w -o \"-k '$PGDIR' -p $PGPORT -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200\" start >/dev/null"
cleanup() {
  as_pg "'$PGBIN/pg_ctl' -D '$PGDIR/data' -m fast stop >/dev/null 2>&1" || true
  rm -rf "$PGDIR"
}
trap cleanup EXIT
export MXSTACK_TEST_PG="host=127.0.0.1 port=$PGPORT user=postgres"
psql "$MXSTACK_TEST_PG dbname=postgres" -qc "CREATE DATABASE mxtest" >/dev/null

# ---------------------------------------------------------- unit tests
echo "== unit tests (make check)"
( cd "$BUILD" && MXSTACK_TEST_PG="$MXSTACK_TEST_PG dbname=mxtest" make -s -j"$(nproc)" check ) || {
  find "$BUILD" -name '*.log' -path '*tests*' -newer "$BUILD/Makefile" -exec tail -n 40 {} \; ; exit 1; }

# ---------------------------------------------------------- integration
echo "== integration tests (pytest, SQLite + PostgreSQL)"
# One pytest run per test directory: each has its own conftest.py, and
# test files import helpers from theirs by name.
failed=""
for d in tests/integration $(ls -d modules/*/tests 2>/dev/null); do
  ls "$d"/test_*.py >/dev/null 2>&1 || continue
  echo "-- $d"
  ( cd "$d" && /usr/bin/python3 -m pytest -q -p no:cacheprovider ${PYTEST_ARGS:-} . ) || failed="$failed $d"
done
[ -z "$failed" ] || { echo "integration tests failed in:$failed"; exit 1; }

# ---------------------------------------------------------- real clients
if [ -z "${MX_SKIP_CLIENTS:-}" ] && [ -x tests/clients/run.sh ]; then
  echo "== real clients"
  tests/clients/run.sh
fi
echo "== all tests passed"
