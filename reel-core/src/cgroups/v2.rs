//! cgroup v2: `cgroup.freeze` and the `frozen` key of `cgroup.events`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags};

use super::error::{FreezerError, Result};
use super::{fs, CgroupFreezer, CgroupKind, FreezerState};

/// The file that requests a freeze (`1`) or a thaw (`0`).
pub const FREEZE_FILE: &str = "cgroup.freeze";
/// The file whose `frozen` key says whether the cgroup is frozen; it is pollable.
pub const EVENTS_FILE: &str = "cgroup.events";

/// Longest single wait in `poll(2)`: the file is re-read at least this often even if a
/// notification were missed.
const MAX_POLL: Duration = Duration::from_millis(50);

/// A cgroup v2 directory (for example `/sys/fs/cgroup/system.slice/docker-<id>.scope`).
#[derive(Debug, Clone)]
pub struct V2Freezer {
    path: PathBuf,
}

impl V2Freezer {
    /// The freezer of this directory. Nothing is checked until the first operation.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        V2Freezer { path: path.into() }
    }

    fn events_file(&self) -> PathBuf {
        self.path.join(EVENTS_FILE)
    }

    fn freeze_file(&self) -> PathBuf {
        self.path.join(FREEZE_FILE)
    }

    fn parse_frozen(&self, events: &str) -> Result<bool> {
        let value = events.lines().find_map(|l| l.strip_prefix("frozen "));
        match value.map(str::trim) {
            Some("1") => Ok(true),
            Some("0") => Ok(false),
            other => Err(FreezerError::Parse {
                path: self.events_file(),
                detail: match other {
                    None => "no `frozen` key (kernel older than 5.2?)".to_string(),
                    Some(v) => format!("unexpected `frozen {v}`"),
                },
            }),
        }
    }

    /// Is the cgroup (effectively) frozen, per `cgroup.events`?
    fn frozen(&self) -> Result<bool> {
        self.parse_frozen(&fs::read(&self.events_file())?)
    }

    /// Wait until `frozen` in `cgroup.events` equals `want`, woken by `poll(POLLPRI)` (kernfs
    /// notifies on change) and re-reading at least every [`MAX_POLL`].
    /// Returns Ok(true) when reached, Ok(false) on timeout.
    fn wait_frozen(&self, want: bool, deadline: Instant) -> Result<bool> {
        let path = self.events_file();
        let mut file = File::open(&path).map_err(|e| FreezerError::io("open", &path, e))?;
        let mut text = String::new();
        loop {
            text.clear();
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.read_to_string(&mut text))
                .map_err(|e| FreezerError::io("read", &path, e))?;
            if self.parse_frozen(&text)? == want {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            let wait = left.min(MAX_POLL);
            let ms = u16::try_from(wait.as_millis().max(1)).unwrap_or(u16::MAX);
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
            match poll(&mut fds, ms) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(FreezerError::io("poll", &path, e.into())),
            }
        }
    }
}

impl CgroupFreezer for V2Freezer {
    fn kind(&self) -> CgroupKind {
        CgroupKind::V2
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> Result<FreezerState> {
        if self.frozen()? {
            return Ok(FreezerState::Frozen);
        }
        let requested = fs::read(&self.freeze_file())?;
        Ok(match requested.trim() {
            "1" => FreezerState::Freezing,
            "0" => FreezerState::Thawed,
            other => {
                return Err(FreezerError::UnexpectedState {
                    path: self.freeze_file(),
                    state: other.to_string(),
                })
            }
        })
    }

    fn freeze_no_rollback(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        fs::write(&self.freeze_file(), "1")?;
        if self.wait_frozen(true, start + timeout)? {
            tracing::debug!(cgroup = %self.path.display(), elapsed = ?start.elapsed(), "frozen");
            return Ok(());
        }
        let state = self.state()?;
        tracing::warn!(cgroup = %self.path.display(), %state, "freeze timed out");
        Err(FreezerError::FreezeTimeout {
            path: self.path.clone(),
            state,
            attempts: 1,
            elapsed: start.elapsed(),
        })
    }

    fn thaw(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        fs::write(&self.freeze_file(), "0")?;
        if self.wait_frozen(false, start + timeout)? {
            return Ok(());
        }
        let state = self.state()?;
        tracing::warn!(cgroup = %self.path.display(), %state, "thaw timed out (is a parent cgroup frozen?)");
        Err(FreezerError::ThawTimeout {
            path: self.path.clone(),
            state,
            elapsed: start.elapsed(),
        })
    }

    fn thaw_instruction(&self) -> (PathBuf, &'static str) {
        (self.freeze_file(), "0")
    }
}
