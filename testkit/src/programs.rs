//! The test workloads: every `tests/programs/*.c`, built statically once per source version,
//! and [`Daemon`], a daemonizing program (`tree`, `netserver`) run on the host and killed when
//! dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::{hash_files, proc, publish, repo_root, run, run_quiet, test_dir, unique_name};

/// The test programs every fixture needs; the other `tests/programs/*.c` are built too, but a
/// failure to compile one of those only fails the tests that use it ([`program`] says why).
pub const PROGRAMS: &[&str] = &["counter", "services"];

/// Every `tests/programs/*.c`, sorted: (name, source).
pub fn program_sources() -> Vec<(String, PathBuf)> {
    let dir = repo_root().join("tests/programs");
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|e| {
            let p = e.ok()?.path();
            let name = p.file_name()?.to_str()?.strip_suffix(".c")?.to_string();
            Some((name, p))
        })
        .collect();
    out.sort();
    out
}

/// The directory holding the test programs (every `tests/programs/*.c`), built statically
/// (`cc -O2 -Wall -pthread -static`) once per source version: `<test_dir>/programs-<hash>/<name>`.
/// A program that does not compile leaves `<name>.error` (the compiler's output) instead.
pub fn programs_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let sources = program_sources();
        let files: Vec<PathBuf> = sources.iter().map(|(_, p)| p.clone()).collect();
        let dir = test_dir().join(format!("programs-{}", hash_files(&files)));
        if dir.join(".complete").is_file() {
            return dir;
        }
        let tmp = test_dir().join(format!("programs-tmp-{}", unique_name("build")));
        fs::create_dir_all(&tmp).unwrap();
        for (name, src) in &sources {
            let mut cmd = Command::new("cc");
            cmd.args(["-O2", "-Wall", "-pthread", "-static", "-o"])
                .arg(tmp.join(name))
                .arg(src);
            if PROGRAMS.contains(&name.as_str()) {
                run(&mut cmd);
            } else if let Some(out) = run_quiet(&mut cmd).filter(|o| !o.status.success()) {
                eprintln!(
                    "warning: test program {} does not compile, left out: {}",
                    src.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
                fs::write(tmp.join(format!("{name}.error")), &out.stderr).unwrap();
            }
        }
        fs::write(tmp.join(".complete"), b"").unwrap();
        publish(&tmp, &dir);
        dir
    })
}

/// The built test programs (names).
pub fn programs() -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(programs_dir())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.') && !n.ends_with(".error"))
        .collect();
    out.sort();
    out
}

/// The path of one test program on the host (see [`programs_dir`]).
#[track_caller]
pub fn program(name: &str) -> PathBuf {
    let p = programs_dir().join(name);
    if !p.is_file() {
        let error = fs::read_to_string(programs_dir().join(format!("{name}.error")));
        match error {
            Ok(e) => panic!("tests/programs/{name}.c does not compile: {e}"),
            Err(_) => panic!(
                "no test program {name} in {} (no tests/programs/{name}.c?)",
                programs_dir().display()
            ),
        }
    }
    p
}

/// A test program that daemonizes (setsid, stdio on /dev/null, so it shares no descriptor with
/// the test harness: CRIU can dump it), started as `<program> <dir>`, whose pids are read from
/// a file it writes in `<dir>` once ready. Its processes are killed when dropped, also when the
/// test fails; only those that still run the program's binary (pids can be reused).
#[derive(Debug)]
pub struct Daemon {
    /// The program's private directory (its ready file, counters and logs).
    pub dir: tempfile::TempDir,
    /// The binary it runs.
    pub exe: PathBuf,
    /// The pids from the ready file, in its order.
    pub pids: Vec<i32>,
}

impl Daemon {
    /// Starts `tests/programs/<name>` and waits (10 s at most) until it has written `ready` in
    /// its directory; every whitespace-separated number of that file is a pid.
    pub fn start(name: &str, ready: &str) -> Daemon {
        let exe = program(name);
        let dir = tempfile::Builder::new()
            .prefix(&format!("reel-{name}-"))
            .tempdir()
            .unwrap();
        let st = Command::new(&exe)
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(st.success(), "{name} failed to start ({st})");
        let file = dir.path().join(ready);
        crate::wait_until(
            Duration::from_secs(10),
            &format!("{name} to be ready"),
            || file.exists(),
        );
        let pids = fs::read_to_string(&file)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        Daemon { dir, exe, pids }
    }

    /// A file in its directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The number in its `counter` file.
    pub fn counter(&self) -> u64 {
        fs::read_to_string(self.path("counter"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Every pid runs (not a zombie, not gone).
    pub fn all_running(&self) -> bool {
        self.pids.iter().all(|&p| proc::is_running(p))
    }

    /// True when `pid` runs this program's binary (guards against pid reuse).
    pub fn ours(&self, pid: i32) -> bool {
        fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p == self.exe)
            .unwrap_or(false)
    }

    /// SIGKILL to each pid that is still ours.
    pub fn kill(&self) {
        for &p in &self.pids {
            if self.ours(p) {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
        // They are orphans: init reaps them.
        let end = Instant::now() + Duration::from_secs(5);
        while self
            .pids
            .iter()
            .any(|&p| proc::is_running(p) && self.ours(p))
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Asserts that a CRIU dump wrote what every dump has: the `want` files, a `core-<pid>.img`
/// for each of `pids` and a pages image (`names`: the file names of the images directory).
#[track_caller]
pub fn assert_dump_images(names: &[String], want: &[&str], pids: &[i32]) {
    for want in want {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    for pid in pids {
        assert!(
            names.contains(&format!("core-{pid}.img")),
            "core-{pid}.img missing from {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.starts_with("pages-")),
        "no pages image in {names:?}"
    );
}

/// `tests/programs/markers.c` running in a pod-annotated runc container, its status file
/// bound from the host; the container is removed when this is dropped.
pub struct Markers {
    pub ns: String,
    pub pod: String,
    /// Each marker's address (and `pid`), as the workload wrote them at start.
    pub addresses: std::collections::BTreeMap<String, u64>,
    pub container: crate::Container,
    _status: tempfile::TempDir,
}

/// Starts [`Markers`] (names starting with `prefix`) and waits for its status.
pub fn run_markers(prefix: &str) -> Markers {
    let _ = program("markers");
    let status = tempfile::Builder::new()
        .prefix(&format!("{prefix}-status."))
        .tempdir_in(test_dir())
        .unwrap();
    let ns = unique_name("ns");
    let pod = unique_name(prefix);
    let bundle = crate::BundleBuilder::new(&pod)
        .containerd_pod(&ns, &pod, "app")
        .bind(status.path(), "/status", false)
        .args(&crate::restore::detached_stdio(&[
            "/bin/markers",
            "/status/status",
        ]))
        .build();
    let container = crate::run_oci(crate::Oci::Runc, None, bundle);
    let addresses = wait_markers(&status.path().join("status"));
    Markers {
        ns,
        pod,
        addresses,
        container,
        _status: status,
    }
}

/// The markers' addresses (and `pid`), from markers.c's status file (`NAME 0xADDR` or
/// `NAME N` lines), once it is there.
fn wait_markers(status: &Path) -> std::collections::BTreeMap<String, u64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = fs::read_to_string(status) {
            return t
                .lines()
                .map(|line| {
                    let (k, v) = line.split_once(' ').unwrap();
                    let v = match v.strip_prefix("0x") {
                        Some(h) => u64::from_str_radix(h, 16).unwrap(),
                        None => v.parse().unwrap(),
                    };
                    (k.to_string(), v)
                })
                .collect();
        }
        assert!(Instant::now() < deadline, "markers never wrote its status");
        std::thread::sleep(Duration::from_millis(20));
    }
}
