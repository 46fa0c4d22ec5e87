#!/usr/bin/env bash
# Fresh machine, as root: install everything reel needs, build reel, and run it on a
# built-in sample container (scripts/demo.sh).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH="$HOME/.cargo/bin:/usr/local/sbin:$PATH"
./scripts/setup.sh
echo "==> building reel (release)" >&2
cargo build --release --locked -p reel-cli -p reel-core --bins --examples
exec ./scripts/demo.sh "$top/target/release"
