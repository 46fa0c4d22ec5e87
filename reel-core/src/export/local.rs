//! Local destinations: a file committed by [`DurableFile`] (temp name, direct I/O, sidecar,
//! no-replace rename), the store's pending archive, and standard output.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{ExportError, Sink};
use crate::archive::{format_sidecar, sidecar_path};
use crate::durable::{self, DurableError, DurableFile};
use crate::store::Pending;

const BUF_BYTES: usize = 1 << 20;

/// Removes the temp files of exports whose process is gone from `dir` (only the temp names of
/// archives and their sidecars: `.<name>.tar[.zst][.sha256].partial-<pid>`); returns what was
/// removed.
pub fn clean_leftovers(dir: &Path) -> Vec<PathBuf> {
    durable::clean_leftovers(dir, |name, is_dir| {
        let base = name.strip_suffix(".sha256").unwrap_or(name);
        !is_dir && (base.ends_with(".tar") || base.ends_with(".tar.zst"))
    })
}

/// A file destination, renamed into place (never replacing a file) after `<name>.sha256`. Dropped
/// uncommitted, the temp file is removed.
pub struct LocalFile {
    file: Option<DurableFile>,
    final_path: PathBuf,
}

fn file_error(e: DurableError) -> ExportError {
    match e {
        DurableError::Exists { path } => ExportError::DestinationExists { path },
        DurableError::NoDirectory { path } => ExportError::NoDirectory { path },
        DurableError::Io { what, path, source } => ExportError::io(what, &path, source),
    }
}

impl LocalFile {
    /// Creates the temp file for `path`. Fails if `path` exists or its directory does not.
    pub fn create(path: &Path) -> Result<LocalFile, ExportError> {
        clean_leftovers(&durable::parent_dir(path));
        Ok(LocalFile {
            file: Some(DurableFile::create(path).map_err(file_error)?),
            final_path: path.to_owned(),
        })
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> Option<&Path> {
        self.file.as_ref().map(DurableFile::temp_path)
    }
}

fn committed() -> io::Error {
    io::Error::other("export already committed")
}

impl Write for LocalFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.as_mut().ok_or_else(committed)?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for LocalFile {
    fn destination(&self) -> String {
        self.final_path.display().to_string()
    }

    fn commit(&mut self, sha256: &str, _size: u64) -> Result<String, ExportError> {
        let file = self
            .file
            .take()
            .ok_or_else(|| ExportError::io("committing", &self.final_path, committed()))?;
        let name = self
            .final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sidecar = sidecar_path(&self.final_path);
        file.commit(Some((&sidecar, format_sidecar(sha256, &name).as_bytes())))
            .map_err(file_error)?;
        Ok(self.final_path.display().to_string())
    }

    fn abort(&mut self) -> Result<String, String> {
        match self.file.take() {
            Some(f) => f.abort(),
            None => Ok("nothing was left".into()),
        }
    }
}

/// The store as a destination (`reel create checkpoint`, and `--keep`): the pipeline hashes
/// the archive as it writes it, so the pending checkpoint does not hash it again.
pub struct StoreSink {
    pending: Option<Pending>,
    committed: Option<crate::store::StoredArchive>,
}

impl StoreSink {
    pub fn new(pending: Pending) -> StoreSink {
        StoreSink {
            pending: Some(pending.unhashed()),
            committed: None,
        }
    }

    /// The stored archive, once committed.
    pub fn stored(&self) -> Option<&crate::store::StoredArchive> {
        self.committed.as_ref()
    }
}

impl Write for StoreSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.as_mut().ok_or_else(committed)?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Sink for StoreSink {
    fn destination(&self) -> String {
        self.pending
            .as_ref()
            .map(|p| p.final_path().display().to_string())
            .unwrap_or_default()
    }

    fn commit(&mut self, sha256: &str, _size: u64) -> Result<String, ExportError> {
        let pending = self
            .pending
            .take()
            .ok_or_else(|| ExportError::io("committing", Path::new("store"), committed()))?;
        let stored = pending.commit_with(sha256)?;
        let dest = stored.path.display().to_string();
        self.committed = Some(stored);
        Ok(dest)
    }

    fn abort(&mut self) -> Result<String, String> {
        match self.pending.take() {
            Some(p) => p.abort(),
            None => Ok("nothing was left".into()),
        }
    }

    fn stored(&mut self) -> Option<crate::store::StoredArchive> {
        self.committed.take()
    }
}

/// Standard output: there is nothing to rename, so a consumer must check the SHA-256 printed
/// at the end (on standard error).
pub struct Stdout {
    out: BufWriter<io::Stdout>,
}

impl Stdout {
    pub fn new() -> Stdout {
        Stdout {
            out: BufWriter::with_capacity(BUF_BYTES, io::stdout()),
        }
    }
}

impl Default for Stdout {
    fn default() -> Self {
        Stdout::new()
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Sink for Stdout {
    fn destination(&self) -> String {
        "-".into()
    }
    fn commit(&mut self, _sha256: &str, _size: u64) -> Result<String, ExportError> {
        self.out
            .flush()
            .map_err(|e| ExportError::io("writing", Path::new("<stdout>"), e))?;
        Ok("-".into())
    }
    fn abort(&mut self) -> Result<String, String> {
        let _ = self.out.flush();
        Ok("what went to standard output is incomplete".into())
    }
}
