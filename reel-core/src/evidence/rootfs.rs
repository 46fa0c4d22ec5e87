//! Unpacking a checkpoint's rootfs diff into a directory, safely.
//!
//! The diff comes from a container that may be compromised, so it is treated as hostile:
//!
//! * the target directory must be new or empty; reel makes it 0700, and nothing but this
//!   unpacking writes into it while it runs, so what it checks stays true until it writes;
//! * a member path that is absolute or has a `..` component is refused, never rewritten;
//! * every parent of a member is walked one component at a time with `symlink_metadata`
//!   (never following a link): a parent that is a symlink, or not a directory, refuses the
//!   member. Missing parents are made (0700);
//! * the member itself is created with `O_CREAT | O_EXCL | O_NOFOLLOW`; a name that an earlier
//!   member already took (a file or a symlink) is unlinked first (the link itself, never what it
//!   points to), as tar does;
//! * symlinks are written as they are (their targets are never followed, nor checked against
//!   the disk); a target that is absolute or climbs out with `..` is noted in the report;
//! * hard links are made only to a regular file already unpacked in the directory, named by
//!   a path that passes the same checks;
//! * device nodes and FIFOs are never made; setuid, setgid and sticky bits are stripped;
//!   file capabilities (`security.capability`) are not applied; ownership is not applied
//!   (everything belongs to the user running reel). Each is reported;
//! * deletions are reported, not applied: `.wh.NAME` and `.wh..wh..opq` whiteouts (the
//!   containerd and kubelet flavour, whose diff is gzip-compressed), overlay's 0:0 character
//!   devices, and the paths listed in `deleted.files` (the reel, CRI-O and Podman flavour, a
//!   plain tar);
//! * entries and bytes are bounded ([`RootfsLimits`]).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::EvidenceError;

/// The most bytes of `deleted.files` read.
const MAX_DELETED_FILES: u64 = 64 << 20;

/// Bounds on one unpacking.
#[derive(Debug, Clone, Copy)]
pub struct RootfsLimits {
    /// Tar entries read.
    pub max_entries: u64,
    /// Bytes of file contents written.
    pub max_bytes: u64,
}

impl Default for RootfsLimits {
    fn default() -> Self {
        RootfsLimits {
            max_entries: 1_000_000,
            max_bytes: 1 << 40,
        }
    }
}

/// How the diff was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffFlavour {
    /// A plain tar (reel, CRI-O, Podman), deletions in `deleted.files`.
    PlainTar,
    /// A gzip-compressed tar (containerd, the kubelet), deletions as `.wh.` whiteouts.
    GzipTar,
    /// The checkpoint has no rootfs diff.
    Absent,
}

/// What a diff entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// A deletion: a `.wh.` whiteout, an overlay 0:0 character device, or a `deleted.files` path.
    Deleted,
    /// An opaque directory (`.wh..wh..opq`): the lower layers' contents are hidden.
    Opaque,
    Other,
}

impl EntryKind {
    fn as_str(self) -> &'static str {
        match self {
            EntryKind::File => "file",
            EntryKind::Directory => "directory",
            EntryKind::Symlink => "symlink",
            EntryKind::HardLink => "hardlink",
            EntryKind::CharDevice => "char_device",
            EntryKind::BlockDevice => "block_device",
            EntryKind::Fifo => "fifo",
            EntryKind::Deleted => "deleted",
            EntryKind::Opaque => "opaque",
            EntryKind::Other => "other",
        }
    }
}

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was done with a diff entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written into the directory (maybe with changes, see the notes).
    Written,
    /// Not written, for the reason given.
    Refused,
    /// Only reported: deletions and opaque directories are not applied.
    Reported,
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Outcome::Written => "written",
            Outcome::Refused => "refused",
            Outcome::Reported => "reported",
        })
    }
}

/// One entry of the diff (or of `deleted.files`) and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootfsEntry {
    /// The path as the diff names it (lossy UTF-8), or the deleted path.
    pub path: String,
    pub kind: EntryKind,
    pub outcome: Outcome,
    /// The mode the diff records (with setuid/setgid/sticky), in octal text.
    pub mode: String,
    pub uid: u64,
    pub gid: u64,
    pub size: u64,
    /// Symlink or hard link target; device numbers as `major:minor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// SHA-256 of a written file's contents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why it was refused, or what was changed or not applied.
    pub notes: Vec<String>,
}

/// What [`unpack_rootfs_diff`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootfsReport {
    /// The directory written.
    pub dest: PathBuf,
    pub flavour: DiffFlavour,
    /// Entries written.
    pub written: u64,
    /// Entries refused.
    pub refused: u64,
    /// Deletions and opaque directories reported.
    pub reported: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Every entry, in the diff's order, then the `deleted.files` paths.
    pub entries: Vec<RootfsEntry>,
    /// Problems with the diff's side files (an unreadable `deleted.files`).
    pub problems: Vec<String>,
}

/// Makes `dest` ready: created 0700 when missing; an existing one must be an empty directory
/// (not a symlink) and is made 0700.
pub(crate) fn prepare_dest(dest: &Path) -> Result<(), EvidenceError> {
    let bad = |reason: &str| EvidenceError::BadDestination {
        path: dest.to_owned(),
        reason: reason.to_string(),
    };
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .mode(0o700)
            .create(dest)
            .map_err(|source| EvidenceError::Io {
                action: "creating",
                path: dest.to_owned(),
                source,
            }),
        Err(source) => Err(EvidenceError::Io {
            action: "examining",
            path: dest.to_owned(),
            source,
        }),
        Ok(m) if m.file_type().is_symlink() => Err(bad("is a symlink")),
        Ok(m) if !m.is_dir() => Err(bad("exists and is not a directory")),
        Ok(_) => {
            let mut entries = fs::read_dir(dest).map_err(|source| EvidenceError::Io {
                action: "listing",
                path: dest.to_owned(),
                source,
            })?;
            if entries.next().is_some() {
                return Err(bad("is not empty"));
            }
            fs::set_permissions(dest, fs::Permissions::from_mode(0o700)).map_err(|source| {
                EvidenceError::Io {
                    action: "making private (0700)",
                    path: dest.to_owned(),
                    source,
                }
            })
        }
    }
}

/// A member path split into plain components, or why it cannot be used.
fn components(raw: &[u8]) -> Result<Vec<&[u8]>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path: refused (it would leave the directory)".into());
    }
    if raw.contains(&0) {
        return Err("path holds a NUL byte".into());
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(
                    "path has a `..` component: refused (it would leave the directory)".into(),
                )
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn join(dest: &Path, comps: &[&[u8]]) -> PathBuf {
    let mut p = dest.to_path_buf();
    for c in comps {
        p.push(std::ffi::OsStr::from_bytes(c));
    }
    p
}

/// A reader that hashes what passes.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct Unpacker<'a> {
    checkpoint: &'a Path,
    dest: &'a Path,
    limits: RootfsLimits,
    report: RootfsReport,
}

impl Unpacker<'_> {
    fn io(&self, action: &'static str, path: &Path, source: io::Error) -> EvidenceError {
        EvidenceError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    /// Makes sure every parent of `comps` is a real directory under `dest`, creating the
    /// missing ones; the reason when one is a symlink or not a directory.
    fn parents(&self, comps: &[&[u8]]) -> Result<Result<(), String>, EvidenceError> {
        let mut p = self.dest.to_path_buf();
        for (i, c) in comps[..comps.len().saturating_sub(1)].iter().enumerate() {
            p.push(std::ffi::OsStr::from_bytes(c));
            let shown = || lossy(&comps[..=i].join(&b'/'));
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    let to = fs::read_link(&p)
                        .map(|t| t.display().to_string())
                        .unwrap_or_default();
                    return Ok(Err(format!(
                        "parent `{}` is a symlink (to `{to}`): not followed, entry refused",
                        shown()
                    )));
                }
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Ok(Err(format!(
                        "parent `{}` is not a directory: entry refused",
                        shown()
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&p)
                        .map_err(|e| self.io("creating", &p, e))?;
                }
                Err(e) => return Err(self.io("examining", &p, e)),
            }
        }
        Ok(Ok(()))
    }

    /// Clears the way for a new leaf at `path`: an earlier file or symlink of the same name is
    /// unlinked (the link itself); an existing directory is kept for a directory entry.
    /// `Ok(false)` when the entry is a directory already there.
    fn clear_leaf(&self, path: &Path, is_dir: bool) -> Result<Result<bool, String>, EvidenceError> {
        match fs::symlink_metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Ok(true)),
            Err(e) => Err(self.io("examining", path, e)),
            Ok(m) if m.is_dir() => {
                if is_dir {
                    Ok(Ok(false))
                } else {
                    Ok(Err(
                        "a directory of the same name is already there: entry refused".into(),
                    ))
                }
            }
            Ok(_) if is_dir => Ok(Err(
                "a file or symlink of the same name is already there: entry refused".into(),
            )),
            Ok(_) => {
                fs::remove_file(path).map_err(|e| self.io("replacing", path, e))?;
                Ok(Ok(true))
            }
        }
    }

    fn add(&mut self, e: RootfsEntry) {
        match e.outcome {
            Outcome::Written => self.report.written += 1,
            Outcome::Refused => self.report.refused += 1,
            Outcome::Reported => self.report.reported += 1,
        }
        self.report.entries.push(e);
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), EvidenceError> {
        let raw_path = entry.path_bytes().into_owned();
        let header = entry.header();
        let ty = header.entry_type();
        let mode = header.mode().unwrap_or(0);
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);
        let mtime = header.mtime().unwrap_or(0);
        let mut rec = RootfsEntry {
            path: lossy(&raw_path),
            kind: match ty {
                EntryType::Regular | EntryType::Continuous => EntryKind::File,
                EntryType::Directory => EntryKind::Directory,
                EntryType::Symlink => EntryKind::Symlink,
                EntryType::Link => EntryKind::HardLink,
                EntryType::Char => EntryKind::CharDevice,
                EntryType::Block => EntryKind::BlockDevice,
                EntryType::Fifo => EntryKind::Fifo,
                _ => EntryKind::Other,
            },
            outcome: Outcome::Refused,
            mode: format!("{:04o}", mode & 0o7777),
            uid: header.uid().unwrap_or(0),
            gid: header.gid().unwrap_or(0),
            size: entry.size(),
            target: None,
            sha256: None,
            notes: Vec::new(),
        };
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        if let Some(l) = &link {
            rec.target = Some(lossy(l));
        }
        if matches!(rec.kind, EntryKind::CharDevice | EntryKind::BlockDevice) {
            rec.target = Some(format!("{major}:{minor}"));
        }
        let comps = match components(&raw_path) {
            Ok(c) => c,
            Err(reason) => {
                rec.notes.push(reason);
                self.add(rec);
                return Ok(());
            }
        };
        let Some(&leaf) = comps.last() else {
            // The root itself (`./`): nothing to make.
            rec.outcome = Outcome::Reported;
            rec.notes
                .push("the diff's root directory: nothing to write".into());
            self.add(rec);
            return Ok(());
        };
        // Deletions, in the whiteout conventions.
        if let Some(name) = leaf.strip_prefix(b".wh.") {
            rec.outcome = Outcome::Reported;
            let parent = lossy(&comps[..comps.len() - 1].join(&b'/'));
            let under = if parent.is_empty() {
                "/".to_string()
            } else {
                format!("/{parent}")
            };
            if name == b".wh..opq" {
                rec.kind = EntryKind::Opaque;
                rec.path = under;
                rec.notes.push(
                    "opaque directory (whiteout .wh..wh..opq): the image's contents under it were hidden; not applied"
                        .into(),
                );
            } else if name.starts_with(b".wh.") {
                rec.kind = EntryKind::Other;
                rec.notes
                    .push("whiteout metadata (.wh..wh.*): not written".into());
            } else {
                rec.kind = EntryKind::Deleted;
                let sep = if under == "/" { "" } else { "/" };
                rec.path = format!("{under}{sep}{}", lossy(name));
                rec.notes
                    .push("deleted (whiteout .wh.): not applied".into());
            }
            self.add(rec);
            return Ok(());
        }
        if rec.kind == EntryKind::CharDevice && major == 0 && minor == 0 {
            rec.kind = EntryKind::Deleted;
            rec.outcome = Outcome::Reported;
            rec.path = format!("/{}", lossy(&comps.join(&b'/')));
            rec.notes.push(
                "deleted (overlay whiteout, a 0:0 character device): not applied, no device made"
                    .into(),
            );
            self.add(rec);
            return Ok(());
        }
        match rec.kind {
            EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => {
                rec.notes.push(format!(
                    "{} not created: reel never makes device nodes or FIFOs",
                    rec.kind
                ));
                self.add(rec);
                return Ok(());
            }
            EntryKind::Other => {
                rec.notes
                    .push(format!("tar entry type {ty:?} is not unpacked"));
                self.add(rec);
                return Ok(());
            }
            _ => {}
        }
        if let Err(reason) = self.parents(&comps)? {
            rec.notes.push(reason);
            self.add(rec);
            return Ok(());
        }
        let path = join(self.dest, &comps);
        let fresh = match self.clear_leaf(&path, rec.kind == EntryKind::Directory)? {
            Ok(f) => f,
            Err(reason) => {
                rec.notes.push(reason);
                self.add(rec);
                return Ok(());
            }
        };
        let special = mode & 0o7000;
        let strip_notes = |notes: &mut Vec<String>| {
            if special & 0o4000 != 0 {
                notes.push("setuid bit stripped".into());
            }
            if special & 0o2000 != 0 {
                notes.push("setgid bit stripped".into());
            }
            if special & 0o1000 != 0 {
                notes.push("sticky bit stripped".into());
            }
        };
        match rec.kind {
            EntryKind::Directory => {
                if fresh {
                    DirBuilder::new()
                        .mode(0o700)
                        .create(&path)
                        .map_err(|e| self.io("creating", &path, e))?;
                }
                rec.notes
                    .push("directory made 0700 (the mode recorded is in `mode`)".into());
                strip_notes(&mut rec.notes);
            }
            EntryKind::Symlink => {
                let target = link.clone().unwrap_or_default();
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)
                    .map_err(|e| self.io("creating symlink", &path, e))?;
                if target.first() == Some(&b'/') {
                    rec.notes
                        .push("absolute target: written as is, never followed".into());
                } else if escapes(&comps, &target) {
                    rec.notes.push(
                        "target climbs out of the directory with `..`: written as is, never followed"
                            .into(),
                    );
                }
            }
            EntryKind::HardLink => {
                let target = link.clone().unwrap_or_default();
                let tcomps = match components(&target) {
                    Ok(c) if !c.is_empty() => c,
                    Ok(_) => {
                        rec.notes.push("hard link to the root: refused".into());
                        self.add(rec);
                        return Ok(());
                    }
                    Err(reason) => {
                        rec.notes.push(format!("hard link target: {reason}"));
                        self.add(rec);
                        return Ok(());
                    }
                };
                match self.link_target(&tcomps)? {
                    Ok(src) => {
                        fs::hard_link(&src, &path)
                            .map_err(|e| self.io("creating hard link", &path, e))?;
                    }
                    Err(reason) => {
                        rec.notes.push(reason);
                        self.add(rec);
                        return Ok(());
                    }
                }
            }
            EntryKind::File => {
                let size = entry.size();
                if self.report.bytes.saturating_add(size) > self.limits.max_bytes {
                    return Err(EvidenceError::TooLarge {
                        checkpoint: self.checkpoint.to_owned(),
                        what: "bytes of file contents",
                        max: self.limits.max_bytes,
                    });
                }
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                    .map_err(|e| self.io("creating", &path, e))?;
                let mut reader = Hashing {
                    inner: (&mut entry).take(size),
                    hasher: Sha256::new(),
                };
                let n =
                    io::copy(&mut reader, &mut file).map_err(|source| EvidenceError::BadDiff {
                        checkpoint: self.checkpoint.to_owned(),
                        what: format!("contents of {}", rec.path),
                        source,
                    })?;
                if n < size {
                    return Err(EvidenceError::BadDiff {
                        checkpoint: self.checkpoint.to_owned(),
                        what: format!("contents of {}", rec.path),
                        source: io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            format!("{n} of {size} bytes"),
                        ),
                    });
                }
                self.report.bytes += n;
                rec.sha256 = Some(hex::encode(reader.hasher.finalize()));
                file.set_permissions(fs::Permissions::from_mode(mode & 0o777))
                    .map_err(|e| self.io("setting the mode of", &path, e))?;
                let _ = file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime));
                file.flush().map_err(|e| self.io("writing", &path, e))?;
                strip_notes(&mut rec.notes);
                if has_capabilities(&mut entry) {
                    rec.notes
                        .push("file capabilities (security.capability) not applied".into());
                }
            }
            _ => {
                rec.notes
                    .push(format!("{} entries are not unpacked", rec.kind));
                self.add(rec);
                return Ok(());
            }
        }
        if !fresh {
            rec.notes.push("already there (an earlier entry)".into());
        }
        rec.outcome = Outcome::Written;
        self.add(rec);
        Ok(())
    }

    /// The path of a hard link's target: a regular file already unpacked, reached without
    /// following a link.
    fn link_target(&self, comps: &[&[u8]]) -> Result<Result<PathBuf, String>, EvidenceError> {
        let mut p = self.dest.to_path_buf();
        for (i, c) in comps.iter().enumerate() {
            p.push(std::ffi::OsStr::from_bytes(c));
            let last = i + 1 == comps.len();
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Ok(Err(format!(
                        "hard link target `{}` goes through a symlink: refused",
                        lossy(&comps[..=i].join(&b'/'))
                    )))
                }
                Ok(m) if last && m.is_file() => return Ok(Ok(p)),
                Ok(m) if !last && m.is_dir() => {}
                Ok(_) => {
                    return Ok(Err(format!(
                        "hard link target `{}` is not a regular file unpacked here: refused",
                        lossy(&comps.join(&b'/'))
                    )))
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Ok(Err(format!(
                        "hard link target `{}` is not in the directory (only links inside it are made): refused",
                        lossy(&comps.join(&b'/'))
                    )))
                }
                Err(e) => return Err(self.io("examining", &p, e)),
            }
        }
        Ok(Err("empty hard link target: refused".into()))
    }
}

/// Whether a relative symlink target at `comps` climbs above the directory.
fn escapes(comps: &[&[u8]], target: &[u8]) -> bool {
    let mut depth = comps.len() as i64 - 1;
    for c in target.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

fn has_capabilities<R: Read>(entry: &mut tar::Entry<'_, R>) -> bool {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return false;
    };
    exts.flatten()
        .any(|e| e.key_bytes() == b"SCHILY.xattr.security.capability")
}

/// Unpacks the rootfs diff read from `diff` (plain or gzip tar; `None` when the checkpoint
/// has none) into `dest` (see the module's documentation), and reports the paths of
/// `deleted_files` (the bytes of `deleted.files`, a JSON array of paths). `checkpoint` names
/// the checkpoint in errors.
pub fn unpack_rootfs_diff(
    checkpoint: &Path,
    diff: Option<&mut dyn Read>,
    deleted_files: Option<&[u8]>,
    dest: &Path,
    limits: RootfsLimits,
) -> Result<RootfsReport, EvidenceError> {
    prepare_dest(dest)?;
    let mut u = Unpacker {
        checkpoint,
        dest,
        limits,
        report: RootfsReport {
            dest: dest.to_owned(),
            flavour: DiffFlavour::Absent,
            written: 0,
            refused: 0,
            reported: 0,
            bytes: 0,
            entries: Vec::new(),
            problems: Vec::new(),
        },
    };
    if let Some(diff) = diff {
        let bad = |what: &str, source| EvidenceError::BadDiff {
            checkpoint: checkpoint.to_owned(),
            what: what.to_string(),
            source,
        };
        let mut buffered = BufReader::new(diff);
        let head = buffered.fill_buf().map_err(|e| bad("its first bytes", e))?;
        let gzip = head.starts_with(&[0x1f, 0x8b]);
        let body: Box<dyn Read + '_> = if gzip {
            u.report.flavour = DiffFlavour::GzipTar;
            Box::new(flate2::bufread::MultiGzDecoder::new(buffered))
        } else {
            u.report.flavour = DiffFlavour::PlainTar;
            Box::new(buffered)
        };
        let mut tar = tar::Archive::new(body);
        let mut count = 0u64;
        for entry in tar.entries().map_err(|e| bad("its entries", e))? {
            let entry = entry.map_err(|e| bad("an entry header", e))?;
            count += 1;
            if count > limits.max_entries {
                return Err(EvidenceError::TooLarge {
                    checkpoint: checkpoint.to_owned(),
                    what: "entries",
                    max: limits.max_entries,
                });
            }
            u.entry(entry)?;
        }
    }
    if let Some(bytes) = deleted_files {
        deleted_paths(&mut u.report, bytes);
    }
    Ok(u.report)
}

/// Adds the paths of `deleted.files` to the report.
fn deleted_paths(report: &mut RootfsReport, bytes: &[u8]) {
    if bytes.len() as u64 > MAX_DELETED_FILES {
        report.problems.push(format!(
            "deleted.files is larger than {MAX_DELETED_FILES} bytes: not read"
        ));
        return;
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let paths: Vec<String> = match serde_json::from_slice(bytes) {
        Ok(p) => p,
        Err(e) => {
            report.problems.push(format!(
                "deleted.files is not a JSON array of paths ({e}): its deletions are not listed"
            ));
            return;
        }
    };
    for p in paths {
        report.reported += 1;
        report.entries.push(RootfsEntry {
            path: p,
            kind: EntryKind::Deleted,
            outcome: Outcome::Reported,
            mode: String::new(),
            uid: 0,
            gid: 0,
            size: 0,
            target: None,
            sha256: None,
            notes: vec!["deleted (deleted.files): not applied".into()],
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn header(path: &str, ty: EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        // Raw name bytes: `set_path` refuses `..` and absolute names, a hostile diff does not.
        let name = &mut h.as_gnu_mut().unwrap().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        h
    }

    fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, ty: EntryType, mode: u32, data: &[u8]) {
        let h = header(path, ty, mode, data.len() as u64);
        b.append(&h, data).unwrap();
    }

    fn add_link(b: &mut tar::Builder<Vec<u8>>, path: &str, ty: EntryType, target: &str) {
        let mut h = header(path, ty, 0o777, 0);
        h.set_link_name(target).unwrap_or_else(|_| {
            let l = &mut h.as_gnu_mut().unwrap().linkname;
            l[..target.len()].copy_from_slice(target.as_bytes());
        });
        h.set_cksum();
        b.append(&h, &[][..]).unwrap();
    }

    fn hostile() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        add(&mut b, "etc/ok", EntryType::Regular, 0o644, b"fine\n");
        add(&mut b, "../escape", EntryType::Regular, 0o644, b"x");
        add(&mut b, "a/../../escape2", EntryType::Regular, 0o644, b"x");
        add(&mut b, "/abs", EntryType::Regular, 0o644, b"x");
        add_link(&mut b, "lnk", EntryType::Symlink, "/etc");
        add(&mut b, "lnk/passwd", EntryType::Regular, 0o644, b"x");
        add_link(&mut b, "up", EntryType::Symlink, "../../..");
        add(&mut b, "suid", EntryType::Regular, 0o4755, b"#!\n");
        add(&mut b, "sgid", EntryType::Regular, 0o2755, b"#!\n");
        let mut dev = header("dev/sda", EntryType::Block, 0o600, 0);
        dev.set_device_major(8).unwrap();
        dev.set_device_minor(0).unwrap();
        dev.set_cksum();
        b.append(&dev, &[][..]).unwrap();
        add(&mut b, "fifo", EntryType::Fifo, 0o600, b"");
        add_link(&mut b, "hl_ok", EntryType::Link, "etc/ok");
        add_link(&mut b, "hl_out", EntryType::Link, "/etc/shadow");
        add_link(&mut b, "hl_via", EntryType::Link, "lnk/shadow");
        add(&mut b, "etc/.wh.gone", EntryType::Regular, 0o600, b"");
        add(&mut b, "var/.wh..wh..opq", EntryType::Regular, 0o600, b"");
        add(&mut b, "lnk", EntryType::Regular, 0o644, b"replaced\n");
        b.into_inner().unwrap()
    }

    fn find<'a>(r: &'a RootfsReport, path: &str) -> &'a RootfsEntry {
        r.entries
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("{path} not in {:#?}", r.entries))
    }

    #[test]
    fn hostile_entries_are_refused_and_reported() {
        let top = tempfile::tempdir().unwrap();
        let dest = top.path().join("out");
        let tar = hostile();
        let r = unpack_rootfs_diff(
            Path::new("x"),
            Some(&mut &tar[..]),
            Some(br#"["/etc/removed"]"#),
            &dest,
            RootfsLimits::default(),
        )
        .unwrap();
        assert_eq!(r.flavour, DiffFlavour::PlainTar);
        assert_eq!(fs::read(dest.join("etc/ok")).unwrap(), b"fine\n");
        for p in [
            "../escape",
            "a/../../escape2",
            "/abs",
            "lnk/passwd",
            "dev/sda",
            "fifo",
            "hl_out",
            "hl_via",
        ] {
            assert_eq!(find(&r, p).outcome, Outcome::Refused, "{p}");
        }
        assert!(!top.path().join("escape").exists());
        assert!(!dest.join("dev/sda").exists());
        assert!(!dest.join("fifo").exists());
        let suid = fs::metadata(dest.join("suid")).unwrap();
        assert_eq!(suid.mode() & 0o7777, 0o755);
        assert!(find(&r, "suid").notes.iter().any(|n| n.contains("setuid")));
        assert_eq!(
            fs::metadata(dest.join("sgid")).unwrap().mode() & 0o7777,
            0o755
        );
        assert!(find(&r, "up").notes.iter().any(|n| n.contains("climbs")));
        assert_eq!(
            fs::metadata(dest.join("hl_ok")).unwrap().ino(),
            fs::metadata(dest.join("etc/ok")).unwrap().ino()
        );
        assert_eq!(find(&r, "/etc/gone").kind, EntryKind::Deleted);
        assert_eq!(find(&r, "/var").kind, EntryKind::Opaque);
        assert_eq!(find(&r, "/etc/removed").outcome, Outcome::Reported);
        // The symlink was replaced by a file, not written through.
        assert_eq!(fs::read(dest.join("lnk")).unwrap(), b"replaced\n");
        assert!(!dest.join(".wh.gone").exists() && !dest.join("etc/.wh.gone").exists());
        assert_eq!(
            fs::metadata(&dest).unwrap().mode() & 0o777,
            0o700,
            "the directory is private"
        );
    }

    #[test]
    fn gzip_diffs_are_read() {
        let tar = hostile();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let top = tempfile::tempdir().unwrap();
        let r = unpack_rootfs_diff(
            Path::new("x"),
            Some(&mut &gz[..]),
            None,
            &top.path().join("o"),
            RootfsLimits::default(),
        )
        .unwrap();
        assert_eq!(r.flavour, DiffFlavour::GzipTar);
        assert_eq!(find(&r, "/etc/gone").kind, EntryKind::Deleted);
    }

    #[test]
    fn a_non_empty_destination_is_refused() {
        let top = tempfile::tempdir().unwrap();
        fs::write(top.path().join("x"), b"").unwrap();
        let e = unpack_rootfs_diff(
            Path::new("x"),
            None,
            None,
            top.path(),
            RootfsLimits::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
    }

    #[test]
    fn limits_hold() {
        let tar = hostile();
        let top = tempfile::tempdir().unwrap();
        let e = unpack_rootfs_diff(
            Path::new("x"),
            Some(&mut &tar[..]),
            None,
            &top.path().join("o"),
            RootfsLimits {
                max_entries: 3,
                max_bytes: 1 << 20,
            },
        )
        .unwrap_err();
        assert!(matches!(e, EvidenceError::TooLarge { .. }), "{e}");
    }
}
