#!/usr/bin/env bash
# Fetch, verify, build and install the pinned CRIU (vendor/criu.pin) into one prefix.
#
#   vendor/criu.sh            # idempotent: does nothing when the pinned CRIU is installed
#   vendor/criu.sh --force    # rebuild and reinstall
#
# Where it goes:
#   $REEL_CRIU_PREFIX (default /opt/reel/criu)   sbin/criu, lib/libcriu.so*, include/criu/*.h,
#                                                lib/pkgconfig/criu.pc, share/criu/images/*.proto
#   /usr/local/sbin/criu -> prefix/sbin/criu     first on PATH, so runc, containerd's shim and
#                                                podman run this CRIU too.
# Debian's own criu package is never installed, and the prefix is not on the system's library
# or pkg-config paths, so Debian's 3.17 libcriu/criu.h/criu.pc can never shadow the pinned ones.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=/dev/null
. "$here/criu.pin"

prefix=${REEL_CRIU_PREFIX:-/opt/reel/criu}
cache="$here/cache"
build="$here/build"
force=0
[ "${1:-}" = "--force" ] && force=1

die() { printf 'vendor/criu.sh: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'vendor/criu.sh: %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and writes $prefix)"

installed_version() {
    [ -x "$prefix/sbin/criu" ] || return 1
    "$prefix/sbin/criu" --version 2>/dev/null | sed -n 's/^Version: *//p'
}

if [ $force = 0 ] && [ "$(installed_version || true)" = "$CRIU_VERSION" ] \
    && [ -f "$prefix/lib/pkgconfig/criu.pc" ] && [ -f "$prefix/include/criu/criu.h" ] \
    && [ -f "$prefix/share/criu/images/rpc.proto" ] \
    && [ "$(readlink /usr/local/sbin/criu || true)" = "$prefix/sbin/criu" ]; then
    log "CRIU $CRIU_VERSION already installed in $prefix"
    exit 0
fi

# Build dependencies (and iptables, which CRIU runs at dump time to lock a container's network).
deps=(build-essential pkg-config python3 python3-protobuf protobuf-compiler protobuf-c-compiler
      libprotobuf-dev libprotobuf-c-dev libnl-3-dev libnl-route-3-dev libnet1-dev libcap-dev
      libbsd-dev libaio-dev libgnutls28-dev libnftables-dev uuid-dev iptables iproute2
      xz-utils curl ca-certificates)
missing=()
for p in "${deps[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing build dependencies: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if dpkg-query -W -f='${Status}' criu 2>/dev/null | grep -q 'install ok installed'; then
    die "Debian's criu package is installed; it cannot run on this kernel and would be found by runc. Remove it: apt-get remove criu"
fi

# The Debian mirror apt is configured with (deb822 .sources first, then one-line lists).
mirror() {
    local m
    m=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' \
        | grep -E '/debian/?$' | head -n1 || true)
    if [ -z "$m" ]; then
        m=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}' | grep -E '/debian/?$' | head -n1 || true)
    fi
    [ -n "$m" ] || return 1
    printf '%s\n' "${m%/}"
}

mkdir -p "$cache"
tarball="$cache/$CRIU_ARCHIVE"
verify() { [ "$(sha256sum "$1" | awk '{print $1}')" = "$CRIU_SHA256" ]; }
if [ ! -f "$tarball" ] || ! verify "$tarball"; then
    base=$(mirror) || die "no Debian mirror found in /etc/apt/sources.list{,.d}; configure apt first"
    url="$base/$CRIU_POOL_PATH/$CRIU_ARCHIVE"
    log "fetching $url"
    code=$(curl -sS -L -o "$tarball.part" -w '%{http_code}' "$url" || true)
    if [ "$code" = 404 ] || [ "$code" = 410 ]; then
        rm -f "$tarball.part"
        die "$CRIU_ARCHIVE is gone from the Debian archive ($url answered $code).
  To move the pin: pick a CRIU release >= 4.2.1 that is in $CRIU_POOL_PATH of the mirror,
  put its version, archive name, size and sha256 into vendor/criu.pin, and run vendor/criu.sh again."
    fi
    [ "$code" = 200 ] || { rm -f "$tarball.part"; die "download of $url failed (HTTP ${code:-none})"; }
    got=$(sha256sum "$tarball.part" | awk '{print $1}')
    if [ "$got" != "$CRIU_SHA256" ]; then
        rm -f "$tarball.part"
        die "checksum mismatch for $CRIU_ARCHIVE: expected $CRIU_SHA256, got $got. The file was not used."
    fi
    mv "$tarball.part" "$tarball"
fi
size=$(stat -c %s "$tarball")
[ "$size" = "$CRIU_SIZE" ] || die "$CRIU_ARCHIVE has $size bytes, the pin says $CRIU_SIZE"

rm -rf "$build"
mkdir -p "$build"
tar -C "$build" -xJf "$tarball"
src=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -n1)
log "building CRIU $CRIU_VERSION in $src"
jobs=$(nproc)
# Debian's libc already provides the bits CRIU would otherwise compile itself; no docs needed.
make -C "$src" -j"$jobs" criu lib >"$build/build.log" 2>&1 \
    || { tail -n 30 "$build/build.log" >&2; die "CRIU build failed (full log: $build/build.log)"; }

stage="$build/stage"
make -C "$src" install-criu install-lib SKIP_PIP_INSTALL=1 DESTDIR="$stage" PREFIX="$prefix" \
    LIBDIR="$prefix/lib" INCLUDEDIR="$prefix/include" >>"$build/build.log" 2>&1 \
    || { tail -n 30 "$build/build.log" >&2; die "CRIU install failed (full log: $build/build.log)"; }
mkdir -p "$stage$prefix/share/criu/images"
install -m 0644 "$src"/images/*.proto "$stage$prefix/share/criu/images/"
rm -rf "$prefix"
mkdir -p "$(dirname "$prefix")"
mv "$stage$prefix" "$prefix"
ln -sfn "$prefix/sbin/criu" /usr/local/sbin/criu
got=$(installed_version || true)
[ "$got" = "$CRIU_VERSION" ] || die "installed criu reports version '$got', expected $CRIU_VERSION"
rm -rf "$build"
log "CRIU $CRIU_VERSION installed in $prefix (criu on PATH: /usr/local/sbin/criu)"
