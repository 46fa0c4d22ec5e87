//! The contents of a file a process held open, as the checkpoint keeps them: a deleted-but-open
//! file (CRIU's ghost file) or a memfd (its shared-memory pages).
//!
//! The way from `PID:FD` to the bytes, through CRIU's images:
//!
//! 1. `core-<pid>.img` (`ids.files_id`; older dumps: `ids-<pid>.img`) names the task's
//!    descriptor table, `fdinfo-<files_id>.img`, whose entry for `FD` gives the file's id;
//! 2. `files.img` holds the file with that id: a regular file (`reg`) or a memfd (`memfd`);
//! 3. a regular file deleted while open is remapped in `remap-fpath.img` (`orig_id` = the
//!    file's id, type `GHOST`; CRIU before the `remap_type` field marked it with the top bit of
//!    `remap_id`), and its contents are in `ghost-file-<remap_id in hex>.img`: a
//!    `ghost_file_entry`, then either the whole contents, or (`chunks`, for large files) a
//!    `ghost_chunk_entry` (`off`, `len`) before each run of data, holes left out;
//! 4. a memfd's inode is in `memfd.img` (`inode_id`), and its pages in
//!    `pagemap-shmem-<shmid>.img` and the pages member that pagemap names.
//!
//! The output is written under a temp name (0600) and renamed into place without replacing
//! anything; on any error nothing is left at the output path.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use criu_sys::proto;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::criu::image::{ImageReader, MessageType};
use crate::durable::DurableFile;

use crate::inspect::{CheckpointSource, PageIndex, SourceOptions};

use super::EvidenceError;

type Checkpoint = CheckpointSource;

/// The most bytes read of a small image (descriptor tables, file lists).
const MAX_SMALL_IMAGE: u64 = 256 << 20;
/// CRIU's old mark of a ghost remap, in `remap_id`.
const REMAP_GHOST: u32 = 1 << 31;
/// `S_IFMT` and `S_IFREG`.
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// Bounds on one file extraction.
#[derive(Debug, Clone, Copy)]
pub struct FileLimits {
    /// The largest file written (holes included).
    pub max_bytes: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        FileLimits {
            max_bytes: 64 << 30,
        }
    }
}

/// What kind of file was extracted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractedKind {
    /// A deleted-but-open regular file (CRIU ghost file).
    DeletedFile,
    /// A memfd.
    Memfd,
}

/// What [`extract_file`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtractedFile {
    pub checkpoint: PathBuf,
    pub pid: u32,
    pub fd: u32,
    pub kind: ExtractedKind,
    /// The file's path as the process saw it (CRIU's name; a memfd's `memfd:NAME`).
    pub path: String,
    /// Where the contents were written.
    pub to: PathBuf,
    /// Bytes written (the file's size).
    pub bytes: u64,
    /// SHA-256 of what was written.
    pub sha256: String,
    /// The file's mode as recorded, in octal text.
    pub mode: String,
    /// The CRIU image the contents came from.
    pub source: String,
    /// Whether CRIU stored it in chunks (large ghost files).
    pub chunks: bool,
    /// Bytes of holes (sparse ranges, not stored) written as zeros.
    pub zero_filled: u64,
}

/// Reads a small image member's entries as `M`; `None` without the member.
pub(crate) fn small_image<M: crate::criu::image::ImageMessage>(
    cp: &Checkpoint,
    name: &str,
) -> Result<Option<Vec<M>>, EvidenceError> {
    let Some(bytes) = cp.read_optional(&format!("checkpoint/{name}"), MAX_SMALL_IMAGE)? else {
        return Ok(None);
    };
    let mut r = ImageReader::from_bytes(&bytes, format!("checkpoint/{name}"))?;
    Ok(Some(r.read_entries()?))
}

fn missing(cp: &Checkpoint, name: &str, why: &'static str) -> EvidenceError {
    EvidenceError::MissingMember {
        checkpoint: cp.path().to_owned(),
        member: format!("checkpoint/{name}"),
        why,
    }
}

fn bad_image(cp: &Checkpoint, member: &str, reason: String) -> EvidenceError {
    EvidenceError::BadImage {
        checkpoint: cp.path().to_owned(),
        member: format!("checkpoint/{member}"),
        reason,
    }
}

/// The id of the descriptor table of task `pid`.
pub(crate) fn files_id(cp: &Checkpoint, pid: u32) -> Result<u32, EvidenceError> {
    let core_name = format!("core-{pid}.img");
    let Some(core) = small_image::<proto::CoreEntry>(cp, &core_name)? else {
        return Err(EvidenceError::NotFound {
            checkpoint: cp.path().to_owned(),
            what: format!(
                "no process {pid} (no checkpoint/{core_name}); pids are as the container saw them (see pstree.img)"
            ),
        });
    };
    if let Some(ids) = core.first().and_then(|c| c.ids) {
        return Ok(ids.files_id);
    }
    let ids_name = format!("ids-{pid}.img");
    let ids = small_image::<proto::TaskKobjIdsEntry>(cp, &ids_name)?.ok_or_else(|| {
        missing(
            cp,
            &ids_name,
            "the task's ids are in neither its core image nor here",
        )
    })?;
    ids.first()
        .map(|i| i.files_id)
        .ok_or_else(|| bad_image(cp, &ids_name, "holds no entry".into()))
}

/// The `files.img` entry behind `pid:fd`.
pub(crate) fn file_of(
    cp: &Checkpoint,
    pid: u32,
    fd: u32,
) -> Result<proto::FileEntry, EvidenceError> {
    let files_id = files_id(cp, pid)?;
    let fdinfo_name = format!("fdinfo-{files_id}.img");
    let fds = small_image::<proto::FdinfoEntry>(cp, &fdinfo_name)?
        .ok_or_else(|| missing(cp, &fdinfo_name, "the task's descriptor table"))?;
    let Some(fde) = fds.iter().find(|f| f.fd == fd) else {
        let mut open: Vec<u32> = fds.iter().map(|f| f.fd).collect();
        open.sort_unstable();
        return Err(EvidenceError::NotFound {
            checkpoint: cp.path().to_owned(),
            what: format!("process {pid} has no descriptor {fd} (its descriptors: {open:?})"),
        });
    };
    let files = small_image::<proto::FileEntry>(cp, "files.img")?
        .ok_or_else(|| missing(cp, "files.img", "the checkpoint's file list"))?;
    files
        .into_iter()
        .find(|f| f.id == fde.id && f.r#type == fde.r#type)
        .ok_or_else(|| {
            bad_image(
                cp,
                "files.img",
                format!(
                    "no file with id {} (type {}) for descriptor {fd} of process {pid}",
                    fde.id, fde.r#type
                ),
            )
        })
}

fn type_name(t: i32) -> String {
    proto::FdTypes::try_from(t)
        .map(|t| t.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("type {t}"))
}

/// Writes the contents of the deleted-but-open file or memfd at `pid:fd` of the checkpoint at
/// `checkpoint` (a store `.tar`, an exported `.tar`/`.tar.zst`, or an unpacked directory) to
/// `to`, a new file. See the module's documentation.
pub fn extract_file(
    checkpoint: &Path,
    pid: u32,
    fd: u32,
    to: &Path,
    opts: SourceOptions,
    limits: FileLimits,
) -> Result<ExtractedFile, EvidenceError> {
    if crate::durable::exists(to) {
        return Err(EvidenceError::OutputExists {
            path: to.to_owned(),
        });
    }
    let cp = CheckpointSource::open(checkpoint, opts)?;
    let file = file_of(&cp, pid, fd)?;
    let what = format!("descriptor {fd} of process {pid}");
    match proto::FdTypes::try_from(file.r#type) {
        Ok(proto::FdTypes::Reg) => {
            let reg = file
                .reg
                .as_ref()
                .ok_or_else(|| bad_image(&cp, "files.img", format!("{what}: a regular file without its entry")))?;
            ghost(&cp, pid, fd, reg, to, limits)
        }
        Ok(proto::FdTypes::Memfd) => {
            let m = file
                .memfd
                .as_ref()
                .ok_or_else(|| bad_image(&cp, "files.img", format!("{what}: a memfd without its entry")))?;
            memfd(&cp, pid, fd, m, to, limits)
        }
        _ => Err(EvidenceError::Unsupported {
            checkpoint: cp.path().to_owned(),
            what: format!(
                "{what} is a {}: only deleted-but-open files and memfds have contents in a checkpoint",
                type_name(file.r#type)
            ),
        }),
    }
}

fn ghost(
    cp: &Checkpoint,
    pid: u32,
    fd: u32,
    reg: &proto::RegFileEntry,
    to: &Path,
    limits: FileLimits,
) -> Result<ExtractedFile, EvidenceError> {
    let what = format!("descriptor {fd} of process {pid} ({})", reg.name);
    let remaps =
        small_image::<proto::RemapFilePathEntry>(cp, "remap-fpath.img")?.unwrap_or_default();
    let remap = remaps.iter().find(|r| r.orig_id == reg.id);
    let ghost_id = match remap {
        None => {
            return Err(EvidenceError::Unsupported {
                checkpoint: cp.path().to_owned(),
                what: format!(
                    "{what} was not deleted: its contents are in the container's filesystem, not in the checkpoint (`--rootfs DIR` unpacks what the container changed)"
                ),
            })
        }
        Some(r) => match r.remap_type {
            Some(t) if t == proto::RemapType::Ghost as i32 => r.remap_id & !REMAP_GHOST,
            None if r.remap_id & REMAP_GHOST != 0 => r.remap_id & !REMAP_GHOST,
            Some(t) if t == proto::RemapType::Procfs as i32 => {
                return Err(EvidenceError::Unsupported {
                    checkpoint: cp.path().to_owned(),
                    what: format!("{what} is a file of a dead process's /proc: it has no contents to extract"),
                })
            }
            _ => {
                return Err(EvidenceError::Unsupported {
                    checkpoint: cp.path().to_owned(),
                    what: format!(
                        "{what} was deleted and kept by link remap (--link-remap): its contents are a hidden link in the container's filesystem, not in the checkpoint"
                    ),
                })
            }
        },
    };
    let member = format!("checkpoint/ghost-file-{ghost_id:x}.img");
    let checkpoint = cp.path().to_owned();
    if cp.member(&member).is_none() {
        return Err(missing(
            cp,
            &format!("ghost-file-{ghost_id:x}.img"),
            "the deleted file's contents",
        ));
    }
    let mut r = cp.reader(&member)?;
    let (bytes, sha256, mode, chunks, zero_filled) =
        write_ghost(&checkpoint, &member, &mut r, to, limits)?;
    Ok(ExtractedFile {
        checkpoint,
        pid,
        fd,
        kind: ExtractedKind::DeletedFile,
        path: reg.name.clone(),
        to: to.to_owned(),
        bytes,
        sha256,
        mode: format!("{:04o}", mode & 0o7777),
        source: member,
        chunks,
        zero_filled,
    })
}

/// The largest shared-memory pagemap loaded.
const MAX_PAGEMAP: u64 = 256 << 20;
/// Pages are copied in pieces of at most this many bytes.
const COPY_BYTES: u64 = 8 << 20;

fn memfd(
    cp: &Checkpoint,
    pid: u32,
    fd: u32,
    m: &proto::MemfdFileEntry,
    to: &Path,
    limits: FileLimits,
) -> Result<ExtractedFile, EvidenceError> {
    let inodes = small_image::<proto::MemfdInodeEntry>(cp, "memfd.img")?
        .ok_or_else(|| missing(cp, "memfd.img", "the memfds' inodes"))?;
    let inode = inodes
        .iter()
        .find(|i| i.inode_id == u64::from(m.inode_id))
        .ok_or_else(|| {
            bad_image(
                cp,
                "memfd.img",
                format!(
                    "no inode {} (the memfd of descriptor {fd} of process {pid})",
                    m.inode_id
                ),
            )
        })?;
    let size = inode.size;
    if size > limits.max_bytes {
        return Err(bad_image(
            cp,
            "memfd.img",
            format!(
                "memfd {} is {size} bytes, over the limit of {}",
                inode.name, limits.max_bytes
            ),
        ));
    }
    let pagemap = format!("pagemap-shmem-{}.img", inode.shmid);
    let member = format!("checkpoint/{pagemap}");
    let bytes = cp
        .read_optional(&member, MAX_PAGEMAP)?
        .ok_or_else(|| missing(cp, &pagemap, "the memfd's pages"))?;
    let index = PageIndex::from_image(&bytes, &member, pid, cp.page_size()?)?;
    let pages = index.pages_member().to_string();
    let io_err = |action: &'static str, source: io::Error| EvidenceError::Io {
        action,
        path: to.to_owned(),
        source,
    };
    let mut out = Out::create(to)?;
    let mut zero_filled = 0u64;
    // Runs are sorted by offset in the memfd; what no run covers was never written: zeros.
    for run in index.runs() {
        if run.vaddr >= size {
            break;
        }
        let end = run.end().min(size);
        let Some(base) = run.offset else {
            return Err(EvidenceError::Unsupported {
                checkpoint: cp.path().to_owned(),
                what: format!(
                    "memfd {}: bytes {:#x}-{end:#x} are in a parent (pre-)dump, not in this checkpoint (nothing was written)",
                    inode.name, run.vaddr
                ),
            });
        };
        let gap = run.vaddr - out.written;
        out.zeros(gap).map_err(|e| io_err("writing", e))?;
        zero_filled += gap;
        let mut at = run.vaddr;
        while at < end {
            let n = (end - at).min(COPY_BYTES);
            let data = cp.read_range(&pages, base + (at - run.vaddr), n)?;
            out.put(&data).map_err(|e| io_err("writing", e))?;
            at += n;
        }
    }
    let gap = size - out.written;
    out.zeros(gap).map_err(|e| io_err("writing", e))?;
    zero_filled += gap;
    let Out {
        file,
        hasher,
        written,
    } = out;
    file.commit(None).map_err(|e| match e {
        crate::durable::DurableError::Exists { path } => EvidenceError::OutputExists { path },
        other => io_err("committing", io::Error::other(other.to_string())),
    })?;
    Ok(ExtractedFile {
        checkpoint: cp.path().to_owned(),
        pid,
        fd,
        kind: ExtractedKind::Memfd,
        path: format!("memfd:{}", inode.name),
        to: to.to_owned(),
        bytes: written,
        sha256: hex::encode(hasher.finalize()),
        mode: format!("{:04o}", inode.mode.unwrap_or(0) & 0o7777),
        source: pages,
        chunks: false,
        zero_filled,
    })
}

/// A writer that hashes and counts: the output of every extraction.
pub(crate) struct Out {
    pub(crate) file: DurableFile,
    pub(crate) hasher: Sha256,
    pub(crate) written: u64,
}

impl Out {
    /// A new file at `to`, never replacing one (mode 0600, renamed into place on commit).
    pub(crate) fn create(to: &Path) -> Result<Out, EvidenceError> {
        Out::create_with(to, false)
    }

    /// [`Out::create`]; with `replace` (an explicit `--force`) what `to` holds is replaced on
    /// [`Out::commit`].
    pub(crate) fn create_with(to: &Path, replace: bool) -> Result<Out, EvidenceError> {
        let created = if replace {
            DurableFile::create_replacing(to)
        } else {
            DurableFile::create(to)
        };
        let file = created.map_err(|e| match e {
            crate::durable::DurableError::Exists { path } => EvidenceError::OutputExists { path },
            other => EvidenceError::Io {
                action: "creating",
                path: to.to_owned(),
                source: io::Error::other(other.to_string()),
            },
        })?;
        Ok(Out {
            file,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Leaves `n` bytes as a hole (read as zeros, hashed as zeros).
    pub(crate) fn hole(&mut self, n: u64) -> io::Result<()> {
        self.file.skip(n)?;
        let z = [0u8; 64 << 10];
        let mut left = n;
        while left > 0 {
            let k = left.min(z.len() as u64) as usize;
            self.hasher.update(&z[..k]);
            left -= k as u64;
        }
        self.written += n;
        Ok(())
    }

    /// Puts the file in place (replacing what is there only when created so); returns its
    /// size and SHA-256.
    pub(crate) fn commit(self, replace: bool) -> Result<(u64, String), EvidenceError> {
        let Out {
            file,
            hasher,
            written,
        } = self;
        let to = file.final_path().to_owned();
        let done = if replace {
            file.commit_replacing()
        } else {
            file.commit(None)
        };
        done.map_err(|e| match e {
            crate::durable::DurableError::Exists { path } => EvidenceError::OutputExists { path },
            other => EvidenceError::Io {
                action: "committing",
                path: to,
                source: io::Error::other(other.to_string()),
            },
        })?;
        Ok((written, hex::encode(hasher.finalize())))
    }

    pub(crate) fn put(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.hasher.update(data);
        self.written += data.len() as u64;
        Ok(())
    }

    pub(crate) fn zeros(&mut self, mut n: u64) -> io::Result<()> {
        let z = [0u8; 64 << 10];
        while n > 0 {
            let k = n.min(z.len() as u64) as usize;
            self.put(&z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn copy(&mut self, r: &mut dyn Read, max: u64) -> io::Result<u64> {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n as u64;
            if self.written + n as u64 > max {
                return Err(io::Error::other(format!(
                    "larger than the limit of {max} bytes"
                )));
            }
            self.put(&buf[..n])?;
        }
    }
}

type GhostWritten = (u64, String, u32, bool, u64);

fn write_ghost(
    checkpoint: &Path,
    member: &str,
    r: &mut dyn Read,
    to: &Path,
    limits: FileLimits,
) -> Result<GhostWritten, EvidenceError> {
    let bad = |reason: String| EvidenceError::BadImage {
        checkpoint: checkpoint.to_owned(),
        member: member.to_string(),
        reason,
    };
    let io_err = |action: &'static str, source: io::Error| EvidenceError::Io {
        action,
        path: to.to_owned(),
        source,
    };
    let mut image = ImageReader::new(r, member)?;
    let mut first = image
        .next_entry()?
        .filter(|e| e.message_type() == MessageType::GhostFileEntry)
        .ok_or_else(|| bad("does not start with a ghost_file_entry".into()))?;
    let head = first.decode::<proto::GhostFileEntry>()?;
    if head.mode & S_IFMT != S_IFREG {
        return Err(EvidenceError::Unsupported {
            checkpoint: checkpoint.to_owned(),
            what: format!(
                "{member} is not a regular file (mode {:o}){}: it has no contents",
                head.mode,
                head.symlnk_target
                    .as_deref()
                    .map(|t| format!(", a symlink to {t}"))
                    .unwrap_or_default()
            ),
        });
    }
    if let Some(size) = head.size.filter(|&s| s > limits.max_bytes) {
        return Err(bad(format!(
            "the file is {size} bytes, over the limit of {}",
            limits.max_bytes
        )));
    }
    let chunks = head.chunks();
    let mut out = Out::create(to)?;
    let mut zero_filled = 0u64;
    // Drop removes the temp file on every error below.
    if !chunks {
        // The whole contents, to the end of the image.
        out.copy(&mut first.payload(), limits.max_bytes)
            .map_err(|e| io_err("writing", e))?;
    } else {
        while let Some(mut e) = image.next_entry()? {
            if e.message_type() != MessageType::GhostChunkEntry {
                return Err(bad(format!(
                    "a {} where a ghost_chunk_entry belongs",
                    e.message_type().proto_name()
                )));
            }
            let c = e.decode::<proto::GhostChunkEntry>()?;
            if c.off < out.written {
                return Err(bad(format!(
                    "chunk at offset {} overlaps or precedes the previous one (ending at {})",
                    c.off, out.written
                )));
            }
            let end = c.off.checked_add(c.len).filter(|&e| e <= limits.max_bytes);
            if end.is_none() {
                return Err(bad(format!(
                    "chunk at offset {} of {} bytes goes past the limit of {}",
                    c.off, c.len, limits.max_bytes
                )));
            }
            let gap = c.off - out.written;
            out.zeros(gap).map_err(|e| io_err("writing", e))?;
            zero_filled += gap;
            let got = out
                .copy(&mut e.payload(), limits.max_bytes)
                .map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => {
                        bad(format!("truncated in the chunk at offset {}", c.off))
                    }
                    _ => io_err("writing", e),
                })?;
            if got != c.len {
                return Err(bad(format!(
                    "the chunk at offset {} holds {got} of {} bytes",
                    c.off, c.len
                )));
            }
        }
    }
    if let Some(size) = head.size {
        if out.written > size {
            return Err(bad(format!(
                "holds {} bytes, more than the file's size of {size}",
                out.written
            )));
        }
        if chunks {
            // A hole at the end.
            let gap = size - out.written;
            out.zeros(gap).map_err(|e| io_err("writing", e))?;
            zero_filled += gap;
        } else if out.written != size {
            return Err(bad(format!(
                "holds {} bytes, the file had {size}: truncated image",
                out.written
            )));
        }
    }
    let Out {
        file,
        hasher,
        written,
    } = out;
    file.commit(None).map_err(|e| match e {
        crate::durable::DurableError::Exists { path } => EvidenceError::OutputExists { path },
        other => io_err("committing", io::Error::other(other.to_string())),
    })?;
    Ok((
        written,
        hex::encode(hasher.finalize()),
        head.mode,
        chunks,
        zero_filled,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criu::image::{ImageKind, ImageWriter};

    fn image<M: crate::criu::image::ImageMessage>(
        dir: &Path,
        name: &str,
        kind: ImageKind,
        entries: &[M],
    ) {
        let mut w = ImageWriter::new(Vec::new(), kind, name).unwrap();
        for e in entries {
            w.write_entry(e).unwrap();
        }
        std::fs::write(dir.join(name), w.finish().unwrap()).unwrap();
    }

    /// A checkpoint directory whose process 1 holds, as fd 3, a deleted file whose ghost
    /// image is `ghost` (written by `ghost`).
    fn crafted(ghost: impl FnOnce(&mut ImageWriter<Vec<u8>>)) -> tempfile::TempDir {
        let top = tempfile::tempdir().unwrap();
        let cp = top.path().join("checkpoint");
        std::fs::create_dir(&cp).unwrap();
        let core = proto::CoreEntry {
            mtype: 1,
            ids: Some(proto::TaskKobjIdsEntry {
                files_id: 7,
                ..Default::default()
            }),
            ..Default::default()
        };
        image(&cp, "core-1.img", ImageKind::Core, &[core]);
        let fdinfo = proto::FdinfoEntry {
            id: 42,
            r#type: proto::FdTypes::Reg as i32,
            fd: 3,
            ..Default::default()
        };
        image(&cp, "fdinfo-7.img", ImageKind::Fdinfo, &[fdinfo]);
        let file = proto::FileEntry {
            r#type: proto::FdTypes::Reg as i32,
            id: 42,
            reg: Some(proto::RegFileEntry {
                id: 42,
                name: "/tmp/gone".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        image(&cp, "files.img", ImageKind::Files, &[file]);
        let remap = proto::RemapFilePathEntry {
            orig_id: 42,
            remap_id: 0x1f,
            remap_type: Some(proto::RemapType::Ghost as i32),
        };
        image(&cp, "remap-fpath.img", ImageKind::RemapFpath, &[remap]);
        let mut w =
            ImageWriter::new(Vec::new(), ImageKind::GhostFile, "ghost-file-1f.img").unwrap();
        ghost(&mut w);
        std::fs::write(cp.join("ghost-file-1f.img"), w.finish().unwrap()).unwrap();
        top
    }

    fn head(size: u64, chunks: bool) -> proto::GhostFileEntry {
        proto::GhostFileEntry {
            mode: 0o100600,
            size: Some(size),
            chunks: chunks.then_some(true),
            ..Default::default()
        }
    }

    fn extract(top: &tempfile::TempDir) -> (PathBuf, Result<ExtractedFile, EvidenceError>) {
        let to = top.path().join("out");
        let r = extract_file(
            top.path(),
            1,
            3,
            &to,
            SourceOptions::default(),
            FileLimits::default(),
        );
        (to, r)
    }

    #[test]
    fn a_whole_ghost_file_comes_out() {
        let top = crafted(|w| {
            w.write_entry(&head(5, false)).unwrap();
            w.write_payload(b"hello").unwrap();
        });
        let (to, r) = extract(&top);
        let r = r.unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"hello");
        assert_eq!(
            (r.bytes, r.chunks, r.path.as_str()),
            (5, false, "/tmp/gone")
        );
    }

    #[test]
    fn chunks_and_holes_come_out_with_zeros() {
        let top = crafted(|w| {
            w.write_entry(&head(12, true)).unwrap();
            w.write_entry(&proto::GhostChunkEntry { len: 2, off: 3 })
                .unwrap();
            w.write_payload(b"ab").unwrap();
            w.write_entry(&proto::GhostChunkEntry { len: 3, off: 6 })
                .unwrap();
            w.write_payload(b"cde").unwrap();
        });
        let (to, r) = extract(&top);
        let r = r.unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), b"\0\0\0ab\0cde\0\0\0");
        assert_eq!(r.zero_filled, 7);
    }

    #[test]
    fn broken_ghost_images_leave_nothing() {
        let truncated = crafted(|w| {
            w.write_entry(&head(10, false)).unwrap();
            w.write_payload(b"short").unwrap();
        });
        let overlapping = crafted(|w| {
            w.write_entry(&head(10, true)).unwrap();
            w.write_entry(&proto::GhostChunkEntry { len: 4, off: 0 })
                .unwrap();
            w.write_payload(b"abcd").unwrap();
            w.write_entry(&proto::GhostChunkEntry { len: 2, off: 2 })
                .unwrap();
            w.write_payload(b"xy").unwrap();
        });
        let cut_chunk = crafted(|w| {
            w.write_entry(&head(10, true)).unwrap();
            w.write_entry(&proto::GhostChunkEntry { len: 8, off: 0 })
                .unwrap();
            w.write_payload(b"abc").unwrap();
        });
        for top in [truncated, overlapping, cut_chunk] {
            let (to, r) = extract(&top);
            let e = r.unwrap_err();
            assert!(
                matches!(e, EvidenceError::BadImage { .. } | EvidenceError::Image(_)),
                "{e}"
            );
            assert!(!to.exists(), "{e}: an output was left");
            let left: Vec<_> = std::fs::read_dir(top.path())
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert_eq!(left.len(), 1, "temp files left: {left:?}");
        }
    }

    #[test]
    fn other_descriptors_are_refused_clearly() {
        let top = crafted(|w| {
            w.write_entry(&head(1, false)).unwrap();
            w.write_payload(b"x").unwrap();
        });
        let to = top.path().join("out");
        let e = extract_file(
            top.path(),
            1,
            9,
            &to,
            SourceOptions::default(),
            FileLimits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no descriptor 9"), "{e}");
        let e = extract_file(
            top.path(),
            2,
            3,
            &to,
            SourceOptions::default(),
            FileLimits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no process 2"), "{e}");
        std::fs::write(&to, b"keep").unwrap();
        let e = extract_file(
            top.path(),
            1,
            3,
            &to,
            SourceOptions::default(),
            FileLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(e, EvidenceError::OutputExists { .. }), "{e}");
        assert_eq!(std::fs::read(&to).unwrap(), b"keep");
    }
}
