//! `cargo bench --bench search`: how fast `reel search checkpoint` reads every process's memory,
//! against the best a tool could do reading the same bytes (not part of the test suite; needs
//! root and runc).
//!
//! For each N in `REEL_BENCH_GIB` (GiB, separated by commas or spaces; default `1`) a
//! pod-annotated runc container holds N GiB of anonymous memory (`tests/programs/memhog.c`:
//! half text, half pseudo-random bytes); reel checkpoints it and exports it as `.tar.zst`.
//! Beforehand the pages members are copied out of the store's `.tar` into one file, and that
//! file compressed with `zstd -3`. Then, each input read once before timing (warm cache for
//! every tool), the median of `REEL_BENCH_ROUNDS` (default 3) runs of:
//!
//! * `reel search checkpoint <.tar> LITERAL --count` vs `LC_ALL=C grep -c -F LITERAL pages`;
//! * `reel search checkpoint <.tar.zst> LITERAL --count` vs `zstd -dc pages.zst | grep -c -F`;
//! * `reel search checkpoint <.tar> --regex REGEX --count` vs the literal.
//!
//! Goals: literal at most 1.5x grep, `.tar.zst` at most 1.5x zstd|grep, regex at most 3x the
//! literal. The table gives the ratios, seconds per GiB (linear growth keeps it flat) and
//! reel's peak memory (VmHWM, through `/usr/bin/time -f %M`). Where checkpointctl is
//! installed, its `memparse --pid 1 --search` time on the same `.tar` is shown beside. The
//! JSON goes to `<target>/bench-search.json`.
//!
//! What it creates is named `$REEL_BENCH_PREFIX-…` (default `bench`).
//!
//! The `reel` binary is not built by `cargo bench`: build it first in the same profile
//! (`cargo build --release -p reel-cli`), or name it with `REEL_BIN`.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use kit::bench::sh;
use kit::bins;
use kit::reel::TestStore;
use reel_testkit as kit;
use serde_json::{json, Value};

/// The literal searched for: in no page of memhog (so every tool reads everything).
const LITERAL: &str = "REEL-BENCH-NEEDLE-8d1f2c";
/// The regular expression: literal-led, as an analyst would write one for a token.
const REGEX: &str = "REEL-BENCH-[A-Z]+-[0-9a-f]{6}";

/// Median seconds of `rounds` runs of `cmd` (a shell command line), after one untimed run.
fn timed(rounds: usize, cmd: &str) -> f64 {
    kit::bench::median_secs(rounds, || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        // grep -c exits 1 when it counts 0; reel search exits 3 when it finds nothing.
        let code = out.status.code();
        assert!(
            matches!(code, Some(0 | 1 | 3)),
            "{cmd}: {code:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        true
    })
    .expect("the command ran")
}

/// Peak resident memory (VmHWM) of `cmd` in MiB, from `/usr/bin/time -f %M` (KiB).
fn peak_mib(cmd: &[&str]) -> Option<f64> {
    if !Path::new("/usr/bin/time").is_file() {
        return None;
    }
    let out = Command::new("/usr/bin/time")
        .args(["-f", "HWM %M"])
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output()
        .ok()?;
    let err = String::from_utf8_lossy(&out.stderr);
    let kib: f64 = err
        .lines()
        .filter_map(|l| l.strip_prefix("HWM "))
        .next_back()?
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn q(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn main() {
    kit::require_root();
    let reel = bins::reel_bin().to_path_buf();
    let (gibs, rounds) = kit::bench::sizes_and_rounds("1");
    let has_ctl = Command::new("checkpointctl")
        .arg("version")
        .output()
        .is_ok();
    // Names of what the benchmark creates start with this (`REEL_BENCH_PREFIX`).
    let prefix = std::env::var("REEL_BENCH_PREFIX").unwrap_or_else(|_| "bench".into());
    eprintln!(
        "reel: {}; literal {LITERAL:?}, regex {REGEX:?}",
        reel.display()
    );
    let mut rows = Vec::new();
    for gib in gibs {
        let mib = (gib * 1024.0) as u64;
        let store = TestStore::named(&format!("{prefix}-search"));
        let kit::bench::MemhogCheckpoint { tar, zst, .. } =
            kit::bench::memhog_checkpoint(&store, &format!("{prefix}-srch"), mib);
        // The pages data, extracted beforehand: every pages member, one after the other.
        let work = store.root().join("pages");
        fs::create_dir_all(&work).unwrap();
        sh(&format!(
            "tar -xf {} -C {} --wildcards 'checkpoint/pages-*.img'",
            q(&tar),
            q(&work)
        ));
        let pages = work.join("pages.bin");
        sh(&format!(
            "cat {}/checkpoint/pages-*.img > {} && rm -r {}/checkpoint",
            q(&work),
            q(&pages),
            q(&work)
        ));
        let pages_zst = work.join("pages.bin.zst");
        sh(&format!(
            "zstd -q -3 -T0 {} -o {}",
            q(&pages),
            q(&pages_zst)
        ));
        let size_mib = |p: &Path| fs::metadata(p).unwrap().len() as f64 / (1 << 20) as f64;
        let search = |archive: &Path, extra: &str| {
            format!(
                "{} search checkpoint {} {extra} --count -o json >/dev/null",
                q(&reel),
                q(archive)
            )
        };
        let lit = format!("'{LITERAL}'");
        let t_grep = timed(
            rounds,
            &format!("LC_ALL=C grep -c -F {lit} {} >/dev/null", q(&pages)),
        );
        let t_tar = timed(rounds, &search(&tar, &lit));
        // The same without checking the members' SHA-256 against the manifest: what the
        // verification costs.
        let t_nov = timed(rounds, &search(&tar, &format!("{lit} --no-verify")));
        let t_zgrep = timed(
            rounds,
            &format!(
                "zstd -dc {} | LC_ALL=C grep -c -F {lit} >/dev/null",
                q(&pages_zst)
            ),
        );
        let t_zst = timed(rounds, &search(&zst, &lit));
        let t_re = timed(rounds, &search(&tar, &format!("--regex '{REGEX}'")));
        let t_ctl = has_ctl.then(|| {
            timed(
                rounds,
                &format!(
                    "checkpointctl memparse --pid 1 --search {lit} {} >/dev/null",
                    q(&tar)
                ),
            )
        });
        let hwm_of = |archive: &Path| {
            peak_mib(&[
                reel.to_str().unwrap(),
                "search",
                "checkpoint",
                archive.to_str().unwrap(),
                LITERAL,
                "--count",
            ])
        };
        let (hwm, hwm_zst) = (hwm_of(&tar), hwm_of(&zst));
        let row = json!({
            "gib": gib,
            "pages_mib": size_mib(&pages),
            "tar_mib": size_mib(&tar),
            "zst_mib": size_mib(&zst),
            "pages_zst_mib": size_mib(&pages_zst),
            "grep_s": t_grep,
            "reel_tar_s": t_tar,
            "literal_over_grep": t_tar / t_grep,
            "reel_tar_no_verify_s": t_nov,
            "no_verify_over_grep": t_nov / t_grep,
            "zstd_grep_s": t_zgrep,
            "reel_zst_s": t_zst,
            "zst_over_zstd_grep": t_zst / t_zgrep,
            "reel_regex_s": t_re,
            "regex_over_literal": t_re / t_tar,
            "reel_tar_s_per_gib": t_tar / gib,
            "reel_peak_mib_tar": hwm,
            "reel_peak_mib_zst": hwm_zst,
            "checkpointctl_s": t_ctl,
        });
        eprintln!("{row}");
        rows.push(row);
        // For profiling: keep a copy of the archive (`REEL_BENCH_KEEP=DIR`).
        if let Ok(keep) = std::env::var("REEL_BENCH_KEEP") {
            fs::copy(&tar, Path::new(&keep).join(format!("search-{gib}.tar"))).unwrap();
        }
        let _ = fs::remove_dir_all(&work);
    }
    let f = |v: &Value, p: usize| {
        v.as_f64()
            .map(|x| format!("{x:.p$}"))
            .unwrap_or_else(|| "-".into())
    };
    println!("literal {LITERAL:?}, regex {REGEX:?}; goals: tar/grep <= 1.5, zst/(zstd|grep) <= 1.5, regex/literal <= 3");
    println!(
        "{:>5} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>8} {:>7} {:>6} {:>7} {:>6} {:>7} {:>7} {:>8} {:>8}",
        "GiB",
        "grep s",
        "reel s",
        "ratio",
        "nover s",
        "ratio",
        "s/GiB",
        "zst|grep",
        "reel zst",
        "ratio",
        "regex s",
        "ratio",
        "HWM MiB",
        "HWM zst",
        "ctl s",
        "pagesMiB"
    );
    for r in &rows {
        println!(
            "{:>5} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>8} {:>7} {:>6} {:>7} {:>6} {:>7} {:>7} {:>8} {:>8}",
            r["gib"],
            f(&r["grep_s"], 3),
            f(&r["reel_tar_s"], 3),
            f(&r["literal_over_grep"], 2),
            f(&r["reel_tar_no_verify_s"], 3),
            f(&r["no_verify_over_grep"], 2),
            f(&r["reel_tar_s_per_gib"], 3),
            f(&r["zstd_grep_s"], 3),
            f(&r["reel_zst_s"], 3),
            f(&r["zst_over_zstd_grep"], 2),
            f(&r["reel_regex_s"], 3),
            f(&r["regex_over_literal"], 2),
            f(&r["reel_peak_mib_tar"], 1),
            f(&r["reel_peak_mib_zst"], 1),
            f(&r["checkpointctl_s"], 3),
            f(&r["pages_mib"], 0),
        );
    }
    if !has_ctl {
        println!("checkpointctl is not installed: no comparison");
    }
    let out = bins::profile_dir()
        .parent()
        .unwrap()
        .join("bench-search.json");
    fs::write(&out, serde_json::to_vec_pretty(&rows).unwrap()).unwrap();
}
