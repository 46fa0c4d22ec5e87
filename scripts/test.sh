#!/usr/bin/env bash
# Run every test of the project, as root, on a fresh or an already set-up machine:
# install what is missing (scripts/setup.sh), start the daemons the tests need (containerd),
# check formatting and lints, build, fuzz the readers of hostile input for a minute
# (scripts/fuzz.sh: CRIU's image reader and the checkpoint archive reader, each 30 s under
# libFuzzer; it installs the pinned cargo-fuzz and builds the instrumented targets into
# fuzz/target the first time), and run all tests against real CRIU, real cgroups and real
# containers. A fuzz failure (crash, hang or OOM: the input and the command that replays it
# are printed) does not stop the tests; the script fails at the end if either failed.
# .ci/run runs exactly this.
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

step "fuzz (scripts/fuzz.sh: 30 s per target)"
fuzz_rc=0
./scripts/fuzz.sh 30 || fuzz_rc=$?

step "tests"
# One test at a time inside each test binary: the tests freeze cgroups and time workloads,
# and this machine has two cores.
tests_rc=0
cargo test --workspace --locked --no-fail-fast -- --test-threads=1 || tests_rc=$?

[ "$fuzz_rc" = 0 ] || echo "test.sh: the fuzz run FAILED (scripts/fuzz.sh, output above the tests)" >&2
[ "$tests_rc" = 0 ] || echo "test.sh: tests FAILED" >&2
[ "$fuzz_rc" = 0 ] && [ "$tests_rc" = 0 ]
