# contrib/deps.sh: the Debian 12 packages mxstack needs, sourced by
# contrib/quickstart.sh (build + run) and tests/run-all.sh (build + test).
# Installs only what is missing; uses sudo when not root.

MX_BUILD_DEPS="build-essential autoconf automake libtool pkg-config \
  libuv1-dev node-llhttp libsqlite3-dev libpq-dev libmbedtls-dev libhiredis-dev \
  libsodium-dev libjansson-dev libyaml-dev libvips-dev libcurl4-openssl-dev ca-certificates"
MX_TEST_DEPS="libcmocka-dev python3-pytest python3-requests postgresql postgresql-client \
  openssl clang python3-matrix-nio wrk python3-pil synadm chromium python3-aiosmtpd"

mx_apt_install() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: ${missing[*]}" >&2
  $sudo apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# node + npm: Debian's packages, unless a node with npm is already there
# (e.g. NodeSource's nodejs, which bundles npm and conflicts with Debian's).
mx_node_install() {
  command -v node >/dev/null && command -v npm >/dev/null && return 0
  mx_apt_install nodejs npm
}

# Builds into $1 (default build/), out of tree; leaves the binary at $1/mxstack.
mx_build() {
  local src build
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  build="${1:-$src/build}"
  ( cd "$src" && { [ -x configure ] && [ configure -nt configure.ac ] && [ Makefile.in -nt Makefile.am ] \
      || autoreconf -fi >/dev/null; } )
  mkdir -p "$build"
  # configure's own clean-up tries `rm -f core` (core dumps) and complains
  # about our core/ directory: filter that one harmless line.
  ( cd "$build" && { [ -f Makefile ] || "$src/configure" -q ${MX_CONFIGURE_FLAGS:-} \
      2> >(grep -v "cannot remove 'core'" >&2); } && make -s -j"$(nproc)" )
}
