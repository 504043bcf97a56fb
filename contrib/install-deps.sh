#!/bin/sh
# Installs the Debian packages loopforge needs, only those missing.
# Runs apt-get as root, saying what it installs; as another user (or off
# Debian) it only says what is missing and lets the build go on: a
# machine set up by other means needs nothing from it.
#   sh contrib/install-deps.sh          build and test (curl and openssl: the
#                                       HTTP suites talk to a real server;
#                                       chromium, its driver and selenium:
#                                       the console's browser tests)
#   sh contrib/install-deps.sh bench    also what `make bench` uses (wrk,
#                                       valgrind)
#   sh contrib/install-deps.sh fuzz     also what `make fuzz` uses (clang)
#   sh contrib/install-deps.sh format   also what `make format` uses
set -e
PKGS="build-essential pkg-config liblua5.4-dev lua5.4 libcjson-dev libevent-dev
libssl-dev libcmocka-dev lua-busted libhiredis-dev libzstd-dev redis-server redis-tools libgraphviz-dev
curl openssl python3 python3-securesystemslib chromium chromium-driver python3-selenium"
[ "${1:-}" = bench ] && PKGS="$PKGS wrk valgrind"
[ "${1:-}" = fuzz ] && PKGS="$PKGS clang"
[ "${1:-}" = format ] && PKGS="$PKGS clang-format-16"
if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "loopforge: not a Debian system; make sure these are installed: $PKGS" | tr '\n' ' ' >&2
    echo >&2
    exit 0
fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "loopforge: missing packages:$missing (as root this installs them; or:" \
         "sudo apt-get install$missing); going on without them" >&2
    exit 0
fi
echo "loopforge: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq $missing >&2
