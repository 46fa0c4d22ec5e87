#!/usr/bin/env bash
# reel on a built-in sample, as root (scripts/quickstart.sh runs it after the set-up):
#
#  1. the library alone: a sample process tree is checkpointed with reel-core's CRIU driver,
#     restored, and shown to continue where it stopped;
#  2. the real thing: a sample container (runc, laid out as a Kubernetes pod's container would
#     be: namespace reel-demo, pod sample, container counter) is listed with
#     `reel get workloads`, checkpointed with `reel create checkpoint` while it keeps running,
#     verified, exported as evidence (`reel export checkpoint`: a fresh checkpoint straight to
#     a zstd archive with its .sha256, verified again), inspected in place (`reel inspect
#     checkpoint`: the summary an analyst starts from), and the stored checkpoint's images are
#     restored by `runc restore` into a new container whose counter continues from the
#     checkpointed value.
#
#   scripts/demo.sh [DIR WITH reel AND examples/]   (default target/release)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$top/target/release}
reel="$bin/reel"
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
[ -x "$reel" ] || { echo "demo.sh: $reel is missing; build it: cargo build --release -p reel-cli" >&2; exit 1; }

work=/var/lib/reel/demo
store=$work/store
ns=reel-demo
id=reel-demo-counter
rid=reel-demo-restored
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cleanup() {
  for c in "$id" "$rid"; do runc delete -f "$c" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
cleanup

say "1. reel-core on its own: checkpoint and restore a sample process tree"
"$bin/examples/checkpoint_restore"

say "2. a sample container: busybox + a counter, run by runc as pod $ns/sample"
rm -rf "$work/bundle" "$work/restore"
mkdir -p -m 700 "$work"
mkdir -p "$work/bundle"
"$top/tests/fixtures/rootfs.sh" "$work/bundle/rootfs" >/dev/null
cc -O2 -static -o "$work/bundle/rootfs/bin/counter" "$top/tests/programs/counter.c"
( cd "$work/bundle" && runc spec )
python3 - "$work/bundle/config.json" "$ns" <<'PY'
import json, sys
path, ns = sys.argv[1], sys.argv[2]
spec = json.load(open(path))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["/bin/counter", "/tmp/counter", "100"]
spec["root"]["readonly"] = False
spec["hostname"] = "sample"
spec["annotations"] = {
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.sandbox-namespace": ns,
    "io.kubernetes.cri.sandbox-name": "sample",
    "io.kubernetes.cri.container-name": "counter",
}
json.dump(spec, open(path, "w"), indent=2)
PY
runc run -d --bundle "$work/bundle" "$id" </dev/null >/dev/null 2>&1
sleep 1.5
counter() { head -n1 "$1/tmp/counter" 2>/dev/null || echo 0; }

say "reel get workloads -n $ns"
"$reel" get workloads -n "$ns"

say "reel create checkpoint sample -n $ns   (the container keeps running)"
before=$(counter "$work/bundle/rootfs")
out=$("$reel" --root "$store" create checkpoint sample -n "$ns")
echo "$out"
cid=${out#Checkpoint created: }
sleep 1
after=$(counter "$work/bundle/rootfs")
echo "counter before: $before, a second after the checkpoint: $after (still running: $(runc state "$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])'))"

say "reel list checkpoint -n $ns"
"$reel" --root "$store" list checkpoint -n "$ns"

say "reel verify checkpoint $cid"
"$reel" --root "$store" verify checkpoint "$cid"

say "reel export checkpoint sample -n $ns --dest $work/evidence/   (a fresh checkpoint, compressed)"
rm -rf "$work/evidence"
mkdir -p "$work/evidence"
"$reel" --root "$store" export checkpoint sample -n "$ns" --dest "$work/evidence/"
archive=$(ls "$work/evidence"/*.tar.zst)
ls -l "$work/evidence"
say "reel verify checkpoint $archive"
"$reel" --root "$store" verify checkpoint "$archive"

say "reel inspect checkpoint $archive   (what the process was doing, read in place)"
"$reel" --root "$store" inspect checkpoint "$archive"

say "runc restore of reel's images into a new container"
tar -tf "$store/$cid.tar" | sed -n '1,3p;$p' | sed 's/^/  member: /'
mkdir -p "$work/restore/images"
tar -C "$work/restore" -xf "$store/$cid.tar" checkpoint
dumped=$(tar -xOf "$store/$cid.tar" reel-manifest.json | python3 -c 'import json,sys; m=json.load(sys.stdin); print(m["checkpoint_id"], "frozen", m.get("criu_frozen_time_us"), "us")')
echo "manifest: $dumped"
# The restored container needs the same files as at checkpoint time: a copy of the rootfs.
cp -a "$work/bundle" "$work/restore/bundle"
runc delete -f "$id" >/dev/null 2>&1   # the restore takes the same pids' namespace layout
runc restore -d --image-path "$work/restore/checkpoint" --work-path "$work/restore" \
  --bundle "$work/restore/bundle" "$rid" </dev/null >"$work/restore/runc.log" 2>&1 \
  || { cat "$work/restore/runc.log"; grep Error "$work/restore/restore.log" >&2; exit 1; }
sleep 1
v2=$(counter "$work/restore/bundle/rootfs")
echo "restored container $rid: a second after the restore its counter is $v2; it was $before just before the checkpoint"
echo "(counting 10 a second from 0 it would be about 10: it continued from the checkpointed value)"
[ "$v2" -gt "$before" ] && [ "$before" -gt 10 ] || { echo "demo: the restored counter did not continue" >&2; exit 1; }
say "done: checkpoints are in $store, the exported evidence in $work/evidence"
