//! Running the `reel` binary in the tests: with a bound, its output captured, against a store
//! of the test's own; files and archives read back; mounts undone; and the workloads its tests
//! checkpoint (a counter, a memory hog), run by runc.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bins::reel_bin;
use crate::cgroups::Cgroups;
use crate::containers::{run_oci, BundleBuilder, Container, Oci};
use crate::{run, test_dir, unique_name};

/// What a finished command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Out {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Out {
    /// The exit code (None when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics with everything unless the command exited 0.
    #[track_caller]
    pub fn ok(&self) -> &Self {
        assert!(self.status.success(), "expected success, got {self}");
        self
    }

    /// Panics with everything unless the command exited with `code`.
    #[track_caller]
    pub fn code_is(&self, code: i32) -> &Self {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit code {code}, got {self}"
        );
        self
    }

    /// Panics unless stderr contains every one of `parts` (case-insensitive).
    #[track_caller]
    pub fn stderr_has(&self, parts: &[&str]) -> &Self {
        let err = self.stderr.to_lowercase();
        for p in parts {
            assert!(
                err.contains(&p.to_lowercase()),
                "stderr lacks {p:?}: {self}"
            );
        }
        self
    }

    /// stdout parsed as JSON (panics with the output when it is not).
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// The id of `Checkpoint created: <id>` on stdout.
    #[track_caller]
    pub fn created_id(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Checkpoint created: "))
            .unwrap_or_else(|| panic!("no `Checkpoint created:` line: {self}"))
            .trim()
            .to_string()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} after {:.1?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            describe_status(self.status),
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// `exit 1`, `signal 9`.
pub fn describe_status(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => format!("{s:?}"),
    }
}

/// A started command whose stdout and stderr go to files; killed (SIGKILL) and reaped when
/// dropped unfinished.
#[derive(Debug)]
pub struct Running {
    pub child: Child,
    started: Instant,
    logs: tempfile::TempDir,
    done: Option<ExitStatus>,
}

impl Running {
    /// Starts `cmd` with stdin from /dev/null (unless the caller set it) and stdout/stderr to
    /// files.
    pub fn spawn(cmd: &mut Command) -> Running {
        let logs = tempfile::Builder::new()
            .prefix("reel-out.")
            .tempdir_in(test_dir())
            .unwrap();
        let out = fs::File::create(logs.path().join("stdout")).unwrap();
        let err = fs::File::create(logs.path().join("stderr")).unwrap();
        let child = cmd
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        Running {
            child,
            started: Instant::now(),
            logs,
            done: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Exited yet? (Reaps it when it has.)
    pub fn finished(&mut self) -> bool {
        if self.done.is_none() {
            self.done = self.child.try_wait().expect("try_wait");
        }
        self.done.is_some()
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) to our own unreaped child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// What it printed so far.
    pub fn stderr_so_far(&self) -> String {
        fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default()
    }

    /// Waits up to `timeout` for the end (kills it and panics past that) and returns the output.
    pub fn wait(mut self, timeout: Duration) -> Out {
        let deadline = self.started + timeout;
        while !self.finished() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                self.done = Some(ExitStatus::from_raw(9));
                panic!(
                    "{:?} did not finish within {timeout:?}; stderr so far:\n{}",
                    self.child,
                    self.stderr_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Out {
            status: self.done.unwrap(),
            stdout: fs::read_to_string(self.logs.path().join("stdout")).unwrap_or_default(),
            stderr: fs::read_to_string(self.logs.path().join("stderr")).unwrap_or_default(),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Kills process group `.0` (SIGKILL) when dropped.
#[derive(Debug)]
pub struct KillGroupOnDrop(pub i32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) of a process group we started.
        unsafe { libc::kill(-self.0, libc::SIGKILL) };
    }
}

/// Runs `cmd` to the end (stdin /dev/null), killing it after `timeout`.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Out {
    cmd.stdin(Stdio::null());
    Running::spawn(cmd).wait(timeout)
}

/// How long any single reel command may take in these tests (a 512 MiB archive written by a
/// debug build on a busy 2-core machine included).
pub const REEL_TIMEOUT: Duration = Duration::from_secs(600);

// ---------------------------------------------------------------------------------------------
// Stores
// ---------------------------------------------------------------------------------------------

/// A checkpoint store for one test: `<tmp>/store` (reel creates it), removed afterwards.
#[derive(Debug)]
pub struct TestStore {
    tmp: tempfile::TempDir,
}

impl Default for TestStore {
    fn default() -> TestStore {
        TestStore::named("store")
    }
}

impl TestStore {
    /// A store in a fresh temp dir under `<test_dir>/stores`.
    pub fn new() -> TestStore {
        TestStore::default()
    }

    /// [`TestStore::new`], the temp dir named after `prefix` (`<unique_name(prefix)>.XXXXXX`).
    pub fn named(prefix: &str) -> TestStore {
        let parent = test_dir().join("stores");
        fs::create_dir_all(&parent).unwrap();
        TestStore {
            tmp: tempfile::Builder::new()
                .prefix(&format!("{}.", unique_name(prefix)))
                .tempdir_in(&parent)
                .unwrap(),
        }
    }

    /// The store directory given to `--root`.
    pub fn root(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    /// The temp dir holding the store (for mounts next to it).
    pub fn base(&self) -> &Path {
        self.tmp.path()
    }

    /// `reel --root <store> ARGS`, with the environment reel reads cleared.
    pub fn cmd(&self, args: &[&str]) -> Command {
        reel_cmd(&self.root(), args)
    }

    /// Runs `reel --root <store> ARGS` to the end.
    pub fn run(&self, args: &[&str]) -> Out {
        run_bounded(&mut self.cmd(args), REEL_TIMEOUT)
    }

    /// Every entry of the store: name → (size, mtime ns, is_dir). Empty when it does not exist.
    pub fn snapshot(&self) -> BTreeMap<String, (u64, i128, bool)> {
        snapshot(&self.root())
    }

    /// Finished archives (`<id>.tar`), by id, sorted by id.
    pub fn archives(&self) -> Vec<String> {
        self.snapshot()
            .keys()
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.strip_suffix(".tar").map(str::to_string))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Sidecars (`<id>.tar.sha256`), by id, sorted by id.
    pub fn sidecars(&self) -> Vec<String> {
        self.snapshot()
            .keys()
            .filter(|n| !n.starts_with('.'))
            .filter_map(|n| n.strip_suffix(".tar.sha256").map(str::to_string))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Dot entries: temp files and staging directories.
    pub fn leftovers(&self) -> Vec<String> {
        self.snapshot()
            .keys()
            .filter(|n| n.starts_with('.'))
            .cloned()
            .collect()
    }

    /// The archive of `id`.
    pub fn archive(&self, id: &str) -> PathBuf {
        self.root().join(format!("{id}.tar"))
    }
}

/// `reel --root <root> ARGS` with REEL_STORE, REEL_CRIU and RUST_LOG cleared, and SIGINT and
/// SIGTERM at their defaults, as a user's shell starts it. (A test runner started in the
/// background, by `nohup` or a CI runner, has SIGINT ignored; reel, like any program, keeps an
/// ignored SIGINT ignored, and the tests that interrupt it would see it finish instead.)
pub fn reel_cmd(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(reel_bin());
    cmd.env_remove("REEL_STORE")
        .env_remove("REEL_CRIU")
        .env_remove("RUST_LOG")
        .arg("--root")
        .arg(root)
        .args(args);
    // SAFETY: signal(2) only, async-signal-safe between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            libc::signal(libc::SIGTERM, libc::SIG_DFL);
            Ok(())
        });
    }
    cmd
}

/// name → (size, mtime in ns, is_dir) of the entries of `dir` (empty when it does not exist).
pub fn snapshot(dir: &Path) -> BTreeMap<String, (u64, i128, bool)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            let mtime = i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec());
            Some((
                e.file_name().to_string_lossy().into_owned(),
                (md.len(), mtime, md.is_dir()),
            ))
        })
        .collect()
}

/// One member of a tar archive, as bytes.
pub fn archive_member(archive: &Path, name: &str) -> Vec<u8> {
    use std::io::Read;
    let f = fs::File::open(archive).unwrap_or_else(|e| panic!("open {}: {e}", archive.display()));
    let mut ar = tar::Archive::new(f);
    for entry in ar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == name {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            return data;
        }
    }
    panic!("no member {name} in {}", archive.display())
}

/// The archive's `reel-manifest.json`.
pub fn manifest(archive: &Path) -> Value {
    serde_json::from_slice(&archive_member(archive, "reel-manifest.json"))
        .expect("reel-manifest.json is JSON")
}

/// A mount (tmpfs) unmounted when dropped.
#[derive(Debug)]
pub struct Mount {
    pub path: PathBuf,
}

impl Mount {
    /// `mount -t tmpfs -o <options> tmpfs <path>` (path created).
    pub fn tmpfs(path: &Path, options: &str) -> Mount {
        fs::create_dir_all(path).unwrap();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path));
        Mount {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

/// The in-container path the workloads count into.
pub const COUNTER: &str = "/tmp/counter";

/// How long a workload gets to show it runs.
pub const RUNS_TIMEOUT: Duration = Duration::from_secs(30);

/// A bundle running `/bin/counter` with its stdio on /dev/null inside the container.
///
/// The fixtures give runc/crun containers stdout/stderr on files of the host, and CRIU cannot
/// dump a descriptor on a file outside the container's mounts (`Can't lookup mount=N for
/// fd=M`), as for runc's own checkpoint: the workload re-opens its stdio on the container's
/// /dev/null (an external device mount) before it execs the counter, which stays the init.
pub fn counter_bundle(prefix: &str) -> BundleBuilder {
    BundleBuilder::new(prefix).args(&[
        "/bin/sh",
        "-c",
        &format!("exec /bin/counter {COUNTER} >/dev/null 2>&1 </dev/null"),
    ])
}

/// Runs a counter container (see [`counter_bundle`]) with runc or crun and waits until it
/// counts.
pub fn run_counter(runtime: Oci, bundle: BundleBuilder) -> Container {
    let c = run_oci(runtime, None, bundle.build());
    c.wait_counter_advances(COUNTER, RUNS_TIMEOUT);
    c
}

/// Runs a runc container holding `mib` MiB of touched memory (`tests/programs/hog.c`) and waits
/// until it counts, that is until all of it is touched.
pub fn run_hog(prefix: &str, mib: u32) -> Container {
    let bundle = BundleBuilder::new(prefix)
        .args(&[
            "/bin/sh",
            "-c",
            &format!("exec /bin/hog {mib} {COUNTER} >/dev/null 2>&1 </dev/null"),
        ])
        .build();
    let c = run_oci(Oci::Runc, None, bundle);
    c.wait_counter_advances(COUNTER, Duration::from_secs(120));
    c
}

/// Waits until the container's counter advances and no freezer holds it: it runs.
#[track_caller]
pub fn assert_runs(c: &Container, cg: &Cgroups) {
    assert!(
        !cg.any_frozen(),
        "{} is frozen (v1 {:?}, v2 frozen {})",
        c.id,
        cg.v1_state(),
        cg.v2_frozen()
    );
    c.wait_counter_advances(COUNTER, RUNS_TIMEOUT);
}

/// `reel get workloads ARGS -o json`, parsed.
pub fn workloads(store: &TestStore, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["get", "workloads"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = store.run(&all);
    out.ok();
    out.json()
        .as_array()
        .unwrap_or_else(|| panic!("not a JSON list: {out}"))
        .clone()
}

/// The workload with container id `id` in a `get workloads -o json` listing.
#[track_caller]
pub fn workload<'a>(list: &'a [Value], id: &str) -> &'a Value {
    list.iter()
        .find(|w| w["id"] == id)
        .unwrap_or_else(|| panic!("container {id} not listed: {list:#?}"))
}
