//! Helpers for the end-to-end tests of the `reel` binary (`tests/cli.rs`,
//! `tests/checkpoint_robust.rs`): finding (building) the binary, running it with a bound and
//! capturing its output, stores in temp dirs, the cgroup freezer state of a container seen
//! from outside, processes, a memory-hungry workload, and guards that thaw, kill and unmount
//! whatever a test leaves, also when it panics.
//!
//! Include it after `tests/common/mod.rs`:
//!
//! ```ignore
//! mod common;
//! #[path = "common/reel.rs"]
//! mod reel;
//! ```
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, BundleBuilder, Container, Oci};

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

/// The environment variable that makes the tests use another `reel` binary (an installed one,
/// or an older build to show what a fix changes) instead of building this workspace's.
pub const BIN_ENV: &str = "REEL_E2E_BIN";

/// The `reel` binary of this workspace, built (`cargo build -p reel-cli`) into the same target
/// directory and profile as the running test, once per test process; or `$REEL_E2E_BIN`.
/// Panics when it cannot be built or is missing: a stale or missing binary must never be
/// tested by accident.
pub fn reel_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os(BIN_ENV) {
            let bin = PathBuf::from(bin);
            assert!(bin.is_file(), "{BIN_ENV}={} is not a file", bin.display());
            eprintln!("testing {} ({BIN_ENV})", bin.display());
            return bin;
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        // <target>/<profile>/deps/<test>-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .unwrap_or_else(|| panic!("unexpected test executable path {}", exe.display()))
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("the target directory");
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .expect("the profile directory name");
        let cargo = std::env::var_os("CARGO")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO")));
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(common::repo_root())
            .args(["build", "--quiet", "-p", "reel-cli", "--bin", "reel"])
            .env("CARGO_TARGET_DIR", target_dir);
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = run_bounded(&mut cmd, Duration::from_secs(1800));
        assert!(
            out.status.success(),
            "building the reel binary failed ({:?} in {}): {}\n{}",
            cmd,
            common::repo_root().display(),
            out.stdout,
            out.stderr
        );
        let bin = profile_dir.join("reel");
        assert!(
            bin.is_file(),
            "`cargo build -p reel-cli` succeeded but there is no {}",
            bin.display()
        );
        bin
    })
}

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
            .tempdir_in(common::test_dir())
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

impl TestStore {
    pub fn new() -> TestStore {
        TestStore {
            tmp: tempfile::Builder::new()
                .prefix("reel-store.")
                .tempdir_in(common::test_dir())
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

/// `reel --root <root> ARGS` with REEL_STORE, REEL_CRIU and RUST_LOG cleared.
pub fn reel_cmd(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(reel_bin());
    cmd.env_remove("REEL_STORE")
        .env_remove("REEL_CRIU")
        .env_remove("RUST_LOG")
        .arg("--root")
        .arg(root)
        .args(args);
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
        common::run(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", options, "tmpfs"])
                .arg(path),
        );
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
// Cgroups and freezers, seen from outside reel
// ---------------------------------------------------------------------------------------------

/// A container's cgroup directories: its v1 freezer cgroup (when it has one that is not the
/// root) and its cgroup2 directory.
#[derive(Debug, Clone)]
pub struct Cgroups {
    pub v1: Option<PathBuf>,
    pub v2: PathBuf,
}

/// Mount points of the v1 freezer hierarchy and of cgroup2, from /proc/self/mountinfo.
fn cgroup_mounts() -> (Option<PathBuf>, PathBuf) {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let (mut v1, mut v2) = (None, None);
    for line in info.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mountpoint = left.split_whitespace().nth(4).unwrap_or_default();
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or_default();
        let superopts = r.nth(1).unwrap_or_default();
        if fstype == "cgroup" && superopts.split(',').any(|o| o == "freezer") {
            v1.get_or_insert_with(|| PathBuf::from(mountpoint));
        } else if fstype == "cgroup2" {
            v2.get_or_insert_with(|| PathBuf::from(mountpoint));
        }
    }
    (v1, v2.expect("cgroup2 is mounted"))
}

impl Cgroups {
    /// The cgroups of process `pid`, from /proc/<pid>/cgroup.
    pub fn of(pid: i32) -> Cgroups {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
        let (v1_mount, v2_mount) = cgroup_mounts();
        let mut v1 = None;
        let mut v2 = None;
        for line in text.lines() {
            let mut f = line.splitn(3, ':');
            let (_, ctrl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let rel = path.trim_start_matches('/');
            if ctrl.split(',').any(|c| c == "freezer") && path != "/" {
                v1 = v1_mount.as_ref().map(|m| m.join(rel));
            } else if ctrl.is_empty() && line.starts_with("0::") {
                v2 = Some(v2_mount.join(rel));
            }
        }
        Cgroups {
            v1,
            v2: v2.unwrap_or_else(|| panic!("process {pid} has no cgroup2 line: {text}")),
        }
    }

    /// The v1 freezer cgroup (panics when there is none).
    #[track_caller]
    pub fn v1(&self) -> &Path {
        self.v1
            .as_deref()
            .expect("the container has a v1 freezer cgroup")
    }

    /// `freezer.state` of the v1 cgroup (`THAWED`, `FREEZING`, `FROZEN`), if it has one.
    pub fn v1_state(&self) -> Option<String> {
        let dir = self.v1.as_ref()?;
        fs::read_to_string(dir.join("freezer.state"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// `frozen` of `cgroup.events` (true when frozen, itself or through an ancestor).
    pub fn v2_frozen(&self) -> bool {
        fs::read_to_string(self.v2.join("cgroup.events"))
            .unwrap_or_default()
            .lines()
            .any(|l| l.trim() == "frozen 1")
    }

    /// `cgroup.freeze` asks for a freeze.
    pub fn v2_freeze_requested(&self) -> bool {
        fs::read_to_string(self.v2.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    }

    /// Frozen or freezing by either freezer.
    pub fn any_frozen(&self) -> bool {
        self.v1_state().is_some_and(|s| s != "THAWED")
            || self.v2_frozen()
            || self.v2_freeze_requested()
    }

    /// Freeze with the v1 freezer and wait for FROZEN.
    pub fn freeze_v1(&self) {
        let dir = self.v1();
        fs::write(dir.join("freezer.state"), "FROZEN").unwrap();
        common::wait_for(Duration::from_secs(10), "v1 FROZEN", || {
            (self.v1_state().as_deref() == Some("FROZEN")).then_some(())
        });
    }

    /// Freeze with cgroup2 and wait for `frozen 1`.
    pub fn freeze_v2(&self) {
        fs::write(self.v2.join("cgroup.freeze"), "1").unwrap();
        common::wait_for(Duration::from_secs(10), "cgroup2 frozen", || {
            self.v2_frozen().then_some(())
        });
    }

    /// Thaw both freezers (best effort) and wait until neither is frozen.
    pub fn thaw_all(&self) {
        if let Some(dir) = &self.v1 {
            let _ = fs::write(dir.join("freezer.state"), "THAWED");
        }
        let _ = fs::write(self.v2.join("cgroup.freeze"), "0");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.any_frozen() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The task ids in the cgroup (v2 `cgroup.threads`).
    pub fn tasks(&self) -> Vec<i32> {
        fs::read_to_string(self.v2.join("cgroup.threads"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect()
    }

    /// A task of the cgroup is traced (CRIU seizes what it dumps).
    pub fn any_traced(&self) -> bool {
        self.tasks().iter().any(|t| tracer_of(*t).is_some())
    }
}

/// The tracer of task `tid` (TracerPid), if any.
pub fn tracer_of(tid: i32) -> Option<i32> {
    fs::read_to_string(format!("/proc/{tid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("TracerPid:"))
        .and_then(|v| v.trim().parse().ok())
        .filter(|p| *p != 0)
}

/// Thaws a container's cgroups (both freezers) when dropped: whatever a test does or however it
/// fails, it never leaves a container frozen. Declare it after the container, so that it is
/// dropped (thaws) before the container is deleted.
#[derive(Debug)]
pub struct ThawOnDrop(pub Cgroups);

impl Drop for ThawOnDrop {
    fn drop(&mut self) {
        if self.0.any_frozen() {
            eprintln!("thawing {} on the way out", self.0.v2.display());
        }
        self.0.thaw_all();
    }
}

/// Samples a container's freezer states in a thread until stopped, with cgroup2's
/// `cgroup.events` watched by poll(2) (kernfs notifies every change of `frozen`, so even a
/// freeze shorter than the sampling period is seen).
pub struct FreezeWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<FreezeSeen>>,
}

/// What a [`FreezeWatch`] saw.
#[derive(Debug, Default, Clone)]
pub struct FreezeSeen {
    /// Samples taken.
    pub samples: u64,
    /// Samples in which either freezer was frozen or freezing.
    pub frozen_samples: u64,
    /// Samples in which the v1 freezer was frozen or freezing.
    pub v1_frozen_samples: u64,
    /// Change notifications of `cgroup.events`.
    pub events_changes: u64,
}

impl FreezeWatch {
    pub fn start(cg: &Cgroups) -> FreezeWatch {
        use std::os::fd::AsFd;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let cg = cg.clone();
        let handle = std::thread::spawn(move || {
            use std::io::{Read, Seek};
            let mut seen = FreezeSeen::default();
            let mut events = fs::File::open(cg.v2.join("cgroup.events")).unwrap();
            let mut buf = String::new();
            // Reading once arms the notification.
            events.read_to_string(&mut buf).unwrap();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                seen.samples += 1;
                if cg.any_frozen() {
                    seen.frozen_samples += 1;
                }
                if cg.v1_state().is_some_and(|s| s != "THAWED") {
                    seen.v1_frozen_samples += 1;
                }
                let mut fds = [nix::poll::PollFd::new(
                    events.as_fd(),
                    nix::poll::PollFlags::POLLPRI,
                )];
                if let Ok(n) = nix::poll::poll(&mut fds, 1u16) {
                    if n > 0 {
                        seen.events_changes += 1;
                        buf.clear();
                        events.rewind().unwrap();
                        events.read_to_string(&mut buf).unwrap();
                    }
                }
            }
            seen
        });
        FreezeWatch {
            stop,
            handle: Some(handle),
        }
    }

    pub fn finish(mut self) -> FreezeSeen {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("freeze watch thread")
    }
}

impl Drop for FreezeWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A process, from /proc/<pid>/stat and cmdline.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub state: char,
    pub comm: String,
    pub args: Vec<String>,
}

/// Every process now (zombies included, with their state `Z`).
pub fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let args = fs::read(e.path().join("cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        out.push(Proc {
            pid,
            ppid: f[1].parse().unwrap_or(0),
            pgid: f[2].parse().unwrap_or(0),
            state: f[0].chars().next().unwrap_or('?'),
            comm,
            args,
        });
    }
    out
}

/// Live (not zombie) processes matching `f`.
pub fn live_processes(f: impl Fn(&Proc) -> bool) -> Vec<Proc> {
    processes()
        .into_iter()
        .filter(|p| p.state != 'Z' && f(p))
        .collect()
}

/// The children of `pid`.
pub fn children_of(pid: i32) -> Vec<Proc> {
    live_processes(|p| p.ppid == pid)
}

/// The freeze watchdogs (`reel-freeze-watchdog <file> <value>`) for a file under `dir`.
pub fn watchdogs_for(dir: &Path) -> Vec<Proc> {
    let dir = dir.to_string_lossy().into_owned();
    live_processes(|p| {
        p.args.iter().any(|a| a == "reel-freeze-watchdog")
            && p.args.iter().any(|a| a.starts_with(&dir))
    })
}

/// Processes of process group `pgid` (a CRIU and its helpers: reel starts CRIU as the leader
/// of its own group).
pub fn group_members(pgid: i32) -> Vec<Proc> {
    live_processes(|p| p.pgid == pgid)
}

// ---------------------------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------------------------

/// `hog MIB FILE`: allocates MIB MiB, fills every page with pseudo-random bytes (so every page
/// is present and CRIU must write it), then counts every 10 ms into FILE like
/// `tests/programs/counter.c` (first line, rewritten at offset 0) and flips a byte of the
/// memory each round. SIGTERM/SIGINT end it.
const HOG_C: &str = r#"
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

int main(int argc, char **argv)
{
    long mib = argc > 1 ? strtol(argv[1], NULL, 10) : 512;
    const char *path = argc > 2 ? argv[2] : "/tmp/counter";
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    size_t len = (size_t)(mib > 0 ? mib : 1) << 20;
    unsigned char *p = malloc(len);
    if (!p) { perror("hog: malloc"); return 1; }
    unsigned long x = 88172645463325252UL;
    for (size_t i = 0; i + 8 <= len; i += 8) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        memcpy(p + i, &x, 8);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { perror("hog: open"); return 1; }
    unsigned long n = 0;
    char buf[32];
    struct timespec ts = { 0, 10 * 1000 * 1000 };
    while (!stop) {
        n++;
        p[(n * 4096) % len] ^= 1;
        int k = snprintf(buf, sizeof buf, "%lu\n", n);
        if (pwrite(fd, buf, k, 0) < 0) { perror("hog: pwrite"); return 1; }
        nanosleep(&ts, NULL);
    }
    return 0;
}
"#;

/// The hog program, built once (`cc -O2 -static`) into the test dir.
pub fn hog_program() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in HOG_C.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x100_0000_01b3);
        }
        let dir = common::test_dir().join(format!("reel-hog-{h:016x}"));
        let bin = dir.join("hog");
        if bin.is_file() {
            return bin;
        }
        let tmp = common::test_dir().join(common::unique_name("reel-hog-build"));
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("hog.c"), HOG_C).unwrap();
        common::run(
            Command::new("cc")
                .args(["-O2", "-Wall", "-static", "-o"])
                .arg(tmp.join("hog"))
                .arg(tmp.join("hog.c")),
        );
        fs::create_dir_all(&dir).unwrap();
        // Another test process may have built it meanwhile: either copy is fine.
        if fs::rename(tmp.join("hog"), &bin).is_err() {
            assert!(bin.is_file(), "cannot install {}", bin.display());
        }
        let _ = fs::remove_dir_all(&tmp);
        bin
    })
}

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
    let c = common::run_oci(runtime, None, bundle.build());
    c.wait_counter_advances(COUNTER, RUNS_TIMEOUT);
    c
}

/// Runs a runc container holding `mib` MiB of touched memory (the hog, copied into the bundle's
/// rootfs) and waits until it counts, that is until all of it is touched.
pub fn run_hog(prefix: &str, mib: u32) -> Container {
    let bundle = BundleBuilder::new(prefix)
        .args(&[
            "/bin/sh",
            "-c",
            &format!("exec /bin/hog {mib} {COUNTER} >/dev/null 2>&1 </dev/null"),
        ])
        .build();
    fs::copy(hog_program(), bundle.rootfs().join("bin/hog")).unwrap();
    let c = common::run_oci(Oci::Runc, None, bundle);
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
