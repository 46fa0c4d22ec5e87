//! A thin, private way to reach a checkpoint's members (a store `.tar` read in place, a
//! `.tar.zst` decoded as a stream, an unpacked directory). Stop-gap until the inspect
//! module's `CheckpointSource` is in; everything here goes through [`Checkpoint`] so it is
//! re-pointed in one place.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::archive::{self, Compression};

use super::EvidenceError;

/// One checkpoint, as given on the command line.
#[derive(Debug)]
pub(crate) struct Checkpoint {
    path: PathBuf,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Dir,
    Plain(Vec<archive::IndexedMember>),
    Zstd,
}

fn normalized(name: &str) -> &str {
    name.strip_prefix("./").unwrap_or(name)
}

impl Checkpoint {
    pub(crate) fn open(path: &Path) -> Result<Checkpoint, EvidenceError> {
        let meta = std::fs::metadata(path).map_err(|e| EvidenceError::Io {
            action: "opening checkpoint",
            path: path.to_owned(),
            source: e,
        })?;
        let kind = if meta.is_dir() {
            Kind::Dir
        } else {
            let mut f = File::open(path).map_err(|e| EvidenceError::Io {
                action: "opening checkpoint",
                path: path.to_owned(),
                source: e,
            })?;
            let mut magic = [0u8; 4];
            let n = f.read(&mut magic).unwrap_or(0);
            if n == 4 && magic == archive::ZSTD_MAGIC {
                Kind::Zstd
            } else {
                let members = archive::index(path).map_err(|e| EvidenceError::Read {
                    checkpoint: path.to_owned(),
                    what: "the member list".into(),
                    source: io::Error::other(e.to_string()),
                })?;
                Kind::Plain(members)
            }
        };
        Ok(Checkpoint {
            path: path.to_owned(),
            kind,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Calls `f` with the member `name` as a reader; `None` when there is no such member.
    pub(crate) fn with_member<T>(
        &self,
        name: &str,
        f: impl FnOnce(&mut dyn Read) -> Result<T, EvidenceError>,
    ) -> Result<Option<T>, EvidenceError> {
        let read_err = |source| EvidenceError::Read {
            checkpoint: self.path.clone(),
            what: format!("member {name}"),
            source,
        };
        match &self.kind {
            Kind::Dir => {
                let p = self.path.join(name);
                match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_file() => {}
                    Ok(_) => return Ok(None),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(read_err(e)),
                }
                let mut file = File::open(&p).map_err(read_err)?;
                f(&mut file).map(Some)
            }
            Kind::Plain(members) => {
                let Some(m) = members
                    .iter()
                    .find(|m| !m.is_dir && normalized(&m.name) == name)
                else {
                    return Ok(None);
                };
                let mut file = File::open(&self.path).map_err(read_err)?;
                file.seek(SeekFrom::Start(m.data_offset)).map_err(read_err)?;
                let mut r = file.take(m.size);
                f(&mut r).map(Some)
            }
            Kind::Zstd => {
                let file = File::open(&self.path).map_err(read_err)?;
                let (c, r) = archive::detect_compression(file).map_err(read_err)?;
                debug_assert_eq!(c, Compression::Zstd);
                let dec = zstd::stream::read::Decoder::new(r).map_err(read_err)?;
                let mut tar = tar::Archive::new(dec);
                for entry in tar.entries().map_err(read_err)? {
                    let mut entry = entry.map_err(read_err)?;
                    let found = normalized(&String::from_utf8_lossy(&entry.path_bytes()))
                        == name
                        && entry.header().entry_type().is_file();
                    if found {
                        return f(&mut entry).map(Some);
                    }
                }
                Ok(None)
            }
        }
    }

    /// The whole member `name`, when it is at most `max` bytes.
    pub(crate) fn read_member(
        &self,
        name: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, EvidenceError> {
        let path = self.path.clone();
        self.with_member(name, |r| {
            let mut buf = Vec::new();
            r.take(max + 1)
                .read_to_end(&mut buf)
                .map_err(|source| EvidenceError::Read {
                    checkpoint: path.clone(),
                    what: format!("member {name}"),
                    source,
                })?;
            if buf.len() as u64 > max {
                return Err(EvidenceError::Read {
                    checkpoint: path.clone(),
                    what: format!("member {name}"),
                    source: io::Error::other(format!("larger than {max} bytes")),
                });
            }
            Ok(buf)
        })
    }
}
