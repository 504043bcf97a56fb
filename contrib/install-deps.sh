#!/bin/sh
# Installs the Debian packages loopforge needs, only those missing.
# Runs apt-get as root; as another user it only says what is missing.
#   sh contrib/install-deps.sh          build and test (curl and openssl: the
#                                       HTTP suites talk to a real server)
#   sh contrib/install-deps.sh bench    also what `make bench` uses (wrk)
#   sh contrib/install-deps.sh fuzz     also what `make fuzz` uses (clang)
set -e
PKGS="build-essential pkg-config liblua5.4-dev lua5.4 libcjson-dev libevent-dev
libssl-dev libcmocka-dev lua-busted libhiredis-dev redis-server redis-tools
curl openssl"
[ "${1:-}" = bench ] && PKGS="$PKGS wrk"
[ "${1:-}" = fuzz ] && PKGS="$PKGS clang"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "loopforge: missing packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
    exit 1
fi
echo "loopforge: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq $missing >&2
