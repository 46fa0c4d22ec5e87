//! The store module's error type.

use std::io;
use std::path::PathBuf;

/// Errors from the checkpoint store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Writing or committing a file failed.
    #[error(transparent)]
    Durable(#[from] crate::durable::DurableError),

    /// A file-system operation on `path` failed (`action` says which).
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The store root exists but is not a directory.
    #[error("checkpoint store {} is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    /// The store root cannot be written.
    #[error("checkpoint store {} is not writable: {reason}", path.display())]
    NotWritable { path: PathBuf, reason: String },
    /// A pod name that cannot go into a checkpoint id.
    #[error("invalid pod name {name:?} for a checkpoint id: {reason}")]
    InvalidPodName { name: String, reason: &'static str },
    /// A checkpoint id that is not a safe file name.
    #[error("invalid checkpoint id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    /// The id is already used by a finished or in-progress checkpoint.
    #[error("checkpoint id {id} is already in use")]
    IdTaken { id: String },
    /// No free suffix was found for an id.
    #[error("no free checkpoint id for {base} (tried up to -{tried})")]
    NoFreeId { base: String, tried: u32 },
    /// Some explicitly named checkpoints do not exist.
    #[error("no such checkpoint: {}", ids.join(", "))]
    NotFound { ids: Vec<String> },
    /// A delete selector with nothing in it.
    #[error("nothing selected: give a checkpoint id, -n NAMESPACE, --all, --filter GLOB or --older-than AGE")]
    EmptySelector,
    /// An age like `7d` that does not parse.
    #[error("invalid age {input:?}: {reason} (expected a whole number and a unit s, m, h, d or w, e.g. 7d, 24h, 30m, 90s, 2w)")]
    BadAge { input: String, reason: &'static str },
    /// A `--filter` glob that does not parse.
    #[error("invalid filter pattern {pattern:?}: {reason}")]
    BadFilter { pattern: String, reason: String },
    /// Not enough free space.
    #[error("not enough space in {}: need {needed} bytes, {available} available", path.display())]
    NoRoom {
        path: PathBuf,
        needed: u64,
        available: u64,
    },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        tracing::debug!(action, path = %path.display(), error = %source, "store I/O error");
        StoreError::Io {
            action,
            path,
            source,
        }
    }
}
