//! One memory region of a checkpointed process as a file: the VMA holding an address, byte `i`
//! of the file being the byte at `start + i`.
//!
//! The bytes come from the process's page index ([`crate::inspect::MemoryIndex`]): its private
//! pages, and for anonymous shared memory and memfd mappings the object's shared pages. Pages
//! the checkpoint does not hold are filled by what they were:
//!
//! * in anonymous memory (private or shared, memfds too) a page CRIU did not dump was never
//!   written: zeros (holes of the sparse output: no disk is spent on them);
//! * in a file mapping a page CRIU did not dump is the file's, unmodified: left out (a hole of
//!   the sparse output, which reads as zeros), unless a root directory is given, where the
//!   file is read (at the mapping's offset) by its path as the process saw it, without
//!   leaving the directory or following a symlink; the report says which ranges were left out
//!   and which were read from there;
//! * pages in a parent (pre-)dump or left for lazy restore are left out, and said so.
//!
//! The file is written root-only under a temp name and renamed into place ([`super::file`]'s
//! output), never over an existing file unless asked to (`force`).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use criu_sys::proto;
use serde::Serialize;

use super::file::{small_image, Out};
use super::EvidenceError;
use crate::criu::image::vma::{
    VMA_AREA_MEMFD, VMA_AREA_SYSVIPC, VMA_AREA_VSYSCALL, VMA_AREA_VVAR, VMA_FILE_PRIVATE,
    VMA_FILE_SHARED,
};
use crate::inspect::pages::PE_LAZY;
use crate::inspect::{CheckpointSource, MemoryIndex, SharedMemory, SourceOptions};

/// Pages are copied in pieces of at most this many bytes.
const COPY_BYTES: u64 = 8 << 20;
/// The largest region written (holes included: they are hashed as zeros).
pub const MAX_REGION_BYTES: u64 = 64 << 30;

/// A range of the region and where its bytes came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionRange {
    /// `0xSTART-0xEND`.
    pub range: String,
    /// `dump` (the checkpoint's pages), `zeros` (anonymous pages never written), `rootfs`
    /// (read from the file under the root directory), `left-out` (a hole: not in the file).
    pub source: String,
    /// Why, for `left-out` ranges and partial `rootfs` reads.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// What [`extract_region`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionReport {
    pub checkpoint: PathBuf,
    pub pid: u32,
    /// The region, `0xSTART-0xEND`.
    pub region: String,
    /// `rwxp` as in `/proc/PID/maps`.
    pub perms: String,
    /// The mapped file as the process saw it, `memfd:NAME`, or empty (anonymous memory).
    pub path: String,
    /// The file offset of the region's start (file mappings).
    pub file_offset: u64,
    /// Where the bytes were written.
    pub to: PathBuf,
    /// The file's size: the region's.
    pub bytes: u64,
    /// Bytes from the checkpoint's pages.
    pub dumped: u64,
    /// Bytes of anonymous pages never written, written as zeros.
    pub zero_filled: u64,
    /// Bytes read from the file under the root directory.
    pub from_rootfs: u64,
    /// Bytes left out (holes of the file).
    pub left_out: u64,
    /// SHA-256 of the file (holes read as zeros).
    pub sha256: String,
    /// Every range and where it came from.
    pub ranges: Vec<RegionRange>,
}

/// What [`extract_region`] needs beside the checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct RegionRequest<'a> {
    /// The process (as the container saw it).
    pub pid: u32,
    /// An address inside the region.
    pub address: u64,
    /// The output file.
    pub to: &'a Path,
    /// A root directory to read the unmodified pages of file mappings from.
    pub rootfs: Option<&'a Path>,
    /// Replace an existing output file.
    pub force: bool,
}

fn perms(v: &proto::VmaEntry) -> String {
    let shared = v.flags & 1 != 0 || v.status & VMA_FILE_SHARED != 0;
    [
        if v.prot & 1 != 0 { 'r' } else { '-' },
        if v.prot & 2 != 0 { 'w' } else { '-' },
        if v.prot & 4 != 0 { 'x' } else { '-' },
        if shared { 's' } else { 'p' },
    ]
    .iter()
    .collect()
}

/// Adds a range to the report (adjacent ranges of the same source and note are one).
fn add_range(report: &mut RegionReport, s: u64, e: u64, source: &str, note: String) {
    if let Some(last) = report.ranges.last_mut() {
        if last.source == source && last.note == note {
            if let Some((ls, le)) = last.range.split_once('-') {
                if le == format!("{s:#x}") {
                    last.range = format!("{ls}-{e:#x}");
                    return;
                }
            }
        }
    }
    report.ranges.push(RegionRange {
        range: format!("{s:#x}-{e:#x}"),
        source: source.into(),
        note,
    });
}

/// Opens `path` (absolute, as the process saw it) under `root`: no `..`, no symlink followed on
/// the way or at the end, a regular file.
fn open_under(root: &Path, path: &str) -> io::Result<File> {
    let mut at = root.to_path_buf();
    let rel = Path::new(path);
    let parts: Vec<_> = rel.components().collect();
    for (i, c) in parts.iter().enumerate() {
        match c {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => at.push(n),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "the path climbs out (..)",
                ))
            }
        }
        let last = i + 1 == parts.len();
        let meta = std::fs::symlink_metadata(&at)?;
        if meta.file_type().is_symlink() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symlink: not followed", at.display()),
            ));
        }
        if !last && !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a directory", at.display()),
            ));
        }
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&at)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", at.display()),
        ));
    }
    Ok(f)
}

/// Writes the dumped pages of the VMA of process `req.pid` holding `req.address` to `req.to`
/// (see the module's documentation).
pub fn extract_region(
    checkpoint: &Path,
    req: RegionRequest<'_>,
    opts: SourceOptions,
) -> Result<RegionReport, EvidenceError> {
    let to = req.to;
    if !req.force && crate::durable::exists(to) {
        return Err(EvidenceError::OutputExists { path: to.into() });
    }
    if let Some(root) = req.rootfs {
        if !root.is_dir() {
            return Err(EvidenceError::BadDestination {
                path: root.into(),
                reason: "is not a directory (--rootfs names the root to read mapped files from)"
                    .into(),
            });
        }
    }
    let src = CheckpointSource::open(checkpoint, opts)?;
    let cp = src.path().to_owned();
    let not_found = |what: String| EvidenceError::NotFound {
        checkpoint: cp.clone(),
        what,
    };
    let tree = small_image::<proto::PstreeEntry>(&src, "pstree.img")?.unwrap_or_default();
    if !tree.iter().any(|p| p.pid == req.pid) {
        let pids: Vec<u32> = tree.iter().map(|p| p.pid).collect();
        return Err(not_found(format!(
            "no process {} in the checkpoint (its processes: {pids:?})",
            req.pid
        )));
    }
    let mm = small_image::<proto::MmEntry>(&src, &format!("mm-{}.img", req.pid))?
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| {
            not_found(format!(
                "process {} has no memory map (mm-{}.img): a zombie?",
                req.pid, req.pid
            ))
        })?;
    let Some(v) = mm
        .vmas
        .iter()
        .find(|v| v.start <= req.address && req.address < v.end)
        .cloned()
    else {
        return Err(not_found(format!(
            "process {} has no region holding {:#x} (`reel inspect checkpoint --maps --pid {}` lists them)",
            req.pid, req.address, req.pid
        )));
    };
    let region = format!("{:#x}-{:#x}", v.start, v.end);
    if v.end <= v.start || v.end - v.start > MAX_REGION_BYTES {
        return Err(EvidenceError::Unsupported {
            checkpoint: cp,
            what: format!(
                "{region} is {} bytes: reel writes regions of 1 to {MAX_REGION_BYTES} bytes",
                v.end.wrapping_sub(v.start)
            ),
        });
    }
    if v.status & (VMA_AREA_VVAR | VMA_AREA_VSYSCALL) != 0 {
        return Err(EvidenceError::Unsupported {
            checkpoint: cp,
            what: format!("{region} is the kernel's (vvar, vsyscall): never dumped"),
        });
    }
    if v.status & VMA_AREA_SYSVIPC != 0 {
        return Err(EvidenceError::Unsupported {
            checkpoint: cp,
            what: format!("{region} is SysV shared memory, which reel does not read yet"),
        });
    }
    let mut shm = SharedMemory::load(&src)?;
    let index = MemoryIndex::build(&src, req.pid, &mm.vmas, &mut shm)?;
    let files = small_image::<proto::FileEntry>(&src, "files.img")?.unwrap_or_default();
    let anon_shared = shm.is_anon_shared(&v);
    let memfd = v.status & VMA_AREA_MEMFD != 0;
    let file_backed =
        !anon_shared && !memfd && v.status & (VMA_FILE_PRIVATE | VMA_FILE_SHARED) != 0;
    let path = if let Some(p) = shm.sysv_path(&v) {
        p
    } else if anon_shared {
        String::new()
    } else if let Some(n) = crate::inspect::search::special_name(v.status) {
        n.to_string()
    } else if let Some(p) = shm.memfd_path(&v) {
        p
    } else if file_backed {
        files
            .iter()
            .find(|f| u64::from(f.id) == v.shmid)
            .and_then(|f| f.reg.as_ref())
            .map(|r| r.name.clone())
            .unwrap_or_default()
    } else {
        String::new()
    };
    let mut rootfs_file = match (req.rootfs, file_backed) {
        (Some(root), true) if !path.is_empty() => Some(open_under(root, &path)),
        _ => None,
    };

    let io_err = |action: &'static str, source: io::Error| EvidenceError::Io {
        action,
        path: to.to_owned(),
        source,
    };
    let mut out = Out::create_with(to, req.force)?;
    let mut report = RegionReport {
        checkpoint: src.path().to_owned(),
        pid: req.pid,
        region: region.clone(),
        perms: perms(&v),
        path: path.clone(),
        file_offset: v.pgoff,
        to: to.to_owned(),
        bytes: 0,
        dumped: 0,
        zero_filled: 0,
        from_rootfs: 0,
        left_out: 0,
        sha256: String::new(),
        ranges: Vec::new(),
    };
    // A range the checkpoint does not hold: zeros, the file's bytes, or a hole.
    let mut gap = |out: &mut Out,
                   report: &mut RegionReport,
                   s: u64,
                   e: u64,
                   why: Option<&str>|
     -> Result<(), EvidenceError> {
        if e <= s {
            return Ok(());
        }
        if let Some(why) = why {
            out.hole(e - s).map_err(|x| io_err("writing", x))?;
            report.left_out += e - s;
            add_range(report, s, e, "left-out", why.into());
            return Ok(());
        }
        if !file_backed {
            // Never written: zeros, as a hole of the sparse file (they read as zeros).
            out.hole(e - s).map_err(|x| io_err("writing", x))?;
            report.zero_filled += e - s;
            add_range(report, s, e, "zeros", String::new());
            return Ok(());
        }
        let file = match rootfs_file.as_mut() {
            None => {
                out.hole(e - s).map_err(|x| io_err("writing", x))?;
                report.left_out += e - s;
                add_range(
                    report,
                    s,
                    e,
                    "left-out",
                    "unmodified pages of the file: not dumped (--rootfs DIR reads them)".into(),
                );
                return Ok(());
            }
            Some(Err(err)) => {
                let note = format!("unmodified pages of the file; not read from the root: {err}");
                out.hole(e - s).map_err(|x| io_err("writing", x))?;
                report.left_out += e - s;
                add_range(report, s, e, "left-out", note);
                return Ok(());
            }
            Some(Ok(f)) => f,
        };
        // The file's bytes at the mapping's offset; past the file's end, a hole.
        let offset = v.pgoff.saturating_add(s - v.start);
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let want = e - s;
        let have = size.saturating_sub(offset).min(want);
        if have > 0 {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(offset))
                .map_err(|x| io_err("reading the mapped file for", x))?;
            let mut r = (&*file).take(have);
            let mut buf = vec![0u8; have.min(COPY_BYTES) as usize];
            let mut done = 0;
            while done < have {
                let n = (have - done).min(buf.len() as u64) as usize;
                r.read_exact(&mut buf[..n])
                    .map_err(|x| io_err("reading the mapped file for", x))?;
                out.put(&buf[..n]).map_err(|x| io_err("writing", x))?;
                done += n as u64;
            }
            // The rest of the file's last page reads as zeros in the process.
            let page_end = (s + have)
                .checked_next_multiple_of(index.page_size())
                .unwrap_or(e)
                .min(e);
            out.zeros(page_end - (s + have))
                .map_err(|x| io_err("writing", x))?;
            report.from_rootfs += page_end - s;
            add_range(report, s, page_end, "rootfs", String::new());
            if page_end < e {
                out.hole(e - page_end).map_err(|x| io_err("writing", x))?;
                report.left_out += e - page_end;
                add_range(
                    report,
                    page_end,
                    e,
                    "left-out",
                    "past the end of the file under the root".into(),
                );
            }
        } else {
            out.hole(want).map_err(|x| io_err("writing", x))?;
            report.left_out += want;
            add_range(
                report,
                s,
                e,
                "left-out",
                "past the end of the file under the root".into(),
            );
        }
        Ok(())
    };

    let mut at = v.start;
    for p in index.within(v.start, v.end) {
        gap(&mut out, &mut report, at, p.vaddr, None)?;
        match p.offset {
            Some(off) => {
                let mut done = 0;
                while done < p.len {
                    let n = (p.len - done).min(COPY_BYTES);
                    let data = src.read_range(&p.member, off + done, n)?;
                    out.put(&data).map_err(|x| io_err("writing", x))?;
                    done += n;
                }
                report.dumped += p.len;
                add_range(&mut report, p.vaddr, p.end(), "dump", String::new());
            }
            None => {
                let why = if p.flags & PE_LAZY != 0 {
                    "lazy pages: not in this checkpoint"
                } else {
                    "pages in a parent (pre-)dump: not in this checkpoint"
                };
                gap(&mut out, &mut report, p.vaddr, p.end(), Some(why))?;
            }
        }
        at = p.end();
    }
    gap(&mut out, &mut report, at, v.end, None)?;
    let (bytes, sha256) = out.commit(req.force)?;
    report.bytes = bytes;
    report.sha256 = sha256;
    Ok(report)
}
