//! `reel-e2e`: the workspace's root package. It hosts the end-to-end tests in `tests/` (which
//! drive the real `reel` binary, real CRIU and real containers) and the benchmarks in
//! `benches/` that compare reel with runc and podman; its library is what those tests read of
//! CRIU's images, through reel-core's one image reader.

use std::path::Path;

/// The regular files the dumped tasks had open or mapped, as `files.img` records them:
/// (path inside the container without the leading `/`, size CRIU will insist on at restore).
pub fn regular_files(images: &Path) -> Vec<(String, Option<u64>)> {
    use criu_sys::proto::FileEntry;
    use reel_core::criu::image::{ImageKind, ImageReader};

    let mut image = ImageReader::open(&images.join("files.img")).expect("files.img");
    assert_eq!(image.kind(), ImageKind::Files);
    let entries: Vec<FileEntry> = image.read_entries().expect("files.img's entries");
    let mut out = Vec::new();
    for e in entries {
        if let Some(r) = e.reg.as_ref() {
            out.push((r.name.trim_start_matches('/').to_string(), r.size));
        }
    }
    out
}

/// The size CRIU recorded for the open file `path` (inside the container).
pub fn dumped_size(images: &Path, path: &str) -> u64 {
    let want = path.trim_start_matches('/');
    let files = regular_files(images);
    files
        .iter()
        .find(|(n, _)| n == want)
        .and_then(|(_, s)| *s)
        .unwrap_or_else(|| panic!("files.img records no size for {path}: {files:?}"))
}
