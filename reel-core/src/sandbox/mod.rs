//! Sandbox restore: a live copy of a checkpointed container, sealed by construction.
//!
//! [`Sandboxes::restore`] brings every process of a checkpoint back to life where it cannot
//! reach anything real:
//!
//! * **its own copy of the evidence**: the images are extracted from the archive (never
//!   written to) into the sandbox's private directory (on a tmpfs, `/dev/shm/reel-sandboxes`,
//!   when they fit in memory; the memory pages while the rest of the sandbox is built), each
//!   member checked against the manifest's SHA-256 before CRIU starts; CRIU restores from that
//!   copy (no auto-dedup, no lazy pages), removed once the sandbox runs;
//! * **its own rootfs**: an overlay of the original's base layers (recorded at checkpoint time,
//!   or `--rootfs-base`) under an upper dir holding `rootfs-diff.tar` minus `deleted.files`;
//!   every bind mount becomes a private copy ([`rootfs`]);
//! * **its own network, no way out**: a new namespace with `lo` and a port-less device holding
//!   the checkpoint's addresses ([`network`]); TCP connections restored closed (CRIU's
//!   tcp-close); unix peers outside the container replaced by socketpairs the sandbox owns
//!   (`inherit_fd socket:[ino]`, never `ext_unix_sk`); stdio pipes to files;
//! * **its own cgroup** under `reel-sandboxes/` with the original's limits ([`cgroup`]), and
//!   the original's credentials, capabilities, seccomp and namespaces types as dumped.
//!
//! A small monitor process ([`monitor`]) owns each sandbox from its first resource on, parents
//! the restored tree, records its state under `/run/reel/sandboxes/<name>` and survives reel;
//! [`Sandboxes::list`], [`Sandboxes::stop`], [`Sandboxes::resume`] and [`Sandboxes::delete`]
//! find it there. Any failure, or the asking reel being killed, removes everything made so far
//! ([`teardown`]); a sandbox whose monitor and asker were both killed half-way is removed by
//! the next sandbox command.

mod cgroup;
mod error;
pub mod images;
pub mod monitor;
pub mod network;
pub mod plan;
pub mod rootfs;
pub mod state;
pub mod teardown;

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use serde::Serialize;

pub use error::SandboxError;
pub use monitor::{monitor_main, MONITOR_ARG};
pub use state::{NetworkMode, Phase, ProcRef, Record};

use state::{read_json, write_json, Request, REQUEST_FILE, STATE_FILE};

/// How old a sandbox claim with no readable request must be before it counts as abandoned.
const CLAIM_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Where sandboxes keep their state (root-only; a tmpfs on most hosts).
pub const DEFAULT_STATE_ROOT: &str = "/run/reel/sandboxes";
/// Where sandboxes keep their data (images copy unless it is on the scratch tmpfs, rootfs
/// layers, volume copies).
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/reel/sandboxes";
/// Where sandboxes copy their images when they fit in memory: a tmpfs.
pub const DEFAULT_SCRATCH_ROOT: &str = "/dev/shm/reel-sandboxes";
/// The parent cgroup of every sandbox, in each hierarchy.
pub const CGROUP_PARENT: &str = "reel-sandboxes";

/// The sandboxes of this host.
#[derive(Debug, Clone)]
pub struct Sandboxes {
    pub state_root: PathBuf,
    pub data_root: PathBuf,
    /// A directory on a tmpfs for the private copy of the images (`None`: always in the data
    /// directory).
    pub scratch_root: Option<PathBuf>,
    pub cgroup_parent: String,
}

impl Default for Sandboxes {
    fn default() -> Self {
        Sandboxes {
            state_root: DEFAULT_STATE_ROOT.into(),
            data_root: DEFAULT_DATA_ROOT.into(),
            scratch_root: Some(DEFAULT_SCRATCH_ROOT.into()),
            cgroup_parent: CGROUP_PARENT.into(),
        }
    }
}

/// What to restore, and how.
#[derive(Debug, Clone, Default)]
pub struct RestoreRequest {
    /// The archive: a store's `<id>.tar` or an export (`.tar`, `.tar.zst`).
    pub archive: PathBuf,
    /// The sandbox's name (default: from the archive's name).
    pub name: Option<String>,
    /// Restore the processes stopped (until [`Sandboxes::resume`]).
    pub paused: bool,
    pub network: NetworkMode,
    pub rootfs_base: Option<PathBuf>,
    /// `DEST=SRC`: the private copy at DEST is made from SRC.
    pub volumes: Vec<(String, PathBuf)>,
    pub memory_limit: Option<u64>,
    pub cpus: Option<f64>,
}

/// How to start a monitor: a program (the `reel` binary) and the arguments that make it one
/// (`[MONITOR_ARG]`); the state dir and two descriptor numbers are appended.
#[derive(Debug, Clone)]
pub struct MonitorCommand {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl MonitorCommand {
    /// This very executable, run with [`MONITOR_ARG`].
    pub fn current_exe() -> Result<MonitorCommand, SandboxError> {
        let program = std::env::current_exe()
            .map_err(|e| SandboxError::io("finding", Path::new("/proc/self/exe"), e))?;
        Ok(MonitorCommand {
            program,
            args: vec![MONITOR_ARG.into()],
        })
    }
}

/// A sandbox as listed: its record and what is true now.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxInfo {
    /// `creating`, `running`, `paused`, `exited`, `stopped`, or `lost` (its monitor died and
    /// nothing of it runs).
    pub state: String,
    /// Whether its monitor runs.
    pub monitor_alive: bool,
    #[serde(flatten)]
    pub record: Record,
}

/// A sandbox name: lower-case letters, digits and `-`, 1 to 40 characters.
pub fn validate_name(name: &str) -> Result<(), SandboxError> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(SandboxError::BadName { name: name.into() })
    }
}

/// A default name from the archive's file name: `<stem>-<6 hex>`.
fn default_name(archive: &Path) -> String {
    let stem = archive
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.trim_end_matches(".zst").trim_end_matches(".tar"))
        .unwrap_or("sandbox");
    let clean: String = stem
        .trim_start_matches("checkpoint-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    let clean = clean.trim_matches('-');
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let tag = (nanos ^ std::process::id().rotate_left(16)) & 0xff_ffff;
    if clean.is_empty() {
        format!("sb-{tag:06x}")
    } else {
        format!("{clean}-{tag:06x}")
    }
}

/// The largest report a monitor may send.
const MAX_REPORT: u64 = 16 << 20;

impl Sandboxes {
    fn dir(&self, name: &str) -> PathBuf {
        self.state_root.join(name)
    }

    /// Restores the checkpoint in a new sandbox and returns its record once the processes run
    /// (or are stopped, with `paused`). On failure nothing is left.
    pub fn restore(
        &self,
        r: &RestoreRequest,
        criu: &crate::criu::Criu,
        monitor: &MonitorCommand,
    ) -> Result<Record, SandboxError> {
        let name = match &r.name {
            Some(n) => n.clone(),
            None => default_name(&r.archive),
        };
        validate_name(&name)?;
        let archive = fs::canonicalize(&r.archive)
            .map_err(|e| SandboxError::io("opening the archive", &r.archive, e))?;
        if !archive.is_file() {
            return Err(SandboxError::Invalid(format!(
                "{} is not an archive file",
                archive.display()
            )));
        }
        for (d, s) in &r.volumes {
            if !d.starts_with('/') || !s.exists() {
                return Err(SandboxError::Invalid(format!(
                    "--volume {d}={}: DEST must be an absolute path inside the container and SRC must exist",
                    s.display()
                )));
            }
        }
        self.reap_stale();
        crate::durable::create_private_dirs(&self.state_root)
            .map_err(|e| SandboxError::io("creating", &self.state_root, e))?;
        let dir = self.dir(&name);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(SandboxError::Exists { name })
            }
            Err(e) => return Err(SandboxError::io("creating", &dir, e)),
        }
        let req = Request {
            name: name.clone(),
            archive,
            paused: r.paused,
            network: r.network,
            rootfs_base: r.rootfs_base.clone(),
            volumes: r.volumes.clone(),
            memory_limit: r.memory_limit,
            cpus: r.cpus,
            criu: criu.binary().to_path_buf(),
            data_dir: self.data_root.join(&name),
            scratch_dir: self.scratch_root.as_ref().map(|r| r.join(&name)),
            cgroup_parent: self.cgroup_parent.clone(),
            owner: ProcRef::me(),
        };
        let spawned = write_json(&dir.join(REQUEST_FILE), &req)
            .and_then(|()| self.spawn_monitor(&dir, monitor));
        let (report, _owner) = match spawned {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut text = Vec::new();
        let read = File::from(report).take(MAX_REPORT).read_to_end(&mut text);
        let line = text.split(|b| *b == b'\n').find(|l| !l.is_empty());
        match (read, line.map(serde_json::from_slice::<monitor::Report>)) {
            (_, Some(Ok(monitor::Report::Ok(rec)))) => Ok(*rec),
            (_, Some(Ok(monitor::Report::Error(e)))) => Err(e.into_error()),
            (_, other) => {
                // The monitor died without a word: remove what its record names.
                let detail = match other {
                    Some(Err(e)) => format!("unreadable report: {e}"),
                    _ => {
                        let log =
                            fs::read_to_string(dir.join(state::MONITOR_LOG)).unwrap_or_default();
                        let tail: Vec<&str> = log.lines().rev().take(5).collect();
                        if tail.is_empty() {
                            "it was killed".to_string()
                        } else {
                            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
                        }
                    }
                };
                let rec: Record =
                    read_json(&dir.join(STATE_FILE)).unwrap_or_else(|_| Record::new(&req));
                // Its resources may still be in use for a moment by processes it started.
                std::thread::sleep(Duration::from_millis(100));
                teardown::teardown(&rec, Some(&dir));
                Err(SandboxError::MonitorDied { name, detail })
            }
        }
    }

    /// Starts the monitor; returns the read end of its report pipe and our end of the owner
    /// pipe (its end of file tells the monitor this reel is gone).
    fn spawn_monitor(
        &self,
        dir: &Path,
        monitor: &MonitorCommand,
    ) -> Result<(OwnedFd, OwnedFd), SandboxError> {
        let pipe = || {
            nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| SandboxError::step("making a pipe", e))
        };
        let (report_r, report_w) = pipe()?;
        let (owner_r, owner_w) = pipe()?;
        let log_path = dir.join(state::MONITOR_LOG);
        let log = crate::durable::create_private_file(&log_path)
            .map_err(|e| SandboxError::io("creating", &log_path, e))?;
        let err = log
            .try_clone()
            .map_err(|e| SandboxError::io("creating", &log_path, e))?;
        let (w, r) = (report_w.as_raw_fd(), owner_r.as_raw_fd());
        let mut cmd = Command::new(&monitor.program);
        cmd.args(&monitor.args)
            .arg(dir)
            .arg(w.to_string())
            .arg(r.to_string())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        // SAFETY: between fork and exec only async-signal-safe calls (setsid, fcntl) on
        // descriptors open in the parent.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for fd in [w, r] {
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| SandboxError::io("starting the sandbox monitor", &monitor.program, e))?;
        tracing::debug!(pid = child.id(), dir = %dir.display(), "sandbox monitor started");
        // The monitor outlives this call (and reel): it is never waited for here.
        drop(child);
        Ok((report_r, owner_w))
    }

    /// Every sandbox of this host, by name.
    pub fn list(&self) -> Result<Vec<SandboxInfo>, SandboxError> {
        self.reap_stale();
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.state_root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(SandboxError::io("listing", &self.state_root, e)),
        };
        for e in rd.flatten() {
            let Some(name) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Ok(info) = self.get(&name) {
                out.push(info);
            }
        }
        out.sort_by(|a, b| a.record.name.cmp(&b.record.name));
        Ok(out)
    }

    fn record(&self, name: &str) -> Result<Record, SandboxError> {
        validate_name(name)?;
        let dir = self.dir(name);
        if !dir.is_dir() {
            return Err(SandboxError::NotFound { name: name.into() });
        }
        match read_json(&dir.join(STATE_FILE)) {
            Ok(r) => Ok(r),
            Err(_) => {
                let req: Request = read_json(&dir.join(REQUEST_FILE))?;
                Ok(Record::new(&req))
            }
        }
    }

    /// One sandbox.
    pub fn get(&self, name: &str) -> Result<SandboxInfo, SandboxError> {
        let record = self.record(name)?;
        Ok(info(record))
    }

    /// Kills the sandbox's processes; their end is recorded (by the monitor, or here when the
    /// monitor is gone).
    pub fn stop(&self, name: &str) -> Result<SandboxInfo, SandboxError> {
        let mut rec = self.record(name)?;
        if rec.phase == Phase::Creating {
            return Err(SandboxError::WrongState {
                name: name.into(),
                state: "being created".into(),
                what: "wait for `reel restore checkpoint` to finish".into(),
            });
        }
        if rec.phase != Phase::Running {
            return self.get(name);
        }
        match rec.monitor.filter(ProcRef::alive) {
            Some(m) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(m.pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
                let end = Instant::now() + Duration::from_secs(30);
                while m.alive() && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if m.alive() {
                    return Err(SandboxError::step(
                        "stopping the sandbox",
                        format!("its monitor {} did not end within 30 s", m.pid),
                    ));
                }
            }
            None => {
                cgroup::kill_all(&rec.resources.cgroups, Duration::from_secs(10))?;
                rec.phase = Phase::Stopped;
                rec.exit = Some(state::ExitRecord {
                    code: None,
                    signal: Some(libc::SIGKILL),
                    at: chrono::Utc::now(),
                });
                write_json(&self.dir(name).join(STATE_FILE), &rec)?;
            }
        }
        self.get(name)
    }

    /// Lets the processes of a sandbox restored with `paused` run (SIGCONT to each).
    pub fn resume(&self, name: &str) -> Result<SandboxInfo, SandboxError> {
        let rec = self.record(name)?;
        if rec.phase != Phase::Running {
            return Err(SandboxError::WrongState {
                name: name.into(),
                state: rec.phase.as_str().into(),
                what: "only a running sandbox can be resumed".into(),
            });
        }
        for pid in cgroup::procs(&rec.resources.cgroups) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
        self.get(name)
    }

    /// Stops the sandbox if it runs and removes everything it made.
    pub fn delete(&self, name: &str) -> Result<(), SandboxError> {
        let rec = self.record(name)?;
        if rec.phase == Phase::Creating
            && (rec.monitor.is_some_and(|m| m.alive()) || rec.owner.is_some_and(|o| o.alive()))
        {
            return Err(SandboxError::WrongState {
                name: name.into(),
                state: "being created".into(),
                what: "wait for `reel restore checkpoint` to finish".into(),
            });
        }
        if rec.phase == Phase::Running {
            self.stop(name)?;
        }
        let rec = self.record(name)?;
        let problems = teardown::teardown(&rec, Some(&self.dir(name)));
        match problems.into_iter().next() {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Removes sandboxes that were being created when both their monitor and the reel that
    /// asked died (or the reel died before it wrote its request), and data directories no sandbox owns; returns their names.
    pub fn reap_stale(&self) -> Vec<String> {
        let mut gone = Vec::new();
        if let Ok(rd) = fs::read_dir(&self.state_root) {
            for e in rd.flatten() {
                let Some(name) = e.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let Ok(rec) = self.record(&name) else {
                    // A claim with nothing readable in it: the reel that made it died before
                    // writing its request (the window is microseconds; the grace is ample).
                    let abandoned = e
                        .metadata()
                        .ok()
                        .and_then(|m| m.modified().ok())
                        .is_some_and(|t| t.elapsed().is_ok_and(|age| age > CLAIM_GRACE));
                    if abandoned && fs::remove_dir_all(e.path()).is_ok() {
                        tracing::info!(sandbox = %name, "removing a claim whose reel died before its request");
                        gone.push(name);
                    }
                    continue;
                };
                let stale = rec.phase == Phase::Creating
                    && !rec.monitor.is_some_and(|m| m.alive())
                    && !rec.owner.is_some_and(|o| o.alive());
                if stale {
                    tracing::info!(sandbox = %name, "removing a sandbox whose creation was killed");
                    teardown::teardown(&rec, Some(&e.path()));
                    gone.push(name);
                }
            }
        }
        let roots = std::iter::once(&self.data_root).chain(self.scratch_root.as_ref());
        for rd in roots.filter_map(|r| fs::read_dir(r).ok()) {
            for e in rd.flatten() {
                let owned = e.file_name().to_str().is_some_and(|n| self.dir(n).is_dir());
                if !owned {
                    tracing::info!(path = %e.path().display(), "removing the data of a sandbox that is gone");
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        gone
    }
}

/// What is true of a sandbox now.
fn info(record: Record) -> SandboxInfo {
    let monitor_alive = record.monitor.is_some_and(|m| m.alive());
    let procs = cgroup::procs(&record.resources.cgroups);
    let state = match record.phase {
        Phase::Creating => "creating".to_string(),
        Phase::Running if procs.is_empty() => "lost".to_string(),
        Phase::Running => {
            let stopped = procs.iter().all(|p| {
                crate::host::stat(Path::new(crate::host::PROC), *p)
                    .is_some_and(|s| matches!(s.state, 'T' | 't'))
            });
            if stopped { "paused" } else { "running" }.to_string()
        }
        other => other.as_str().to_string(),
    };
    SandboxInfo {
        state,
        monitor_alive,
        record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "web-1", "x0"] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-a", "A", "a/b", "a.b", &"x".repeat(41)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        let n = default_name(Path::new("/s/checkpoint-web-20261126-101500.tar.zst"));
        validate_name(&n).unwrap();
        assert!(n.starts_with("web-20261126-101500-"), "{n}");
    }
}
