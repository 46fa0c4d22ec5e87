//! The sandbox's own cgroup: `<parent>/<name>` in every mounted hierarchy (each v1 one and
//! cgroup2), with the memory and CPU limits of the original unless told otherwise.
//!
//! CRIU is run from inside it and told (`cg_root`) that the restored tree's root cgroup is
//! this one, so the original's cgroups are never touched; with CRIU's soft mode the limits
//! set here stay.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::SandboxError;
use crate::cgroups::Hierarchies;

/// The hierarchies' mount points (each mounted from its root).
fn roots() -> Result<Vec<PathBuf>, SandboxError> {
    let h = Hierarchies::from_mountinfo()
        .map_err(|e| SandboxError::step("finding the cgroup hierarchies", e))?;
    let mut out: Vec<PathBuf> =
        h.v1.iter()
            .map(|(_, m)| m)
            .chain(h.unified.iter())
            .filter(|m| m.root == "/")
            .map(|m| m.mount_point.clone())
            .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// A new cgroup dir in the v1 cpuset hierarchy has no CPUs and memory nodes until given its
/// parent's; no task can join it before.
fn inherit_cpuset(dir: &Path) -> io::Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for f in ["cpuset.cpus", "cpuset.mems"] {
        if dir.join(f).exists() {
            let v = fs::read_to_string(parent.join(f))?;
            if !v.trim().is_empty() {
                write(&dir.join(f), v.trim())?;
            }
        }
    }
    Ok(())
}

fn make(dir: &Path) -> io::Result<bool> {
    match fs::create_dir(dir) {
        Ok(()) => {
            inherit_cpuset(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates `<parent>/<name>` in every hierarchy, pushing each directory to `made` as soon as
/// it exists (so a failure half-way leaves a record of what to remove).
pub fn create(parent: &str, name: &str, made: &mut Vec<PathBuf>) -> Result<(), SandboxError> {
    for root in roots()? {
        let p = root.join(parent);
        make(&p).map_err(|e| SandboxError::io("creating the cgroup", &p, e))?;
        let dir = p.join(name);
        if !make(&dir).map_err(|e| SandboxError::io("creating the cgroup", &dir, e))? {
            return Err(SandboxError::step(
                "creating the sandbox's cgroup",
                format!("{} already exists", dir.display()),
            ));
        }
        made.push(dir);
    }
    Ok(())
}

/// Sets the memory limit (bytes) and the CPU quota (`quota`, `period` in µs) where the
/// controllers are.
pub fn limit(
    dirs: &[PathBuf],
    memory: Option<u64>,
    cpu: Option<(i64, u64)>,
) -> Result<(), SandboxError> {
    let set = |p: PathBuf, v: String| -> Result<(), SandboxError> {
        if p.exists() {
            write(&p, &v).map_err(|e| SandboxError::io("setting", &p, e))?;
        }
        Ok(())
    };
    for d in dirs {
        if let Some(m) = memory {
            set(d.join("memory.limit_in_bytes"), m.to_string())?;
            set(d.join("memory.max"), m.to_string())?;
        }
        if let Some((quota, period)) = cpu {
            set(d.join("cpu.cfs_period_us"), period.to_string())?;
            set(d.join("cpu.cfs_quota_us"), quota.to_string())?;
            set(d.join("cpu.max"), format!("{quota} {period}"))?;
        }
    }
    Ok(())
}

/// Moves process `pid` into every one of `dirs`.
pub fn join(dirs: &[PathBuf], pid: i32) -> Result<(), SandboxError> {
    for d in dirs {
        let p = d.join("cgroup.procs");
        write(&p, &pid.to_string()).map_err(|e| SandboxError::io("joining", &p, e))?;
    }
    Ok(())
}

/// Moves process `pid` out of `dirs`, into each one's parent.
pub fn leave(dirs: &[PathBuf], pid: i32) -> Result<(), SandboxError> {
    let parents: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| d.parent())
        .map(Path::to_path_buf)
        .collect();
    join(&parents, pid)
}

/// Every process in the sandbox's cgroup (and the cgroups CRIU made below it).
pub fn procs(dirs: &[PathBuf]) -> Vec<i32> {
    let mut out = Vec::new();
    if let Some(d) = dirs.first() {
        collect(d, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn collect(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(t) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(t.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                collect(&e.path(), out);
            }
        }
    }
}

/// Kills every process of the cgroup (cgroup2's `cgroup.kill` where it exists, else SIGKILL
/// to each until none is left) and waits until it is empty.
pub fn kill_all(dirs: &[PathBuf], timeout: Duration) -> Result<(), SandboxError> {
    let end = Instant::now() + timeout;
    for d in dirs {
        let k = d.join("cgroup.kill");
        if k.exists() {
            let _ = write(&k, "1");
        }
    }
    loop {
        let left: Vec<i32> = dirs
            .iter()
            .flat_map(|d| procs(std::slice::from_ref(d)))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        for p in &left {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        if Instant::now() > end {
            return Err(SandboxError::step(
                "killing the sandbox's processes",
                format!("processes {left:?} are still there after {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the cgroup directories (children first); a missing one is fine.
pub fn remove(dirs: &[PathBuf]) -> Result<(), SandboxError> {
    let mut failed = None;
    for d in dirs {
        if let Err(e) = remove_tree(d) {
            failed.get_or_insert(SandboxError::io("removing the cgroup", d, e));
        }
    }
    failed.map_or(Ok(()), Err)
}

fn remove_tree(dir: &Path) -> io::Result<()> {
    match fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&e.path())?;
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    // A cgroup whose last task just died can still be busy for a moment.
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(e),
        }
    }
}
