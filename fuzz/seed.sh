#!/bin/sh
# Seed the fuzz corpora from a real reel archive (a plain .tar):
#
#   REEL_INSPECT_KEEP=/some/dir cargo test -p reel-e2e --test inspect inspect_reports
#   fuzz/seed.sh /some/dir/evidence.tar
#
# image_reader gets every CRIU image of at most 64 KiB; checkpoint_source gets the archive
# itself, with members over 64 KiB cut to 4 KiB so the corpus stays small, and its zstd form.
set -eu
archive=${1:?usage: fuzz/seed.sh ARCHIVE.tar}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xf "$archive" -C "$work"
mkdir -p "$here/corpus/image_reader" "$here/corpus/checkpoint_source"
for f in "$work"/checkpoint/*.img "$work/stats-dump"; do
    [ -f "$f" ] || continue
    case $(basename "$f") in pages-*) continue ;; esac   # raw memory, not an image
    size=$(stat -c %s "$f")
    [ "$size" -le 65536 ] || continue
    cp "$f" "$here/corpus/image_reader/$(basename "$f")"
done
for f in "$work"/checkpoint/* "$work"/*; do
    [ -f "$f" ] || continue
    [ "$(stat -c %s "$f")" -gt 65536 ] || continue
    head -c 4096 "$f" > "$f.cut" && mv "$f.cut" "$f"
done
(cd "$work" && tar -cf "$here/corpus/checkpoint_source/evidence.tar" checkpoint $(ls | grep -v '^checkpoint$'))
zstd -q -f "$here/corpus/checkpoint_source/evidence.tar" -o "$here/corpus/checkpoint_source/evidence.tar.zst"
echo "seeded $(ls "$here/corpus/image_reader" | wc -l) images and 2 archives"
