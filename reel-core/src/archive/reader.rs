//! Reading archives: compression detection, the manifest, and a member index by seeking.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use super::{ArchiveError, Manifest, MANIFEST_NAME};

/// zstd's frame magic number, as the file's first bytes.
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The largest manifest reel will load (a manifest lists one line per member).
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// How an archive stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// A zstd-compressed tar.
    Zstd,
}

/// Reads the first bytes of `r`, detects the compression, and returns a reader that yields the
/// whole stream again (the peeked bytes first).
pub fn detect_compression<R: Read>(mut r: R) -> io::Result<(Compression, impl Read)> {
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut r, &mut magic)?;
    let kind = if got == magic.len() && magic == ZSTD_MAGIC {
        Compression::Zstd
    } else {
        Compression::None
    };
    let prefix = Cursor::new(magic).take(got as u64);
    Ok((kind, prefix.chain(r)))
}

/// Wraps `r` in a zstd decoder when it is zstd-compressed.
pub(crate) fn decoded<'a, R: Read + 'a>(r: R) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let (kind, r) = detect_compression(r)?;
    Ok(match kind {
        Compression::None => (kind, Box::new(r)),
        Compression::Zstd => (kind, Box::new(zstd::stream::read::Decoder::new(r)?)),
    })
}

/// One member found by [`index`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedMember {
    /// The member's name as stored.
    pub name: String,
    /// Content size.
    pub size: u64,
    /// Byte offset of the content in the archive file.
    pub data_offset: u64,
    /// Whether the entry is a directory.
    pub is_dir: bool,
}

/// Lists the members of an uncompressed archive file by walking the tar headers and seeking
/// over the data; a member's content is `size` bytes at `data_offset`.
pub fn index(path: &Path) -> Result<Vec<IndexedMember>, ArchiveError> {
    let file = match open_detect(path)? {
        (Compression::None, file) => file,
        (Compression::Zstd, _) => {
            return Err(ArchiveError::Compressed {
                path: path.to_owned(),
                what: "indexing members",
            })
        }
    };
    let read_err = |source| ArchiveError::Read {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(file);
    let mut out = Vec::new();
    for entry in archive.entries_with_seek().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        out.push(IndexedMember {
            name: String::from_utf8_lossy(&entry.path_bytes()).into_owned(),
            size: entry.size(),
            data_offset: entry.raw_file_position(),
            is_dir: entry.header().entry_type().is_dir(),
        });
    }
    Ok(out)
}

/// Reads the manifest of the archive file at `path`. Plain tars are walked by seeking over
/// member data; zstd-compressed ones have to be decompressed up to the manifest.
pub fn read_manifest(path: &Path) -> Result<Manifest, ArchiveError> {
    let file = match open_detect(path)? {
        (Compression::None, file) => file,
        (Compression::Zstd, file) => return manifest_from(file, path),
    };
    let read_err = |source| ArchiveError::Read {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries_with_seek().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        if entry.path_bytes().as_ref() == MANIFEST_NAME.as_bytes() {
            return parse_manifest(entry, path);
        }
    }
    Err(ArchiveError::NoManifest {
        path: path.to_owned(),
    })
}

/// Reads the manifest from an archive stream (plain or zstd), reading through the members.
pub fn read_manifest_from<R: Read>(r: R) -> Result<Manifest, ArchiveError> {
    manifest_from(r, Path::new("<stream>"))
}

fn manifest_from<R: Read>(r: R, path: &Path) -> Result<Manifest, ArchiveError> {
    let read_err = |source| ArchiveError::Read {
        path: path.to_owned(),
        source,
    };
    let (_, r) = decoded(r).map_err(read_err)?;
    let mut archive = tar::Archive::new(r);
    for entry in archive.entries().map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        if entry.path_bytes().as_ref() == MANIFEST_NAME.as_bytes() {
            return parse_manifest(entry, path);
        }
    }
    Err(ArchiveError::NoManifest {
        path: path.to_owned(),
    })
}

pub(crate) fn parse_manifest<R: Read>(entry: R, path: &Path) -> Result<Manifest, ArchiveError> {
    let mut buf = Vec::new();
    entry
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|source| ArchiveError::Read {
            path: path.to_owned(),
            source,
        })?;
    if buf.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(bad(path, format!("larger than {MAX_MANIFEST_BYTES} bytes")));
    }
    serde_json::from_slice(&buf).map_err(|e| bad(path, e.to_string()))
}

fn bad(path: &Path, reason: String) -> ArchiveError {
    tracing::warn!(path = %path.display(), %reason, "unusable manifest");
    ArchiveError::BadManifest {
        path: path.to_owned(),
        reason,
    }
}

/// Opens `path`, detects its compression and rewinds it.
pub(crate) fn open_detect(path: &Path) -> Result<(Compression, File), ArchiveError> {
    let mut file = File::open(path).map_err(|e| ArchiveError::io("opening", path, e))?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(|e| ArchiveError::io("reading", path, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| ArchiveError::io("seeking in", path, e))?;
    let kind = if n == magic.len() && magic == ZSTD_MAGIC {
        Compression::Zstd
    } else {
        Compression::None
    };
    Ok((kind, file))
}

/// Reads until `buf` is full or the input ends; the count read (short only at the end).
pub(crate) fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}
