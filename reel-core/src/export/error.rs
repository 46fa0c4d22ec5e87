//! The export module's error type.

use std::io;
use std::path::{Path, PathBuf};

/// What can go wrong while exporting, beyond the errors of the dump, the archive and the store.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// `--dest` cannot be used (a usage error).
    #[error("invalid --dest {dest:?}: {reason}")]
    BadDestination { dest: String, reason: String },
    /// The destination name and `--compress` disagree (a usage error).
    #[error("--dest {dest:?} names a {implied} archive but --compress {requested} was given")]
    Contradiction {
        dest: String,
        implied: &'static str,
        requested: &'static str,
    },
    /// An unknown `--compress` value (a usage error).
    #[error("unknown --compress {value:?}: use none, fast, default, better or best")]
    UnknownLevel { value: String },
    /// The directory the archive should go into does not exist.
    #[error("the destination directory {} does not exist", path.display())]
    NoDirectory { path: PathBuf },
    /// The destination file exists already; reel never replaces one.
    #[error("{} exists already; reel does not replace archives", path.display())]
    DestinationExists { path: PathBuf },
    /// A file-system operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing the archive stream failed (the destination or the compressor).
    #[error("writing {what}: {source}")]
    Write {
        what: String,
        #[source]
        source: io::Error,
    },
    /// An S3 request failed.
    #[error("S3 {operation} on {target}: {message}")]
    S3 {
        operation: &'static str,
        target: String,
        message: String,
    },
    /// S3 client set-up (configuration, CA bundle, runtime).
    #[error("setting up the S3 client: {0}")]
    S3Setup(String),
    /// Installing the SIGINT/SIGTERM handlers failed.
    #[error("{0}")]
    Signal(String),
    /// The export failed; what it had written was removed (`note` says how).
    #[error("{error} ({note})")]
    Aborted {
        error: Box<crate::Error>,
        note: String,
    },
    /// The export failed and what it had written could not be fully removed.
    #[error("{error} (and cleaning up failed: {note})")]
    AbortFailed {
        error: Box<crate::Error>,
        note: String,
    },
}

impl ExportError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> ExportError {
        ExportError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// Whether this is a mistake in how reel was called (exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            ExportError::BadDestination { .. }
                | ExportError::Contradiction { .. }
                | ExportError::UnknownLevel { .. }
        )
    }
}
