//! Real-cgroup tests of `reel_core::cgroups` (v1 freezer and v2), run as root.
//!
//! `cargo test -p reel-core --test freezer -- --test-threads=1`
//!
//! Each test makes its own cgroups (`reel-test-<pid>-<n>-<nanos>`) under the hierarchies found
//! in /proc/self/mountinfo, runs a busy shell loop in them, and removes everything in `Drop`
//! guards (thaw first, then kill, reap and rmdir), also when the test fails. Tests that need
//! root fail (never skip) when not root. The helper process tests use
//! `reel-core/examples/freeze_hold.rs`, built before the tests (`scripts/test.sh`, or
//! `cargo build -p reel-core --example freeze_hold`); a test that finds it missing or stale
//! fails saying so.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use reel_core::cgroups::{
    CgroupKind, FreezeOptions, Freezer, FreezerError, FreezerState, Hierarchies, Preference,
    V1Freezer,
};
use reel_testkit::{bins, proc, require_root, unique_name, wait_until};

// ---------------------------------------------------------------------------------------------
// Fixtures

/// The file and value that thaw a cgroup directly (no reel code involved).
fn thaw_file(kind: CgroupKind, dir: &Path) -> (PathBuf, &'static str) {
    match kind {
        CgroupKind::V1 => (dir.join("freezer.state"), "THAWED"),
        CgroupKind::V2 => (dir.join("cgroup.freeze"), "0"),
    }
}

/// A test cgroup; `Drop` thaws it, kills what is left in it, and removes it.
struct TestCgroup {
    kind: CgroupKind,
    path: PathBuf,
}

impl TestCgroup {
    fn new(kind: CgroupKind) -> Self {
        require_root();
        let hierarchies = Hierarchies::from_mountinfo().expect("read mountinfo");
        let root = hierarchies.root_mount(kind).unwrap_or_else(|| {
            panic!("no cgroup {kind} hierarchy (with a freezer) is mounted; this test needs one")
        });
        let path = root.join(unique_name("reel-test"));
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        TestCgroup { kind, path }
    }

    fn freezer(&self) -> Freezer {
        Freezer::new(self.kind, &self.path)
    }

    /// What the kernel files say, read directly.
    fn raw_frozen(&self) -> bool {
        match self.kind {
            CgroupKind::V1 => {
                std::fs::read_to_string(self.path.join("freezer.state"))
                    .unwrap()
                    .trim()
                    == "FROZEN"
            }
            CgroupKind::V2 => std::fs::read_to_string(self.path.join("cgroup.events"))
                .unwrap()
                .lines()
                .any(|l| l == "frozen 1"),
        }
    }

    fn freeze_raw(&self) {
        let (file, value) = match self.kind {
            CgroupKind::V1 => (self.path.join("freezer.state"), "FROZEN"),
            CgroupKind::V2 => (self.path.join("cgroup.freeze"), "1"),
        };
        std::fs::write(&file, value).unwrap();
        wait_until(Duration::from_secs(10), "raw freeze", || self.raw_frozen());
    }

    fn thaw_raw(&self) {
        let (file, value) = thaw_file(self.kind, &self.path);
        let _ = std::fs::write(file, value);
    }

    fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        self.thaw_raw();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let procs = self.procs();
            for pid in &procs {
                // SAFETY: plain kill(2).
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            match std::fs::remove_dir(&self.path) {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    eprintln!("WARNING: cannot remove {}: {e}", self.path.display());
                    return;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// A busy process started inside the given cgroups; `Drop` thaws them, kills and reaps it.
struct Workload {
    child: Child,
    thaw: Vec<(PathBuf, &'static str)>,
}

/// A shell that counts forever (no fork).
const BUSY: &str = "i=0; while :; do i=$((i+1)); done";
/// A shell that forks all the time.
const FORKING: &str = "while :; do /bin/true; done";

impl Workload {
    fn spawn(script: &str, cgroups: &[&TestCgroup]) -> Self {
        let procs: Vec<CString> = cgroups
            .iter()
            .map(|c| CString::new(c.path.join("cgroup.procs").to_str().unwrap()).unwrap())
            .collect();
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c").arg(script).stdin(Stdio::null());
        // SAFETY: only open/write/close between fork and exec (no allocation).
        unsafe {
            cmd.pre_exec(move || {
                for p in &procs {
                    // "0" moves the writing process itself.
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if n != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn workload");
        Workload {
            child,
            thaw: cgroups.iter().map(|c| thaw_file(c.kind, &c.path)).collect(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        for (file, value) in &self.thaw {
            let _ = std::fs::write(file, value);
        }
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("WARNING: workload {} did not exit", self.child.id());
    }
}

/// (state letter, CPU time in ns) of a process: /proc/<pid>/stat and the scheduler's own
/// nanosecond count of its time on a CPU (/proc/<pid>/schedstat), which shows any run at all,
/// where stat's utime + stime move by 10 ms ticks.
fn stat(pid: i32) -> (char, u64) {
    let state = proc::state_of(pid).unwrap_or_else(|| panic!("process {pid} is gone"));
    let sched = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap();
    let ns = sched.split_whitespace().next().unwrap().parse().unwrap();
    (state, ns)
}

/// The process burns CPU: its CPU time grows.
fn assert_running(pid: i32) {
    let (_, t0) = stat(pid);
    wait_until(
        Duration::from_secs(10),
        "the workload's CPU time to grow",
        || stat(pid).1 > t0,
    );
}

/// How long a frozen process is watched for CPU time. A running busy loop gets a CPU within one
/// scheduler period (a few ms, tens under load) and shows nanoseconds of it at once: 150 ms is
/// ten periods on this busy 2-core machine, where the 10 ms ticks of /proc/<pid>/stat needed
/// 400 ms to be sure.
const STOPPED_WINDOW: Duration = Duration::from_millis(150);

/// The process does not run: no CPU time (not a nanosecond) for [`STOPPED_WINDOW`], and it is
/// not runnable.
fn assert_stopped(pid: i32) {
    let (_, t0) = stat(pid);
    std::thread::sleep(STOPPED_WINDOW);
    let (state, t1) = stat(pid);
    assert_eq!(t0, t1, "a frozen process got CPU time");
    assert_ne!(state, 'R', "a frozen process is runnable");
}

/// Live watchdog processes (by argv: `reel-freeze-watchdog <dir>/...`) for a cgroup dir.
fn watchdogs_for(dir: &Path) -> Vec<i32> {
    proc::watchdogs_for(dir).iter().map(|p| p.pid).collect()
}

fn assert_no_watchdog(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = watchdogs_for(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "watchdog process(es) {left:?} left running for {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn session_of(pid: i32) -> i32 {
    // SAFETY: plain getsid(2).
    unsafe { libc::getsid(pid) }
}

// ---------------------------------------------------------------------------------------------
// In-process tests

/// Freeze and thaw through a guard, checking the process, the kernel files and the watchdog.
fn freeze_thaw_cycle(kind: CgroupKind, preference: Preference, script: &str) {
    let cg = TestCgroup::new(kind);
    let work = Workload::spawn(script, &[&cg]);
    assert_running(work.pid());

    let freezer = Freezer::for_pid(work.pid(), preference).unwrap();
    assert_eq!(freezer.kind(), kind);
    assert_eq!(freezer.path(), cg.path);
    assert_eq!(freezer.state().unwrap(), FreezerState::Thawed);

    let guard = freezer.freeze().unwrap();
    assert!(!guard.was_frozen());
    assert_eq!(guard.path(), cg.path);
    assert!(cg.raw_frozen(), "the kernel does not say frozen");
    assert_eq!(freezer.state().unwrap(), FreezerState::Frozen);
    if script == BUSY {
        assert_stopped(work.pid());
    } else {
        // The loop forks every few ms when it runs.
        let before = cg.procs();
        std::thread::sleep(STOPPED_WINDOW);
        assert_eq!(before, cg.procs(), "a frozen cgroup forked");
    }

    // The watchdog exists, in another session, and names this cgroup.
    let wd = guard.watchdog_pid().expect("a watchdog");
    assert_eq!(watchdogs_for(&cg.path), vec![wd]);
    assert_ne!(session_of(wd), session_of(0), "watchdog shares our session");
    assert_eq!(session_of(wd), wd, "watchdog is not a session leader");

    guard.thaw().unwrap();
    assert!(!cg.raw_frozen());
    assert_eq!(freezer.state().unwrap(), FreezerState::Thawed);
    assert_running(work.pid());
    assert_no_watchdog(&cg.path);
}

#[test]
fn v1_freeze_and_thaw() {
    freeze_thaw_cycle(CgroupKind::V1, Preference::ForceV1, BUSY);
}

#[test]
fn v2_freeze_and_thaw() {
    freeze_thaw_cycle(CgroupKind::V2, Preference::ForceV2, BUSY);
}

#[test]
fn v1_freeze_a_forking_workload() {
    freeze_thaw_cycle(CgroupKind::V1, Preference::ForceV1, FORKING);
}

#[test]
fn v2_freeze_a_forking_workload() {
    freeze_thaw_cycle(CgroupKind::V2, Preference::ForceV2, FORKING);
}

#[test]
fn auto_picks_the_v1_freezer_when_the_process_has_one() {
    let v1 = TestCgroup::new(CgroupKind::V1);
    let v2 = TestCgroup::new(CgroupKind::V2);
    let work = Workload::spawn(BUSY, &[&v1, &v2]);

    let auto = Freezer::for_pid(work.pid(), Preference::Auto).unwrap();
    assert_eq!(auto.kind(), CgroupKind::V1);
    assert_eq!(auto.path(), v1.path);
    let forced = Freezer::for_pid(work.pid(), Preference::ForceV2).unwrap();
    assert_eq!(forced.kind(), CgroupKind::V2);
    assert_eq!(forced.path(), v2.path);

    let guard = auto.freeze().unwrap();
    assert!(v1.raw_frozen());
    assert!(!v2.raw_frozen(), "Auto froze through v2");
    assert_stopped(work.pid());
    drop(guard);
    assert!(!v1.raw_frozen());
    assert_running(work.pid());
}

#[test]
fn auto_picks_v2_when_the_v1_freezer_cgroup_is_the_root() {
    let v2 = TestCgroup::new(CgroupKind::V2);
    let work = Workload::spawn(BUSY, &[&v2]);
    let procs = std::fs::read_to_string(format!("/proc/{}/cgroup", work.pid())).unwrap();
    if let Some(line) = procs
        .lines()
        .find(|l| l.split(':').nth(1) == Some("freezer"))
    {
        assert!(
            line.ends_with(":/"),
            "this test expects the test process in the root v1 freezer cgroup: {line}"
        );
    }
    let auto = Freezer::for_pid(work.pid(), Preference::Auto).unwrap();
    assert_eq!(auto.kind(), CgroupKind::V2);
    assert_eq!(auto.path(), v2.path);
    let err = Freezer::for_pid(work.pid(), Preference::ForceV1).unwrap_err();
    assert!(
        matches!(
            err,
            FreezerError::NoCgroup { .. } | FreezerError::NotMounted { .. }
        ),
        "{err}"
    );
}

fn drop_thaws(kind: CgroupKind) {
    let cg = TestCgroup::new(kind);
    let work = Workload::spawn(BUSY, &[&cg]);
    {
        let guard = cg.freezer().freeze().unwrap();
        assert!(cg.raw_frozen());
        assert!(guard.watchdog_pid().is_some());
    }
    assert!(!cg.raw_frozen());
    assert_running(work.pid());
    assert_no_watchdog(&cg.path);
}

#[test]
fn v1_drop_thaws() {
    drop_thaws(CgroupKind::V1);
}

#[test]
fn v2_drop_thaws() {
    drop_thaws(CgroupKind::V2);
}

fn already_frozen_is_left_frozen(kind: CgroupKind) {
    let cg = TestCgroup::new(kind);
    let work = Workload::spawn(BUSY, &[&cg]);
    cg.freeze_raw();
    {
        let guard = cg.freezer().freeze().unwrap();
        assert!(guard.was_frozen());
        assert_eq!(guard.watchdog_pid(), None);
        assert_no_watchdog(&cg.path);
    }
    assert!(
        cg.raw_frozen(),
        "the guard thawed a cgroup frozen before it"
    );
    assert_stopped(work.pid());
    // Explicit thaw of a was_frozen guard leaves it frozen too.
    cg.freezer().freeze().unwrap().thaw().unwrap();
    assert!(cg.raw_frozen());
    cg.thaw_raw();
    wait_until(Duration::from_secs(5), "thawed", || !cg.raw_frozen());
    assert_running(work.pid());
}

#[test]
fn v1_already_frozen_is_left_frozen() {
    already_frozen_is_left_frozen(CgroupKind::V1);
}

#[test]
fn v2_already_frozen_is_left_frozen() {
    already_frozen_is_left_frozen(CgroupKind::V2);
}

#[test]
fn missing_cgroup_directory_is_an_error_naming_it() {
    require_root();
    let hierarchies = Hierarchies::from_mountinfo().unwrap();
    for kind in [CgroupKind::V1, CgroupKind::V2] {
        let root = hierarchies
            .root_mount(kind)
            .unwrap_or_else(|| panic!("no {kind} hierarchy mounted"));
        let dir = root.join(unique_name("reel-test-missing"));
        let freezer = Freezer::new(kind, &dir);
        for err in [
            freezer.freeze().map(drop).unwrap_err(),
            freezer
                .cgroup()
                .freeze(Duration::from_millis(200))
                .unwrap_err(),
            freezer
                .cgroup()
                .freeze_no_rollback(Duration::from_millis(200))
                .unwrap_err(),
            freezer
                .cgroup()
                .thaw(Duration::from_millis(200))
                .unwrap_err(),
            freezer.state().unwrap_err(),
        ] {
            assert!(matches!(err, FreezerError::Io { .. }), "{kind}: {err:?}");
            assert!(
                err.to_string().contains(dir.to_str().unwrap()),
                "{kind}: error does not name the cgroup: {err}"
            );
        }
        assert!(!dir.exists(), "a write created {}", dir.display());
        assert_no_watchdog(&dir);
    }
    // The v1 retry loop with a tiny bound, too.
    let dir = hierarchies
        .root_mount(CgroupKind::V1)
        .unwrap()
        .join(unique_name("reel-test-missing"));
    let err = Freezer::from_impl(V1Freezer::new(&dir).with_max_attempts(1))
        .freeze()
        .unwrap_err();
    assert!(err.to_string().contains(dir.to_str().unwrap()), "{err}");
}

#[test]
fn process_that_does_not_exist() {
    // A pid above any pid_max (4194304 at most).
    for pid in [i32::MAX, 0, -5] {
        for preference in [Preference::Auto, Preference::ForceV1, Preference::ForceV2] {
            let err = Freezer::for_pid(pid, preference).unwrap_err();
            assert!(
                matches!(err, FreezerError::ProcessNotFound { pid: p } if p == pid),
                "{err:?}"
            );
            assert!(err.to_string().contains(&pid.to_string()));
        }
    }
    // A pid that existed.
    let mut child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let err = Freezer::for_pid(pid, Preference::Auto).unwrap_err();
    assert!(
        matches!(err, FreezerError::ProcessNotFound { .. }),
        "{err:?}"
    );
}

/// A directory that looks like a v2 cgroup whose `frozen` never becomes 1: the timeout path,
/// its rollback, and the guard's cleanup of its watchdog.
#[test]
fn v2_freeze_timeout_thaws_and_names_the_cgroup() {
    let dir = tempfile::tempdir().unwrap();
    let freeze = dir.path().join("cgroup.freeze");
    std::fs::write(&freeze, "0").unwrap();
    std::fs::write(dir.path().join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
    let freezer = Freezer::new(CgroupKind::V2, dir.path());
    assert_eq!(freezer.state().unwrap(), FreezerState::Thawed);

    let start = Instant::now();
    let err = freezer
        .freeze_with(&FreezeOptions::default().timeout(Duration::from_millis(300)))
        .unwrap_err();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    match &err {
        FreezerError::FreezeTimeout { path, state, .. } => {
            assert_eq!(path, dir.path());
            assert_eq!(*state, FreezerState::Freezing);
        }
        other => panic!("expected FreezeTimeout, got {other:?}"),
    }
    assert!(err.to_string().contains(dir.path().to_str().unwrap()));
    assert_eq!(std::fs::read_to_string(&freeze).unwrap(), "0", "not thawed");
    assert_no_watchdog(dir.path());

    // Without rollback the request stays.
    let err = freezer
        .cgroup()
        .freeze_no_rollback(Duration::from_millis(50))
        .unwrap_err();
    assert!(matches!(err, FreezerError::FreezeTimeout { .. }));
    assert_eq!(std::fs::read_to_string(&freeze).unwrap(), "1");
    assert_eq!(freezer.state().unwrap(), FreezerState::Freezing);
}

/// The v1 retry bound, on a real forking cgroup with a budget too small to be sure: every
/// outcome must be FROZEN, or an error naming the cgroup with the cgroup thawed again.
#[test]
fn v1_bounded_retry_outcomes() {
    let cg = TestCgroup::new(CgroupKind::V1);
    let work = Workload::spawn(FORKING, &[&cg]);
    assert_running(work.pid());
    let freezer = Freezer::from_impl(V1Freezer::new(&cg.path).with_max_attempts(1));
    let (mut ok, mut timeouts) = (0, 0);
    for _ in 0..20 {
        match freezer.cgroup().freeze(Duration::ZERO) {
            Ok(()) => {
                ok += 1;
                assert!(cg.raw_frozen());
                freezer.cgroup().thaw(Duration::from_secs(5)).unwrap();
            }
            Err(FreezerError::FreezeTimeout { path, attempts, .. }) => {
                timeouts += 1;
                assert_eq!(path, cg.path);
                assert_eq!(attempts, 1);
                assert_eq!(freezer.state().unwrap(), FreezerState::Thawed);
            }
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    eprintln!("v1 with one attempt: {ok} frozen, {timeouts} timed out");
    assert!(!cg.raw_frozen());
}

// ---------------------------------------------------------------------------------------------
// Helper-process tests (examples/freeze_hold.rs)

/// A running `freeze_hold`; killed and reaped on drop.
struct Helper {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

struct Ready {
    was_frozen: bool,
    watchdog: i32,
}

impl Helper {
    fn spawn(kind: CgroupKind, dir: &Path, watchdog: bool) -> Self {
        let mut cmd = Command::new(bins::core_example("freeze_hold"));
        cmd.arg(kind.to_string()).arg(dir);
        if !watchdog {
            cmd.arg("--no-watchdog");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, like a job started from a shell.
            .process_group(0);
        // SAFETY: signal(2) only. A test runner started in the background may have SIGINT
        // ignored; the helper should behave like an interactive reel.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                libc::signal(libc::SIGTERM, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn freeze_hold");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Helper {
            child,
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn read_line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line
    }

    fn ready(&mut self) -> Ready {
        let line = self.read_line();
        assert!(line.starts_with("ready "), "helper said {line:?}");
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(key))
                .unwrap()
                .to_string()
        };
        Ready {
            was_frozen: field("was_frozen=") == "true",
            watchdog: field("watchdog=").parse().unwrap(),
        }
    }

    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "helper did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn started_frozen(kind: CgroupKind, watchdog: bool) -> (TestCgroup, Workload, Helper, Ready) {
    let cg = TestCgroup::new(kind);
    let work = Workload::spawn(BUSY, &[&cg]);
    assert_running(work.pid());
    let mut helper = Helper::spawn(kind, &cg.path, watchdog);
    let ready = helper.ready();
    assert!(!ready.was_frozen);
    assert!(cg.raw_frozen());
    assert_stopped(work.pid());
    if watchdog {
        assert!(ready.watchdog > 0);
        assert_eq!(watchdogs_for(&cg.path), vec![ready.watchdog]);
        assert_ne!(session_of(ready.watchdog), session_of(helper.pid()));
    } else {
        assert_eq!(ready.watchdog, 0);
        assert!(watchdogs_for(&cg.path).is_empty());
    }
    (cg, work, helper, ready)
}

fn sigkill_is_thawed_by_the_watchdog(kind: CgroupKind) {
    let (cg, work, mut helper, ready) = started_frozen(kind, true);
    // SAFETY: plain kill(2).
    assert_eq!(unsafe { libc::kill(helper.pid(), libc::SIGKILL) }, 0);
    let status = helper.wait(Duration::from_secs(5));
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    wait_until(Duration::from_secs(5), "the watchdog to thaw", || {
        !cg.raw_frozen()
    });
    assert_running(work.pid());
    assert_no_watchdog(&cg.path);
    // SAFETY: probing with signal 0.
    let alive = unsafe { libc::kill(ready.watchdog, 0) } == 0
        && std::fs::read(format!("/proc/{}/cmdline", ready.watchdog))
            .map(|c| !c.is_empty())
            .unwrap_or(false);
    assert!(!alive, "the watchdog is still alive");
}

#[test]
fn v1_sigkill_of_the_freezer_is_thawed_by_the_watchdog() {
    sigkill_is_thawed_by_the_watchdog(CgroupKind::V1);
}

#[test]
fn v2_sigkill_of_the_freezer_is_thawed_by_the_watchdog() {
    sigkill_is_thawed_by_the_watchdog(CgroupKind::V2);
}

/// SIGINT/SIGTERM while frozen: the helper thaws and dies of the signal. Without a watchdog
/// only the signal handler can have thawed; with one, it must also be gone afterwards.
fn signal_thaws_and_exits(kind: CgroupKind, sig: i32, to_group: bool, watchdog: bool) {
    let (cg, work, mut helper, _) = started_frozen(kind, watchdog);
    let target = if to_group {
        -helper.pid()
    } else {
        helper.pid()
    };
    // SAFETY: plain kill(2).
    assert_eq!(unsafe { libc::kill(target, sig) }, 0);
    let status = helper.wait(Duration::from_secs(10));
    assert!(!status.success(), "helper exited successfully: {status:?}");
    assert!(
        status.signal() == Some(sig) || status.code() == Some(128 + sig),
        "helper did not die of signal {sig}: {status:?}"
    );
    assert!(!cg.raw_frozen(), "not thawed on signal {sig}");
    assert_running(work.pid());
    // Told `done` and reaped before the helper died: gone at once.
    assert!(watchdogs_for(&cg.path).is_empty(), "watchdog left running");
}

#[test]
fn v1_sigint_to_the_process_group_thaws_and_exits() {
    signal_thaws_and_exits(CgroupKind::V1, libc::SIGINT, true, false);
}

#[test]
fn v2_sigint_thaws_and_exits() {
    signal_thaws_and_exits(CgroupKind::V2, libc::SIGINT, false, false);
}

#[test]
fn v1_sigterm_thaws_and_exits() {
    signal_thaws_and_exits(CgroupKind::V1, libc::SIGTERM, false, false);
}

#[test]
fn v2_sigterm_thaws_and_exits() {
    signal_thaws_and_exits(CgroupKind::V2, libc::SIGTERM, false, false);
}

#[test]
fn v1_sigint_to_the_group_with_a_watchdog_leaves_none() {
    signal_thaws_and_exits(CgroupKind::V1, libc::SIGINT, true, true);
}

#[test]
fn v2_sigterm_with_a_watchdog_leaves_none() {
    signal_thaws_and_exits(CgroupKind::V2, libc::SIGTERM, false, true);
}

fn helper_normal_run(kind: CgroupKind) {
    let (cg, work, mut helper, _) = started_frozen(kind, true);
    writeln!(helper.stdin.as_mut().unwrap(), "thaw").unwrap();
    assert_eq!(helper.read_line().trim(), "thawed");
    let status = helper.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(!cg.raw_frozen());
    assert_running(work.pid());
    // Reaped by the helper before it exited: gone at once, not after a delay.
    assert!(watchdogs_for(&cg.path).is_empty(), "watchdog left running");

    // Drop path: end of stdin lets the guard drop.
    let mut helper = Helper::spawn(kind, &cg.path, true);
    helper.ready();
    assert!(cg.raw_frozen());
    drop(helper.stdin.take());
    let status = helper.wait(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(!cg.raw_frozen());
    assert!(watchdogs_for(&cg.path).is_empty(), "watchdog left running");
}

#[test]
fn v1_helper_normal_run_leaves_no_watchdog() {
    helper_normal_run(CgroupKind::V1);
}

#[test]
fn v2_helper_normal_run_leaves_no_watchdog() {
    helper_normal_run(CgroupKind::V2);
}
