//! [`CheckpointSource`]: the one place that opens a checkpoint and reads its members.
//!
//! A checkpoint comes as a plain tar (the store's `<id>.tar`, read in place by seeking to
//! member offsets), a zstd tar (reel's exports, reached frame by frame through their seek
//! table, see [`super::zstd_seek`]), or an unpacked directory. Archives of Podman, CRI-O,
//! containerd and the kubelet have the same layout without `reel-manifest.json`: they are
//! read all the same and reported unverified.
//!
//! Archives come from compromised containers. The tar headers are walked by reel itself:
//! a member with an absolute path or `..`, a link, a device or a FIFO is refused with its name
//! before anything is read; a member running past the end of the archive is a truncation
//! naming the member; header checksums are checked. Nothing is ever written into the
//! checkpoint or extracted anywhere.
//!
//! Each member read whole ([`CheckpointSource::read`], [`CheckpointSource::reader`]) is
//! hashed as it is read and checked against the manifest: a mismatch is an error naming the
//! member, unless verification is off (`--no-verify`), when it is recorded in
//! [`Verification::mismatched`]. Reads of a part of a member ([`CheckpointSource::read_range`],
//! the pages) cannot be checked against a whole-member digest and are listed in
//! [`Verification::read_in_part`].

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use super::pages::DEFAULT_PAGE_SIZE;
use super::zstd_seek::{ReadAt, SeekableZstd};
use super::InspectError;
use crate::archive::read_up_to;
use crate::archive::{
    DigestKind, Digests, Manifest, CHECKPOINT_DIR, MANIFEST_NAME, MAX_MANIFEST_BYTES, ZSTD_MAGIC,
};

/// The most members reel indexes in one archive.
pub const MAX_MEMBERS: usize = 1 << 20;
/// The longest member name (GNU long name or PAX path) reel accepts.
const MAX_NAME: u64 = 64 << 10;
/// The largest PAX extended header reel reads.
const MAX_PAX: u64 = 1 << 20;

/// How the checkpoint is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// A plain tar, read in place.
    Tar,
    /// A zstd tar with reel's seek table: single members are reached frame by frame.
    TarZstSeekable,
    /// A zstd tar without a seek table: frames found by one pass.
    TarZst,
    /// An unpacked directory.
    Directory,
}

/// One member of the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    /// Its name (`checkpoint/core-1.img`, `config.dump`, ...).
    pub name: String,
    /// Content size in bytes.
    pub size: u64,
    /// Where its content starts in the (decompressed) archive; 0 in a directory.
    #[serde(skip)]
    pub offset: u64,
    /// Whether it is a directory.
    pub is_dir: bool,
}

/// What was checked of the members read so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Whether the checkpoint has a reel manifest (else nothing can be verified).
    pub manifest: bool,
    /// Whether mismatches stop reading.
    pub enforced: bool,
    /// Members read whole and found to match the manifest.
    pub verified: Vec<String>,
    /// Members read whole that did not match (only when not enforced).
    pub mismatched: Vec<String>,
    /// Members read whole that the manifest does not list (only when not enforced).
    pub not_in_manifest: Vec<String>,
    /// Members of which only parts were read (pages): not checkable by a whole-member digest.
    pub read_in_part: Vec<String>,
}

impl Verification {
    /// `verified`, `unverified` (no manifest, or verification off) or `MISMATCH`.
    pub fn verdict(&self) -> &'static str {
        if !self.mismatched.is_empty() || !self.not_in_manifest.is_empty() {
            "MISMATCH"
        } else if self.manifest && self.enforced {
            "verified"
        } else {
            "unverified"
        }
    }
}

/// Options of [`CheckpointSource::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceOptions {
    /// Check every member read against the manifest and stop on a mismatch.
    pub verify: bool,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions { verify: true }
    }
}

enum Backing {
    Tar(File),
    Zstd(SeekableZstd),
    Dir(PathBuf),
}

/// An opened checkpoint (see the module's documentation).
pub struct CheckpointSource {
    path: PathBuf,
    backing: Backing,
    layout: Layout,
    members: BTreeMap<String, Member>,
    manifest: Option<Manifest>,
    /// Each member's recorded digest of kind `kind`.
    digests: BTreeMap<String, String>,
    kind: DigestKind,
    verify: bool,
    record: Mutex<Verification>,
}

impl std::fmt::Debug for CheckpointSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSource")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("members", &self.members.len())
            .finish()
    }
}

/// Resolves what the user named: an existing path, else a checkpoint id in the store at
/// `store` (`<store>/<id>.tar`), as the other verbs do.
pub fn resolve(arg: &str, store: &Path) -> Result<PathBuf, InspectError> {
    let as_path = PathBuf::from(arg);
    if as_path.exists() || arg.contains('/') {
        return Ok(as_path);
    }
    if crate::store::validate_id(arg).is_ok() {
        let p = store.join(format!("{arg}.tar"));
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(InspectError::NotFound {
        arg: arg.to_owned(),
        store: store.to_owned(),
    })
}

impl CheckpointSource {
    /// Opens the checkpoint at `path`: an archive file (`.tar`, `.tar.zst`) or an unpacked
    /// directory. Indexes the members (refusing unsafe ones) and reads the manifest if any
    /// (the manifest itself can only be checked by `reel verify` against the archive's
    /// `.sha256`).
    pub fn open(path: &Path, opts: SourceOptions) -> Result<CheckpointSource, InspectError> {
        let meta = std::fs::metadata(path).map_err(|e| InspectError::io("opening", path, e))?;
        let (backing, layout, members) = if meta.is_dir() {
            let members = index_dir(path)?;
            (Backing::Dir(path.to_owned()), Layout::Directory, members)
        } else {
            let file = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| InspectError::io("opening", path, e))?;
            let len = meta.len();
            if len == 0 {
                return Err(InspectError::Empty {
                    path: path.to_owned(),
                });
            }
            let mut magic = [0u8; 4];
            let n = ReadAt::new(&file, 0, 4)
                .read(&mut magic)
                .map_err(|e| InspectError::io("reading", path, e))?;
            if n == 4 && magic == ZSTD_MAGIC {
                let z = SeekableZstd::open(file, path)?;
                let layout = if z.has_seek_table() {
                    Layout::TarZstSeekable
                } else {
                    Layout::TarZst
                };
                let total = z.len();
                let members = walk_tar(path, total, |off| z.reader_at(off))?;
                (Backing::Zstd(z), layout, members)
            } else if n >= 2 && magic[..2] == [0x1F, 0x8B] {
                return Err(InspectError::NotACheckpoint {
                    path: path.to_owned(),
                    reason: "it is gzip-compressed; reel reads plain and zstd tars (`gzip -d` it first, or re-export it with --compress)".into(),
                });
            } else {
                let members = walk_tar(path, len, |off| Ok(ReadAt::new(&file, off, u64::MAX)))?;
                (Backing::Tar(file), Layout::Tar, members)
            }
        };
        let mut members: BTreeMap<String, Member> =
            members.into_iter().map(|m| (m.name.clone(), m)).collect();
        if !members.keys().any(|k| k.starts_with(CHECKPOINT_DIR)) {
            return Err(InspectError::NotACheckpoint {
                path: path.to_owned(),
                reason: format!("there is no {CHECKPOINT_DIR} with CRIU images in it"),
            });
        }
        members.remove(CHECKPOINT_DIR);
        let mut src = CheckpointSource {
            path: path.to_owned(),
            backing,
            layout,
            members,
            manifest: None,
            digests: BTreeMap::new(),
            kind: DigestKind::Sha256,
            verify: opts.verify,
            record: Mutex::new(Verification {
                enforced: opts.verify,
                ..Verification::default()
            }),
        };
        if src.members.contains_key(MANIFEST_NAME) {
            let bytes = src.read_unverified(MANIFEST_NAME, MAX_MANIFEST_BYTES)?;
            let manifest: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| InspectError::BadMember {
                    member: MANIFEST_NAME.into(),
                    reason: format!("not a reel manifest: {e}"),
                })?;
            src.kind = manifest.digest_kind();
            src.digests = manifest
                .members
                .iter()
                .filter_map(|m| Some((m.name.clone(), m.digest(src.kind)?.to_owned())))
                .collect();
            src.manifest = Some(manifest);
            src.record
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .manifest = true;
        } else {
            tracing::warn!(path = %path.display(), "no reel manifest: the members cannot be verified");
        }
        Ok(src)
    }

    /// The checkpoint's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How it is stored.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// reel's manifest, when the checkpoint has one.
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// The page size CRIU's pagemaps count in: the manifest's `page_size` (or, from reel
    /// before it had that field, `dump_options.page_size`), else the architecture's default,
    /// [`DEFAULT_PAGE_SIZE`] (foreign archives). A recorded size that is no power of two from
    /// 4 KiB to 1 MiB is an error.
    pub fn page_size(&self) -> Result<u64, InspectError> {
        let recorded = self.manifest.as_ref().and_then(|m| {
            m.fields.page_size.or_else(|| {
                m.fields
                    .dump_options
                    .get("page_size")
                    .and_then(|v| v.as_u64())
            })
        });
        match recorded {
            None => Ok(DEFAULT_PAGE_SIZE),
            Some(p) if p.is_power_of_two() && (4096..=1 << 20).contains(&p) => Ok(p),
            Some(p) => Err(InspectError::BadMember {
                member: MANIFEST_NAME.into(),
                reason: format!(
                    "page_size {p} is not a page size (a power of two from 4096 to 1 MiB)"
                ),
            }),
        }
    }

    /// Every member (directories included), by name.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.get(name)
    }

    /// The names of the CRIU images (`checkpoint/` stripped) whose name starts with `prefix`.
    pub fn images_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.members
            .keys()
            .filter_map(|k| k.strip_prefix(CHECKPOINT_DIR))
            .filter(move |k| k.starts_with(prefix))
    }

    /// What was verified so far.
    pub fn verification(&self) -> Verification {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The whole member `name` (at most `max` bytes), hashed and checked against the manifest.
    pub fn read(&self, name: &str, max: u64) -> Result<Vec<u8>, InspectError> {
        let m = self.need(name)?;
        if m.size > max {
            return Err(InspectError::TooLarge {
                member: name.into(),
                size: m.size,
                max,
            });
        }
        let mut out = Vec::with_capacity(m.size.min(1 << 20) as usize);
        let mut r = self.reader(name)?;
        r.read_to_end(&mut out)
            .map_err(|e| self.member_err(name, e))?;
        Ok(out)
    }

    /// [`CheckpointSource::read`], `None` when there is no such member.
    pub fn read_optional(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, InspectError> {
        if !self.members.contains_key(name) {
            return Ok(None);
        }
        self.read(name, max).map(Some)
    }

    /// The member `name` as a stream, hashed as it is read: at its end, a digest that does not
    /// match the manifest is an error (an `io::Error` holding an [`InspectError`]; see
    /// [`CheckpointSource::member_err`]).
    pub fn reader(&self, name: &str) -> Result<MemberReader<'_>, InspectError> {
        let m = self.need(name)?.clone();
        let inner = self.raw(&m)?;
        Ok(MemberReader {
            src: self,
            name: m.name,
            size: m.size,
            read: 0,
            // Without a manifest there is nothing to check a digest against.
            hasher: self.manifest.is_some().then(|| self.kind.hasher()),
            inner,
        })
    }

    /// The member `name` as a stream its caller hashes itself (on another thread, so hashing
    /// and reading overlap): the caller gives the SHA-256 of the whole member to
    /// [`CheckpointSource::check_member_digest`] when [`CheckpointSource::wants_digest`].
    pub fn reader_unhashed(&self, name: &str) -> Result<MemberReader<'_>, InspectError> {
        let mut r = self.reader(name)?;
        r.hasher = None;
        Ok(r)
    }

    /// Whether members read whole are to be hashed and checked: there is a manifest and
    /// verification is on.
    pub fn wants_digest(&self) -> bool {
        self.manifest.is_some() && self.verify
    }

    /// The kind of digest members are checked with (BLAKE3 when the manifest records it).
    pub fn digest_kind(&self) -> DigestKind {
        self.kind
    }

    /// Checks the digest (hex, of [`CheckpointSource::digest_kind`]) of the whole member
    /// `name` against the manifest, as a [`MemberReader`] does at its end, and records it.
    pub fn check_member_digest(&self, name: &str, digest: String) -> Result<(), InspectError> {
        self.check_digest(name, digest)
    }

    /// The member `name` as a seekable stream, for readers that only need parts of it (the
    /// headers of `rootfs-diff.tar`): not verifiable, recorded as read in part.
    pub fn seekable(&self, name: &str) -> Result<MemberSeek<'_>, InspectError> {
        let m = self.need(name)?.clone();
        self.note_partial(name);
        Ok(MemberSeek {
            src: self,
            member: m,
            pos: 0,
            cur: None,
        })
    }

    fn note_partial(&self, name: &str) {
        let mut rec = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if !rec.read_in_part.iter().any(|n| n == name) {
            rec.read_in_part.push(name.to_owned());
        }
    }

    /// `len` bytes at `offset` of member `name` (a part of the pages): not verifiable.
    pub fn read_range(&self, name: &str, offset: u64, len: u64) -> Result<Vec<u8>, InspectError> {
        let m = self.need(name)?.clone();
        let end = offset.checked_add(len).filter(|&e| e <= m.size);
        if end.is_none() {
            return Err(InspectError::BadMember {
                member: name.into(),
                reason: format!(
                    "{len} bytes at offset {offset} asked for, the member has {} bytes",
                    m.size
                ),
            });
        }
        self.note_partial(name);
        let mut r = self.raw_at(&m, offset)?;
        let mut out = vec![0u8; len as usize];
        r.read_exact(&mut out)
            .map_err(|e| self.member_err(name, e))?;
        Ok(out)
    }

    /// Turns an error from a [`MemberReader`] into the [`InspectError`] it carries, or a
    /// read error naming the member.
    pub fn member_err(&self, name: &str, e: io::Error) -> InspectError {
        if e.get_ref().is_some_and(|i| i.is::<InspectError>()) {
            if let Some(Ok(inner)) = e.into_inner().map(|b| b.downcast::<InspectError>()) {
                return *inner;
            }
            return InspectError::BadMember {
                member: name.into(),
                reason: "unreadable".into(),
            };
        }
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return InspectError::Truncated {
                path: self.path.clone(),
                what: format!("member {name} ends early"),
            };
        }
        InspectError::ReadMember {
            path: self.path.clone(),
            member: name.into(),
            source: e,
        }
    }

    fn read_unverified(&self, name: &str, max: u64) -> Result<Vec<u8>, InspectError> {
        let m = self.need(name)?.clone();
        if m.size > max {
            return Err(InspectError::TooLarge {
                member: name.into(),
                size: m.size,
                max,
            });
        }
        let mut out = vec![0u8; m.size as usize];
        self.raw(&m)?
            .read_exact(&mut out)
            .map_err(|e| self.member_err(name, e))?;
        Ok(out)
    }

    fn need(&self, name: &str) -> Result<&Member, InspectError> {
        self.members
            .get(name)
            .filter(|m| !m.is_dir)
            .ok_or_else(|| InspectError::MissingMember {
                path: self.path.clone(),
                member: name.into(),
            })
    }

    fn raw(&self, m: &Member) -> Result<Box<dyn Read + '_>, InspectError> {
        self.raw_at(m, 0)
    }

    /// The member's bytes from `at` to its end.
    fn raw_at(&self, m: &Member, at: u64) -> Result<Box<dyn Read + '_>, InspectError> {
        let left = m.size - at.min(m.size);
        let err = |e| self.member_err(&m.name, e);
        Ok(match &self.backing {
            Backing::Tar(f) => Box::new(ReadAt::new(f, m.offset + at, left)),
            Backing::Zstd(z) => Box::new(z.reader_at(m.offset + at).map_err(err)?.take(left)),
            Backing::Dir(root) => {
                let p = root.join(&m.name);
                let f = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
                    .open(&p)
                    .map_err(err)?;
                let meta = f.metadata().map_err(err)?;
                if !meta.is_file() {
                    return Err(self.unsafe_member(&m.name, "not a regular file"));
                }
                Box::new(OwnedReadAt {
                    file: f,
                    pos: at,
                    left,
                })
            }
        })
    }

    fn unsafe_member(&self, name: &str, reason: &str) -> InspectError {
        InspectError::UnsafeMember {
            path: self.path.clone(),
            member: name.into(),
            reason: reason.into(),
        }
    }

    /// Records the digest of a member read whole; an error when it must stop.
    fn check_digest(&self, name: &str, actual: String) -> Result<(), InspectError> {
        let mut rec = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if self.manifest.is_none() || name == MANIFEST_NAME {
            return Ok(());
        }
        match self.digests.get(name) {
            Some(expected) if *expected == actual => {
                if !rec.verified.iter().any(|n| n == name) {
                    rec.verified.push(name.into());
                }
                Ok(())
            }
            Some(expected) => {
                if self.verify {
                    return Err(InspectError::DigestMismatch {
                        member: name.into(),
                        algorithm: self.kind.name(),
                        expected: expected.clone(),
                        actual,
                    });
                }
                tracing::warn!(
                    member = name,
                    "member does not match the manifest (--no-verify)"
                );
                rec.mismatched.push(name.into());
                Ok(())
            }
            None => {
                if self.verify {
                    return Err(InspectError::NotInManifest {
                        member: name.into(),
                    });
                }
                rec.not_in_manifest.push(name.into());
                Ok(())
            }
        }
    }
}

/// A file read with `pread` from an offset, owning the file.
struct OwnedReadAt {
    file: File,
    pos: u64,
    left: u64,
}

impl Read for OwnedReadAt {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut r = ReadAt::new(&self.file, self.pos, self.left);
        let n = r.read(buf)?;
        self.pos += n as u64;
        self.left -= n as u64;
        Ok(n)
    }
}

/// A member that can be read in parts ([`CheckpointSource::seekable`]).
pub struct MemberSeek<'a> {
    src: &'a CheckpointSource,
    member: Member,
    pos: u64,
    cur: Option<Box<dyn Read + 'a>>,
}

impl Read for MemberSeek<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.member.size {
            return Ok(0);
        }
        if self.cur.is_none() {
            let r = self
                .src
                .raw_at(&self.member, self.pos)
                .map_err(io::Error::other)?;
            self.cur = Some(r);
        }
        let n = match self.cur.as_mut() {
            Some(r) => r.read(buf)?,
            None => 0,
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for MemberSeek<'_> {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let new = match to {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            io::SeekFrom::End(d) => self.member.size.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        if new != self.pos {
            self.cur = None;
            self.pos = new;
        }
        Ok(new)
    }
}

/// A member as a stream, hashed as read and checked at its end ([`CheckpointSource::reader`]).
pub struct MemberReader<'a> {
    src: &'a CheckpointSource,
    name: String,
    size: u64,
    read: u64,
    hasher: Option<Digests>,
    inner: Box<dyn Read + 'a>,
}

impl MemberReader<'_> {
    /// The member's size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.read += n as u64;
        if n == 0 {
            if self.read < self.size {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} of {} bytes", self.read, self.size),
                ));
            }
            if let Some(h) = self.hasher.take() {
                let actual = h.finish().get(self.src.kind).unwrap_or_default().to_owned();
                self.src
                    .check_digest(&self.name, actual)
                    .map_err(io::Error::other)?;
            }
        }
        Ok(n)
    }
}

/// Checks a member name and returns it normalized (no leading `./`).
fn member_name(path: &Path, raw: &[u8], is_dir: bool) -> Result<String, InspectError> {
    let shown = String::from_utf8_lossy(raw).into_owned();
    let refuse = |reason: &str| InspectError::UnsafeMember {
        path: path.to_owned(),
        member: shown.clone(),
        reason: reason.into(),
    };
    let name = std::str::from_utf8(raw).map_err(|_| refuse("the name is not UTF-8"))?;
    if name.chars().any(|c| c.is_control()) {
        return Err(refuse("the name holds control characters"));
    }
    let p = Path::new(name);
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            Component::CurDir => {}
            Component::ParentDir => return Err(refuse("the name has a `..` component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("the name is an absolute path"))
            }
        }
    }
    if parts.is_empty() {
        return Ok(String::new());
    }
    let mut n = parts.join("/");
    if is_dir {
        n.push('/');
    }
    Ok(n)
}

/// Walks the tar headers of a stream of `len` bytes, reading each header at its offset
/// through `at` (so only headers are read, data is skipped).
fn walk_tar<'a, R: Read + 'a>(
    path: &Path,
    len: u64,
    at: impl Fn(u64) -> io::Result<R>,
) -> Result<Vec<Member>, InspectError> {
    let mut out: Vec<Member> = Vec::new();
    let mut off = 0u64;
    let mut long_name: Option<Vec<u8>> = None;
    let mut pax_name: Option<Vec<u8>> = None;
    let last = |out: &Vec<Member>| {
        out.last()
            .map(|m| format!("after member {}", m.name))
            .unwrap_or_else(|| "at the first header".into())
    };
    loop {
        if off >= len {
            return Err(InspectError::Truncated {
                path: path.to_owned(),
                what: format!("the tar ends without its end marker {}", last(&out)),
            });
        }
        let mut block = [0u8; 512];
        let got = {
            let mut r = at(off).map_err(|e| InspectError::io("reading", path, e))?;
            read_up_to(&mut r, &mut block).map_err(|e| InspectError::io("reading", path, e))?
        };
        if got < 512 {
            return Err(InspectError::Truncated {
                path: path.to_owned(),
                what: format!("a tar header at offset {off} is cut short {}", last(&out)),
            });
        }
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let h = tar::Header::from_byte_slice(&block);
        let sum: u32 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(b)
                }
            })
            .sum();
        if h.cksum().ok() != Some(sum) {
            return Err(InspectError::NotACheckpoint {
                path: path.to_owned(),
                reason: format!("no valid tar header at offset {off} ({})", last(&out)),
            });
        }
        let raw_name = pax_name
            .take()
            .or_else(|| long_name.take())
            .unwrap_or_else(|| h.path_bytes().into_owned());
        let size = h.entry_size().map_err(|e| InspectError::NotACheckpoint {
            path: path.to_owned(),
            reason: format!("tar header at offset {off}: {e}"),
        })?;
        let data = off + 512;
        let next = size
            .checked_add(511)
            .map(|s| s / 512 * 512)
            .and_then(|s| data.checked_add(s))
            .unwrap_or(u64::MAX);
        let shown = String::from_utf8_lossy(&raw_name).into_owned();
        if data.saturating_add(size) > len {
            return Err(InspectError::Truncated {
                path: path.to_owned(),
                what: format!(
                    "member {shown} announces {size} bytes, only {} are left",
                    len.saturating_sub(data)
                ),
            });
        }
        let refuse = |reason: String| InspectError::UnsafeMember {
            path: path.to_owned(),
            member: shown.clone(),
            reason,
        };
        use tar::EntryType as T;
        let ty = h.entry_type();
        match ty {
            T::GNULongName => {
                if size > MAX_NAME {
                    return Err(refuse(format!("a long name of {size} bytes")));
                }
                let mut r = at(data).map_err(|e| InspectError::io("reading", path, e))?;
                let mut n = vec![0u8; size as usize];
                r.read_exact(&mut n)
                    .map_err(|e| InspectError::io("reading", path, e))?;
                while n.last() == Some(&0) {
                    n.pop();
                }
                long_name = Some(n);
            }
            T::XHeader => {
                if size > MAX_PAX {
                    return Err(refuse(format!("a PAX header of {size} bytes")));
                }
                let mut r = at(data).map_err(|e| InspectError::io("reading", path, e))?;
                let mut x = vec![0u8; size as usize];
                r.read_exact(&mut x)
                    .map_err(|e| InspectError::io("reading", path, e))?;
                pax_name = pax_path(&x);
            }
            T::XGlobalHeader | T::GNULongLink => {}
            T::Regular | T::Continuous | T::Directory => {
                let is_dir = ty == T::Directory;
                let name = member_name(path, &raw_name, is_dir)?;
                if !name.is_empty() {
                    if out.len() >= MAX_MEMBERS {
                        return Err(refuse(format!("more than {MAX_MEMBERS} members")));
                    }
                    out.push(Member {
                        name,
                        size: if is_dir { 0 } else { size },
                        offset: data,
                        is_dir,
                    });
                }
            }
            T::Symlink => return Err(refuse("it is a symbolic link".into())),
            T::Link => return Err(refuse("it is a hard link".into())),
            T::Char | T::Block => return Err(refuse("it is a device".into())),
            T::Fifo => return Err(refuse("it is a FIFO".into())),
            other => {
                return Err(refuse(format!(
                    "unsupported tar entry type {:?}",
                    other.as_byte() as char
                )))
            }
        }
        off = next;
    }
    // Later members with the same name replace earlier ones in `tar x`: refuse duplicates
    // rather than guess which one is evidence.
    let mut seen = std::collections::HashSet::new();
    for m in &out {
        if !seen.insert(m.name.as_str()) {
            return Err(InspectError::UnsafeMember {
                path: path.to_owned(),
                member: m.name.clone(),
                reason: "the archive holds it twice".into(),
            });
        }
    }
    Ok(out)
}

/// The `path` record of a PAX extended header.
fn pax_path(x: &[u8]) -> Option<Vec<u8>> {
    let mut rest = x;
    while !rest.is_empty() {
        let sp = rest.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return None;
        }
        let rec = &rest[sp + 1..len];
        let rec = rec.strip_suffix(b"\n").unwrap_or(rec);
        if let Some(v) = rec.strip_prefix(b"path=") {
            return Some(v.to_vec());
        }
        rest = &rest[len..];
    }
    None
}

/// Lists an unpacked checkpoint: the top-level files and `checkpoint/`'s files. Symbolic
/// links, devices and FIFOs are refused by name; other directories are not looked into.
fn index_dir(root: &Path) -> Result<Vec<Member>, InspectError> {
    let cp = root.join(CHECKPOINT_DIR.trim_end_matches('/'));
    match std::fs::symlink_metadata(&cp) {
        Ok(m) if m.is_dir() => {}
        Ok(m) if m.file_type().is_symlink() => {
            return Err(InspectError::UnsafeMember {
                path: root.to_owned(),
                member: CHECKPOINT_DIR.into(),
                reason: "it is a symbolic link".into(),
            })
        }
        _ => {
            return Err(InspectError::NotACheckpoint {
                path: root.to_owned(),
                reason: format!("the directory has no {CHECKPOINT_DIR} with CRIU images in it"),
            })
        }
    }
    let mut out = vec![Member {
        name: CHECKPOINT_DIR.into(),
        size: 0,
        offset: 0,
        is_dir: true,
    }];
    for (dir, prefix) in [(root.to_owned(), ""), (cp, CHECKPOINT_DIR)] {
        let rd = std::fs::read_dir(&dir).map_err(|e| InspectError::io("listing", &dir, e))?;
        for e in rd {
            let e = e.map_err(|e| InspectError::io("listing", &dir, e))?;
            let name = format!("{prefix}{}", e.file_name().to_string_lossy());
            let ft = e
                .file_type()
                .map_err(|er| InspectError::io("listing", &dir, er))?;
            let refuse = |reason: &str| InspectError::UnsafeMember {
                path: root.to_owned(),
                member: name.clone(),
                reason: reason.into(),
            };
            if ft.is_symlink() {
                return Err(refuse("it is a symbolic link"));
            }
            if ft.is_block_device() || ft.is_char_device() {
                return Err(refuse("it is a device"));
            }
            if ft.is_fifo() || ft.is_socket() {
                return Err(refuse("it is a FIFO or socket"));
            }
            if ft.is_file() {
                let size = e
                    .metadata()
                    .map_err(|er| InspectError::io("reading", e.path(), er))?
                    .len();
                out.push(Member {
                    name: name.clone(),
                    size,
                    offset: 0,
                    is_dir: false,
                });
            }
            if out.len() > MAX_MEMBERS {
                return Err(refuse("too many members"));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
