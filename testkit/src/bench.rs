//! What the benchmarks share: running shell commands, a quiet disk before each run, the
//! memhog workload (in runc and in Podman) and its checkpoint, medians, the sizes and rounds
//! asked for.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate as common;
use crate::reel::TestStore;
use crate::{BundleBuilder, Oci};

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

/// The median seconds of `rounds` runs of `f`, after one untimed run (warm caches); `None`
/// when that first run says it failed (`f` returns false). A later failure panics.
pub fn median_secs(rounds: usize, mut f: impl FnMut() -> bool) -> Option<f64> {
    if !f() {
        return None;
    }
    let mut t = Vec::new();
    for _ in 0..rounds {
        let s = std::time::Instant::now();
        assert!(f(), "a timed run failed after the first succeeded");
        t.push(s.elapsed().as_secs_f64());
    }
    Some(median(t))
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
        .split([',', ' '])
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("REEL_BENCH_GIB: numbers"))
        .collect();
    let rounds = std::env::var("REEL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    (gibs, rounds)
}

/// A checkpoint of memhog holding some MiB, in a store and exported.
pub struct MemhogCheckpoint {
    pub id: String,
    /// The store's `<id>.tar`.
    pub tar: PathBuf,
    /// Its export, `<store>/<id>.export.tar.zst`.
    pub zst: PathBuf,
}

/// Runs memhog holding `mib` MiB in a pod-annotated runc container (names starting with
/// `prefix`), checkpoints it with reel into `store`, exports it as `.tar.zst`, and removes
/// the container.
pub fn memhog_checkpoint(store: &TestStore, prefix: &str, mib: u64) -> MemhogCheckpoint {
    let ns = common::unique_name(&format!("{prefix}-ns"));
    let pod = common::unique_name(prefix);
    let bundle = BundleBuilder::new(&pod)
        .containerd_pod(&ns, &pod, "app")
        .args(&["/bin/sh", "-c", &memhog_cmd(mib)])
        .build();
    let c = common::run_oci(Oci::Runc, None, bundle);
    common::wait_for(Duration::from_secs(300), "memhog to fill memory", || {
        c.read_file("/tmp/memhog.ready").map(|_| ())
    });
    let out = store.run(&["create", "checkpoint", &pod, "-n", &ns, "-o", "json"]);
    out.ok();
    let created = out.json();
    let tar = Path::new(created["path"].as_str().unwrap()).to_path_buf();
    let id = created["id"].as_str().unwrap().to_string();
    drop(c);
    let zst = store.root().join(format!("{id}.export.tar.zst"));
    store
        .run(&[
            "export",
            "checkpoint",
            "--id",
            &id,
            "--dest",
            zst.to_str().unwrap(),
        ])
        .ok();
    MemhogCheckpoint { id, tar, zst }
}
