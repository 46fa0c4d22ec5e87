#!/usr/bin/env bash
# Run every test of the project, as root, on a fresh or an already set-up machine:
# install what is missing (scripts/setup.sh), start the daemons the tests need (containerd),
# check formatting and lints, and run all tests against real CRIU, real cgroups and real
# containers. .ci/run runs exactly this.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH="$HOME/.cargo/bin:/usr/local/sbin:$PATH"
step() { printf '\n==> %s\n' "$*" >&2; }

[ "$(id -u)" = 0 ] || { echo "test.sh: the tests need root (CRIU, cgroups, containers)" >&2; exit 1; }

step "set-up (packages, pinned CRIU)"
./scripts/setup.sh

step "containerd and the S3 test server"
./scripts/containerd.sh start
./scripts/s3-server.sh start >/dev/null

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
# Everything the tests run is built here, before them: the `reel` binary and reel-core's helper
# examples (freeze_hold, lock_hold) included. No test runs cargo; one that finds a binary missing
# or older than its sources fails saying how to build it.
cargo build --workspace --all-targets --locked

step "tests"
# One test at a time inside each test binary: the tests freeze cgroups and time workloads,
# and this machine has two cores.
cargo test --workspace --locked --no-fail-fast -- --test-threads=1
