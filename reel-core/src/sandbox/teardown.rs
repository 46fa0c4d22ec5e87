//! Removing everything a sandbox made, from its record: processes (through its cgroup), the
//! network namespace, the cgroups, the data and scratch directories, and (with `state`) the state
//! directory.
//! Idempotent: what is already gone is skipped, so it can run again after any interruption.

use std::fs;
use std::path::Path;
use std::time::Duration;

use super::state::Record;
use super::{cgroup, network, SandboxError};

/// How long the processes get to die.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Removes what `rec` names; returns the problems (empty when everything is gone).
pub fn teardown(rec: &Record, state_dir: Option<&Path>) -> Vec<SandboxError> {
    let mut problems = Vec::new();
    let r = &rec.resources;
    if !r.cgroups.is_empty() {
        if let Err(e) = cgroup::kill_all(&r.cgroups, KILL_TIMEOUT) {
            problems.push(e);
        }
    }
    if let Some(ns) = &r.netns {
        if let Err(e) = network::delete(ns) {
            problems.push(e);
        }
    }
    if let Err(e) = cgroup::remove(&r.cgroups) {
        problems.push(e);
    }
    if let Some(d) = &r.data_dir {
        // Mounted only in the monitor's namespace (when this is the monitor): detach first.
        let _ = nix::mount::umount2(&d.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        if let Err(e) = fs::remove_dir_all(d) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(SandboxError::io("removing", d, e));
            }
        }
    }
    if let Some(d) = &r.scratch_dir {
        if let Err(e) = fs::remove_dir_all(d) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(SandboxError::io("removing", d, e));
            }
        }
    }
    if let Some(s) = state_dir {
        if let Err(e) = fs::remove_dir_all(s) {
            if e.kind() != std::io::ErrorKind::NotFound {
                problems.push(SandboxError::io("removing", s, e));
            }
        }
    }
    for p in &problems {
        tracing::warn!(sandbox = %rec.name, error = %p, "teardown left something");
    }
    problems
}
