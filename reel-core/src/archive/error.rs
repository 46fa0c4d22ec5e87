//! The archive module's error type.

use std::io;
use std::path::PathBuf;

/// Errors writing, reading or verifying a checkpoint archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file-system operation on `path` failed (`action` says which, e.g. "reading").
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Writing member `member` to the archive's output failed.
    #[error("writing archive member {member}: {source}")]
    Write {
        member: String,
        #[source]
        source: io::Error,
    },
    /// Reading the archive `path` (or `<stream>`) failed or its tar structure is broken.
    #[error("reading archive {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A member name the writer refuses (wrong place, reserved, or unsafe).
    #[error("invalid archive member name {name:?}: {reason}")]
    InvalidMemberName { name: String, reason: &'static str },
    /// The same member was appended twice.
    #[error("archive member {0} appended twice")]
    DuplicateMember(String),
    /// A member was appended out of the archive's fixed order.
    #[error("archive member {member} is out of order: {reason}")]
    OutOfOrder {
        member: String,
        reason: &'static str,
    },
    /// `finish` was called without a required member.
    #[error("the archive is missing the required member {0}")]
    MissingMember(&'static str),
    /// A file's size changed between `stat` and reading it into the archive.
    #[error("{} changed while being archived: expected {expected} bytes, read {actual}", path.display())]
    FileChanged {
        path: PathBuf,
        expected: u64,
        actual: u64,
    },
    /// A member source (or an entry of the flat CRIU images directory) is not a regular file.
    #[error("{} is not a regular file", path.display())]
    NotARegularFile { path: PathBuf },
    /// Serializing `what` to JSON failed.
    #[error("serializing {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The archive has no manifest member.
    #[error("{} has no {} member (not a reel checkpoint?)", path.display(), super::MANIFEST_NAME)]
    NoManifest { path: PathBuf },
    /// The manifest member exists but cannot be used.
    #[error("bad manifest in {}: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },
    /// The operation needs an uncompressed tar (e.g. seeking to members).
    #[error("{} is compressed; {what} needs an uncompressed tar", path.display())]
    Compressed { path: PathBuf, what: &'static str },
    /// The overlay upper dir uses a feature whose data does not live in the upper dir.
    #[error("overlay upper dir entry {}: {reason}", path.display())]
    UnsupportedOverlay { path: PathBuf, reason: &'static str },
    /// A path that must go into JSON is not valid UTF-8.
    #[error("path {} is not valid UTF-8 and cannot be recorded in {what}", path.display())]
    NonUtf8Path { path: PathBuf, what: &'static str },
    /// Looking up the user for `uid` failed.
    #[error("looking up the user of uid {uid}: {source}")]
    UserLookup {
        uid: u32,
        #[source]
        source: nix::Error,
    },
    /// An archive a runtime wrote is not one reel accepts.
    #[error("the runtime's archive {} is refused: {reason}", path.display())]
    BadReceived { path: PathBuf, reason: String },
    /// Reading this node's host name failed.
    #[error("reading the host name: {0}")]
    Hostname(#[source] nix::Error),
}

impl ArchiveError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ArchiveError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
