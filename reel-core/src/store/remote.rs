//! Checkpoints the kubelet took on another node (`k8s-api` from elsewhere): reel cannot hold
//! their archive, so the store keeps where it is, as `<id>.remote.json` (0600).

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};
use crate::durable;

/// The suffix of a remote checkpoint's record.
pub const REMOTE_SUFFIX: &str = ".remote.json";

/// A checkpoint whose archive is on another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCheckpoint {
    pub id: String,
    #[serde(with = "crate::archive::rfc3339")]
    pub created: DateTime<Utc>,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The node holding the archive.
    pub node: String,
    /// The archive's path on that node.
    pub path: String,
    /// The method that took it.
    pub method: String,
}

impl Store {
    pub(super) fn remote_path(&self, id: &str) -> PathBuf {
        self.root().join(format!("{id}{REMOTE_SUFFIX}"))
    }

    /// Records a checkpoint taken on another node.
    pub fn record_remote(&self, r: &RemoteCheckpoint) -> Result<(), StoreError> {
        super::validate_id(&r.id)?;
        let path = self.remote_path(&r.id);
        let json = serde_json::to_vec_pretty(r)
            .map_err(|e| StoreError::io("encoding", &path, std::io::Error::other(e)))?;
        durable::write_private(&path, &json).map_err(|e| StoreError::io("writing", &path, e))
    }

    /// The record of `id`, when it is a checkpoint on another node.
    pub fn remote(&self, id: &str) -> Option<RemoteCheckpoint> {
        let bytes = std::fs::read(self.remote_path(id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Every checkpoint on another node, oldest first.
    pub fn remotes(&self) -> Result<Vec<RemoteCheckpoint>, StoreError> {
        let mut out: Vec<RemoteCheckpoint> = self
            .entries()?
            .into_iter()
            .filter(|(name, _)| !name.starts_with('.') && name.ends_with(REMOTE_SUFFIX))
            .filter_map(|(_, path)| {
                let bytes = std::fs::read(&path).ok()?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| tracing::warn!(path = %path.display(), error = %e, "unreadable remote record"))
                    .ok()
            })
            .collect();
        out.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(out)
    }
}
