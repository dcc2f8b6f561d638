#!/usr/bin/env bash
# contrib/quickstart.sh: on a fresh Debian 12 machine, install what is missing,
# build mxstack, and run it on the embedded default: SQLite and generated
# secrets in ./mxstack-data, listening on http://127.0.0.1:8008.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. contrib/deps.sh
mx_apt_install $MX_BUILD_DEPS
mx_build build
exec build/mxstack serve "$@"
