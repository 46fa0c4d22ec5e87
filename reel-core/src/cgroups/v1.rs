//! cgroup v1: the `freezer` controller's `freezer.state`.

use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use super::error::{FreezerError, Result};
use super::{fs, CgroupFreezer, CgroupKind, FreezerState};

/// The file of the v1 freezer.
pub const STATE_FILE: &str = "freezer.state";

/// Default bound on the number of FROZEN writes of one freeze.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 1000;

/// Every this many attempts that still read FREEZING, thaw for a moment and start again: a
/// cgroup can stay FREEZING forever while its tasks fork, and a thaw/freeze cycle unsticks it.
const NUDGE_EVERY: u32 = 50;

/// A v1 freezer cgroup directory (for example `/sys/fs/cgroup/freezer/docker/<id>`).
#[derive(Debug, Clone)]
pub struct V1Freezer {
    path: PathBuf,
    max_attempts: u32,
}

impl V1Freezer {
    /// The freezer of this directory. Nothing is checked until the first operation.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        V1Freezer {
            path: path.into(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// Bound the number of FROZEN writes of one freeze (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    fn state_file(&self) -> PathBuf {
        self.path.join(STATE_FILE)
    }

    fn write_state(&self, value: &str) -> Result<()> {
        fs::write(&self.state_file(), value)
    }

    fn parse(&self, text: &str) -> Result<FreezerState> {
        match text.trim() {
            "THAWED" => Ok(FreezerState::Thawed),
            "FREEZING" => Ok(FreezerState::Freezing),
            "FROZEN" => Ok(FreezerState::Frozen),
            other => {
                tracing::warn!(cgroup = %self.path.display(), state = other, "unexpected freezer.state");
                Err(FreezerError::UnexpectedState {
                    path: self.state_file(),
                    state: other.to_string(),
                })
            }
        }
    }
}

/// Sleep between attempts: 1 ms, growing to 10 ms, never past the deadline.
fn pause(attempt: u32, deadline: Instant) {
    let step = Duration::from_millis(u64::from(attempt.clamp(1, 10)));
    let left = deadline.saturating_duration_since(Instant::now());
    sleep(step.min(left));
}

impl CgroupFreezer for V1Freezer {
    fn kind(&self) -> CgroupKind {
        CgroupKind::V1
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> Result<FreezerState> {
        self.parse(&fs::read(&self.state_file())?)
    }

    fn freeze_no_rollback(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut attempt = 0u32;
        let mut since_nudge = 0u32;
        loop {
            attempt += 1;
            since_nudge += 1;
            if since_nudge == NUDGE_EVERY {
                since_nudge = 0;
                tracing::debug!(cgroup = %self.path.display(), attempt, "still FREEZING: thaw and retry");
                self.write_state("THAWED")?;
                sleep(Duration::from_millis(1));
            }
            self.write_state("FROZEN")?;
            let state = self.state()?;
            if state == FreezerState::Frozen {
                tracing::debug!(cgroup = %self.path.display(), attempt, elapsed = ?start.elapsed(), "frozen");
                return Ok(());
            }
            if attempt >= self.max_attempts || Instant::now() >= deadline {
                tracing::warn!(cgroup = %self.path.display(), attempt, %state, "freeze timed out");
                return Err(FreezerError::FreezeTimeout {
                    path: self.path.clone(),
                    state,
                    attempts: attempt,
                    elapsed: start.elapsed(),
                });
            }
            pause(attempt, deadline);
        }
    }

    fn thaw(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.write_state("THAWED")?;
            let state = self.state()?;
            if state == FreezerState::Thawed {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(cgroup = %self.path.display(), %state, "thaw timed out (is a parent cgroup frozen?)");
                return Err(FreezerError::ThawTimeout {
                    path: self.path.clone(),
                    state,
                    elapsed: start.elapsed(),
                });
            }
            pause(attempt, deadline);
        }
    }

    fn thaw_instruction(&self) -> (PathBuf, &'static str) {
        (self.state_file(), "THAWED")
    }
}
