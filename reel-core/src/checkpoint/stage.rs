//! The staging directory CRIU writes its images into: `<store>/.<id>.stage-<pid>/` with
//! `checkpoint/` inside (images) and CRIU's work files (`dump.log`, `stats-dump`) beside it,
//! so both land where the archive wants them. Root-only, removed on drop; a killed run's
//! staging directory is removed by the next run.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::CheckpointError;

const MARK: &str = ".stage-";

/// A staging directory, removed when dropped.
#[derive(Debug)]
pub struct Stage {
    dir: PathBuf,
}

impl Stage {
    /// Creates `<root>/.<id>.stage-<our pid>/checkpoint/`, mode 0700.
    pub fn create(root: &Path, id: &str) -> Result<Stage, CheckpointError> {
        let dir = root.join(format!(".{id}{MARK}{}", std::process::id()));
        let images = dir.join("checkpoint");
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&images)
            .map_err(|source| CheckpointError::Stage {
                path: images.clone(),
                source,
            })?;
        Ok(Stage { dir })
    }

    /// The work dir (`dump.log`, `stats-dump`, `rootfs-diff.tar`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The images dir.
    pub fn images_dir(&self) -> PathBuf {
        self.dir.join("checkpoint")
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.dir.display(), error = %e, "cannot remove staging directory");
            }
        }
    }
}

/// Removes staging directories of runs that are gone (their pid no longer exists).
pub fn clean_stale(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(pid) = name
            .rsplit_once(MARK)
            .and_then(|(_, p)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !name.starts_with('.') || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = e.path();
        match fs::remove_dir_all(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a killed run's staging directory")
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot remove stale staging directory")
            }
        }
    }
}

/// Writes a root-only file.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), CheckpointError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| CheckpointError::Stage {
            path: path.to_path_buf(),
            source,
        })?;
    f.write_all(data).map_err(|source| CheckpointError::Stage {
        path: path.to_path_buf(),
        source,
    })
}
