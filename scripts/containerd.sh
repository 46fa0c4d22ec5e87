#!/bin/bash
# Run Debian's containerd for reel's tests, and give it the test image.
#
#   scripts/containerd.sh start               start containerd unless it already answers
#   scripts/containerd.sh stop                stop the containerd this script started
#   scripts/containerd.sh status              exit 0 when `ctr version` answers
#   scripts/containerd.sh import-image [TAR]  make the test image usable (import it unless it
#                                             is); prints its name
#   scripts/containerd.sh image-tar OUT       write the test image as an OCI layout tarball
#   scripts/containerd.sh image-name          print the test image's name
#
# Paths are containerd's defaults: root /var/lib/containerd, state /run/containerd, socket
# /run/containerd/containerd.sock, config /etc/containerd/config.toml when it exists. The
# log goes to /var/log/reel-containerd.log, the pid to /run/reel-containerd.pid (for another
# address: <address>.reel.pid), so a second, private containerd (its own CONTAINERD_ADDRESS,
# CONTAINERD_ROOT, CONTAINERD_STATE) can run beside the shared one.
#
# The test image (namespace k8s.io, name $REEL_TEST_IMAGE, default
# docker.io/reel/test-busybox:<hash of its sources>, printed by `image-name`) is the busybox
# rootfs of tests/fixtures/rootfs.sh plus the test programs built statically from
# tests/programs/*.c, installed as /bin/<name> (/bin/counter, /bin/services, ...). It is built
# by hand as an OCI image layout tarball (one layer tar, a config, a manifest, index.json whose
# one manifest carries the image's name) and loaded with `ctr -n k8s.io images import`. The tag
# changes whenever a source changes, so an import after an edit never reuses a stale image.
#
# `import-image` trusts nothing it did not check: the image must be registered, complete (every
# blob of the manifest present: `ctr images check`), unpacked into the snapshotter, and a
# container must be creatable from it. An image registered under the name that fails a check
# (a half-done import of an earlier run) is removed and imported again; an import that fails is
# removed and retried (IMPORT_ATTEMPTS, default 3), then the script fails with a diagnosis and
# leaves no image registered under the name. Imports are serialized by a lock
# (/run/reel-containerd.import.lock): tests of several worktrees may ask at once.
#
# Overrides: CONTAINERD_ADDRESS, CONTAINERD_ROOT, CONTAINERD_STATE, CONTAINERD_CONFIG,
# CONTAINERD_LOG, CONTAINERD_SNAPSHOTTER (default overlayfs), REEL_TEST_IMAGE,
# REEL_TEST_PROGRAMS_DIR (prebuilt programs), START_TIMEOUT (seconds, default 30),
# IMPORT_ATTEMPTS.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)

DEFAULT_ADDRESS=/run/containerd/containerd.sock
ADDRESS=${CONTAINERD_ADDRESS:-$DEFAULT_ADDRESS}
ROOT=${CONTAINERD_ROOT:-/var/lib/containerd}
STATE=${CONTAINERD_STATE:-/run/containerd}
CONFIG=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}
LOG=${CONTAINERD_LOG:-/var/log/reel-containerd.log}
SNAPSHOTTER=${CONTAINERD_SNAPSHOTTER:-overlayfs}
if [ "$ADDRESS" = "$DEFAULT_ADDRESS" ]; then
    PIDFILE=/run/reel-containerd.pid
else
    PIDFILE=$ADDRESS.reel.pid
fi
LOCK=${PIDFILE%.pid}.import.lock
sources_hash() {
    cat "$repo/tests/fixtures/rootfs.sh" "$repo"/tests/programs/*.c /bin/busybox | sha256sum | cut -c1-12
}
IMAGE=${REEL_TEST_IMAGE:-docker.io/reel/test-busybox:$(sources_hash)}
NS=k8s.io
START_TIMEOUT=${START_TIMEOUT:-30}
IMPORT_ATTEMPTS=${IMPORT_ATTEMPTS:-3}

die() { echo "containerd.sh: $*" >&2; exit 1; }

# Temporary directories, removed when the script exits (whichever way).
CLEANUP=()
trap 'rm -rf "${CLEANUP[@]}"' EXIT

ctr_() { ctr --address "$ADDRESS" "$@"; }

answers() { [ -S "$ADDRESS" ] && timeout 10 ctr --address "$ADDRESS" --connect-timeout 3s version >/dev/null 2>&1; }

# A containerd process serving $ADDRESS that this script did not start (or is still starting).
daemon_on_address() {
    local p args
    for p in $(pgrep -x containerd || true); do
        args=" $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null || true)"
        case "$args" in
            *" --address $ADDRESS "* | *" -a $ADDRESS "*) return 0 ;;
            *" --address "* | *" -a "*) ;;
            *) [ "$ADDRESS" = "$DEFAULT_ADDRESS" ] && return 0 ;;
        esac
    done
    return 1
}

# The overlayfs snapshotter needs a kernel overlay and an upper dir on a filesystem that can
# hold one (ext4, xfs; not overlay itself, not some tmpfs setups). Check it the way the
# snapshotter does, by mounting one under its own root, and say why when it cannot. On a machine
# where containerd never ran, the directories are made with the modes containerd gives them.
check_overlay() {
    grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
    grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (modprobe overlay)"
    [ -d "$ROOT" ] || install -d -m 0711 "$ROOT"
    local base="$ROOT/io.containerd.snapshotter.v1.overlayfs"
    [ -d "$base" ] || install -d -m 0700 "$base"
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
    command -v containerd >/dev/null || die "containerd is not installed (scripts/setup.sh installs it)"
    check_overlay
    # A stale pid file or socket from a killed daemon would make it refuse to start.
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        # Still starting (another caller raced us): just wait for it below.
        :
    elif daemon_on_address; then
        # A containerd we did not start, not answering on $ADDRESS yet: wait for it, never kill it.
        :
    else
        rm -f "$ADDRESS" "$PIDFILE"
        mkdir -p "$(dirname "$LOG")" "$(dirname "$ADDRESS")" "$(dirname "$PIDFILE")" "$STATE"
        local args=(--address "$ADDRESS" --root "$ROOT" --state "$STATE" --log-level info)
        [ -f "$CONFIG" ] && args+=(--config "$CONFIG")
        echo "=== $(date -Is) containerd.sh start: containerd ${args[*]}" >>"$LOG"
        # setsid + nohup: not a child of the caller's session, survives the test process.
        setsid nohup containerd "${args[@]}" </dev/null >>"$LOG" 2>&1 &
        echo $! >"$PIDFILE"
    fi
    local deadline=$((SECONDS + START_TIMEOUT))
    until answers; do
        if [ -f "$PIDFILE" ] && ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null && ! daemon_on_address; then
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
    if ! ctr_ plugins ls 2>/dev/null | awk -v s="$SNAPSHOTTER" '$2 == s {print $NF}' | grep -qx ok; then
        ctr_ plugins ls 2>&1 | grep -i "$SNAPSHOTTER" >&2 || true
        die "containerd runs but its $SNAPSHOTTER snapshotter is not ok (see $LOG)"
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
    command -v cc >/dev/null || [ -n "${REEL_TEST_PROGRAMS_DIR:-}" ] \
        || die "no C compiler (cc) to build tests/programs: scripts/setup.sh installs build-essential"
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

# The OCI platform of this machine (the programs are built for it).
oci_arch() {
    case "$(uname -m)" in
        x86_64) echo amd64 ;;
        aarch64) echo arm64 ;;
        armv7l) echo arm ;;
        *) uname -m ;;
    esac
}

# Writes the test image to $1 as an OCI image layout tarball. Sets CONFIG_DIGEST and
# MANIFEST_DIGEST.
image_tar() {
    local out=$1 work
    work=$(mktemp -d /tmp/reel-image.XXXXXX)
    CLEANUP+=("$work")
    "$repo/tests/fixtures/rootfs.sh" "$work/rootfs"
    build_programs "$work/rootfs/bin"
    # A deterministic layer: sorted names, fixed owner and time.
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00' \
        -C "$work/rootfs" -cf "$work/layer.tar" .
    mkdir -p "$work/oci/blobs/sha256"
    local layer_digest layer_size arch
    layer_digest=$(sha256 "$work/layer.tar")
    layer_size=$(stat -c %s "$work/layer.tar")
    mv "$work/layer.tar" "$work/oci/blobs/sha256/$layer_digest"
    arch=$(oci_arch)

    cat >"$work/config.json" <<JSON
{"architecture":"$arch","os":"linux","created":"2024-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/counter"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$layer_digest"]},"history":[{"created":"2024-01-01T00:00:00Z","created_by":"reel tests/fixtures/rootfs.sh + tests/programs"}]}
JSON
    local config_size
    CONFIG_DIGEST=$(sha256 "$work/config.json")
    config_size=$(stat -c %s "$work/config.json")
    mv "$work/config.json" "$work/oci/blobs/sha256/$CONFIG_DIGEST"

    cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$CONFIG_DIGEST","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer_digest","size":$layer_size}]}
JSON
    local manifest_size
    MANIFEST_DIGEST=$(sha256 "$work/manifest.json")
    manifest_size=$(stat -c %s "$work/manifest.json")
    mv "$work/manifest.json" "$work/oci/blobs/sha256/$MANIFEST_DIGEST"

    # The manifest carries the image's name; the index itself is NOT named (no --index-name at
    # import). containerd 1.6 registers one image per name it finds: naming the index too made
    # two records of one name, the second (the manifest) replacing the first, so the index blob
    # lost its only reference and the garbage collector could delete it while `ctr images
    # import` still unpacked the first record: "content digest sha256:<index>: not found",
    # with the name left registered, not unpacked.
    cat >"$work/oci/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$MANIFEST_DIGEST","size":$manifest_size,"annotations":{"io.containerd.image.name":"$IMAGE","org.opencontainers.image.ref.name":"${IMAGE##*:}"},"platform":{"architecture":"$arch","os":"linux"}}]}
JSON
    echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"
    tar -C "$work/oci" -cf "$out" oci-layout index.json blobs
}

# Why $IMAGE is not usable, or nothing when it is: registered, every blob of its manifest present
# (`ctr images check` says complete), unpacked into the snapshotter (and the unpack recorded on
# its config, so that the snapshot stays), and a container can be created from it (its config read, a snapshot prepared on its layers; the container is removed
# again). The unpack is checked before the container, which `ctr` would unpack on demand.
image_problem() {
    local row
    row=$(ctr_ -n "$NS" images check --snapshotter "$SNAPSHOTTER" "name==$IMAGE" 2>&1 \
        | awk -v n="$IMAGE" '$1 == n') || true
    if [ -z "$row" ]; then
        echo "not registered"
        return
    fi
    local status unpacked
    status=$(awk '{print $4}' <<<"$row")
    unpacked=$(awk '{print $NF}' <<<"$row")
    if [ "$status" != complete ]; then
        echo "content $(awk '{print $4, $5}' <<<"$row") (ctr images check)"
        return
    fi
    if [ "$unpacked" != true ]; then
        echo "content complete but not unpacked into the $SNAPSHOTTER snapshotter (ctr images check)"
        return
    fi
    # An unpack that finished labels the image config with the snapshot it made; without the
    # label the garbage collector removes the snapshot (an import that failed half-way leaves it
    # for a while, and `images check` says unpacked until it goes).
    local target config labels
    target=$(awk '{print $3}' <<<"$row")
    config=$(ctr_ -n "$NS" content get "$target" 2>/dev/null \
        | grep -o '"config":{[^}]*}' | grep -o 'sha256:[0-9a-f]*' | head -n 1) || true
    if [ -z "$config" ]; then
        echo "its target $target is not a manifest with a config"
        return
    fi
    labels=$(ctr_ -n "$NS" content ls "digest==$config" 2>/dev/null \
        | awk -v d="$config" '$1 == d {print $NF}') || true
    case ",$labels," in
        *",containerd.io/gc.ref.snapshot.$SNAPSHOTTER="*) ;;
        *)
            echo "its unpacked layers are not referenced by its config $config (an unpack that did not finish)"
            return
            ;;
    esac
    local probe="reel-image-check-$$-$RANDOM" out
    if ! out=$(ctr_ -n "$NS" containers create --snapshotter "$SNAPSHOTTER" "$IMAGE" "$probe" /bin/true 2>&1); then
        ctr_ -n "$NS" containers rm "$probe" >/dev/null 2>&1 || true
        echo "no container can be created from it: $out"
        return
    fi
    ctr_ -n "$NS" containers rm "$probe" >/dev/null 2>&1 || true
}

# Removes $IMAGE, and the names containerd's CRI plugin gives the same image
# (`sha256:<config digest>`, pointing at the same target or at our manifest), so that nothing
# half-imported stays registered.
forget_image() {
    local digests=() names=("$IMAGE") d n
    d=$(ctr_ -n "$NS" images ls "name==$IMAGE" 2>/dev/null | awk -v n="$IMAGE" '$1 == n {print $3}') || true
    [ -n "$d" ] && digests+=("$d")
    [ -n "${MANIFEST_DIGEST:-}" ] && digests+=("sha256:$MANIFEST_DIGEST")
    for d in "${digests[@]}"; do
        while read -r n; do
            case "$n" in sha256:*) names+=("$n") ;; esac
        done < <(ctr_ -n "$NS" images ls -q "target.digest==$d" 2>/dev/null || true)
    done
    ctr_ -n "$NS" images rm --sync "${names[@]}" >/dev/null 2>&1 || true
    if ctr_ -n "$NS" images ls -q | grep -qxF "$IMAGE"; then
        die "cannot remove the unusable image $IMAGE from containerd ($ADDRESS): ctr -n $NS images rm $IMAGE"
    fi
}

# Prints the image name (computed once, so a source edited meanwhile cannot make it differ
# from what was imported). TAR: import this OCI layout tarball (see image-tar) instead of
# building one; it must name the image $IMAGE.
import_image() {
    local tar=${1:-}
    answers || die "containerd does not answer on $ADDRESS (scripts/containerd.sh start)"
    command -v flock >/dev/null || die "flock is missing (util-linux)"
    mkdir -p "$(dirname "$LOCK")"
    exec 9>>"$LOCK"
    flock -w 600 9 || die "another import of the test image holds $LOCK for 10 minutes"
    local problem
    if ctr_ -n "$NS" images ls -q | grep -qxF "$IMAGE"; then
        problem=$(image_problem)
        if [ -z "$problem" ]; then
            echo "$IMAGE"
            return 0
        fi
        echo "containerd.sh: $IMAGE is registered but unusable ($problem): removing it and importing it again" >&2
        forget_image
    fi
    local work
    work=$(mktemp -d /tmp/reel-import.XXXXXX)
    CLEANUP+=("$work")
    if [ -z "$tar" ]; then
        tar=$work/image.tar
        image_tar "$tar"
    fi
    [ -f "$tar" ] || die "no image tarball $tar"
    local attempt out history=""
    for attempt in $(seq 1 "$IMPORT_ATTEMPTS"); do
        if out=$(ctr_ -n "$NS" images import --snapshotter "$SNAPSHOTTER" "$tar" 2>&1); then
            problem=$(image_problem)
            if [ -z "$problem" ]; then
                [ "$attempt" = 1 ] || echo "containerd.sh: $IMAGE imported at attempt $attempt" >&2
                echo "$IMAGE"
                return 0
            fi
            problem="imported, but $problem"
        else
            # ctr's own error is its last line (`ctr: ...`).
            problem="ctr images import failed: $(tail -n 1 <<<"$out")"
        fi
        echo "containerd.sh: import of $IMAGE, attempt $attempt of $IMPORT_ATTEMPTS: $problem" >&2
        history+="  attempt $attempt: $problem"$'\n'
        forget_image
        sleep 1
    done
    {
        echo "containerd.sh: the test image $IMAGE could not be imported into containerd ($ADDRESS, snapshotter $SNAPSHOTTER, root $ROOT):"
        printf '%s' "$history"
        echo "  what the tarball holds ($tar):"
        tar -tvf "$tar" 2>&1 | sed 's/^/    /'
        echo "  free space under $ROOT:"
        df -h "$ROOT" 2>&1 | sed 's/^/    /'
        if [ -f "$LOG" ]; then
            echo "  the last errors of $LOG:"
            grep -E 'level=(error|warning)' "$LOG" | tail -n 10 | sed 's/^/    /'
        fi
        echo "  nothing is left registered under $IMAGE; fix the cause above and run: $0 import-image"
    } >&2
    exit 1
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    import-image) import_image "${2:-}" ;;
    image-tar) [ -n "${2:-}" ] || die "usage: $0 image-tar OUT"; image_tar "$2" ;;
    image-name) echo "$IMAGE" ;;
    *) echo "usage: $0 start|stop|status|import-image [TAR]|image-tar OUT|image-name" >&2; exit 2 ;;
esac
