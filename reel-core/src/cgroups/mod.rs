//! Freezing a container's cgroup, on cgroup v1 (`freezer.state`) and v2 (`cgroup.freeze`).
//!
//! In the style of youki's `libcgroups`: one trait, [`CgroupFreezer`], with one implementation
//! per cgroup version ([`V1Freezer`], [`V2Freezer`]), and [`Freezer`] choosing between them for
//! a process.
//!
//! ```no_run
//! use reel_core::cgroups::{Freezer, Preference};
//! # fn dump(_: &std::path::Path) {}
//! # fn main() -> Result<(), reel_core::cgroups::FreezerError> {
//! let freezer = Freezer::for_pid(1234, Preference::Auto)?;
//! let guard = freezer.freeze()?; // with a watchdog; thawed on SIGINT/SIGTERM after signals::install()
//! dump(guard.path()); // e.g. CRIU with freeze_cgroup = guard.path()
//! guard.thaw()?; // or let it drop
//! # Ok(()) }
//! ```
//!
//! Finding the cgroup: the `freezer` line (v1) or the `0::` line (v2) of `/proc/<pid>/cgroup`,
//! joined with the hierarchy's mount point from `/proc/self/mountinfo` (nothing is hard-coded,
//! so hybrid hosts and pure v2 hosts both work).
//!
//! Guarantees, and what happens when reel dies: see [`guard`] and [`watchdog`].

mod error;
mod fs;
pub mod guard;
pub mod mounts;
pub mod v1;
pub mod v2;
pub mod watchdog;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use error::{FreezerError, Result};
pub use guard::{FreezeGuard, FreezeOptions};
pub use mounts::{CgroupMount, Hierarchies, ProcessCgroups};
pub use v1::V1Freezer;
pub use v2::V2Freezer;
pub use watchdog::Watchdog;

/// The cgroup version of a freezer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupKind {
    /// cgroup v1, the `freezer` controller.
    V1,
    /// cgroup v2 (unified hierarchy).
    V2,
}

impl fmt::Display for CgroupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CgroupKind::V1 => "v1",
            CgroupKind::V2 => "v2",
        })
    }
}

/// The state of a freezer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FreezerState {
    /// Running.
    Thawed,
    /// A freeze was asked for and not every task is frozen yet.
    Freezing,
    /// Every task is frozen (v1: `FROZEN`; v2: `frozen 1` in `cgroup.events`, which also
    /// holds when an ancestor is frozen).
    Frozen,
}

impl fmt::Display for FreezerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FreezerState::Thawed => "THAWED",
            FreezerState::Freezing => "FREEZING",
            FreezerState::Frozen => "FROZEN",
        })
    }
}

/// Which hierarchy [`Freezer::for_pid`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preference {
    /// The process's v1 freezer cgroup if it has one that is not the root `/` (and the v1
    /// freezer is mounted), else its v2 cgroup. This is runc's choice on hybrid hosts.
    #[default]
    Auto,
    /// Only the v1 freezer.
    ForceV1,
    /// Only cgroup v2.
    ForceV2,
}

/// One cgroup's freezer. Implemented for each cgroup version.
pub trait CgroupFreezer: fmt::Debug + Send + Sync {
    /// The cgroup version.
    fn kind(&self) -> CgroupKind;

    /// The cgroup directory.
    fn path(&self) -> &Path;

    /// The current state.
    fn state(&self) -> Result<FreezerState>;

    /// Freeze and wait until frozen, within `timeout` (and, on v1, a bounded number of
    /// attempts). On failure the cgroup is left as it is.
    fn freeze_no_rollback(&self, timeout: Duration) -> Result<()>;

    /// Thaw and wait until thawed, within `timeout`.
    fn thaw(&self, timeout: Duration) -> Result<()>;

    /// The file and the value that thaw this cgroup in one write (used by the [`Watchdog`]).
    fn thaw_instruction(&self) -> (PathBuf, &'static str);

    /// Freeze and wait until frozen; on failure thaw again (best effort, logged) and return
    /// the error, which names the cgroup.
    fn freeze(&self, timeout: Duration) -> Result<()> {
        let result = self.freeze_no_rollback(timeout);
        if let Err(e) = &result {
            tracing::warn!(cgroup = %self.path().display(), error = %e, "freeze failed; thawing");
            if let Err(thaw) = self.thaw(timeout.max(Duration::from_secs(1))) {
                tracing::error!(cgroup = %self.path().display(), error = %thaw, "cannot thaw after a failed freeze");
            }
        }
        result
    }
}

/// The freezer of one cgroup, v1 or v2. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Freezer {
    inner: Arc<dyn CgroupFreezer>,
}

impl Freezer {
    /// The freezer of a cgroup directory of the given kind. Nothing is checked until used.
    pub fn new(kind: CgroupKind, path: impl Into<PathBuf>) -> Self {
        match kind {
            CgroupKind::V1 => Self::from_impl(V1Freezer::new(path)),
            CgroupKind::V2 => Self::from_impl(V2Freezer::new(path)),
        }
    }

    /// Wrap any [`CgroupFreezer`].
    pub fn from_impl(freezer: impl CgroupFreezer + 'static) -> Self {
        Freezer {
            inner: Arc::new(freezer),
        }
    }

    /// The freezer of the cgroup of process `pid`, per `preference`.
    pub fn for_pid(pid: i32, preference: Preference) -> Result<Self> {
        let procs = ProcessCgroups::of_pid(pid)?;
        let hierarchies = Hierarchies::from_mountinfo()?;
        let (kind, path) = select(pid, &procs, &hierarchies, preference)?;
        tracing::debug!(pid, %kind, path = %path.display(), "freezer cgroup found");
        Ok(Self::new(kind, path))
    }

    /// The cgroup version.
    pub fn kind(&self) -> CgroupKind {
        self.inner.kind()
    }

    /// The cgroup directory (what CRIU's `freeze_cgroup` wants).
    pub fn path(&self) -> &Path {
        self.inner.path()
    }

    /// The current state.
    pub fn state(&self) -> Result<FreezerState> {
        self.inner.state()
    }

    /// The underlying freezer, for unguarded operations.
    pub fn cgroup(&self) -> &dyn CgroupFreezer {
        &*self.inner
    }

    /// Freeze with [`FreezeOptions::default`]: see [`freeze_with`](Self::freeze_with).
    pub fn freeze(&self) -> Result<FreezeGuard> {
        self.freeze_with(&FreezeOptions::default())
    }

    /// Freeze and return a guard that thaws again (on [`FreezeGuard::thaw`], drop,
    /// SIGINT/SIGTERM, and through the watchdog if the process is killed).
    ///
    /// If the cgroup is already frozen, nothing is written and the guard reports
    /// [`was_frozen`](FreezeGuard::was_frozen) and leaves it frozen. If it is FREEZING
    /// (someone else's freeze in progress), the freeze is completed but not undone later.
    pub fn freeze_with(&self, options: &FreezeOptions) -> Result<FreezeGuard> {
        FreezeGuard::freeze(self, options, None)
    }

    /// [`freeze_with`](Self::freeze_with), but the cgroup is frozen by `pause` (a runtime
    /// freezing it on reel's request, e.g. containerd's `Tasks/Pause`) and reel waits for
    /// FROZEN. Everything else is the same guard: it thaws on every path, and its watchdog
    /// (which first runs the options' resume command) if reel is killed.
    pub fn freeze_via(
        &self,
        options: &FreezeOptions,
        mut pause: impl FnMut() -> std::result::Result<(), String>,
    ) -> Result<FreezeGuard> {
        FreezeGuard::freeze(self, options, Some(&mut pause))
    }
}

/// Pick the hierarchy and directory for `pid`.
fn select(
    pid: i32,
    procs: &ProcessCgroups,
    hierarchies: &Hierarchies,
    preference: Preference,
) -> Result<(CgroupKind, PathBuf)> {
    let try_kind = |kind: CgroupKind| -> Result<(CgroupKind, PathBuf)> {
        let Some(cgroup) = procs.path(kind) else {
            return Err(FreezerError::NoCgroup {
                pid,
                reason: match kind {
                    CgroupKind::V1 => "no `freezer` line in /proc/<pid>/cgroup".into(),
                    CgroupKind::V2 => "no `0::` line in /proc/<pid>/cgroup".into(),
                },
            });
        };
        if cgroup == "/" {
            return Err(FreezerError::NoCgroup {
                pid,
                reason: format!("it is in the root {kind} cgroup, which cannot be frozen"),
            });
        }
        if hierarchies.mounts(kind).is_empty() {
            return Err(FreezerError::NotMounted { kind });
        }
        match hierarchies.resolve(kind, cgroup) {
            Some(dir) => Ok((kind, dir)),
            None => Err(FreezerError::NoCgroup {
                pid,
                reason: format!(
                    "its {kind} cgroup {cgroup} is not under any mount of the hierarchy"
                ),
            }),
        }
    };
    match preference {
        Preference::ForceV1 => try_kind(CgroupKind::V1),
        Preference::ForceV2 => try_kind(CgroupKind::V2),
        Preference::Auto => {
            let has_v1 = procs.v1_freezer.as_deref().is_some_and(|p| p != "/");
            if has_v1 {
                match try_kind(CgroupKind::V1) {
                    Ok(found) => return Ok(found),
                    Err(e) => {
                        tracing::warn!(pid, error = %e, "v1 freezer cgroup unusable, trying v2")
                    }
                }
            }
            try_kind(CgroupKind::V2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hybrid() -> Hierarchies {
        Hierarchies::parse(
            "37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        )
    }

    #[test]
    fn auto_prefers_a_non_root_v1_freezer() {
        let procs = ProcessCgroups::parse("6:freezer:/docker/c\n0::/system.slice/c\n");
        let (kind, path) = select(1, &procs, &hybrid(), Preference::Auto).unwrap();
        assert_eq!(kind, CgroupKind::V1);
        assert_eq!(path, PathBuf::from("/sys/fs/cgroup/freezer/docker/c"));
        let (kind, path) = select(1, &procs, &hybrid(), Preference::ForceV2).unwrap();
        assert_eq!(kind, CgroupKind::V2);
        assert_eq!(path, PathBuf::from("/sys/fs/cgroup/unified/system.slice/c"));
    }

    #[test]
    fn auto_falls_back_to_v2() {
        let procs = ProcessCgroups::parse("6:freezer:/\n0::/c\n");
        let (kind, _) = select(1, &procs, &hybrid(), Preference::Auto).unwrap();
        assert_eq!(kind, CgroupKind::V2);
        // Pure v2 host.
        let pure = Hierarchies::parse("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let procs = ProcessCgroups::parse("0::/k/c\n");
        let (kind, path) = select(1, &procs, &pure, Preference::Auto).unwrap();
        assert_eq!(kind, CgroupKind::V2);
        assert_eq!(path, PathBuf::from("/sys/fs/cgroup/k/c"));
        assert!(matches!(
            select(1, &procs, &pure, Preference::ForceV1),
            Err(FreezerError::NoCgroup { .. })
        ));
    }

    #[test]
    fn root_cgroups_are_refused() {
        let procs = ProcessCgroups::parse("6:freezer:/\n0::/\n");
        let err = select(7, &procs, &hybrid(), Preference::Auto).unwrap_err();
        assert!(err.to_string().contains("root v2 cgroup"), "{err}");
        let procs = ProcessCgroups::parse("6:freezer:/x\n0::/\n");
        let v1_missing = Hierarchies::parse("41 31 0:38 / /u rw - cgroup2 cgroup2 rw\n");
        assert!(matches!(
            select(7, &procs, &v1_missing, Preference::ForceV1),
            Err(FreezerError::NotMounted {
                kind: CgroupKind::V1
            })
        ));
    }
}
