//! Why a checkpoint cannot be inspected.

use std::io;
use std::path::PathBuf;

use crate::archive::ArchiveError;
use crate::criu::image::ImageError;

/// Why a checkpoint (or a member of it) cannot be read or understood. Every variant names the
/// checkpoint or the member that was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// The checkpoint could not be opened or read.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The checkpoint.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Neither a path nor an id in the store.
    #[error("{arg} is neither a checkpoint archive or directory nor a checkpoint id in {}", store.display())]
    NotFound {
        /// What the user gave.
        arg: String,
        /// The store searched.
        store: PathBuf,
    },
    /// The file is empty.
    #[error("{} is empty: not a checkpoint archive", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The path is no checkpoint reel can read.
    #[error("{} is not a checkpoint: {reason}", path.display())]
    NotACheckpoint {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A member reel refuses to read (`..`, absolute, a link, a device, ...).
    #[error("{}: member {member:?} is refused: {reason} (the archive may have been tampered with)", path.display())]
    UnsafeMember {
        /// The checkpoint.
        path: PathBuf,
        /// The member's name as stored.
        member: String,
        /// Why.
        reason: String,
    },
    /// The archive ends early.
    #[error("{} is truncated: {what}", path.display())]
    Truncated {
        /// The checkpoint.
        path: PathBuf,
        /// What was cut (names the member when there is one).
        what: String,
    },
    /// The zstd stream is damaged.
    #[error("{} is a damaged zstd stream: {reason}", path.display())]
    Zstd {
        /// The checkpoint.
        path: PathBuf,
        /// What zstd said.
        reason: String,
    },
    /// A member the view needs is not there.
    #[error("{} has no member {member}", path.display())]
    MissingMember {
        /// The checkpoint.
        path: PathBuf,
        /// The member.
        member: String,
    },
    /// A member is larger than reel reads into memory.
    #[error("member {member} is {size} bytes, over the limit of {max} that inspect reads")]
    TooLarge {
        /// The member.
        member: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A member's content does not match its manifest digest.
    #[error("member {member} does not match the manifest (expected {algorithm} {expected}, read {actual}): the evidence was altered or damaged; --no-verify inspects it anyway")]
    DigestMismatch {
        /// The member.
        member: String,
        /// The digest compared (`sha256`, `blake3`).
        algorithm: &'static str,
        /// The manifest's digest.
        expected: String,
        /// The digest of what was read.
        actual: String,
    },
    /// A member is not listed in the manifest.
    #[error("member {member} is not in the manifest: it was added after the checkpoint; --no-verify inspects it anyway")]
    NotInManifest {
        /// The member.
        member: String,
    },
    /// Reading a member failed.
    #[error("reading member {member} of {}: {source}", path.display())]
    ReadMember {
        /// The checkpoint.
        path: PathBuf,
        /// The member.
        member: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The manifest cannot be used.
    #[error(transparent)]
    Manifest(#[from] ArchiveError),
    /// A CRIU image is malformed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A member's content is not what it must be (JSON, pagemap runs, ...).
    #[error("member {member}: {reason}")]
    BadMember {
        /// The member.
        member: String,
        /// Why.
        reason: String,
    },
    /// Memory that the checkpoint does not hold.
    #[error("process {pid}: {len} bytes at {vaddr:#x} are not in the dump ({reason})")]
    NotDumped {
        /// The process.
        pid: u32,
        /// The address.
        vaddr: u64,
        /// How many bytes were asked for.
        len: u64,
        /// Why (no page there, page in a parent dump, lazy page).
        reason: &'static str,
    },
    /// No such process in the checkpoint.
    #[error("process {pid} is not in the checkpoint")]
    NoProcess {
        /// The pid asked for.
        pid: u32,
    },
    /// A search pattern or filter that cannot be used.
    #[error("bad search pattern: {reason}")]
    BadPattern {
        /// What is wrong with it.
        reason: String,
    },
}

impl InspectError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        InspectError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
