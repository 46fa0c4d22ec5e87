//! The checkpoint archive: the tar layout the ecosystem reads (checkpointctl, runc, CRI-O,
//! Podman), plus reel's own manifest with a SHA-256 per member and the chain of custody.
//!
//! # Layout
//!
//! Members, in this order (the order is part of the format; see [`ArchiveWriter`]):
//!
//! 1. `checkpoint/`: a directory entry (mode 0700), then the CRIU images `checkpoint/<file>`
//!    (flat, sorted by name), including runc's `descriptors.json`.
//! 2. Metadata at the top level, each mode 0600: `stats-dump`, `dump.log` (CRIU writes both into
//!    its work dir), `config.dump` ([`ConfigDump`]), `spec.dump` (the runtime's OCI spec bytes,
//!    untouched), `rootfs-diff.tar` and `deleted.files` (see [`rootfs_diff`]).
//! 3. [`MANIFEST_NAME`] last: a [`Manifest`] with the size and SHA-256 of every other member.
//!
//! Images first keeps CRIU's bulk data contiguous; metadata after it is small; the manifest is
//! last because it can only be written once every member has been hashed. Every member is
//! hashed while it streams into the tar, so an archive can go through any [`std::io::Write`]
//! (a file, a zstd encoder, an upload) without being read back. Plain tar headers (GNU long
//! names where needed) let [`index`] and [`read_manifest`] find members by seeking over the data.
//!
//! Reading ([`verify`], [`read_manifest_from`]) accepts a plain tar and a zstd-compressed tar
//! (detected by the magic bytes `28 B5 2F FD`).

mod config_dump;
mod custody;
mod error;
pub mod extract;
mod hashing;
mod manifest;
pub mod prehash;
mod reader;
pub mod received;
pub mod rfc3339;
pub mod rootfs_diff;
mod sidecar;
mod verify;
mod writer;
pub(crate) mod xattr;

pub use config_dump::ConfigDump;
pub use custody::{node_hostname, Operator};
pub use error::ArchiveError;
pub use extract::{
    extract_members, stage_members, ExtractLimits, Extracted, ExtractedMember, PendingCopy,
    PendingMember, Staged,
};
pub use hashing::{
    blake3_hex, sha256_hex, DigestKind, DigestValues, Digests, HashingReader, HashingWriter,
};
pub use manifest::{
    ContainerIdentity, Manifest, ManifestFields, MemberDigest, RootfsDiffInfo, RootfsLayers,
    MANIFEST_SCHEMA_VERSION,
};
pub use prehash::{PreHasher, PrefixDigest};
pub(crate) use reader::read_up_to;
pub use reader::{
    detect_compression, index, read_manifest, read_manifest_from, Compression, IndexedMember,
    MAX_MANIFEST_BYTES, ZSTD_MAGIC,
};
pub use received::{criu_version_from_log, ReceivedArchive, ReceivedMember};
pub use rootfs_diff::{
    base_has, stage_rootfs_diff, write_rootfs_diff, RootfsDiffListing, RootfsSource,
    StagedRootfsDiff,
};
pub use sidecar::{format_sidecar, parse_sidecar, sidecar_path, SIDECAR_SUFFIX};
pub use verify::{verify, verify_reader, MemberMismatch, SidecarCheck, VerifyReport};
pub use writer::ArchiveWriter;

/// The directory entry holding the CRIU images (with the trailing slash, as stored in the tar).
pub const CHECKPOINT_DIR: &str = "checkpoint/";
/// Container metadata (JSON, [`ConfigDump`]).
pub const CONFIG_DUMP: &str = "config.dump";
/// The container's OCI runtime spec, exactly as the runtime wrote it.
pub const SPEC_DUMP: &str = "spec.dump";
/// CRIU's dump statistics image (top level, as checkpointctl expects).
pub const STATS_DUMP: &str = "stats-dump";
/// CRIU's log.
pub const DUMP_LOG: &str = "dump.log";
/// Plain tar of the files added or changed in the container's writable layer.
pub const ROOTFS_DIFF_TAR: &str = "rootfs-diff.tar";
/// JSON array of absolute paths deleted from the container's rootfs.
pub const DELETED_FILES: &str = "deleted.files";
/// reel's manifest member. checkpointctl matches `checkpoint*`, `config.dump`, `spec.dump`,
/// `network.status` and `stats-dump` by substring, so this name avoids all of them.
pub const MANIFEST_NAME: &str = "reel-manifest.json";

/// The version of reel recorded in manifests.
pub const REEL_VERSION: &str = env!("CARGO_PKG_VERSION");
