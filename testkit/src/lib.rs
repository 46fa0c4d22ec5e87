//! reel's test kit: what the tests and benchmarks of every crate of the workspace share.
//!
//! * the basics here: [`require_root`], [`repo_root`], [`unique_name`], [`test_dir`], [`run`],
//!   [`wait_for`] / [`wait_until`], [`sha256_hex`];
//! * [`bins`]: the `reel` binary and reel-core's helper examples, located (never built) next
//!   to the running test;
//! * [`programs`]: the C programs of `tests/programs/`, built once per source version, and the
//!   daemonized workloads started from them;
//! * [`proc`]: processes as /proc shows them;
//! * [`containers`]: the busybox rootfs, OCI bundles, containers run by runc, crun, containerd
//!   and Podman, removed when dropped;
//! * [`cgroups`]: a container's freezers seen from outside reel;
//! * [`reel`]: running the `reel` binary, its stores, and the workloads its tests checkpoint;
//! * [`restore`]: reading a checkpoint archive back and restoring it with `runc restore`;
//! * [`s3`]: a private S3 server (moto, `scripts/s3-server.sh`).
//!
//! ```ignore
//! reel_testkit::require_root();
//! let bundle = BundleBuilder::new("mytest").args(&["/bin/counter"]).build();
//! let c = containers::run_oci(Oci::Runc, None, bundle);
//! c.wait_counter_advances("/tmp/counter", Duration::from_secs(10));
//! // `c` is deleted when it goes out of scope, also when the test panics.
//! ```
//!
//! Nothing here skips a test and nothing here runs cargo: when something is missing (root, a
//! runtime, containerd, a binary the build should have made), the helpers panic saying what to
//! do. Every name is unique per process and call ([`unique_name`]), so tests can run in
//! parallel.

pub mod bench;
pub mod bins;
pub mod cgroups;
pub mod containers;
pub mod podnet;
pub mod proc;
pub mod programs;
pub mod reel;
pub mod restore;
pub mod s3;

// The container fixtures are what nearly every test uses: at the top, as `kit::run_oci`,
// `kit::BundleBuilder`, ...
pub use containers::*;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Panics unless the test runs as root. Tests that need root never skip: they fail loudly.
#[track_caller]
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (real CRIU, cgroups, mounts and containers; euid is {euid}): run it \
         as root, e.g. `sudo -E cargo test`, or run scripts/test.sh"
    );
}

/// The workspace root (the directory holding `tests/programs/counter.c`).
pub fn repo_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        manifest
            .ancestors()
            .find(|p| p.join("tests/programs/counter.c").is_file())
            .unwrap_or_else(|| panic!("no tests/programs/counter.c above {}", manifest.display()))
            .to_path_buf()
    })
}

/// A name unique to this process and call: `<prefix>-<pid>-<n>`, lowercase, at most 60
/// characters (valid as a container id for every runtime, as a pod name and as a cgroup name).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let clean: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(40)
        .collect();
    format!("{clean}-{}-{n}", std::process::id())
}

/// Where fixtures cache what they build (programs, the rootfs template) and put bundles:
/// `$REEL_TEST_DIR`, default `/tmp/reel-tests` (created).
pub fn test_dir() -> PathBuf {
    let dir = std::env::var_os("REEL_TEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/reel-tests"));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Runs a command (stdin from /dev/null), panicking with its output when it fails.
#[track_caller]
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert_success(&out, &format!("{cmd:?}"));
    out
}

/// Panics with `what`, the status and both outputs unless `out` is a success.
#[track_caller]
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command and returns its output whatever the exit status (for clean-up).
pub(crate) fn run_quiet(cmd: &mut Command) -> Option<Output> {
    cmd.stdin(Stdio::null()).output().ok()
}

/// Polls `f` every 10 ms until it returns `Some`, or panics naming `what` after `timeout`.
#[track_caller]
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`wait_for`] a condition: polls `cond` every 10 ms until it holds, or panics naming `what`
/// after `timeout`.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(timeout, what, || cond().then_some(()))
}

/// The SHA-256 of `data`, lowercase hex (what `sha256sum` prints).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// FNV-1a: a stable hash for cache keys (std's hasher is not guaranteed stable).
fn fnv1a(data: &[u8], mut h: u64) -> u64 {
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// A stable key for the content (and names) of `files`.
pub(crate) fn hash_files(files: &[PathBuf]) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325;
    for f in files {
        let data = fs::read(f).unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        h = fnv1a(f.to_string_lossy().as_bytes(), h);
        h = fnv1a(&data, h);
    }
    format!("{h:016x}")
}

/// Renames `tmp` to `dst` unless another process got there first (then drops `tmp`).
pub(crate) fn publish(tmp: &Path, dst: &Path) {
    if fs::rename(tmp, dst).is_err() {
        assert!(
            dst.exists(),
            "cannot move {} to {}",
            tmp.display(),
            dst.display()
        );
        let _ = fs::remove_dir_all(tmp);
        let _ = fs::remove_file(tmp);
    }
}

/// Copies a directory tree with `cp -a` (keeps symlinks, modes, owners).
pub fn copy_tree(src: &Path, dst: &Path) {
    if let Some(parent) = dst.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    run(Command::new("cp").arg("-a").arg(src).arg(dst));
}
