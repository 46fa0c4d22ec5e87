//! Taking evidence out of a checkpoint: the rootfs diff unpacked safely ([`rootfs`]), the
//! contents of deleted-but-open files and memfds ([`file`]), one memory region of a process
//! ([`region`]), an ELF core of a process for gdb ([`core`]).
//!
//! Members and memory are read through [`crate::inspect::CheckpointSource`] and
//! [`crate::inspect::PageIndex`] (each member read whole is checked against the manifest).
//!
//! Checkpoints come from containers that may be compromised: every reader is bounded, no
//! path of theirs leaves the directory it is unpacked to, and outputs are written root-only,
//! never over an existing file, under a temp name renamed into place when complete.

pub mod core;
mod error;
pub mod file;
pub mod region;
pub mod rootfs;

use std::io;
use std::path::Path;

pub use self::core::{write_core, CoreReport, CoreThread};
pub use error::EvidenceError;
pub use file::{extract_file, ExtractedFile, ExtractedKind, FileLimits};
pub use region::{extract_region, RegionRange, RegionReport, RegionRequest};
pub use rootfs::{
    unpack_rootfs_diff, DiffFlavour, EntryKind, Outcome, RootfsEntry, RootfsLimits, RootfsReport,
};

use crate::archive::{DELETED_FILES, ROOTFS_DIFF_TAR};
use crate::inspect::{CheckpointSource, SourceOptions};

/// The most bytes of `deleted.files` read.
const MAX_DELETED_FILES: u64 = 64 << 20;

/// Unpacks the rootfs diff of the checkpoint at `checkpoint` (a store `.tar`, an exported
/// `.tar`/`.tar.zst`, an unpacked directory, or another tool's archive) into `dest`, a new or
/// empty directory, and reports every entry (see [`rootfs`]). The diff is checked against the
/// manifest before anything is unpacked (unless `opts` says not to): a tampered diff leaves
/// `dest` untouched. It is read twice for that; diffs are small beside the memory.
pub fn extract_rootfs(
    checkpoint: &Path,
    dest: &Path,
    opts: SourceOptions,
    limits: RootfsLimits,
) -> Result<RootfsReport, EvidenceError> {
    let src = CheckpointSource::open(checkpoint, opts)?;
    let deleted = src.read_optional(DELETED_FILES, MAX_DELETED_FILES)?;
    if src.member(ROOTFS_DIFF_TAR).is_none() {
        return unpack_rootfs_diff(src.path(), None, deleted.as_deref(), dest, limits);
    }
    if opts.verify {
        // Read to the end once, so the member's digest is checked before anything is written.
        let mut r = src.reader(ROOTFS_DIFF_TAR)?;
        io::copy(&mut r, &mut io::sink()).map_err(|e| src.member_err(ROOTFS_DIFF_TAR, e))?;
    }
    let mut r = src.reader(ROOTFS_DIFF_TAR)?;
    let report = unpack_rootfs_diff(src.path(), Some(&mut r), deleted.as_deref(), dest, limits)?;
    // Read to the end (a second check of the digest: the archive did not change meanwhile).
    io::copy(&mut r, &mut io::sink()).map_err(|e| src.member_err(ROOTFS_DIFF_TAR, e))?;
    Ok(report)
}
