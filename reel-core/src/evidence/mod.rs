//! Taking evidence out of a checkpoint: the rootfs diff unpacked safely ([`rootfs`]), the
//! contents of deleted-but-open files and memfds ([`file`]).
//!
//! Checkpoints come from containers that may be compromised: every reader is bounded, no
//! path of theirs leaves the directory it is unpacked to, and outputs are written root-only,
//! never over an existing file, under a temp name renamed into place when complete.

mod access;
mod error;
pub mod file;
pub mod rootfs;

use std::path::Path;

pub use error::EvidenceError;
pub use file::{extract_file, ExtractedFile, ExtractedKind, FileLimits};
pub use rootfs::{
    unpack_rootfs_diff, DiffFlavour, EntryKind, Outcome, RootfsEntry, RootfsLimits, RootfsReport,
};

use crate::archive::{DELETED_FILES, ROOTFS_DIFF_TAR};

/// The most bytes of `deleted.files` read.
const MAX_DELETED_FILES: u64 = 64 << 20;

/// Unpacks the rootfs diff of the checkpoint at `checkpoint` (a store `.tar`, an exported
/// `.tar`/`.tar.zst`, or an unpacked directory) into `dest`, a new or empty directory, and
/// reports every entry (see [`rootfs`]).
pub fn extract_rootfs(
    checkpoint: &Path,
    dest: &Path,
    limits: RootfsLimits,
) -> Result<RootfsReport, EvidenceError> {
    let cp = access::Checkpoint::open(checkpoint)?;
    let deleted = cp.read_member(DELETED_FILES, MAX_DELETED_FILES)?;
    let unpacked = cp.with_member(ROOTFS_DIFF_TAR, |r| {
        unpack_rootfs_diff(checkpoint, Some(r), deleted.as_deref(), dest, limits)
    })?;
    match unpacked {
        Some(report) => Ok(report),
        None => unpack_rootfs_diff(checkpoint, None, deleted.as_deref(), dest, limits),
    }
}
