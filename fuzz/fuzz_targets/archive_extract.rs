//! An archive of arbitrary bytes (plain or zstd tar) extracted as `reel extract` and a sandbox
//! restore do (every member, then the pages deferred and copied on another thread), and
//! verified as `reel verify` does: an answer or an error, never a panic, and nothing written
//! outside the destination.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reel_core::archive::{extract_members, stage_members, verify, ExtractLimits};

fuzz_target!(|data: &[u8]| {
    let base = std::env::temp_dir().join(format!("reel-fuzz-x-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    if std::fs::create_dir_all(&base).is_err() {
        return;
    }
    let input = base.join("input.tar");
    if std::fs::write(&input, data).is_err() {
        return;
    }
    let limits = ExtractLimits {
        max_bytes: 8 << 20,
        max_members: 10_000,
    };
    // Two levels down, so a member climbing out by up to three levels lands where it is seen.
    let deep = base.join("d1/d2");
    if std::fs::create_dir_all(&deep).is_err() {
        return;
    }
    let _ = extract_members(&input, &deep.join("x"), |_| true, limits);
    if let Ok(Some(mut staged)) = stage_members(
        &input,
        &deep.join("s"),
        |_| true,
        |name| name.contains("pages-"),
        limits,
    ) {
        if let Ok(copy) = staged.spawn_pending() {
            let _ = copy.wait();
        }
    }
    let _ = verify(&input);
    // Only the input, the two levels and the two destinations: no member left its target.
    let listed = |d: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    for (dir, allowed) in [
        (base.clone(), &["d1", "input.tar"][..]),
        (base.join("d1"), &["d2"][..]),
        (deep.clone(), &["s", "x"][..]),
    ] {
        let names = listed(&dir);
        assert!(
            names.iter().all(|n| allowed.contains(&n.as_str())),
            "written outside the destination, in {}: {names:?}",
            dir.display()
        );
    }
});
