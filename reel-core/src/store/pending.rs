//! [`Pending`]: a checkpoint being written under a temp name, committed by rename.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::cleanup::temp_name;
use super::{fsutil, validate_id, Store, StoreError, ARCHIVE_SUFFIX};
use crate::archive::{format_sidecar, HashingWriter, SIDECAR_SUFFIX};

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

/// A checkpoint being written: a [`Write`] over the temp file `.<id>.tar.partial-<pid>` that
/// hashes every byte, so [`commit`](Pending::commit) never reads the archive back.
///
/// Write the archive through it (e.g. `ArchiveWriter::new(&mut pending, time)`, possibly via a
/// compressor), then commit. Dropping it uncommitted removes the temp file.
#[derive(Debug)]
pub struct Pending {
    id: String,
    root: PathBuf,
    temp: PathBuf,
    out: Option<HashingWriter<BufWriter<File>>>,
}

impl Store {
    /// Starts writing checkpoint `id`. Fails with [`StoreError::IdTaken`] if a finished or
    /// in-progress checkpoint (of any process) uses the id.
    pub fn begin(&self, id: &str) -> Result<Pending, StoreError> {
        validate_id(id)?;
        if self.id_in_use(id)? {
            return Err(StoreError::IdTaken { id: id.to_owned() });
        }
        let pid = std::process::id();
        let temp = self
            .root()
            .join(temp_name(&format!("{id}{ARCHIVE_SUFFIX}"), pid));
        let file = match fsutil::create_private_file(&temp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::IdTaken { id: id.to_owned() })
            }
            Err(e) => return Err(StoreError::io("creating", &temp, e)),
        };
        let pending = Pending {
            id: id.to_owned(),
            root: self.root().to_owned(),
            temp,
            out: Some(HashingWriter::new(BufWriter::new(file))),
        };
        // Two runs may have picked the same id at once: whoever sees another's temp file
        // backs off (dropping `pending` removes ours). The commit's no-replace rename is the
        // final guard.
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
        &self.temp
    }

    /// Where the archive will be after [`commit`](Pending::commit).
    pub fn final_path(&self) -> PathBuf {
        self.root.join(format!("{}{ARCHIVE_SUFFIX}", self.id))
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.out.as_ref().map_or(0, HashingWriter::bytes)
    }

    /// Makes the checkpoint durable and visible: flush and fsync the temp file, write
    /// `<id>.tar.sha256` (`<hex>  <id>.tar`, 0600), then rename the temp file to `<id>.tar`
    /// without replacing anything (the commit point) and fsync the directory.
    pub fn commit(mut self) -> Result<StoredArchive, StoreError> {
        let out = self.out.take().ok_or_else(|| {
            StoreError::io(
                "committing",
                &self.temp,
                io::Error::other("already committed"),
            )
        })?;
        let (sha256, size, buffered) = out.finish();
        let file = buffered
            .into_inner()
            .map_err(|e| StoreError::io("writing", &self.temp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| StoreError::io("syncing", &self.temp, e))?;
        drop(file);

        let final_path = self.final_path();
        let file_name = format!("{}{ARCHIVE_SUFFIX}", self.id);
        let sidecar = self.root.join(format!("{file_name}{SIDECAR_SUFFIX}"));
        self.write_sidecar(&sidecar, &format_sidecar(&sha256, &file_name))?;

        if let Err(e) = fsutil::rename_noreplace(&self.temp, &final_path) {
            // Our sidecar must not describe someone else's archive.
            if let Err(e) = fs::remove_file(&sidecar) {
                tracing::warn!(path = %sidecar.display(), error = %e, "removing sidecar failed");
            }
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                StoreError::IdTaken {
                    id: self.id.clone(),
                }
            } else {
                StoreError::io("renaming into place", &self.temp, e)
            });
        }
        // Committed: from here on Drop must not remove anything.
        self.temp = PathBuf::new();
        fsutil::sync_dir(&self.root).map_err(|e| StoreError::io("syncing", &self.root, e))?;
        Ok(StoredArchive {
            id: self.id.clone(),
            path: final_path,
            sidecar,
            sha256,
            size,
        })
    }

    fn write_sidecar(&self, sidecar: &Path, content: &str) -> Result<(), StoreError> {
        let file_name = sidecar
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = self.root.join(temp_name(&file_name, std::process::id()));
        let result = (|| {
            let mut f = fsutil::create_private_file(&temp)
                .map_err(|e| StoreError::io("creating", &temp, e))?;
            f.write_all(content.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| StoreError::io("writing", &temp, e))?;
            fsutil::rename_noreplace(&temp, sidecar).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    StoreError::IdTaken {
                        id: self.id.clone(),
                    }
                } else {
                    StoreError::io("renaming into place", &temp, e)
                }
            })
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }
}

impl Write for Pending {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.out.as_mut() {
            Some(out) => out.write(buf),
            None => Err(io::Error::other("pending checkpoint already committed")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(out) => out.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.temp.as_os_str().is_empty() {
            return;
        }
        // Close before unlinking; buffered bytes are discarded with the file.
        drop(self.out.take());
        match fs::remove_file(&self.temp) {
            Ok(()) => {
                tracing::debug!(path = %self.temp.display(), "removed uncommitted checkpoint")
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.temp.display(), error = %e, "removing temp file failed")
            }
        }
    }
}
