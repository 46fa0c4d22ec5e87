//! An archive a runtime wrote (CRI-O's layout: the kubelet's and the CRI's checkpoints),
//! checked before reel takes it in.
//!
//! The archive comes from a runtime that may be compromised, or from a file on the node that
//! anyone with root there could have changed: it is read as hostile input. [`ReceivedArchive::open`]
//! walks its tar headers once, reading every byte (the archive's SHA-256 is computed on the
//! way), and accepts only:
//!
//! * a plain tar (not compressed), a regular file opened without following a symlink;
//! * directory entries named `checkpoint` and regular files named `checkpoint/<name>` (the
//!   CRIU images, flat) or `<name>` (top-level metadata), with an optional `./` prefix;
//!   no absolute paths, no `..`, no other directory, no links, devices or FIFOs, no control
//!   characters, no name twice, no `reel-manifest.json`;
//! * at most [`MAX_MEMBERS`] members, names of at most [`MAX_NAME`] bytes;
//! * with `checkpoint/inventory.img`, `config.dump` and `spec.dump` present.
//!
//! [`ReceivedArchive::write_to`] then copies each member into an [`ArchiveWriter`] in reel's
//! order (the images first, then the rest as received): each member is hashed as it streams,
//! so the manifest records exactly what the runtime wrote.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{
    ArchiveError, ArchiveWriter, HashingReader, Manifest, ManifestFields, RootfsDiffInfo,
    CONFIG_DUMP, DELETED_FILES, DUMP_LOG, MANIFEST_NAME, ROOTFS_DIFF_TAR, SPEC_DUMP, STATS_DUMP,
};

/// The most members a received archive may have.
pub const MAX_MEMBERS: usize = 100_000;
/// The longest member name accepted, in bytes.
pub const MAX_NAME: usize = 1024;
/// The most bytes of a small metadata member reel reads for itself (config.dump, stats-dump).
const MAX_METADATA: u64 = 4 << 20;

/// One member of a received archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMember {
    /// The name without a `./` prefix: `checkpoint/pages-1.img`, `config.dump`.
    pub name: String,
    pub size: u64,
    /// Where its content starts in the file.
    pub offset: u64,
}

/// A runtime's archive, checked.
#[derive(Debug)]
pub struct ReceivedArchive {
    path: PathBuf,
    file: File,
    /// Images (`checkpoint/<name>`), sorted by name.
    images: Vec<ReceivedMember>,
    /// Top-level members, in archive order.
    top: Vec<ReceivedMember>,
    /// SHA-256 of the file as received.
    pub sha256: String,
    /// Its size.
    pub size: u64,
}

fn bad(path: &Path, reason: impl Into<String>) -> ArchiveError {
    let reason = reason.into();
    tracing::warn!(path = %path.display(), %reason, "refusing a received archive");
    ArchiveError::BadReceived {
        path: path.to_owned(),
        reason,
    }
}

/// Where a valid member name goes.
enum Place {
    Dir,
    Image(String),
    Top(String),
}

fn place(raw: &[u8], is_dir: bool) -> Result<Place, String> {
    let name = std::str::from_utf8(raw).map_err(|_| "a member name is not UTF-8".to_string())?;
    if name.len() > MAX_NAME {
        return Err(format!("a member name is longer than {MAX_NAME} bytes"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "member {name:?} has control characters in its name"
        ));
    }
    if name.starts_with('/') {
        return Err(format!("member {name:?} has an absolute path"));
    }
    let trimmed = name.strip_prefix("./").unwrap_or(name);
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let parts: Vec<&str> = trimmed.split('/').collect();
    if parts
        .iter()
        .any(|p| *p == ".." || *p == "." || p.is_empty())
    {
        return Err(format!("member {name:?} is not a plain relative path"));
    }
    match (parts.as_slice(), is_dir) {
        (["checkpoint"], true) => Ok(Place::Dir),
        (["checkpoint", file], false) => Ok(Place::Image((*file).to_string())),
        ([file], false) if *file == MANIFEST_NAME => Err(format!(
            "member {name:?}: a runtime's archive cannot carry reel's manifest"
        )),
        ([file], false) if file.starts_with("checkpoint") => Err(format!(
            "member {name:?}: only the checkpoint/ directory may start with `checkpoint`"
        )),
        ([file], false) => Ok(Place::Top((*file).to_string())),
        (_, true) => Err(format!(
            "directory {name:?}: only checkpoint/ may be a directory"
        )),
        (_, false) => Err(format!(
            "member {name:?} is nested: images are flat under checkpoint/"
        )),
    }
}

impl ReceivedArchive {
    /// Opens and checks the archive at `path` (see the module documentation).
    pub fn open(path: &Path) -> Result<ReceivedArchive, ArchiveError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| ArchiveError::io("opening", path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| ArchiveError::io("inspecting", path, e))?;
        if !meta.is_file() {
            return Err(bad(path, "not a regular file"));
        }
        let mut magic = [0u8; 6];
        let n = (&file)
            .read(&mut magic)
            .map_err(|e| ArchiveError::io("reading", path, e))?;
        let compressed = match &magic[..n] {
            [0x28, 0xB5, 0x2F, 0xFD, ..] => Some("zstd"),
            [0x1F, 0x8B, ..] => Some("gzip"),
            [b'B', b'Z', b'h', ..] => Some("bzip2"),
            [0xFD, b'7', b'z', b'X', b'Z', 0] => Some("xz"),
            _ => None,
        };
        if let Some(kind) = compressed {
            return Err(bad(
                path,
                format!("{kind}-compressed; runtimes write a plain tar"),
            ));
        }
        (&file)
            .seek(SeekFrom::Start(0))
            .map_err(|e| ArchiveError::io("seeking in", path, e))?;

        let read_err = |e: io::Error| bad(path, format!("not a valid tar: {e}"));
        let mut hashing = HashingReader::new(&file);
        let mut images = Vec::new();
        let mut top = Vec::new();
        let mut names = HashSet::new();
        let mut has_dir = false;
        {
            let mut ar = tar::Archive::new(&mut hashing);
            for (i, entry) in ar.entries().map_err(read_err)?.enumerate() {
                if i >= MAX_MEMBERS {
                    return Err(bad(path, format!("more than {MAX_MEMBERS} members")));
                }
                let entry = entry.map_err(read_err)?;
                let kind = entry.header().entry_type();
                let is_dir = kind.is_dir();
                if kind.is_pax_global_extensions() {
                    continue;
                }
                let raw = entry.path_bytes().into_owned();
                if !(is_dir || kind.is_file() || kind.is_contiguous()) {
                    return Err(bad(
                        path,
                        format!(
                            "member {:?} is a {kind:?}: only files and the checkpoint/ directory are accepted",
                            String::from_utf8_lossy(&raw)
                        ),
                    ));
                }
                let member = |name: String| ReceivedMember {
                    name,
                    size: entry.size(),
                    offset: entry.raw_file_position(),
                };
                let placed = place(&raw, is_dir).map_err(|r| bad(path, r))?;
                let m = match placed {
                    Place::Dir => {
                        if has_dir {
                            return Err(bad(path, "checkpoint/ appears twice"));
                        }
                        has_dir = true;
                        continue;
                    }
                    Place::Image(f) => member(format!("checkpoint/{f}")),
                    Place::Top(f) => member(f),
                };
                if !names.insert(m.name.clone()) {
                    return Err(bad(path, format!("member {} appears twice", m.name)));
                }
                if m.name.starts_with("checkpoint/") {
                    images.push(m);
                } else {
                    top.push(m);
                }
            }
        }
        // Read to the end so the digest covers every byte of the file.
        io::copy(&mut hashing, &mut io::sink())
            .map_err(|e| ArchiveError::io("reading", path, e))?;
        let (sha256, size, _) = hashing.finish();
        for required in ["checkpoint/inventory.img", CONFIG_DUMP, SPEC_DUMP] {
            if !names.contains(required) {
                return Err(bad(
                    path,
                    format!("no {required}: not a container checkpoint archive"),
                ));
            }
        }
        images.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ReceivedArchive {
            path: path.to_owned(),
            file,
            images,
            top,
            sha256,
            size,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every member, images first (as reel writes them).
    pub fn members(&self) -> impl Iterator<Item = &ReceivedMember> {
        self.images.iter().chain(&self.top)
    }

    /// Whether a member is there.
    pub fn has(&self, name: &str) -> bool {
        self.members().any(|m| m.name == name)
    }

    /// A member's content, reading at most `limit` bytes of it (`None` when absent).
    pub fn read_member(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        let Some(m) = self.members().find(|m| m.name == name) else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        self.reader(m)?
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(|e| ArchiveError::io("reading", &self.path, e))?;
        Ok(Some(buf))
    }

    /// A small metadata member (bounded), e.g. `config.dump`.
    pub fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        self.read_member(name, MAX_METADATA)
    }

    fn reader(&self, m: &ReceivedMember) -> Result<impl Read + '_, ArchiveError> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(m.offset))
            .map_err(|e| ArchiveError::io("seeking in", &self.path, e))?;
        Ok(f.take(m.size))
    }

    /// What the manifest says about the rootfs diff: the runtime's, as received.
    pub fn rootfs_info(&self, runtime: &str) -> RootfsDiffInfo {
        let members: Vec<String> = [ROOTFS_DIFF_TAR, DELETED_FILES]
            .into_iter()
            .filter(|n| self.has(n))
            .map(str::to_string)
            .collect();
        RootfsDiffInfo::FromRuntime {
            runtime: runtime.to_string(),
            members,
        }
    }

    /// Copies every member into a reel archive written to `out` (images first, each member
    /// hashed as it streams), then the manifest with `fields`.
    pub fn write_to<W: Write>(
        &self,
        out: W,
        fields: ManifestFields,
        rootfs: RootfsDiffInfo,
    ) -> Result<(Manifest, W), ArchiveError> {
        let mut w = ArchiveWriter::new(out, fields.created);
        w.start_images()?;
        for m in &self.images {
            let name = m.name.trim_start_matches("checkpoint/");
            w.append_image_reader(name, m.size, self.reader(m)?)?;
        }
        for m in &self.top {
            w.append_reader(&m.name, m.size, self.reader(m)?)?;
        }
        w.finish_received(fields, rootfs)
    }
}

/// The CRIU version a `dump.log` names (`Version: 4.2.1 (gitid ...)` near its top).
pub fn criu_version_from_log(log: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(log);
    text.lines().take(50).find_map(|l| {
        let rest = l.split_once("Version: ")?.1;
        let v = rest.split_whitespace().next()?;
        v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            .then(|| v.to_string())
    })
}

/// The metadata members a received archive is expected to carry, for people.
pub const EXPECTED_TOP: &[&str] = &[CONFIG_DUMP, SPEC_DUMP, STATS_DUMP, DUMP_LOG];

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &[u8])]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            // Bypass the tar crate's own path checks: hostile archives do not use them.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
        f
    }

    fn good() -> Vec<(&'static str, tar::EntryType, &'static [u8])> {
        use tar::EntryType::*;
        vec![
            ("config.dump", Regular, b"{}"),
            ("checkpoint/", Directory, b""),
            ("checkpoint/pages-1.img", Regular, b"pages"),
            ("checkpoint/inventory.img", Regular, b"inv"),
            ("spec.dump", Regular, b"{}"),
            (
                "./dump.log",
                Regular,
                b"(00.000000) Version: 4.2.1 (gitid 0)\n",
            ),
        ]
    }

    #[test]
    fn accepts_the_crio_layout_and_reorders_images_first() {
        let f = tar_with(&good());
        let a = ReceivedArchive::open(f.path()).unwrap();
        let names: Vec<&str> = a.members().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "checkpoint/inventory.img",
                "checkpoint/pages-1.img",
                "config.dump",
                "spec.dump",
                "dump.log"
            ]
        );
        assert_eq!(a.metadata("config.dump").unwrap().unwrap(), b"{}");
        let log = a.metadata("dump.log").unwrap().unwrap();
        assert_eq!(criu_version_from_log(&log).as_deref(), Some("4.2.1"));
        assert_eq!(
            a.sha256,
            super::super::sha256_hex(&std::fs::read(f.path()).unwrap())
        );
    }

    #[test]
    fn refuses_hostile_members() {
        use tar::EntryType::*;
        let cases: Vec<(&str, tar::EntryType, &str)> = vec![
            ("../etc/passwd", Regular, "plain relative"),
            ("/etc/passwd", Regular, "absolute"),
            ("checkpoint/../../x", Regular, "plain relative"),
            ("checkpoint/sub/x.img", Regular, "nested"),
            ("checkpoint/link", Symlink, "Symlink"),
            ("checkpoint/hard", Link, "Link"),
            ("dev", Char, "Char"),
            ("fifo", Fifo, "Fifo"),
            ("other/", Directory, "only checkpoint/"),
            ("reel-manifest.json", Regular, "manifest"),
            ("checkpointx", Regular, "start with"),
            ("config.dump", Regular, "twice"),
        ];
        for (name, kind, want) in cases {
            let mut entries = good();
            entries.push((name, kind, b""));
            let f = tar_with(&entries);
            let e = ReceivedArchive::open(f.path()).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
        }
        let mut entries = good();
        entries.retain(|e| e.0 != "spec.dump");
        let f = tar_with(&entries);
        let e = ReceivedArchive::open(f.path()).unwrap_err().to_string();
        assert!(e.contains("spec.dump"), "{e}");
    }

    #[test]
    fn refuses_compressed_truncated_and_symlinked_files() {
        let dir = tempfile::tempdir().unwrap();
        let z = dir.path().join("z.tar");
        std::fs::write(&z, [0x28, 0xB5, 0x2F, 0xFD, 0, 0, 0]).unwrap();
        assert!(ReceivedArchive::open(&z)
            .unwrap_err()
            .to_string()
            .contains("zstd"));
        let f = tar_with(&good());
        let bytes = std::fs::read(f.path()).unwrap();
        let t = dir.path().join("t.tar");
        std::fs::write(&t, &bytes[..700]).unwrap();
        assert!(ReceivedArchive::open(&t).is_err());
        let l = dir.path().join("l.tar");
        std::os::unix::fs::symlink(f.path(), &l).unwrap();
        assert!(ReceivedArchive::open(&l).is_err());
        let g = dir.path().join("garbage.tar");
        std::fs::write(&g, vec![0x41u8; 4096]).unwrap();
        assert!(ReceivedArchive::open(&g).is_err());
    }
}
