#!/bin/bash
# Stand-in for what CRI-O does on CheckpointContainer (cri-o internal/lib/checkpoint.go,
# checkpointctl lib/metadata.go): checkpoint a REAL runc container with `runc checkpoint
# --leave-running` (CRIU images in checkpoint/, runc's descriptors.json, CRIU's dump.log and
# stats-dump in the work dir), add config.dump, spec.dump (the bundle's config.json) and an
# empty rootfs-diff.tar, and tar it all, plain, to OUT. Members in CRI-O's order (config.dump
# first), not reel's, so the importer's reordering is exercised.
#
#   crio-archive.sh RUNC_ID BUNDLE_DIR OUT.tar [RUNC_ROOT]
set -euo pipefail
id=$1 bundle=$2 out=$3 root=${4:-/run/runc}
work=$(mktemp -d /tmp/reel-crio-standin.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -m 700 "$work/checkpoint"
runc --root "$root" checkpoint --leave-running --file-locks \
    --image-path "$work/checkpoint" --work-path "$work" "$id" >"$work/runc.out" 2>&1 || {
    cat "$work/runc.out" >&2
    grep -i error "$work/dump.log" >&2 || true
    exit 1
}
cp "$bundle/config.json" "$work/spec.dump"
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
printf '{"id":"%s","name":"%s","rootfsImageName":"reel-test/busybox","runtime":"runc","createdTime":"%s","checkpointedTime":"%s","restoredTime":"0001-01-01T00:00:00Z","restored":false}\n' \
    "$id" "${REEL_STANDIN_CONTAINER:-$id}" "$now" "$now" >"$work/config.dump"
tar -C "$work" -cf "$work/rootfs-diff.tar" --files-from /dev/null
tmp="$out.partial"
tar -C "$work" -cf "$tmp" config.dump checkpoint spec.dump stats-dump dump.log rootfs-diff.tar
chmod 600 "$tmp"
mv "$tmp" "$out"
