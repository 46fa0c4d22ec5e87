//! [`ArchiveWriter`]: streams members into a tar, hashing each one as it is written.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use tar::{Builder, EntryType, Header};

use super::prehash::PrefixDigest;
use super::rootfs_diff::StagedRootfsDiff;
use super::{
    ArchiveError, ConfigDump, Digests, HashingReader, Manifest, ManifestFields, MemberDigest,
    RootfsDiffInfo, CHECKPOINT_DIR, CONFIG_DUMP, DELETED_FILES, MANIFEST_NAME,
    MANIFEST_SCHEMA_VERSION, REEL_VERSION, ROOTFS_DIFF_TAR, SPEC_DUMP,
};

const FILE_MODE: u32 = 0o600;
const DIR_MODE: u32 = 0o700;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing written yet.
    Start,
    /// `checkpoint/` written; images may follow.
    Images,
    /// A top-level member was written; no more images.
    Metadata,
}

/// Writes a checkpoint archive to any [`Write`], one member at a time.
///
/// Order, enforced: the `checkpoint/` directory and the images first
/// ([`append_images_dir`](Self::append_images_dir) or
/// [`append_image_file`](Self::append_image_file) / [`append_image_bytes`](Self::append_image_bytes)),
/// then top-level members, then [`finish`](Self::finish) appends the manifest. Each member's
/// SHA-256 is computed from the bytes as they stream into the tar; nothing is read back, and
/// the output never needs `Seek`, so `W` can be a zstd encoder or an upload stream.
///
/// Every member is owned by root (uid/gid 0), mode 0600 (the directory 0700), with the
/// checkpoint time as mtime. A source whose size changes while it is read is an error
/// ([`ArchiveError::FileChanged`]). After any error the output is unusable: drop the writer.
/// Dropped without `finish`, the output is not a valid reel archive (no manifest); the store
/// discards such temp files.
pub struct ArchiveWriter<W: Write> {
    builder: Builder<W>,
    mtime: u64,
    phase: Phase,
    members: Vec<MemberDigest>,
    names: HashSet<String>,
    rootfs: Option<RootfsDiffInfo>,
    prefixes: Vec<PrefixDigest>,
    /// The buffer members are copied through (allocated on first use).
    copy_buf: Vec<u8>,
}

impl<W: Write> ArchiveWriter<W> {
    /// A writer emitting to `out`; `checkpoint_time` becomes every member's mtime.
    pub fn new(out: W, checkpoint_time: DateTime<Utc>) -> Self {
        let mut builder = Builder::new(out);
        builder.follow_symlinks(false);
        ArchiveWriter {
            builder,
            mtime: u64::try_from(checkpoint_time.timestamp()).unwrap_or(0),
            phase: Phase::Start,
            members: Vec::new(),
            names: HashSet::new(),
            rootfs: None,
            prefixes: Vec::new(),
            copy_buf: Vec::new(),
        }
    }

    /// Hash states of files' first bytes, computed earlier (by a [`PreHasher`](super::PreHasher)
    /// while CRIU wrote them): a file appended by path that is still that file is hashed from
    /// where the state stops.
    pub fn use_prefix_digests(&mut self, prefixes: Vec<PrefixDigest>) {
        self.prefixes = prefixes;
    }

    /// Digests of the members written so far, in order.
    pub fn members(&self) -> &[MemberDigest] {
        &self.members
    }

    /// Appends the `checkpoint/` directory and every file of CRIU's images directory `dir`
    /// (sorted by name) as `checkpoint/<file>`. `dir` must be flat: anything but regular files
    /// is an error. Must come before any top-level member.
    pub fn append_images_dir(&mut self, dir: &Path) -> Result<(), ArchiveError> {
        let mut files = Vec::new();
        let rd = fs::read_dir(dir).map_err(|e| ArchiveError::io("listing", dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| ArchiveError::io("listing", dir, e))?;
            let path = entry.path();
            let ft = entry
                .file_type()
                .map_err(|e| ArchiveError::io("inspecting", &path, e))?;
            if !ft.is_file() {
                return Err(ArchiveError::NotARegularFile { path });
            }
            let name = entry
                .file_name()
                .into_string()
                .map_err(|_| ArchiveError::NonUtf8Path {
                    path: path.clone(),
                    what: "the archive's member names",
                })?;
            files.push((name, path));
        }
        files.sort();
        self.ensure_images_phase(CHECKPOINT_DIR)?;
        for (name, path) in files {
            self.append_image_file(&name, &path)?;
        }
        Ok(())
    }

    /// Appends one image file as `checkpoint/<name>` (writing `checkpoint/` first if needed).
    pub fn append_image_file(
        &mut self,
        name: &str,
        path: &Path,
    ) -> Result<&MemberDigest, ArchiveError> {
        let member = image_member_name(name)?;
        self.ensure_images_phase(&member)?;
        self.append_path(member, path)
    }

    /// Writes the `checkpoint/` directory entry now (images may follow).
    pub fn start_images(&mut self) -> Result<(), ArchiveError> {
        self.ensure_images_phase(CHECKPOINT_DIR)
    }

    /// Appends exactly `size` bytes of `reader` as the image `checkpoint/<name>`.
    pub fn append_image_reader<R: Read>(
        &mut self,
        name: &str,
        size: u64,
        reader: R,
    ) -> Result<&MemberDigest, ArchiveError> {
        let member = image_member_name(name)?;
        self.ensure_images_phase(&member)?;
        self.append_stream(member, size, reader, None, None)
    }

    /// Appends one image from memory as `checkpoint/<name>` (e.g. a generated `descriptors.json`).
    pub fn append_image_bytes(
        &mut self,
        name: &str,
        data: &[u8],
    ) -> Result<&MemberDigest, ArchiveError> {
        let member = image_member_name(name)?;
        self.ensure_images_phase(&member)?;
        self.append_stream(member, data.len() as u64, data, None, None)
    }

    /// Appends the file at `path` as the top-level member `name` (e.g. `stats-dump`, `dump.log`).
    pub fn append_file(&mut self, name: &str, path: &Path) -> Result<&MemberDigest, ArchiveError> {
        self.enter_metadata(name)?;
        self.append_path(name.to_owned(), path)
    }

    /// Appends `data` as the top-level member `name` (e.g. `spec.dump`, exactly as the runtime
    /// wrote it).
    pub fn append_bytes(&mut self, name: &str, data: &[u8]) -> Result<&MemberDigest, ArchiveError> {
        self.enter_metadata(name)?;
        self.append_stream(name.to_owned(), data.len() as u64, data, None, None)
    }

    /// Appends exactly `size` bytes from `reader` as the top-level member `name`. A reader that
    /// ends early is an error (the archive is then unusable).
    pub fn append_reader<R: Read>(
        &mut self,
        name: &str,
        size: u64,
        reader: R,
    ) -> Result<&MemberDigest, ArchiveError> {
        self.enter_metadata(name)?;
        self.append_stream(name.to_owned(), size, reader, None, None)
    }

    /// Appends `config.dump`.
    pub fn append_config_dump(
        &mut self,
        config: &ConfigDump,
    ) -> Result<&MemberDigest, ArchiveError> {
        let json = serde_json::to_vec_pretty(config).map_err(|source| ArchiveError::Json {
            what: CONFIG_DUMP,
            source,
        })?;
        self.append_bytes(CONFIG_DUMP, &json)
    }

    /// Appends `rootfs-diff.tar` and `deleted.files` from a staged diff and records its origin
    /// for the manifest.
    pub fn append_rootfs_diff(&mut self, diff: &StagedRootfsDiff) -> Result<(), ArchiveError> {
        self.append_file(ROOTFS_DIFF_TAR, &diff.diff_tar)?;
        let json = serde_json::to_vec(&diff.deleted).map_err(|source| ArchiveError::Json {
            what: DELETED_FILES,
            source,
        })?;
        self.append_bytes(DELETED_FILES, &json)?;
        self.rootfs = Some(diff.info.clone());
        Ok(())
    }

    /// Appends the manifest (last), ends the tar, flushes and returns the manifest and `W`.
    ///
    /// Fails if `checkpoint/`, `config.dump`, `spec.dump` or the rootfs diff are missing.
    pub fn finish(mut self, fields: ManifestFields) -> Result<(Manifest, W), ArchiveError> {
        self.require(&[ROOTFS_DIFF_TAR, DELETED_FILES])?;
        let rootfs_diff = self
            .rootfs
            .take()
            .ok_or(ArchiveError::MissingMember(ROOTFS_DIFF_TAR))?;
        self.finish_with(fields, rootfs_diff)
    }

    /// Appends the manifest of an archive a runtime wrote (whose members were copied in as
    /// received): `checkpoint/`, `config.dump` and `spec.dump` are required; the rootfs diff
    /// is whatever the runtime wrote, described by `rootfs_diff`.
    pub fn finish_received(
        self,
        fields: ManifestFields,
        rootfs_diff: RootfsDiffInfo,
    ) -> Result<(Manifest, W), ArchiveError> {
        self.require(&[])?;
        self.finish_with(fields, rootfs_diff)
    }

    fn require(&self, more: &[&'static str]) -> Result<(), ArchiveError> {
        for required in [CHECKPOINT_DIR, CONFIG_DUMP, SPEC_DUMP].iter().chain(more) {
            if !self.names.contains(*required) {
                return Err(ArchiveError::MissingMember(required));
            }
        }
        Ok(())
    }

    fn finish_with(
        mut self,
        fields: ManifestFields,
        rootfs_diff: RootfsDiffInfo,
    ) -> Result<(Manifest, W), ArchiveError> {
        let manifest = Manifest {
            schema_version: MANIFEST_SCHEMA_VERSION,
            reel_version: REEL_VERSION.to_owned(),
            fields,
            rootfs_diff,
            members: std::mem::take(&mut self.members),
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|source| ArchiveError::Json {
            what: MANIFEST_NAME,
            source,
        })?;
        let mut header = self.header(EntryType::Regular, FILE_MODE, json.len() as u64)?;
        self.builder
            .append_data(&mut header, MANIFEST_NAME, json.as_slice())
            .map_err(|e| write_err(MANIFEST_NAME, e))?;
        let mut out = self
            .builder
            .into_inner()
            .map_err(|e| write_err("(end of archive)", e))?;
        out.flush().map_err(|e| write_err("(end of archive)", e))?;
        Ok((manifest, out))
    }

    fn ensure_images_phase(&mut self, member: &str) -> Result<(), ArchiveError> {
        match self.phase {
            Phase::Images => Ok(()),
            Phase::Metadata => Err(ArchiveError::OutOfOrder {
                member: member.to_owned(),
                reason: "images must come before the top-level members",
            }),
            Phase::Start => {
                let mut header = self.header(EntryType::Directory, DIR_MODE, 0)?;
                self.builder
                    .append_data(&mut header, CHECKPOINT_DIR, io::empty())
                    .map_err(|e| write_err(CHECKPOINT_DIR, e))?;
                self.record(MemberDigest {
                    name: CHECKPOINT_DIR.to_owned(),
                    size: 0,
                    sha256: super::sha256_hex(&[]),
                    blake3: Some(super::blake3_hex(&[])),
                });
                self.phase = Phase::Images;
                Ok(())
            }
        }
    }

    fn enter_metadata(&mut self, name: &str) -> Result<(), ArchiveError> {
        validate_top_level_name(name)?;
        if self.phase == Phase::Start {
            return Err(ArchiveError::OutOfOrder {
                member: name.to_owned(),
                reason: "the checkpoint/ images must be appended first",
            });
        }
        self.phase = Phase::Metadata;
        Ok(())
    }

    fn append_path(&mut self, member: String, path: &Path) -> Result<&MemberDigest, ArchiveError> {
        let file = File::open(path).map_err(|e| ArchiveError::io("opening", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| ArchiveError::io("inspecting", path, e))?;
        if !meta.is_file() {
            return Err(ArchiveError::NotARegularFile {
                path: path.to_owned(),
            });
        }
        let prefix = self
            .prefixes
            .iter()
            .position(|k| k.path == path && k.applies_to(&meta))
            .map(|i| self.prefixes.swap_remove(i));
        self.append_stream(member, meta.len(), file, Some(path), prefix)
    }

    /// Appends `size` bytes of `reader` as `member`, hashing them on the way; with `prefix`,
    /// hashing resumes after the bytes it covers.
    fn append_stream<R: Read>(
        &mut self,
        member: String,
        size: u64,
        reader: R,
        source_path: Option<&Path>,
        prefix: Option<PrefixDigest>,
    ) -> Result<&MemberDigest, ArchiveError> {
        if self.names.contains(&member) {
            return Err(ArchiveError::DuplicateMember(member));
        }
        let mut header = self.header(EntryType::Regular, FILE_MODE, size)?;
        // `take` keeps a growing source from overrunning the size in the header.
        let mut hashing = match prefix {
            Some(p) => {
                let skip = p.hashed;
                HashingReader::resume(reader.take(size), p.into_hasher(), skip)
            }
            None => HashingReader::with(reader.take(size), Digests::member()),
        };
        let copied = if header.set_path(&member).is_ok() {
            header.set_cksum();
            copy_member(
                self.builder.get_mut(),
                &header,
                &mut hashing,
                &mut self.copy_buf,
            )
        } else {
            // A name too long for the header: tar writes the GNU long-name entry.
            self.builder.append_data(&mut header, &member, &mut hashing)
        };
        if let Err(e) = copied {
            return Err(match (hashing.read_failed(), source_path) {
                (true, Some(p)) => ArchiveError::io("reading", p, e),
                _ => write_err(&member, e),
            });
        }
        let (digests, mut actual, rest) = hashing.finish_all();
        if actual == size && grew(rest.into_inner()) {
            actual = size + 1; // at least
        }
        if actual != size {
            let path = source_path.map_or_else(|| member.clone().into(), Path::to_path_buf);
            tracing::error!(
                member,
                expected = size,
                actual,
                "member source changed size while archiving"
            );
            return Err(ArchiveError::FileChanged {
                path,
                expected: size,
                actual,
            });
        }
        Ok(self.record(MemberDigest {
            name: member,
            size,
            sha256: digests.sha256.unwrap_or_default(),
            blake3: digests.blake3,
        }))
    }

    fn record(&mut self, digest: MemberDigest) -> &MemberDigest {
        self.names.insert(digest.name.clone());
        self.members.push(digest);
        // Just pushed, so `last` is Some.
        &self.members[self.members.len() - 1]
    }

    fn header(&self, kind: EntryType, mode: u32, size: u64) -> Result<Header, ArchiveError> {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        h.set_size(size);
        h.set_username("root")
            .and_then(|()| h.set_groupname("root"))
            .map_err(|e| write_err("(header)", e))?;
        Ok(h)
    }
}

/// Bytes a member is copied by: large reads and writes, so the encoder behind sees few calls
/// (`tar::Builder` copies 8 KiB at a time).
const COPY_BYTES: usize = 1 << 20;

/// Writes `header`, the data of `data` and the padding to the next 512-byte block, as
/// `tar::Builder::append` does, through `buf`.
fn copy_member<W: Write, R: Read>(
    out: &mut W,
    header: &Header,
    data: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<()> {
    out.write_all(header.as_bytes())?;
    if buf.len() < COPY_BYTES {
        buf.resize(COPY_BYTES, 0);
    }
    let mut len: u64 = 0;
    loop {
        let n = match data.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        len += n as u64;
    }
    let rem = (len % 512) as usize;
    if rem != 0 {
        out.write_all(&[0u8; 512][..512 - rem])?;
    }
    Ok(())
}

/// Whether a source still has data after its announced size (it grew while being read).
pub(super) fn grew<R: Read>(mut rest: R) -> bool {
    let mut probe = [0u8; 1];
    matches!(rest.read(&mut probe), Ok(n) if n > 0)
}

fn write_err(member: &str, source: io::Error) -> ArchiveError {
    tracing::warn!(member, error = %source, "writing archive member failed");
    ArchiveError::Write {
        member: member.to_owned(),
        source,
    }
}

fn image_member_name(name: &str) -> Result<String, ArchiveError> {
    check_plain_name(name)?;
    Ok(format!("{CHECKPOINT_DIR}{name}"))
}

fn check_plain_name(name: &str) -> Result<(), ArchiveError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "not a file name"
    } else if name.contains('/') {
        "must not contain '/'"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(ArchiveError::InvalidMemberName {
        name: name.to_owned(),
        reason,
    })
}

fn validate_top_level_name(name: &str) -> Result<(), ArchiveError> {
    check_plain_name(name)?;
    let reason = if name.starts_with("checkpoint") {
        "names starting with 'checkpoint' are taken by checkpointctl"
    } else if name == MANIFEST_NAME {
        "the manifest is written by finish()"
    } else {
        return Ok(());
    };
    Err(ArchiveError::InvalidMemberName {
        name: name.to_owned(),
        reason,
    })
}
