//! [`Pending`]: a checkpoint being written under a temp name, committed by rename.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{validate_id, Store, StoreError, ARCHIVE_SUFFIX};
use crate::archive::{format_sidecar, SIDECAR_SUFFIX};
use crate::durable::{self, DurableError, DurableFile};

/// How many times [`Store::begin_new`] retries when another run takes the id first.
const BEGIN_ATTEMPTS: u32 = 16;

/// A committed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArchive {
    /// The checkpoint id.
    pub id: String,
    /// `<root>/<id>.tar`.
    pub path: PathBuf,
    /// `<root>/<id>.tar.sha256`.
    pub sidecar: PathBuf,
    /// Hex SHA-256 of the whole archive file.
    pub sha256: String,
    /// Archive size in bytes.
    pub size: u64,
}

/// A checkpoint being written: a [`Write`] over the temp file `.<id>.tar.partial-<pid>` (a
/// [`DurableFile`]) that hashes every byte, so [`commit`](Pending::commit) never reads the
/// archive back.
///
/// Write the archive through it (e.g. `ArchiveWriter::new(&mut pending, time)`), then commit.
/// Dropping it uncommitted removes the temp file.
#[derive(Debug)]
pub struct Pending {
    id: String,
    file: DurableFile,
    /// The running hash, unless the writer hashes for us ([`Pending::unhashed`]).
    hasher: Option<Sha256>,
    bytes: u64,
}

impl Store {
    /// Starts writing checkpoint `id`. Fails with [`StoreError::IdTaken`] if a finished or
    /// in-progress checkpoint (of any process) uses the id.
    pub fn begin(&self, id: &str) -> Result<Pending, StoreError> {
        validate_id(id)?;
        if self.id_in_use(id)? {
            return Err(StoreError::IdTaken { id: id.to_owned() });
        }
        let file = DurableFile::create(&self.archive_path(id)).map_err(|e| match e {
            DurableError::Exists { .. } => StoreError::IdTaken { id: id.to_owned() },
            e => StoreError::Durable(e),
        })?;
        let pending = Pending {
            id: id.to_owned(),
            file,
            hasher: Some(Sha256::new()),
            bytes: 0,
        };
        // Two runs may have picked the same id at once: whoever sees another's temp file
        // backs off (dropping `pending` removes ours). The commit's no-replace rename is the
        // final guard.
        let pid = std::process::id();
        if self.partials_of(id)?.iter().any(|(_, p)| *p != pid) {
            tracing::info!(id, "another run started the same checkpoint id");
            return Err(StoreError::IdTaken { id: id.to_owned() });
        }
        Ok(pending)
    }

    /// Starts a checkpoint for `pod` at `at` under a fresh id ([`Store::new_id`]), retrying
    /// with the next suffix when another run takes the id first.
    pub fn begin_new(&self, pod: &str, at: DateTime<Utc>) -> Result<Pending, StoreError> {
        let mut last = None;
        for _ in 0..BEGIN_ATTEMPTS {
            let id = self.new_id(pod, at)?;
            match self.begin(&id) {
                Err(StoreError::IdTaken { id }) => last = Some(id),
                other => return other,
            }
        }
        Err(StoreError::IdTaken {
            id: last.unwrap_or_default(),
        })
    }
}

impl Pending {
    /// The checkpoint id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The temp file being written.
    pub fn temp_path(&self) -> &Path {
        self.file.temp_path()
    }

    /// Where the archive will be after [`commit`](Pending::commit).
    pub fn final_path(&self) -> PathBuf {
        self.file.final_path().to_owned()
    }

    /// Does not hash what is written: whoever writes hashes it and passes the digest to
    /// [`Pending::commit_with`] (the export pipeline hashes every archive it writes once).
    pub fn unhashed(mut self) -> Pending {
        debug_assert_eq!(self.bytes, 0, "unhashed() after writing");
        self.hasher = None;
        self
    }

    /// Makes the checkpoint durable and visible: flush and fsync the temp file, write
    /// `<id>.tar.sha256` (`<hex>  <id>.tar`, 0600), then rename the temp file to `<id>.tar`
    /// without replacing anything (the commit point) and fsync the directory.
    pub fn commit(mut self) -> Result<StoredArchive, StoreError> {
        let sha256 = match self.hasher.take() {
            Some(h) => hex::encode(h.finalize()),
            None => {
                return Err(StoreError::io(
                    "committing",
                    self.file.temp_path(),
                    io::Error::other("an unhashed checkpoint needs commit_with"),
                ))
            }
        };
        self.commit_with(&sha256)
    }

    /// [`Pending::commit`] with the SHA-256 computed by the writer.
    pub fn commit_with(self, sha256: &str) -> Result<StoredArchive, StoreError> {
        let path = self.final_path();
        let file_name = format!("{}{ARCHIVE_SUFFIX}", self.id);
        let sidecar = durable::parent_dir(&path).join(format!("{file_name}{SIDECAR_SUFFIX}"));
        let content = format_sidecar(sha256, &file_name);
        let id = self.id.clone();
        let size = self.bytes;
        self.file
            .commit(Some((&sidecar, content.as_bytes())))
            .map_err(|e| match e {
                DurableError::Exists { .. } => StoreError::IdTaken { id: id.clone() },
                e => StoreError::Durable(e),
            })?;
        Ok(StoredArchive {
            id,
            path,
            sidecar,
            sha256: sha256.to_owned(),
            size,
        })
    }

    /// Removes the temp file now; says what was done.
    pub fn abort(self) -> Result<String, String> {
        self.file.abort()
    }
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
