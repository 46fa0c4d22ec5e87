#!/usr/bin/env bash
# Fresh machine, as root: install everything reel needs, build reel, and run it on a
# built-in sample container (scripts/demo.sh).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH="$HOME/.cargo/bin:/usr/local/sbin:$PATH"
start=$SECONDS
./scripts/setup.sh
t_setup=$((SECONDS - start))
echo "==> building reel (release)" >&2
cargo build --release --locked -p reel-cli -p reel-core --bins --examples
t_build=$((SECONDS - start - t_setup))
./scripts/demo.sh "$top/target/release"
t_demo=$((SECONDS - start - t_setup - t_build))
echo "==> quickstart: $((SECONDS - start)) s (packages and CRIU ${t_setup} s, reel ${t_build} s, sample ${t_demo} s)" >&2
