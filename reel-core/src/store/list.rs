//! Listing the store's checkpoints from their manifests.

use crate::durable;
use std::fs;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::{Store, StoreError, ARCHIVE_SUFFIX};
use crate::archive::{read_manifest, Manifest};

/// What a checkpoint's manifest says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// When the checkpoint was taken.
    pub created: DateTime<Utc>,
    /// Kubernetes namespace, if any.
    pub namespace: Option<String>,
    /// Pod, if any.
    pub pod: Option<String>,
    /// Container name.
    pub container: String,
    /// Container id.
    pub container_id: String,
    /// Node that took it.
    pub node: String,
    /// How long CRIU kept the tasks frozen, in microseconds.
    pub criu_frozen_time_us: Option<u64>,
    /// The method that took it (`direct` for manifests from before methods).
    pub method: String,
}

impl From<&Manifest> for CheckpointSummary {
    fn from(m: &Manifest) -> Self {
        let f = &m.fields;
        CheckpointSummary {
            created: f.created,
            namespace: f.container.namespace.clone(),
            pod: f.container.pod.clone(),
            container: f.container.name.clone(),
            container_id: f.container.id.clone(),
            node: f.node.clone(),
            criu_frozen_time_us: f.criu_frozen_time_us,
            method: f
                .method
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_else(|| "direct".into()),
        }
    }
}

/// One `<id>.tar` in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The id (file name without `.tar`).
    pub id: String,
    /// The archive's path.
    pub path: PathBuf,
    /// Archive size in bytes.
    pub size: u64,
    /// The file's modification time.
    pub modified: Option<DateTime<Utc>>,
    /// Whether `<id>.tar.sha256` exists.
    pub has_sidecar: bool,
    /// From the manifest; `None` when the archive cannot be read (see `problem`).
    pub summary: Option<CheckpointSummary>,
    /// Why the archive could not be read (corrupt, foreign, not a file), if so.
    pub problem: Option<String>,
}

impl StoredCheckpoint {
    /// The namespace from the manifest.
    pub fn namespace(&self) -> Option<&str> {
        self.summary.as_ref().and_then(|s| s.namespace.as_deref())
    }

    /// The manifest's creation time, or the file's mtime for unreadable archives.
    pub fn created_or_modified(&self) -> Option<DateTime<Utc>> {
        self.summary.as_ref().map(|s| s.created).or(self.modified)
    }
}

/// The checkpoints of `list` in namespace `namespace`.
pub fn in_namespace<'a>(
    list: &'a [StoredCheckpoint],
    namespace: &'a str,
) -> impl Iterator<Item = &'a StoredCheckpoint> + 'a {
    list.iter()
        .filter(move |c| c.namespace() == Some(namespace))
}

impl Store {
    /// Every `<id>.tar` in the store, oldest first (temp files are not listed). Archives whose
    /// manifest cannot be read are listed with `problem` set instead of failing the listing.
    pub fn list(&self) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let mut out = Vec::new();
        for (name, path) in self.entries()? {
            if name.starts_with('.') {
                continue;
            }
            let Some(id) = name.strip_suffix(ARCHIVE_SUFFIX) else {
                continue;
            };
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // deleted meanwhile
                Err(e) => return Err(StoreError::io("inspecting", &path, e)),
            };
            let mut item = StoredCheckpoint {
                id: id.to_owned(),
                path: path.clone(),
                size: meta.len(),
                modified: meta.modified().ok().map(DateTime::<Utc>::from),
                has_sidecar: durable::exists(&self.sidecar_path(id)),
                summary: None,
                problem: None,
            };
            if !meta.is_file() {
                item.problem = Some("not a regular file".to_owned());
            } else {
                match read_manifest(&path) {
                    Ok(m) => item.summary = Some(CheckpointSummary::from(&m)),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "unreadable archive in the store");
                        item.problem = Some(e.to_string());
                    }
                }
            }
            out.push(item);
        }
        out.sort_by(|a, b| (a.created_or_modified(), &a.id).cmp(&(b.created_or_modified(), &b.id)));
        Ok(out)
    }

    /// The checkpoints in `namespace`.
    pub fn list_namespace(&self, namespace: &str) -> Result<Vec<StoredCheckpoint>, StoreError> {
        Ok(in_namespace(&self.list()?, namespace).cloned().collect())
    }
}
