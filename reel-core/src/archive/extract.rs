//! Extracting members of an archive (plain or zstd tar) into a private directory, each one
//! checked against the manifest's SHA-256 as it is written.
//!
//! Archives come from compromised containers, so extraction is bounded and path-checked:
//!
//! * only the members the caller asks for are written, and only if they are regular files
//!   named `checkpoint/<flat name>` (written to `<dest>/checkpoint/<name>`) or a top-level name
//!   without `/` (written to `<dest>/<name>`); `.`, `..`, empty names and anything with a
//!   second `/` are refused, so no member can leave `dest`;
//! * files are created with `O_EXCL | O_NOFOLLOW`, mode 0600, in directories reel creates
//!   (0700): a member named twice, or a name planted as a symlink, is an error;
//! * the number of members and the bytes written are bounded ([`ExtractLimits`]);
//! * every written member's size and SHA-256 must match the manifest (the last member, read
//!   at the end of the same single pass); a member missing from the manifest, or a manifest
//!   that is missing or too large, fails the extraction.
//!
//! On error the caller removes `dest` (whatever was written is not trustworthy).

use std::collections::{HashMap, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::reader::{decoded, open_detect, parse_manifest, Compression};
use super::{
    ArchiveError, DigestKind, DigestValues, Digests, HashingWriter, Manifest, MemberDigest,
    CHECKPOINT_DIR, MANIFEST_NAME,
};

/// Bounds on what one extraction may write.
#[derive(Debug, Clone, Copy)]
pub struct ExtractLimits {
    /// Total bytes of the members written.
    pub max_bytes: u64,
    /// Members read (wanted or not).
    pub max_members: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits {
            max_bytes: 1 << 40,
            max_members: 1_000_000,
        }
    }
}

/// One member written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedMember {
    /// The member's name in the archive.
    pub name: String,
    /// Where it was written.
    pub path: PathBuf,
    pub size: u64,
}

/// What [`extract_members`] wrote, checked against the manifest.
#[derive(Debug, Clone)]
pub struct Extracted {
    pub manifest: Manifest,
    pub members: Vec<ExtractedMember>,
    /// Bytes written.
    pub bytes: u64,
}

impl Extracted {
    /// Where member `name` was written, if it was.
    pub fn path_of(&self, name: &str) -> Option<&Path> {
        self.members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.path.as_path())
    }
}

/// Where a member name goes under `dest`, or why it may not be written.
fn target_of(dest: &Path, name: &str) -> Result<PathBuf, &'static str> {
    let flat = |n: &str| -> Result<(), &'static str> {
        if n.is_empty() || n == "." || n == ".." || n.contains('/') || n.contains('\0') {
            Err("not a plain file name")
        } else {
            Ok(())
        }
    };
    match name.strip_prefix(CHECKPOINT_DIR) {
        Some(file) => {
            flat(file)?;
            Ok(dest.join("checkpoint").join(file))
        }
        None => {
            flat(name)?;
            Ok(dest.join(name))
        }
    }
}

/// Extracts the members `wanted` accepts from the archive file `archive` (plain or zstd tar)
/// into `dest` (created 0700 if missing; `dest/checkpoint/` for the images) and checks each
/// against the manifest. See the module documentation for what is refused.
pub fn extract_members(
    archive: &Path,
    dest: &Path,
    wanted: impl Fn(&str) -> bool,
    limits: ExtractLimits,
) -> Result<Extracted, ArchiveError> {
    let file = File::open(archive).map_err(|e| ArchiveError::io("opening", archive, e))?;
    extract_from(file, archive, dest, wanted, limits)
}

fn private_dir(path: &Path) -> Result<(), ArchiveError> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(ArchiveError::io("creating", path, e)),
    }
}

fn extract_from<R: Read>(
    r: R,
    archive: &Path,
    dest: &Path,
    wanted: impl Fn(&str) -> bool,
    limits: ExtractLimits,
) -> Result<Extracted, ArchiveError> {
    let read_err = |source| ArchiveError::Read {
        path: archive.to_owned(),
        source,
    };
    private_dir(dest)?;
    let (_, body) = decoded(r).map_err(read_err)?;
    let mut tar = tar::Archive::new(body);
    let mut written: Vec<(ExtractedMember, DigestValues)> = Vec::new();
    let entries = tar.entries().map_err(read_err)?;
    let (manifest, bytes) =
        walk_members(entries, archive, dest, wanted, limits, |mut entry, m| {
            let file = create_member(&m.path)?;
            // The manifest comes last: both digests, the one it is checked with chosen then.
            let (digests, got) = copy_hashed(&mut entry, file, m.size, &m.path, Digests::member())
                .map_err(|e| e.unwrap_or_else(|| read_err(io::ErrorKind::UnexpectedEof.into())))?;
            written.push((
                ExtractedMember {
                    name: m.name,
                    path: m.path,
                    size: got,
                },
                digests,
            ));
            Ok(got)
        })?;
    let listed = Listed::of(&manifest);
    for (m, digests) in &written {
        listed.check(archive, &m.name, m.size, digests)?;
    }
    Ok(Extracted {
        manifest,
        members: written.into_iter().map(|(m, _)| m).collect(),
        bytes,
    })
}

/// A member [`stage_members`] left to be copied later (by [`Staged::spawn_pending`]): `size`
/// bytes at `offset` in the archive, to `path`, whose digest must be `digest`.
#[derive(Debug, Clone)]
pub struct PendingMember {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    offset: u64,
    /// The manifest's digest of it, of [`Staged`]'s kind.
    digest: String,
}

/// What [`stage_members`] did: `extracted` lists the members written and checked so far (its
/// manifest is the archive's); `pending` the ones left to copy, each already known to the
/// manifest with its size.
#[derive(Debug)]
pub struct Staged {
    pub extracted: Extracted,
    pub pending: Vec<PendingMember>,
    /// The digest the members are checked with.
    kind: DigestKind,
    archive: PathBuf,
    file: File,
}

/// Like [`extract_members`], for an uncompressed archive file, without reading it front to
/// back: the headers are walked by seeking (so the manifest, the last member, is known first),
/// every wanted member is checked against the manifest's names and sizes before anything is
/// written, the members `defer` does not select are copied and checked against their SHA-256
/// now, and the ones it selects are left in [`Staged::pending`] for [`Staged::spawn_pending`]
/// to copy and check on other threads while the caller goes on. Same refusals as
/// [`extract_members`] (a member named twice is refused before anything is written).
/// `Ok(None)` when the archive is compressed (it can only be read front to back).
pub fn stage_members(
    archive: &Path,
    dest: &Path,
    wanted: impl Fn(&str) -> bool,
    defer: impl Fn(&str) -> bool,
    limits: ExtractLimits,
) -> Result<Option<Staged>, ArchiveError> {
    let file = match open_detect(archive)? {
        (Compression::None, f) => f,
        (Compression::Zstd, _) => return Ok(None),
    };
    let read_err = |source| ArchiveError::Read {
        path: archive.to_owned(),
        source,
    };
    private_dir(dest)?;
    // (name, where to, offset, size), in archive order.
    let mut chosen: Vec<(String, PathBuf, u64, u64)> = Vec::new();
    let (manifest, bytes) = {
        let mut tar = tar::Archive::new(&file);
        let entries = tar.entries_with_seek().map_err(read_err)?;
        walk_members(entries, archive, dest, wanted, limits, |entry, m| {
            chosen.push((m.name, m.path, entry.raw_file_position(), m.size));
            Ok(m.size)
        })?
    };
    let listed = Listed::of(&manifest);
    let kind = listed.kind;
    let mut members = Vec::new();
    let mut pending = Vec::new();
    for (name, path, offset, size) in chosen {
        let digest = listed.get(archive, &name)?;
        if digest.size != size {
            return Err(bad(
                archive,
                format!(
                    "member {name} does not match the manifest (size {size} vs {})",
                    digest.size
                ),
            ));
        }
        if defer(&name) {
            pending.push(PendingMember {
                digest: digest.digest(kind).unwrap_or_default().to_owned(),
                name,
                path,
                size,
                offset,
            });
            continue;
        }
        let got = copy_member(&file, archive, offset, size, &path, kind, None)?;
        listed.check(archive, &name, size, &got)?;
        members.push(ExtractedMember { name, path, size });
    }
    Ok(Some(Staged {
        extracted: Extracted {
            manifest,
            members,
            bytes,
        },
        pending,
        kind,
        archive: archive.to_owned(),
        file,
    }))
}

/// A member [`walk_members`] admitted: its name, where it goes, its size.
struct Admitted {
    name: String,
    path: PathBuf,
    size: u64,
}

/// The one walk over an archive's entries for [`extract_from`] and [`stage_members`]: at most
/// `limits.max_members` entries, the manifest parsed (once), each member `wanted` admitted
/// under `dest` (see [`admit`]; a name seen twice is refused) and handed to `take` with the
/// entry, which returns the bytes it counts against `limits`. Returns the manifest, which
/// must be there, and the bytes counted.
fn walk_members<'a, R: Read + 'a>(
    entries: tar::Entries<'a, R>,
    archive: &Path,
    dest: &Path,
    wanted: impl Fn(&str) -> bool,
    limits: ExtractLimits,
    mut take: impl FnMut(tar::Entry<'a, R>, Admitted) -> Result<u64, ArchiveError>,
) -> Result<(Manifest, u64), ArchiveError> {
    let read_err = |source| ArchiveError::Read {
        path: archive.to_owned(),
        source,
    };
    let mut names = HashSet::new();
    let mut manifest = None;
    let mut bytes = 0u64;
    for (count, entry) in entries.enumerate() {
        let entry = entry.map_err(read_err)?;
        if count >= limits.max_members {
            return Err(bad(
                archive,
                format!("more than {} members", limits.max_members),
            ));
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if name == MANIFEST_NAME {
            if manifest.is_some() {
                return Err(bad(archive, format!("{MANIFEST_NAME} appears twice")));
            }
            manifest = Some(parse_manifest(entry, archive)?);
            continue;
        }
        if !wanted(&name) || (name == CHECKPOINT_DIR && entry.header().entry_type().is_dir()) {
            continue;
        }
        let size = entry.size();
        let is_file = entry.header().entry_type().is_file();
        let path = admit(archive, dest, &name, is_file, size, bytes, limits)?;
        if !names.insert(name.clone()) {
            return Err(bad(archive, format!("member {name} appears twice")));
        }
        bytes += take(entry, Admitted { name, path, size })?;
    }
    let manifest = manifest.ok_or_else(|| ArchiveError::NoManifest {
        path: archive.to_owned(),
    })?;
    Ok((manifest, bytes))
}

/// Reads `[pos, end)` of a file with `pread` (no shared file offset), failing once `stop` is
/// set.
struct Span<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
    stop: Option<&'a AtomicBool>,
}

impl Read for Span<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(io::Error::other("cancelled"));
        }
        let left = usize::try_from(self.end - self.pos).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Copies `size` bytes at `offset` of `file` into a new file at `path`; returns their digest
/// of kind `kind`.
fn copy_member(
    file: &File,
    archive: &Path,
    offset: u64,
    size: u64,
    path: &Path,
    kind: DigestKind,
    stop: Option<&AtomicBool>,
) -> Result<DigestValues, ArchiveError> {
    let out = create_member(path)?;
    let mut span = Span {
        file,
        pos: offset,
        end: offset.saturating_add(size),
        stop,
    };
    let (digests, _) = copy_hashed(&mut span, out, size, path, kind.hasher()).map_err(|e| {
        e.unwrap_or_else(|| ArchiveError::Read {
            path: archive.to_owned(),
            source: io::ErrorKind::UnexpectedEof.into(),
        })
    })?;
    Ok(digests)
}

/// The copies [`Staged::spawn_pending`] runs; dropped before [`PendingCopy::wait`], it stops
/// them and waits until they have.
#[derive(Debug)]
pub struct PendingCopy {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<Vec<ExtractedMember>, ArchiveError>>>,
}

impl PendingCopy {
    /// Waits for the copies; the members written, each checked against its SHA-256.
    pub fn wait(mut self) -> Result<Vec<ExtractedMember>, ArchiveError> {
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(r)) => r,
            _ => Err(ArchiveError::io(
                "copying",
                Path::new("<pending members>"),
                io::Error::other("the copying thread panicked"),
            )),
        }
    }
}

impl Drop for PendingCopy {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
    }
}

impl Staged {
    /// Copies the pending members on another thread (each hashed on yet another as it is
    /// written) and checks each against the manifest's SHA-256.
    pub fn spawn_pending(&mut self) -> Result<PendingCopy, ArchiveError> {
        let pending = std::mem::take(&mut self.pending);
        let file = self
            .file
            .try_clone()
            .map_err(|e| ArchiveError::io("opening", &self.archive, e))?;
        let (archive, kind) = (self.archive.clone(), self.kind);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("reel-copy".into())
            .spawn(move || {
                let mut done = Vec::new();
                for p in pending {
                    let got = copy_member(
                        &file,
                        &archive,
                        p.offset,
                        p.size,
                        &p.path,
                        kind,
                        Some(&flag),
                    )?;
                    let got = got.get(kind).unwrap_or_default();
                    if got != p.digest {
                        return Err(bad(
                            &archive,
                            format!(
                                "member {} does not match the manifest ({} {got} vs {})",
                                p.name,
                                kind.name(),
                                p.digest
                            ),
                        ));
                    }
                    done.push(ExtractedMember {
                        name: p.name,
                        path: p.path,
                        size: p.size,
                    });
                }
                Ok(done)
            })
            .map_err(|e| ArchiveError::io("copying", &self.archive, e))?;
        Ok(PendingCopy {
            stop,
            handle: Some(handle),
        })
    }
}

/// Checks a wanted member before anything of it is written: a regular file, a name that stays
/// inside `dest`, and within the byte bound (`bytes` written so far); returns where it goes
/// (creating `dest/checkpoint/` for images).
fn admit(
    archive: &Path,
    dest: &Path,
    name: &str,
    is_file: bool,
    size: u64,
    bytes: u64,
    limits: ExtractLimits,
) -> Result<PathBuf, ArchiveError> {
    if !is_file {
        return Err(bad(archive, format!("member {name} is not a regular file")));
    }
    let path = target_of(dest, name)
        .map_err(|why| bad(archive, format!("member name {name:?}: {why}")))?;
    if name.starts_with(CHECKPOINT_DIR) {
        private_dir(&dest.join("checkpoint"))?;
    }
    if bytes.saturating_add(size) > limits.max_bytes {
        return Err(bad(
            archive,
            format!(
                "the members to extract exceed {} bytes (at {name})",
                limits.max_bytes
            ),
        ));
    }
    Ok(path)
}

/// Creates a member's file: new (a name written twice, or planted as a symlink, fails), 0600.
fn create_member(path: &Path) -> Result<File, ArchiveError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| ArchiveError::io("creating", path, e))
}

/// The manifest's members by name (looked up once each: a hostile manifest may list many),
/// and the digest they are checked with.
struct Listed<'a> {
    by_name: HashMap<&'a str, &'a MemberDigest>,
    kind: DigestKind,
}

impl<'a> Listed<'a> {
    fn of(manifest: &'a Manifest) -> Self {
        Listed {
            by_name: manifest
                .members
                .iter()
                .map(|m| (m.name.as_str(), m))
                .collect(),
            kind: manifest.digest_kind(),
        }
    }

    /// The manifest's record of `name`; an error when it has none.
    fn get(&self, archive: &Path, name: &str) -> Result<&'a MemberDigest, ArchiveError> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| bad(archive, format!("member {name} is not in the manifest")))
    }

    /// Fails unless the manifest lists member `name` with this size and digest.
    fn check(
        &self,
        archive: &Path,
        name: &str,
        size: u64,
        got: &DigestValues,
    ) -> Result<(), ArchiveError> {
        let kind = self.kind;
        let got = got.get(kind).unwrap_or_default();
        let d = self.get(archive, name)?;
        if d.size != size || d.digest(kind) != Some(got) {
            return Err(bad(
                archive,
                format!(
                    "member {name} does not match the manifest (size {size} vs {}, {} {got} vs {})",
                    d.size,
                    kind.name(),
                    d.digest(kind).unwrap_or_default()
                ),
            ));
        }
        Ok(())
    }
}

/// Members at least this large are hashed on another thread while they are written.
const PARALLEL_HASH_BYTES: u64 = 8 << 20;
/// The chunk a member is copied in.
const CHUNK: usize = 1 << 20;

/// Copies `size` bytes of `entry` to `file`, hashing them with `hasher`; returns the digests
/// and the bytes copied. A large member is hashed on another thread (the other core) while this one reads
/// and writes. `Err(None)` when the entry ended early.
fn copy_hashed<R: Read>(
    entry: &mut R,
    mut file: File,
    size: u64,
    path: &Path,
    hasher: Digests,
) -> Result<(DigestValues, u64), Option<ArchiveError>> {
    let write_err = |e| Some(ArchiveError::io("writing", path, e));
    let read_chunk =
        |entry: &mut R, buf: &mut Vec<u8>, left: u64| -> Result<usize, Option<ArchiveError>> {
            let want = CHUNK.min(usize::try_from(left).unwrap_or(usize::MAX));
            buf.resize(want, 0);
            let mut got = 0;
            while got < want {
                match entry.read(&mut buf[got..]) {
                    Ok(0) => return Err(None),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(Some(ArchiveError::Read {
                            path: path.to_owned(),
                            source: e,
                        }))
                    }
                }
            }
            Ok(got)
        };
    if size < PARALLEL_HASH_BYTES {
        let mut out = HashingWriter::with(file, hasher);
        let mut buf = Vec::new();
        let mut left = size;
        while left > 0 {
            let n = read_chunk(entry, &mut buf, left)?;
            out.write_all(&buf[..n]).map_err(write_err)?;
            left -= n as u64;
        }
        let (digests, got, _) = out.finish_all();
        return Ok((digests, got));
    }
    let (to_hasher, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(4);
    let (give_back, spare) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut h = hasher;
            for c in chunks {
                h.update(&c);
                let _ = give_back.send(c);
            }
            h.finish()
        });
        let mut left = size;
        let copied = (|| {
            while left > 0 {
                let mut buf = spare.try_recv().unwrap_or_default();
                let n = read_chunk(entry, &mut buf, left)?;
                file.write_all(&buf[..n]).map_err(write_err)?;
                left -= n as u64;
                if to_hasher.send(buf).is_err() {
                    return Err(write_err(io::Error::other("the hashing thread ended")));
                }
            }
            Ok(())
        })();
        drop(to_hasher);
        let digests = hasher
            .join()
            .map_err(|_| write_err(io::Error::other("the hashing thread panicked")))?;
        copied.map(|()| (digests, size))
    })
}

fn bad(path: &Path, reason: String) -> ArchiveError {
    tracing::warn!(path = %path.display(), %reason, "refusing to extract");
    ArchiveError::BadManifest {
        path: path.to_owned(),
        reason,
    }
}

/// Removes what an extraction wrote (for callers that give up).
pub fn remove_extracted(dest: &Path) {
    if let Err(e) = fs::remove_dir_all(dest) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %dest.display(), error = %e, "cannot remove extracted files");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(members: &[(&str, &[u8])], manifest: Option<Vec<u8>>) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |name: &str, data: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            // Bypass the tar crate's own path checks: hostile archives do not use it.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, data).unwrap();
        };
        for (n, d) in members {
            add(n, d);
        }
        if let Some(m) = manifest {
            add(MANIFEST_NAME, &m);
        }
        b.into_inner().unwrap()
    }

    fn manifest_for(members: &[(&str, &[u8])]) -> Vec<u8> {
        let list: Vec<serde_json::Value> = members
            .iter()
            .map(|(n, d)| {
                serde_json::json!({"name": n, "size": d.len(), "sha256": super::super::sha256_hex(d)})
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({
            "schema_version": 2, "reel_version": "0", "checkpoint_id": "x",
            "created": "2026-01-01T00:00:00Z",
            "created_by": {"uid": 0, "user": "root"}, "node": "n", "criu_version": "4.2",
            "container": {"name": "c", "id": "i", "runtime": "runc"},
            "rootfs_diff": {"kind": "none", "reason": "test"},
            "members": list
        }))
        .unwrap()
    }

    fn run(data: Vec<u8>, dest: &Path) -> Result<Extracted, ArchiveError> {
        extract_from(
            &data[..],
            Path::new("t.tar"),
            dest,
            |n| n.starts_with("checkpoint/") || n == "rootfs-diff.tar" || n.contains(".."),
            ExtractLimits::default(),
        )
    }

    #[test]
    fn extracts_and_checks_digests() {
        let dir = tempfile::tempdir().unwrap();
        let members: &[(&str, &[u8])] = &[
            ("checkpoint/a.img", b"abc"),
            ("rootfs-diff.tar", b""),
            ("dump.log", b"x"),
        ];
        let got = run(tar_with(members, Some(manifest_for(members))), dir.path()).unwrap();
        assert_eq!(got.members.len(), 2);
        assert_eq!(
            fs::read(dir.path().join("checkpoint/a.img")).unwrap(),
            b"abc"
        );
        assert!(!dir.path().join("dump.log").exists());
    }

    #[test]
    fn large_members_are_hashed_alongside() {
        let big: Vec<u8> = (0..(9 << 20) + 123).map(|i| (i % 251) as u8).collect();
        let members: &[(&str, &[u8])] = &[("checkpoint/pages-1.img", &big)];
        let dir = tempfile::tempdir().unwrap();
        let got = run(tar_with(members, Some(manifest_for(members))), dir.path()).unwrap();
        assert_eq!(got.bytes, big.len() as u64);
        assert_eq!(
            fs::read(dir.path().join("checkpoint/pages-1.img")).unwrap(),
            big
        );
        let mut bad = big.clone();
        bad[5 << 20] ^= 1;
        let dir = tempfile::tempdir().unwrap();
        let tampered: &[(&str, &[u8])] = &[("checkpoint/pages-1.img", &bad)];
        let e = run(tar_with(tampered, Some(manifest_for(members))), dir.path()).unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
    }

    #[test]
    fn refuses_tampering_and_escapes() {
        let members: &[(&str, &[u8])] = &[("checkpoint/a.img", b"abc")];
        let good = manifest_for(members);
        // Content changed after the manifest was written.
        let dir = tempfile::tempdir().unwrap();
        let e = run(
            tar_with(&[("checkpoint/a.img", b"abd")], Some(good.clone())),
            dir.path(),
        );
        assert!(e.unwrap_err().to_string().contains("does not match"));
        // No manifest.
        let dir = tempfile::tempdir().unwrap();
        assert!(run(tar_with(members, None), dir.path()).is_err());
        // Names that would leave the target.
        for name in ["checkpoint/../x", "checkpoint/a/b", "../x", "checkpoint/.."] {
            let dir = tempfile::tempdir().unwrap();
            let m: &[(&str, &[u8])] = &[(name, b"abc")];
            let e = run(tar_with(m, Some(manifest_for(m))), dir.path()).unwrap_err();
            assert!(e.to_string().contains("member name"), "{name}: {e}");
            assert!(!dir.path().parent().unwrap().join("x").exists());
        }
        // A member not in the manifest.
        let dir = tempfile::tempdir().unwrap();
        let e = run(
            tar_with(
                &[("checkpoint/a.img", b"abc"), ("checkpoint/b.img", b"")],
                Some(good),
            ),
            dir.path(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not in the manifest"), "{e}");
        // Bounded.
        let dir = tempfile::tempdir().unwrap();
        let e = extract_from(
            &tar_with(members, Some(manifest_for(members)))[..],
            Path::new("t.tar"),
            dir.path(),
            |_| true,
            ExtractLimits {
                max_bytes: 2,
                max_members: 10,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("exceed"), "{e}");
    }

    /// `stage_members` on a file: the archive written to `dir/a.tar`.
    fn stage(
        data: &[u8],
        dir: &Path,
        defer: impl Fn(&str) -> bool,
    ) -> Result<Option<Staged>, ArchiveError> {
        let path = dir.join("a.tar");
        fs::write(&path, data).unwrap();
        stage_members(
            &path,
            &dir.join("out"),
            |n| n.starts_with("checkpoint/") || n == "rootfs-diff.tar",
            defer,
            ExtractLimits::default(),
        )
    }

    #[test]
    fn staged_members_are_checked_now_or_when_copied() {
        let big: Vec<u8> = (0..(9 << 20) + 5).map(|i| (i % 253) as u8).collect();
        let members: &[(&str, &[u8])] = &[
            ("checkpoint/core-1.img", b"core"),
            ("checkpoint/pages-1.img", &big),
            ("checkpoint/pages-2.img", b"small pages"),
            ("rootfs-diff.tar", b""),
            ("dump.log", b"x"),
        ];
        let is_pages = |n: &str| n.starts_with("checkpoint/pages-");
        let dir = tempfile::tempdir().unwrap();
        let mut staged = stage(
            &tar_with(members, Some(manifest_for(members))),
            dir.path(),
            is_pages,
        )
        .unwrap()
        .expect("a plain tar is staged");
        let now: Vec<&str> = staged
            .extracted
            .members
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(now, ["checkpoint/core-1.img", "rootfs-diff.tar"]);
        assert_eq!(staged.pending.len(), 2);
        let out = dir.path().join("out");
        assert!(!out.join("checkpoint/pages-1.img").exists());
        let copied = staged.spawn_pending().unwrap().wait().unwrap();
        assert_eq!(copied.len(), 2);
        assert_eq!(fs::read(out.join("checkpoint/pages-1.img")).unwrap(), big);
        assert_eq!(
            fs::read(out.join("checkpoint/pages-2.img")).unwrap(),
            b"small pages"
        );
        assert!(!out.join("dump.log").exists());

        // A pages image changed after the manifest: found when it is copied.
        let mut bad = big.clone();
        bad[7 << 20] ^= 1;
        let tampered: &[(&str, &[u8])] = &[
            ("checkpoint/core-1.img", b"core"),
            ("checkpoint/pages-1.img", &bad),
        ];
        let listed: &[(&str, &[u8])] = &[
            ("checkpoint/core-1.img", b"core"),
            ("checkpoint/pages-1.img", &big),
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut staged = stage(
            &tar_with(tampered, Some(manifest_for(listed))),
            dir.path(),
            is_pages,
        )
        .unwrap()
        .unwrap();
        let e = staged.spawn_pending().unwrap().wait().unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        // ... and any other member before anything is deferred.
        let dir = tempfile::tempdir().unwrap();
        let e = stage(
            &tar_with(tampered, Some(manifest_for(listed))),
            dir.path(),
            |_| false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not match"), "{e}");
        // A size that differs from the manifest's, a member named twice, no manifest: refused
        // before anything is copied.
        for (data, why) in [
            (
                tar_with(
                    &[("checkpoint/pages-1.img", b"abcd")],
                    Some(manifest_for(&[("checkpoint/pages-1.img", b"abc")])),
                ),
                "does not match",
            ),
            (
                tar_with(
                    &[("checkpoint/a.img", b"abc"), ("checkpoint/a.img", b"abc")],
                    Some(manifest_for(&[("checkpoint/a.img", b"abc")])),
                ),
                "twice",
            ),
            (tar_with(&[("checkpoint/a.img", b"abc")], None), "manifest"),
            (
                tar_with(
                    &[("checkpoint/../x", b"abc")],
                    Some(manifest_for(&[("checkpoint/../x", b"abc")])),
                ),
                "member name",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let e = stage(&data, dir.path(), is_pages).unwrap_err();
            assert!(e.to_string().contains(why), "{why}: {e}");
            assert!(!dir.path().join("out/checkpoint/pages-1.img").exists());
        }
        // A zstd archive can only be read front to back.
        let dir = tempfile::tempdir().unwrap();
        let z = zstd::encode_all(&tar_with(members, Some(manifest_for(members)))[..], 1).unwrap();
        assert!(stage(&z, dir.path(), is_pages).unwrap().is_none());
    }

    #[test]
    fn a_pending_copy_dropped_stops() {
        let big: Vec<u8> = vec![7u8; 64 << 20];
        let members: &[(&str, &[u8])] = &[("checkpoint/pages-1.img", &big)];
        let dir = tempfile::tempdir().unwrap();
        let mut staged = stage(
            &tar_with(members, Some(manifest_for(members))),
            dir.path(),
            |_| true,
        )
        .unwrap()
        .unwrap();
        let copy = staged.spawn_pending().unwrap();
        drop(copy);
        // Stopped and joined: nothing writes into the directory any more, so it can go.
        fs::remove_dir_all(dir.path().join("out")).unwrap();
        assert!(!dir.path().join("out").exists());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for data in [
            vec![0u8; 10],
            vec![0x28, 0xB5, 0x2F, 0xFD, 1, 2, 3],
            b"hello".repeat(200),
        ] {
            let dir = tempfile::tempdir().unwrap();
            assert!(run(data, dir.path()).is_err());
        }
    }
}
