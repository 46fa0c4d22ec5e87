//! The freezer's error type.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::{CgroupKind, FreezerState};

/// Everything that can go wrong while finding, freezing or thawing a cgroup.
///
/// I/O errors always carry the file they were about, and every freeze/thaw failure names the
/// cgroup directory.
#[derive(Debug, thiserror::Error)]
pub enum FreezerError {
    /// Reading or writing a file under `/proc` or a cgroup directory failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "open", ...).
        op: &'static str,
        /// The file (or directory) involved.
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `/proc/<pid>` does not exist.
    #[error("process {pid} does not exist")]
    ProcessNotFound { pid: i32 },

    /// A `/proc` or cgroup file had content we could not understand.
    #[error("cannot parse {}: {detail}", path.display())]
    Parse { path: PathBuf, detail: String },

    /// No hierarchy of this kind is mounted (according to `/proc/self/mountinfo`).
    #[error("no cgroup {kind} hierarchy with a freezer is mounted (per /proc/self/mountinfo)")]
    NotMounted { kind: CgroupKind },

    /// The process has no cgroup that can be frozen (for example it is in the root cgroup).
    #[error("process {pid} has no freezable cgroup: {reason}")]
    NoCgroup { pid: i32, reason: String },

    /// A freezer file held a value this code does not know.
    #[error("cgroup {} reports an unexpected freezer state {state:?}", path.display())]
    UnexpectedState { path: PathBuf, state: String },

    /// The cgroup did not reach FROZEN within the time/attempt bound. When this comes from
    /// [`CgroupFreezer::freeze`](super::CgroupFreezer::freeze) the cgroup was thawed again.
    #[error(
        "could not freeze cgroup {}: still {state} after {attempts} attempt(s) in {elapsed:?}",
        path.display()
    )]
    FreezeTimeout {
        path: PathBuf,
        state: FreezerState,
        attempts: u32,
        elapsed: Duration,
    },

    /// The cgroup did not reach THAWED in time (for example because a parent cgroup is frozen).
    #[error("could not thaw cgroup {}: still {state} after {elapsed:?}", path.display())]
    ThawTimeout {
        path: PathBuf,
        state: FreezerState,
        elapsed: Duration,
    },

    /// The runtime asked to freeze the cgroup (containerd's `Pause`) failed.
    #[error("cannot pause cgroup {}: {reason}", path.display())]
    FreezeAction { path: PathBuf, reason: String },

    /// The watchdog process could not be started.
    #[error("cannot start the freeze watchdog for {}: {source}", path.display())]
    Watchdog {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The process is exiting because of SIGINT/SIGTERM; no new freeze is started.
    #[error("not freezing cgroup {}: the process is exiting on a signal", path.display())]
    Interrupted { path: PathBuf },
}

/// `Result` with [`FreezerError`].
pub type Result<T, E = FreezerError> = std::result::Result<T, E>;

impl FreezerError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        tracing::debug!(op, path = %path.display(), error = %source, "cgroup I/O error");
        FreezerError::Io { op, path, source }
    }
}
