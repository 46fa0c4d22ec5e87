//! The staging directory CRIU writes its images into: a [`TempDir`] named `<id>.stage` under
//! the staging root (the store, or `--staging-dir`), with `checkpoint/` inside (images) and
//! CRIU's work files (`dump.log`, `stats-dump`) beside it, so both land where the archive
//! wants them. Root-only, removed on drop; a killed run's staging directory is removed by the
//! next run.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::CheckpointError;
use crate::durable::{self, TempDir};
use crate::store::STAGE_SUFFIX;

/// A staging directory, removed when dropped.
#[derive(Debug)]
pub struct Stage {
    dir: TempDir,
}

impl Stage {
    /// Removes the staging directories killed runs left in `root`, then creates this run's,
    /// with `checkpoint/` inside, mode 0700.
    pub fn create(root: &Path, id: &str) -> Result<Stage, CheckpointError> {
        clean_stale(root);
        let dir = TempDir::create(root, &format!("{id}{STAGE_SUFFIX}"))?;
        let images = dir.path().join("checkpoint");
        fs::DirBuilder::new()
            .mode(durable::DIR_MODE)
            .create(&images)
            .map_err(|source| CheckpointError::Stage {
                path: images.clone(),
                source,
            })?;
        Ok(Stage { dir })
    }

    /// The work dir (`dump.log`, `stats-dump`, `rootfs-diff.tar`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The images dir.
    pub fn images_dir(&self) -> PathBuf {
        self.dir().join("checkpoint")
    }
}

/// Removes staging directories of runs that are gone.
pub fn clean_stale(root: &Path) {
    durable::clean_leftovers(root, |name, is_dir| is_dir && name.ends_with(STAGE_SUFFIX));
}
