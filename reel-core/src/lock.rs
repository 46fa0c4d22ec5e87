//! One reel at a time per container.
//!
//! A lock is an exclusive `flock(2)` on `<dir>/<container-id>.lock` (by default
//! [`DEFAULT_LOCK_DIR`], created mode 0700 as needed). The holder writes its pid into the file so
//! that a refused reel can say who holds it. `flock` locks belong to the open file description,
//! so the kernel releases a lock when its holder dies, however it dies; the descriptor is
//! close-on-exec, so programs reel runs (CRIU) never hold it. Lock files are left in place
//! (removing them would race with another reel opening the same path).
//!
//! ```no_run
//! use std::time::Duration;
//! use reel_core::lock::Locker;
//! # fn main() -> Result<(), reel_core::lock::LockError> {
//! let lock = Locker::default().lock("my-container", Duration::from_secs(5))?;
//! // ... checkpoint ...
//! drop(lock);
//! # Ok(()) }
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where locks live unless configured otherwise.
pub const DEFAULT_LOCK_DIR: &str = "/run/reel/locks";

/// Longest container id accepted (the file name gets `.lock` appended; NAME_MAX is 255).
pub const MAX_ID_LEN: usize = 250;

/// Errors of the per-container lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The container id cannot be used as a file name.
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    /// Another process holds the lock.
    #[error(
        "container {id} is locked by another reel ({}); waited {waited:?}",
        match holder { Some(pid) => format!("pid {pid}"), None => "pid unknown".to_string() }
    )]
    Busy {
        id: String,
        /// The pid written by the holder, if it could be read.
        holder: Option<i32>,
        waited: Duration,
    },

    /// A file operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl LockError {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        tracing::debug!(op, path = %path.display(), error = %source, "lock I/O error");
        LockError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Check that `id` can name a lock file: not empty, no `/`, no `..`, no NUL, not too long.
pub fn validate_id(id: &str) -> Result<(), LockError> {
    let reason = if id.is_empty() {
        "empty"
    } else if id.contains('/') {
        "contains '/'"
    } else if id.contains("..") {
        "contains '..'"
    } else if id == "." {
        "is '.'"
    } else if id.contains('\0') {
        "contains a NUL byte"
    } else if id.len() > MAX_ID_LEN {
        "too long"
    } else {
        return Ok(());
    };
    Err(LockError::InvalidId {
        id: id.to_string(),
        reason,
    })
}

/// Takes per-container locks in one directory.
#[derive(Debug, Clone)]
pub struct Locker {
    dir: PathBuf,
}

impl Default for Locker {
    /// Locks in [`DEFAULT_LOCK_DIR`].
    fn default() -> Self {
        Locker::new(DEFAULT_LOCK_DIR)
    }
}

impl Locker {
    /// Locks in `dir` (created mode 0700 when first needed).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Locker { dir: dir.into() }
    }

    /// The lock directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file of a container.
    pub fn path_of(&self, id: &str) -> Result<PathBuf, LockError> {
        validate_id(id)?;
        Ok(self.dir.join(format!("{id}.lock")))
    }

    /// Take the lock of container `id`, waiting up to `wait` for another holder to release it
    /// (`Duration::ZERO`: do not wait). Fails with [`LockError::Busy`], naming the holder's pid.
    pub fn lock(&self, id: &str, wait: Duration) -> Result<ContainerLock, LockError> {
        let path = self.path_of(id)?;
        self.ensure_dir()?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| LockError::io("open", &path, e))?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            // SAFETY: flock on a descriptor we own.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EWOULDBLOCK) => {}
                Some(libc::EINTR) => continue,
                _ => return Err(LockError::io("lock", &path, err)),
            }
            let waited = start.elapsed();
            if waited >= wait {
                let holder = read_holder(&mut file);
                tracing::debug!(id, ?holder, "container lock busy");
                return Err(LockError::Busy {
                    id: id.to_string(),
                    holder,
                    waited,
                });
            }
            std::thread::sleep(pause.min(wait - waited));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        // Holder's pid: write then truncate, so a reader sees the old or the new pid on the
        // first line, never an empty file.
        let pid = std::process::id();
        let line = format!("{pid}\n");
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(line.as_bytes()))
            .and_then(|_| file.set_len(line.len() as u64))
            .map_err(|e| LockError::io("write", &path, e))?;
        tracing::debug!(id, path = %path.display(), "container locked");
        Ok(ContainerLock {
            file,
            path,
            id: id.to_string(),
        })
    }

    /// [`lock`](Self::lock) without waiting.
    pub fn try_lock(&self, id: &str) -> Result<ContainerLock, LockError> {
        self.lock(id, Duration::ZERO)
    }

    /// The pid written by the current or last holder of `id`'s lock, if any.
    pub fn holder(&self, id: &str) -> Result<Option<i32>, LockError> {
        let path = self.path_of(id)?;
        match File::open(&path) {
            Ok(mut f) => Ok(read_holder(&mut f)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LockError::io("open", &path, e)),
        }
    }

    fn ensure_dir(&self) -> Result<(), LockError> {
        match std::fs::metadata(&self.dir) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(LockError::io(
                    "use",
                    &self.dir,
                    io::Error::other("not a directory"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(LockError::io("stat", &self.dir, e)),
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| LockError::io("create", &self.dir, e))?;
        // The umask may have narrowed it; make it exactly 0700.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| LockError::io("chmod", &self.dir, e))
    }
}

fn read_holder(file: &mut File) -> Option<i32> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// A held container lock; released on drop (or when the process dies).
#[derive(Debug)]
#[must_use = "the lock is released when dropped"]
pub struct ContainerLock {
    file: File,
    path: PathBuf,
    id: String,
}

impl ContainerLock {
    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Release now (same as dropping).
    pub fn release(self) {}
}

impl Drop for ContainerLock {
    fn drop(&mut self) {
        // Closing the file releases the lock; unlock explicitly in case a forked child
        // shares the descriptor.
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
        tracing::debug!(id = %self.id, "container lock released");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in ["abc", "a.b", "k8s_pod-1", "sha256:abc", ".hidden"] {
            validate_id(good).unwrap();
        }
        for bad in [
            "",
            "a/b",
            "..",
            "../x",
            "x..",
            ".",
            "a\0b",
            &"x".repeat(300),
        ] {
            let err = validate_id(bad).unwrap_err();
            assert!(matches!(err, LockError::InvalidId { .. }), "{bad:?}: {err}");
        }
    }
}
