//! A checkpoint archive of arbitrary bytes (plain or zstd tar): opened by CheckpointSource
//! and inspected, with verification on and off. An answer or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_core::inspect::{inspect, CheckpointSource, InspectOptions, SourceOptions};

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("reel-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.tar");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    for verify in [true, false] {
        if let Ok(src) = CheckpointSource::open(&path, SourceOptions { verify }) {
            let _ = inspect(&src, &InspectOptions::all());
        }
    }
});
