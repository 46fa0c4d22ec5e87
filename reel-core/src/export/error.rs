//! The export module's error type.

use std::io;
use std::path::{Path, PathBuf};

/// What can go wrong while exporting, beyond the errors of the dump, the archive and the store.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The destination cannot be used (a usage error).
    #[error("invalid destination {dest:?}: {reason}")]
    BadDestination { dest: String, reason: String },
    /// The destination's name and the compression asked for disagree (a usage error).
    #[error("the destination {dest:?} names a {implied} archive but compression {requested} was asked for")]
    Contradiction {
        dest: String,
        implied: &'static str,
        requested: &'static str,
    },
    /// An unknown compression level (a usage error).
    #[error("unknown compression level {value:?}: use none, fast, default, better or best")]
    UnknownLevel { value: String },
    /// S3 options given for a destination that is not S3 (a usage error).
    #[error("S3 options need an s3:// destination")]
    S3OptionsWithoutS3,
    /// An unknown server-side encryption (a usage error).
    #[error("unknown S3 server-side encryption {value:?}: use AES256 or aws:kms")]
    UnknownSse { value: String },
    /// A KMS key without aws:kms encryption (a usage error).
    #[error("an S3 KMS key id needs aws:kms server-side encryption")]
    KmsKeyWithoutKms,
    /// The S3 endpoint is not an http(s) URL (a usage error).
    #[error("the S3 endpoint {endpoint:?} must be an http:// or https:// URL")]
    BadEndpoint { endpoint: String },
    /// The CA bundle cannot be used (a usage error).
    #[error("the CA bundle {}: {reason}", path.display())]
    BadCaBundle { path: PathBuf, reason: String },
    /// No such checkpoint in the store.
    #[error("no checkpoint {id} in {}", store.display())]
    NoSuchCheckpoint { id: String, store: PathBuf },
    /// A signal stopped the export.
    #[error("interrupted by a signal (SIGINT/SIGTERM){when}")]
    Interrupted { when: &'static str },
    /// The directory the archive should go into does not exist.
    #[error("the destination directory {} does not exist", path.display())]
    NoDirectory { path: PathBuf },
    /// The destination file exists already; reel never replaces one.
    #[error("{} exists already; reel does not replace archives", path.display())]
    DestinationExists { path: PathBuf },
    /// Storing the kept copy failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
    /// The S3 endpoint's TLS certificate is not trusted (a private CA not given).
    #[error("S3 HeadBucket on {target}: {message}")]
    S3Untrusted { target: String, message: String },
    /// S3 client set-up (configuration, CA bundle, runtime).
    #[error("setting up the S3 client: {0}")]
    S3Setup(String),
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
                | ExportError::S3OptionsWithoutS3
                | ExportError::UnknownSse { .. }
                | ExportError::KmsKeyWithoutKms
                | ExportError::BadEndpoint { .. }
                | ExportError::BadCaBundle { .. }
        )
    }
}
