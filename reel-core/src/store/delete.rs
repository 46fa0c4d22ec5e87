//! Selecting and deleting checkpoints.

use crate::durable;
use std::fs;
use std::io;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::{RemoteCheckpoint, Selector, Store, StoreError, StoredCheckpoint};

/// A deleted checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    /// The id.
    pub id: String,
    /// The removed archive (for a checkpoint on another node: its record, `<id>.remote.json`).
    pub path: PathBuf,
    /// The removed sidecar, if there was one.
    pub sidecar: Option<PathBuf>,
    /// Bytes freed by the archive.
    pub bytes: u64,
    /// For a checkpoint on another node, its record as it was: only the record is removed,
    /// the archive stays on that node.
    pub remote: Option<RemoteCheckpoint>,
}

impl Store {
    /// The checkpoints `selector` picks now (what [`Store::delete`] would remove). Explicit ids
    /// that do not exist are an error ([`StoreError::NotFound`]).
    pub fn select(&self, selector: &Selector) -> Result<Vec<StoredCheckpoint>, StoreError> {
        self.select_at(selector, Utc::now())
    }

    /// [`Store::select`] with "now" given (for `--older-than`).
    pub fn select_at(
        &self,
        selector: &Selector,
        now: DateTime<Utc>,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let list = self.list()?;
        let remotes = self.remotes()?;
        let missing: Vec<String> = selector
            .explicit_ids()
            .iter()
            .filter(|id| {
                !list.iter().any(|c| &c.id == *id) && !remotes.iter().any(|r| &r.id == *id)
            })
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(StoreError::NotFound { ids: missing });
        }
        Ok(list
            .into_iter()
            .filter(|c| selector.matches(c, now))
            .collect())
    }

    /// The records of checkpoints on other nodes that `selector` picks now (what
    /// [`Store::delete`] would remove besides [`Store::select`]'s archives).
    pub fn select_remote(&self, selector: &Selector) -> Result<Vec<RemoteCheckpoint>, StoreError> {
        let now = Utc::now();
        Ok(self
            .remotes()?
            .into_iter()
            .filter(|r| selector.matches_remote(r, now))
            .collect())
    }

    /// Deletes the selected checkpoints (`<id>.tar`, then `<id>.tar.sha256`; for a checkpoint
    /// on another node, its `<id>.remote.json` record) and returns them. In-progress
    /// checkpoints are never touched.
    pub fn delete(&self, selector: &Selector) -> Result<Vec<Deleted>, StoreError> {
        self.delete_at(selector, Utc::now())
    }

    /// [`Store::delete`] with "now" given (for `--older-than`).
    pub fn delete_at(
        &self,
        selector: &Selector,
        now: DateTime<Utc>,
    ) -> Result<Vec<Deleted>, StoreError> {
        let mut deleted = Vec::new();
        for c in self.select_at(selector, now)? {
            match fs::remove_file(&c.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // deleted meanwhile
                Err(e) => return Err(StoreError::io("deleting", &c.path, e)),
            }
            let sidecar_path = self.sidecar_path(&c.id);
            let sidecar = match fs::remove_file(&sidecar_path) {
                Ok(()) => Some(sidecar_path),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(StoreError::io("deleting", &sidecar_path, e)),
            };
            tracing::info!(id = c.id, path = %c.path.display(), "deleted checkpoint");
            deleted.push(Deleted {
                id: c.id,
                path: c.path,
                sidecar,
                bytes: c.size,
                remote: None,
            });
        }
        for r in self.remotes()? {
            if !selector.matches_remote(&r, now) {
                continue;
            }
            let path = self.remote_path(&r.id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("deleting", &path, e)),
            }
            tracing::info!(
                id = r.id,
                node = r.node,
                "deleted the record of a checkpoint on another node"
            );
            deleted.push(Deleted {
                id: r.id.clone(),
                path,
                sidecar: None,
                bytes: 0,
                remote: Some(r),
            });
        }
        if !deleted.is_empty() {
            durable::sync_dir(self.root())
                .map_err(|e| StoreError::io("syncing", self.root(), e))?;
        }
        Ok(deleted)
    }
}
