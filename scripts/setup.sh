#!/usr/bin/env bash
# Install everything reel needs on a fresh Debian bookworm machine, as root, idempotently:
# Debian packages (container runtimes, build tools, test tools), then the pinned CRIU
# (vendor/criu.sh). Run again, it only checks.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
log() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages and the pinned CRIU)"
command -v apt-get >/dev/null || die "this script needs a Debian-based system (apt-get)"

# Never Debian's criu (3.17 cannot run on kernels >= 6.13): everything is installed with
# --no-install-recommends, since podman recommends criu.
pkgs=(
  # build; for the tests: criu-sys-codegen's check runs bindgen (libclang) and protoc, and
  # criu-sys's libcriu test links libcriu (static) and protobuf-c
  build-essential pkg-config libclang-dev protobuf-compiler libprotobuf-c-dev git curl ca-certificates xz-utils
  # the runtimes reel finds and the tools the tests and benchmarks compare with
  runc crun containerd podman
  # test containers and archives
  busybox-static zstd tar iptables iproute2 procps psmisc util-linux
  # reading the ELF cores of `reel extract checkpoint --core` (tests/extract.rs)
  gdb
  # the S3-compatible test server (moto, from PyPI) and its TLS certificates
  python3 python3-pip python3-venv openssl
)
t0=$SECONDS
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if dpkg-query -W -f='${Status}' criu 2>/dev/null | grep -q 'install ok installed'; then
  die "Debian's criu package is installed; remove it (apt-get remove criu): it cannot run on this kernel and runc would find it"
fi

t_pkgs=$((SECONDS - t0))
"$top/vendor/criu.sh"
t_criu=$((SECONDS - t0 - t_pkgs))
log "time: packages ${t_pkgs} s, CRIU ${t_criu} s"

command -v cargo >/dev/null || [ -x "$HOME/.cargo/bin/cargo" ] \
  || die "no Rust toolchain (cargo) found; install one with rustup, then run this again"
log "ok: packages, CRIU $(/usr/local/sbin/criu --version | sed -n 's/^Version: //p') at $(readlink -f /usr/local/sbin/criu)"
