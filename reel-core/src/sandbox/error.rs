//! Errors of the sandbox module.

use std::path::{Path, PathBuf};

/// What can go wrong with a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The name is not usable (lower-case letters, digits and `-`, at most 40).
    #[error("invalid sandbox name {name:?}: use lower-case letters, digits and '-', at most 40 characters, starting with a letter or digit")]
    BadName { name: String },
    /// Another sandbox has the name.
    #[error("a sandbox named {name} already exists")]
    Exists { name: String },
    /// No sandbox has the name.
    #[error("no sandbox named {name}")]
    NotFound { name: String },
    /// The checkpoint cannot be restored in a sandbox: refused before any process starts.
    #[error("checkpoint {checkpoint} cannot be restored in a sandbox: {reason}")]
    Refused { checkpoint: String, reason: String },
    /// A request that makes no sense (bad `--volume`, `--rootfs-base` that is no directory...).
    #[error("{0}")]
    Invalid(String),
    /// A CRIU image could not be read.
    #[error("cannot read the CRIU image {}: {reason}", path.display())]
    Image { path: PathBuf, reason: String },
    /// A step of building the sandbox failed.
    #[error("{what}: {detail}")]
    Step { what: String, detail: String },
    /// The restore failed; CRIU's own error lines follow.
    #[error("restoring {checkpoint} failed: {message}{}", criu_lines(log))]
    RestoreFailed {
        checkpoint: String,
        message: String,
        log: Vec<String>,
        /// What to do about it, when known.
        hint: Option<String>,
    },
    /// The sandbox's monitor ended before it said how the restore went.
    #[error("the sandbox monitor of {name} ended before the restore finished ({detail}); everything it made was removed")]
    MonitorDied { name: String, detail: String },
    /// The sandbox is in a state that does not allow the operation.
    #[error("sandbox {name} is {state}: {what}")]
    WrongState {
        name: String,
        state: String,
        what: String,
    },
    /// File system or process operations on `path`.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
    #[error(transparent)]
    Criu(#[from] crate::criu::CriuError),
}

fn criu_lines(log: &[String]) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("\nCRIU said:\n  {}", log.join("\n  "))
    }
}

impl SandboxError {
    pub(crate) fn io(what: &'static str, path: &Path, source: std::io::Error) -> SandboxError {
        SandboxError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn image(path: &Path, reason: String) -> SandboxError {
        SandboxError::Image {
            path: path.to_owned(),
            reason,
        }
    }

    pub(crate) fn step(what: impl Into<String>, detail: impl std::fmt::Display) -> SandboxError {
        SandboxError::Step {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}
