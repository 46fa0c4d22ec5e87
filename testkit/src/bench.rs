//! What the benchmarks share: running shell commands, a quiet disk before each run, the
//! memhog workload (in runc and in Podman), medians, the sizes and rounds asked for.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate as common;

/// Runs `cmd` with `sh -c`, panicking with its output when it fails.
pub fn sh(cmd: &str) -> std::process::Output {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{cmd} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The memhog workload of MIB MiB, stdio on the container's /dev/null.
pub fn memhog_cmd(mib: u64) -> String {
    format!("exec /bin/memhog {mib} /tmp >/dev/null 2>&1 </dev/null")
}

/// Seconds of quiet before each run (`REEL_BENCH_SETTLE_S`, default 3).
pub fn settle() {
    let secs: f64 = std::env::var("REEL_BENCH_SETTLE_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3.0);
    sh("sync");
    std::thread::sleep(Duration::from_secs_f64(secs));
}

/// Whether `cmd` succeeded, its output thrown away (for clean-ups).
pub fn quiet(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The median (NaN for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs the memhog workload of MIB MiB in a Podman (runc) container; returns its name and
/// its init's host pid.
pub fn run_podman_memhog(prefix: &str, mib: u64) -> (String, i32) {
    let image = common::podman_image();
    let name = common::unique_name(prefix);
    sh(&format!(
        "podman run -d --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 \
         --name {name} {image} /bin/sh -c '{}' >/dev/null",
        memhog_cmd(mib)
    ));
    let pid = String::from_utf8_lossy(
        &sh(&format!("podman inspect -f '{{{{.State.Pid}}}}' {name}")).stdout,
    )
    .trim()
    .parse()
    .unwrap();
    (name, pid)
}

/// The sizes to run (`REEL_BENCH_GIB`, GiB, comma-separated) and the rounds
/// (`REEL_BENCH_ROUNDS`, default 3).
pub fn sizes_and_rounds(default_gib: &str) -> (Vec<f64>, usize) {
    let gibs = std::env::var("REEL_BENCH_GIB")
        .unwrap_or_else(|_| default_gib.into())
        .split(',')
        .map(|s| s.trim().parse().expect("REEL_BENCH_GIB: numbers"))
        .collect();
    let rounds = std::env::var("REEL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    (gibs, rounds)
}
