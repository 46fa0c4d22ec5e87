//! `cargo bench --bench inspect`: how long `reel inspect checkpoint` (no `--rootfs`) takes on
//! checkpoints of growing memory, from the store's `.tar` and from a `.tar.zst` export, beside
//! `checkpointctl inspect --all` on the same archive when checkpointctl is installed (not part
//! of the test suite; needs root and runc).
//!
//! For each N in `REEL_BENCH_GIB` (default `0.25,1,2`) a pod-annotated runc container holds N
//! GiB of anonymous memory (`tests/programs/memhog.c`); reel checkpoints it and exports it.
//! After one warm-up run (inputs in the page cache), `REEL_BENCH_ROUNDS` (default 3) timed
//! runs of each: the median wall time goes to the table. Inspect reads only the members it
//! needs (images and the pages holding argv and the environment), so the time must not grow
//! with N. The JSON goes to `<target>/bench-inspect.json`.
//!
//! The `reel` binary is not built by `cargo bench`: build it first in the same profile
//! (`cargo build --release -p reel-cli`).

use std::fs;
use std::path::Path;
use std::process::Command;

use kit::bench::{median_secs, sizes_and_rounds};
use kit::bins;
use kit::reel::TestStore;
use reel_testkit as kit;
use serde_json::{json, Value};

fn reel_inspect(store: &TestStore, archive: &Path) -> bool {
    let out = store
        .cmd(&[
            "inspect",
            "checkpoint",
            archive.to_str().unwrap(),
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reel inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

fn checkpointctl(archive: &Path) -> bool {
    Command::new("checkpointctl")
        .args(["inspect", "--all"])
        .arg(archive)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn main() {
    kit::require_root();
    bins::reel_bin();
    let (gibs, rounds) = sizes_and_rounds("0.25,1,2");
    let has_ctl = Command::new("checkpointctl")
        .arg("version")
        .output()
        .is_ok();
    let mut rows = Vec::new();
    for gib in gibs {
        let mib = (gib * 1024.0) as u64;
        let store = TestStore::named("bench-inspect");
        let kit::bench::MemhogCheckpoint { tar, zst, .. } =
            kit::bench::memhog_checkpoint(&store, "bench-insp", mib);
        let size = |p: &Path| fs::metadata(p).unwrap().len() as f64 / (1 << 20) as f64;
        let t_tar = median_secs(rounds, || reel_inspect(&store, &tar)).unwrap();
        let t_zst = median_secs(rounds, || reel_inspect(&store, &zst)).unwrap();
        let ctl_tar = if has_ctl {
            median_secs(rounds, || checkpointctl(&tar))
        } else {
            None
        };
        let row = json!({
            "gib": gib,
            "tar_mib": size(&tar),
            "zst_mib": size(&zst),
            "reel_tar_s": t_tar,
            "reel_zst_s": t_zst,
            "checkpointctl_tar_s": ctl_tar,
            "checkpointctl_over_reel": ctl_tar.map(|c| c / t_tar),
        });
        eprintln!("{row}");
        rows.push(row);
    }
    println!(
        "{:>6}  {:>9}  {:>9}  {:>12}  {:>12}  {:>16}  {:>8}",
        "GiB", "tar MiB", "zst MiB", "reel .tar s", "reel .zst s", "checkpointctl s", "ratio"
    );
    for r in &rows {
        let f = |v: &Value| v.as_f64().map(|x| format!("{x:.3}")).unwrap_or("-".into());
        println!(
            "{:>6}  {:>9.0}  {:>9.0}  {:>12}  {:>12}  {:>16}  {:>8}",
            r["gib"],
            r["tar_mib"].as_f64().unwrap(),
            r["zst_mib"].as_f64().unwrap(),
            f(&r["reel_tar_s"]),
            f(&r["reel_zst_s"]),
            f(&r["checkpointctl_tar_s"]),
            f(&r["checkpointctl_over_reel"]),
        );
    }
    if !has_ctl {
        println!("checkpointctl is not installed: no comparison");
    }
    let out = bins::profile_dir()
        .parent()
        .unwrap()
        .join("bench-inspect.json");
    fs::write(&out, serde_json::to_vec_pretty(&rows).unwrap()).unwrap();
}
