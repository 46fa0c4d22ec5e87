#!/usr/bin/env bash
# Short fuzz run of reel's readers of hostile input (issue #12): CRIU's image reader
# (fuzz/fuzz_targets/image_reader.rs), the checkpoint source, tar and zstd with inspect on
# top (fuzz/fuzz_targets/checkpoint_source.rs), and extraction, staging and verification of
# an archive (fuzz/fuzz_targets/archive_extract.rs, seeded with checkpoint_source's corpus).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 30: the three take about 1.5 minutes)
#
# - installs cargo-fuzz (pinned, `cargo install --locked`, into ~/.cargo/bin) when missing;
#   works with rustup's stable toolchain alone: RUSTC_BOOTSTRAP=1 lets stable take the -Z
#   flags cargo-fuzz passes (sanitizer, coverage instrumentation);
# - builds the targets with `cargo fuzz build --sanitizer none` (release, debug assertions and
#   overflow checks on; coverage-guided, no AddressSanitizer: what it hunts is panics and
#   unbounded reads in safe Rust, and ASan made the fresh build far longer) into fuzz/target, which later runs and CI reuse; fuzz/Cargo.lock must
#   match (checked with --locked first);
# - runs each target for SECONDS on a scratch copy of fuzz/corpus/TARGET (new inputs never go
#   into the repo's corpus), bounded by -max_len, -rss_limit_mb and a per-input -timeout;
# - prints per target the executions, the final coverage (cov/ft) and the seconds, and fails
#   (exit 1) on any crash, timeout or OOM, naming the artifact libFuzzer wrote under
#   fuzz/artifacts/TARGET/ and the command that replays it.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-30}
case $seconds in '' | *[!0-9]* | 0) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET>0]" >&2; exit 2 ;; esac
rss_limit_mb=2048
timeout_s=10                         # one input taking this long is a hang
triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=fuzz/target/$triple/release
# name, -max_len, seeds (fuzz/corpus/SEEDS): CRIU images in the corpus are at most 64 KiB
# (fuzz/seed.sh); the archive seeds are about 310 KiB, so archives get room to grow past them.
targets=("image_reader 65536 image_reader" "checkpoint_source 524288 checkpoint_source"
    "archive_extract 524288 checkpoint_source")

log() { printf 'fuzz.sh: %s\n' "$*" >&2; }
die() { printf 'fuzz.sh: FAILED: %s\n' "$*" >&2; exit 1; }

if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked --force cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null ||
    die "fuzz/Cargo.lock is out of date: copy the root Cargo.lock over it and run 'cargo metadata --manifest-path fuzz/Cargo.toml' (see fuzz/Cargo.toml)"

log "building the fuzz targets (instrumented) into fuzz/target"
build_start=$(date +%s)
cargo fuzz build --sanitizer none
log "build: $(($(date +%s) - build_start)) s"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/reel-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

failed=0
summary=()
for entry in "${targets[@]}"; do
    read -r name max_len seeds <<<"$entry"
    corpus=$scratch/corpus-$name
    artifacts=fuzz/artifacts/$name
    mkdir -p "$corpus" "$artifacts" "$scratch/tmp-$name"
    cp -a "fuzz/corpus/$seeds/." "$corpus/"
    out=$scratch/$name.log
    log "running $name for ${seconds}s on a scratch copy of fuzz/corpus/$seeds ($(ls "$corpus" | wc -l) seeds)"
    start=$(date +%s)
    rc=0
    # TMPDIR: the archive targets write each input (and what they extract) under it.
    TMPDIR=$scratch/tmp-$name "$bin_dir/$name" "$corpus" \
        -max_total_time="$seconds" -max_len="$max_len" -rss_limit_mb="$rss_limit_mb" \
        -timeout="$timeout_s" -artifact_prefix="$artifacts/" -print_final_stats=1 \
        >"$out" 2>&1 || rc=$?
    took=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n1)
    last=$(grep -E '(cov|ft): ' "$out" | tail -n1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    line="$name: ${execs:-?} executions, cov ${cov:-?}, ft ${ft:-?}, ${took}s"
    if [ "$rc" -ne 0 ]; then
        failed=1
        tail -n 60 "$out" >&2
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$out" | tail -n1)
        kind=crash
        grep -q 'ERROR: libFuzzer: timeout' "$out" && kind=timeout
        grep -q 'ERROR: libFuzzer: out-of-memory' "$out" && kind=out-of-memory
        line="$line: FAILED ($kind, libFuzzer exit $rc)"
        if [ -n "$artifact" ]; then
            line="$line
    input:     $artifact
    reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run $name $artifact
           or: $bin_dir/$name $artifact"
        else
            line="$line (no artifact written; log above)"
        fi
    fi
    summary+=("$line")
done

printf '\nfuzz summary (%ss per target):\n' "$seconds"
printf '  %s\n' "${summary[@]}"
[ "$failed" = 0 ] || die "a fuzz target crashed, hung or ran out of memory (see above)"
