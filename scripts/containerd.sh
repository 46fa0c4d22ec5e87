#!/bin/bash
# Run Debian's containerd for reel's tests, and give it the test image.
#
#   scripts/containerd.sh start          start containerd unless it already answers
#   scripts/containerd.sh stop           stop the containerd this script started
#   scripts/containerd.sh status         exit 0 when `ctr version` answers
#   scripts/containerd.sh import-image   import the test image unless present; prints its name
#   scripts/containerd.sh image-name     print the test image's name
#
# Paths are containerd's defaults: root /var/lib/containerd, state /run/containerd, socket
# /run/containerd/containerd.sock, config /etc/containerd/config.toml when it exists. The
# log goes to /var/log/reel-containerd.log, the pid to /run/reel-containerd.pid.
#
# The test image (namespace k8s.io, name $REEL_TEST_IMAGE, default
# docker.io/reel/test-busybox:<hash of its sources>, printed by `image-name`) is the busybox
# rootfs of tests/fixtures/rootfs.sh plus the test programs built statically from
# tests/programs/*.c, installed as /bin/<name> (/bin/counter, /bin/services, ...). It is built
# by hand as an OCI image layout tarball (one layer tar, a config, a manifest, index.json) and
# loaded with `ctr -n k8s.io images import`. The tag changes whenever a source changes, so an import after
# an edit never reuses a stale image.
#
# Overrides: CONTAINERD_ADDRESS, CONTAINERD_ROOT, CONTAINERD_STATE, CONTAINERD_CONFIG,
# CONTAINERD_LOG, REEL_TEST_IMAGE, REEL_TEST_PROGRAMS_DIR (prebuilt counter/services),
# START_TIMEOUT (seconds, default 30).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

ADDRESS=${CONTAINERD_ADDRESS:-/run/containerd/containerd.sock}
ROOT=${CONTAINERD_ROOT:-/var/lib/containerd}
STATE=${CONTAINERD_STATE:-/run/containerd}
CONFIG=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
LOG=${CONTAINERD_LOG:-/var/log/reel-containerd.log}
PIDFILE=/run/reel-containerd.pid
sources_hash() {
    cat "$repo/tests/fixtures/rootfs.sh" "$repo"/tests/programs/*.c /bin/busybox | sha256sum | cut -c1-12
}
IMAGE=${REEL_TEST_IMAGE:-docker.io/reel/test-busybox:$(sources_hash)}
NS=k8s.io
START_TIMEOUT=${START_TIMEOUT:-30}

die() { echo "containerd.sh: $*" >&2; exit 1; }

ctr_() { ctr --address "$ADDRESS" "$@"; }

answers() { [ -S "$ADDRESS" ] && timeout 10 ctr --address "$ADDRESS" --connect-timeout 3s version >/dev/null 2>&1; }

# The overlayfs snapshotter needs a kernel overlay and an upper dir on a filesystem that can
# hold one (ext4, xfs; not overlay itself, not some tmpfs setups). Check it the way the
# snapshotter does, by mounting one under its own root, and say why when it cannot.
check_overlay() {
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
    grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (modprobe overlay)"
    local base="$ROOT/io.containerd.snapshotter.v1.overlayfs"
    mkdir -p "$base"
    local fstype
    fstype=$(stat -f -c %T "$base")
    case "$fstype" in
        overlayfs|overlay) die "$base is on $fstype: an overlay upper dir cannot live on overlay; set CONTAINERD_ROOT to a dir on ext4/xfs" ;;
    esac
    local t
    t=$(mktemp -d "$base/reel-check.XXXXXX")
    mkdir -p "$t/lower" "$t/upper" "$t/work" "$t/merged"
    if ! mount -t overlay overlay -o "lowerdir=$t/lower,upperdir=$t/upper,workdir=$t/work" "$t/merged" 2>"$t/err"; then
        local e; e=$(cat "$t/err")
        rm -rf "$t"
        die "cannot mount an overlay under $base ($fstype): $e"
    fi
    umount "$t/merged"
    rm -rf "$t"
}

start() {
    if answers; then
        return 0
    fi
    command -v containerd >/dev/null || die "containerd is not installed"
    check_overlay
    # A stale pid file or socket from a killed daemon would make it refuse to start.
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        # Still starting (another caller raced us): just wait for it below.
        :
    else
        if pgrep -x containerd >/dev/null 2>&1; then
            # A containerd we did not start, not answering on $ADDRESS: wait for it, never kill it.
            :
        else
            rm -f "$ADDRESS" "$PIDFILE"
            mkdir -p "$(dirname "$LOG")" "$STATE" "$ROOT"
            local args=(--address "$ADDRESS" --root "$ROOT" --state "$STATE" --log-level info)
            [ -f "$CONFIG" ] && args+=(--config "$CONFIG")
            echo "=== $(date -Is) containerd.sh start: containerd ${args[*]}" >>"$LOG"
            # setsid + nohup: not a child of the caller's session, survives the test process.
            setsid nohup containerd "${args[@]}" </dev/null >>"$LOG" 2>&1 &
            echo $! >"$PIDFILE"
        fi
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until answers; do
        if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null && ! pgrep -x containerd >/dev/null; then
            echo "containerd.sh: containerd exited; the end of $LOG:" >&2
            tail -n 30 "$LOG" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "containerd.sh: containerd did not answer on $ADDRESS within ${START_TIMEOUT}s; the end of $LOG:" >&2
            tail -n 30 "$LOG" >&2
            exit 1
        fi
        sleep 0.2
    done
    # The snapshotter must have loaded (it is skipped silently when its check fails).
    if ! ctr_ plugins ls 2>/dev/null | awk '$2 == "overlayfs" {print $NF}' | grep -qx ok; then
        ctr_ plugins ls 2>&1 | grep -i overlay >&2 || true
        die "containerd runs but its overlayfs snapshotter is not ok (see $LOG)"
    fi
}

stop() {
    if [ -f "$PIDFILE" ]; then
        local pid; pid=$(cat "$PIDFILE")
        if kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = containerd ]; then
            kill -TERM "$pid"
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        fi
        rm -f "$PIDFILE"
    elif answers; then
        echo "containerd.sh: containerd answers on $ADDRESS but was not started by this script; left running" >&2
    fi
}

status() {
    if answers; then
        echo "containerd answers on $ADDRESS"
        return 0
    fi
    echo "containerd does not answer on $ADDRESS"
    return 1
}

# Build every tests/programs/*.c into $1 (or take them from $REEL_TEST_PROGRAMS_DIR).
# counter and services must build; another program that does not compile is left out.
build_programs() {
    local out=$1
    mkdir -p "$out"
    local src p
    for src in "$repo"/tests/programs/*.c; do
        p=$(basename "$src" .c)
        if [ -n "${REEL_TEST_PROGRAMS_DIR:-}" ] && [ -x "$REEL_TEST_PROGRAMS_DIR/$p" ]; then
            cp -f "$REEL_TEST_PROGRAMS_DIR/$p" "$out/$p"
        elif cc -O2 -pthread -static -o "$out/$p.tmp" "$src" 2>"$out/$p.err"; then
            mv -f "$out/$p.tmp" "$out/$p"
        else
            case "$p" in
                counter|services) cat "$out/$p.err" >&2; die "cannot build $src" ;;
                *) echo "containerd.sh: warning: $src does not compile, left out of the image" >&2 ;;
            esac
        fi
        rm -f "$out/$p.err" "$out/$p.tmp"
    done
}

sha256() { sha256sum "$1" | cut -d' ' -f1; }

# Prints the image name (computed once, so a source edited meanwhile cannot make it differ
# from what was imported).
import_image() {
    answers || die "containerd does not answer on $ADDRESS (scripts/containerd.sh start)"
    if ctr_ -n "$NS" images ls -q 2>/dev/null | grep -qxF "$IMAGE"; then
        echo "$IMAGE"
        return 0
    fi
    local work
    work=$(mktemp -d /tmp/reel-image.XXXXXX)
    trap 'rm -rf "$work"' RETURN
    "$repo/tests/fixtures/rootfs.sh" "$work/rootfs"
    build_programs "$work/rootfs/bin"
    # A deterministic layer: sorted names, fixed owner and time.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00' \
        -C "$work/rootfs" -cf "$work/layer.tar" .
    mkdir -p "$work/oci/blobs/sha256"
    local layer_digest layer_size
    layer_digest=$(sha256 "$work/layer.tar")
    layer_size=$(stat -c %s "$work/layer.tar")
    mv "$work/layer.tar" "$work/oci/blobs/sha256/$layer_digest"

    cat >"$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/counter"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$layer_digest"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"reel tests/fixtures/rootfs.sh + tests/programs"}]}
JSON
    local config_digest config_size
    config_digest=$(sha256 "$work/config.json")
    config_size=$(stat -c %s "$work/config.json")
    mv "$work/config.json" "$work/oci/blobs/sha256/$config_digest"

    cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer_digest","size":$layer_size}]}
JSON
    local manifest_digest manifest_size
    manifest_digest=$(sha256 "$work/manifest.json")
    manifest_size=$(stat -c %s "$work/manifest.json")
    mv "$work/manifest.json" "$work/oci/blobs/sha256/$manifest_digest"

    cat >"$work/oci/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$manifest_size,"annotations":{"io.containerd.image.name":"$IMAGE","org.opencontainers.image.ref.name":"${IMAGE##*:}"},"platform":{"architecture":"amd64","os":"linux"}}]}
JSON
    echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
    tar -C "$work/oci" -cf "$work/image.tar" oci-layout index.json blobs
    ctr_ -n "$NS" images import --base-name "${IMAGE%:*}" --index-name "$IMAGE" "$work/image.tar" >/dev/null \
        || die "ctr images import failed"
    # Unpacking into the snapshotter happens on import (--no-unpack not given); make sure.
    ctr_ -n "$NS" images ls -q | grep -qxF "$IMAGE" || die "$IMAGE missing after import"
    echo "$IMAGE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    import-image) import_image ;;
    image-name) echo "$IMAGE" ;;
    *) echo "usage: $0 start|stop|status|import-image|image-name" >&2; exit 2 ;;
esac
