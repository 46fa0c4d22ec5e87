//! The evidence module's error type.

use std::io;
use std::path::PathBuf;

/// Why evidence cannot be taken out of a checkpoint. Refusals of single rootfs entries are
/// not errors: they are listed in the [`super::RootfsReport`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// A file-system operation on `path` failed (`action` says which, e.g. "writing").
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The checkpoint (or one of its members) could not be read.
    #[error("reading {what} of checkpoint {}: {source}", checkpoint.display())]
    Read {
        checkpoint: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    /// The checkpoint lacks a member the request needs.
    #[error("checkpoint {} has no member {member}: {why}", checkpoint.display())]
    MissingMember {
        checkpoint: PathBuf,
        member: String,
        why: &'static str,
    },
    /// The output directory of `--rootfs` is not new or empty.
    #[error("{} {reason}: give a new or empty directory (nothing was written)", path.display())]
    BadDestination { path: PathBuf, reason: String },
    /// The output file exists: evidence never overwrites.
    #[error("{} already exists: reel never overwrites an output file; give a new name (nothing was written)", path.display())]
    OutputExists { path: PathBuf },
    /// The rootfs diff breaks a limit (entries, bytes).
    #[error("rootfs diff of {}: {what} over the limit of {max}; extraction stopped (the directory holds only part of it)", checkpoint.display())]
    TooLarge {
        checkpoint: PathBuf,
        what: &'static str,
        max: u64,
    },
    /// The rootfs diff tar is broken.
    #[error("rootfs diff of {}: not a readable tar ({what}): {source}", checkpoint.display())]
    BadDiff {
        checkpoint: PathBuf,
        what: String,
        #[source]
        source: io::Error,
    },
    /// A CRIU image of the checkpoint is broken or hostile.
    #[error(transparent)]
    Image(#[from] crate::criu::image::ImageError),
    /// The checkpoint cannot be opened, or a member of it read (or it fails verification).
    #[error(transparent)]
    Source(#[from] crate::inspect::InspectError),
    /// A CRIU image is readable but says something impossible or inconsistent.
    #[error("checkpoint {}: {member}: {reason}", checkpoint.display())]
    BadImage {
        checkpoint: PathBuf,
        member: String,
        reason: String,
    },
    /// The process or file descriptor asked for is not in the checkpoint.
    #[error("checkpoint {}: {what}", checkpoint.display())]
    NotFound { checkpoint: PathBuf, what: String },
    /// The file descriptor is not something reel can extract (yet).
    #[error("checkpoint {}: {what}", checkpoint.display())]
    Unsupported { checkpoint: PathBuf, what: String },
}
