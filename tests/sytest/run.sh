#!/usr/bin/env bash
# One-command sytest run against an mxstack binary: runs each test area of
# matrix-org/sytest in its own sytest invocation (fresh servers, so one crash
# does not poison the other areas) through the shared ESS harness, and writes
# a per-area pass/fail/skip table. Builds nothing and fetches nothing.
#
# Usage:
#   SYTEST_DIR=/path/to/sytest tests/sytest/run.sh BINARY [AREA...]
#
# BINARY   the mxstack executable (e.g. build/mxstack); MXSTACK_BINARY also works.
# AREA     sytest test files or directories relative to SYTEST_DIR
#          (default: the client-server areas listed in DEFAULT_AREAS below).
#
# Environment:
#   SYTEST_DIR         sytest checkout, kept outside this repository (required)
#   SYTEST_OUT         output directory (default /tmp/mxstack-sytest); each area
#                      gets SYTEST_OUT/<area>/ (results.tap, sytest.stderr,
#                      summary.txt, work/server-N/homeserver.log); the table
#                      goes to SYTEST_OUT/summary.txt
#   SYTEST_HARNESS     the harness run.sh (default ../../../shared/sytest/run.sh
#                      relative to this file)
#   MXSTACK_DB         sqlite (default) or postgres (selects the template and
#                      sets ESS_DB; see the harness README for the PG* variables)
#   ESS_HS_CONFIG_TEMPLATE, ESS_HS_ARGS, ESS_CLIENT_SCHEME, SYTEST_EXTRA_ARGS ...
#                      passed through to the harness; defaults set below
# Exit code: 0 if every area passed completely, 1 otherwise.
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

DEFAULT_AREAS="tests/10apidoc tests/11register.pl tests/12login tests/13logout.pl
tests/14account tests/21presence-events.pl tests/30rooms tests/31sync
tests/32room-versions.pl tests/40presence.pl tests/41end-to-end-keys tests/42tags.pl
tests/44account_data.pl tests/46direct tests/48admin.pl tests/49ignore.pl
tests/51media tests/52user-directory tests/61push tests/90jira"

BIN="${1:-${MXSTACK_BINARY:-}}"
[ $# -gt 0 ] && shift
: "${SYTEST_DIR:?set SYTEST_DIR to a sytest checkout (outside this repository)}"
[ -n "$BIN" ] && [ -x "$BIN" ] || { echo "usage: SYTEST_DIR=... $0 BINARY [AREA...]" >&2; exit 2; }
HARNESS="${SYTEST_HARNESS:-$HERE/../../../shared/sytest/run.sh}"
[ -x "$HARNESS" ] || { echo "run.sh: harness not found: $HARNESS (set SYTEST_HARNESS)" >&2; exit 2; }

DB="${MXSTACK_DB:-sqlite}"
export ESS_DB="$DB"
export ESS_HS_BINARY="$BIN"
export ESS_HS_CONFIG_TEMPLATE="${ESS_HS_CONFIG_TEMPLATE:-$HERE/mxstack-$DB.yaml.tmpl}"
export ESS_HS_ARGS="${ESS_HS_ARGS:-serve --config {{CONFIG_PATH}}}"
export SYTEST_DIR
OUT="${SYTEST_OUT:-/tmp/mxstack-sytest}"
mkdir -p "$OUT"

areas=( "$@" )
[ ${#areas[@]} -eq 0 ] && read -r -d '' -a areas <<< "$DEFAULT_AREAS"

table="$OUT/summary.txt"
printf '%-28s %6s %6s %6s  %s\n' area passed failed skipped note > "$table"
tp=0; tf=0; ts=0; rc=0
for a in "${areas[@]}"; do
  name="$(basename "${a%/}" .pl)"
  dir="$OUT/$name"
  rm -rf "$dir"
  SYTEST_OUT="$dir" SYTEST_TESTS="$a" "$HARNESS" > /dev/null 2>&1
  line="$(tail -n 1 "$dir/summary.txt" 2>/dev/null)"
  read -r p _ f _ s _ <<< "${line:-0 passed 0 failed 0 skipped}"
  # A server that died after the harness's SIGINT crashed while shutting
  # down; one that died before it crashed mid-run (worse: later tests fail).
  note=""
  # "code=N" is the signal that killed it; 2 (SIGINT before our handler was
  # installed, i.e. stopped while still starting) and 9 are not crashes.
  for n in $(grep -oP 'ess-\K[0-9]+(?= process failed - code=(?![29]$))' "$dir/sytest.stderr" 2>/dev/null); do
    if grep -q 'SIGINT: stopping' "$dir/work/server-$n/homeserver.log" 2>/dev/null; then
      note="$note server-$n crashed on shutdown;"
    else
      note="$note SERVER-$n CRASHED MID-RUN;"
    fi
  done
  grep -q 'failure to start test server' "$dir/sytest.stderr" 2>/dev/null && note="SERVER DID NOT START"
  printf '%-28s %6s %6s %6s  %s\n' "$name" "$p" "$f" "$s" "$note" >> "$table"
  tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + s))
  [ "$f" -eq 0 ] && [ -z "$note" ] || rc=1
done
printf '%-28s %6s %6s %6s\n' total "$tp" "$tf" "$ts" >> "$table"
cat "$table"
exit $rc
