//! Local destinations: a file written under a temporary name and renamed when complete, and
//! standard output.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{renameat2, RenameFlags};

use super::{ExportError, Sink};
use crate::archive::{format_sidecar, sidecar_path};

const PARTIAL: &str = ".partial-";
const BUF_BYTES: usize = 1 << 20;

/// The temp name of `file_name` written by process `pid`: `.<file_name>.partial-<pid>`.
pub fn temp_name(file_name: &str, pid: u32) -> String {
    format!(".{file_name}{PARTIAL}{pid}")
}

/// Removes the temp files of exports whose process is gone from `dir` (only names of the form
/// `.<name>.tar[.zst][.sha256].partial-<pid>`); returns what was removed.
pub fn clean_leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    if !Path::new("/proc/self").exists() {
        return removed;
    }
    let Ok(rd) = fs::read_dir(dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let Some(rest) = name.strip_prefix('.') else {
            continue;
        };
        let Some((file, pid)) = rest.rsplit_once(PARTIAL) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        let base = file.strip_suffix(".sha256").unwrap_or(file);
        let ours = base.ends_with(".tar") || base.ends_with(".tar.zst");
        if !ours || pid == 0 || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = e.path();
        if fs::remove_file(&path).is_ok() {
            tracing::info!(path = %path.display(), pid, "removed a killed export's leftover");
            removed.push(path);
        }
    }
    removed
}

/// A file destination: `<dir>/.<name>.partial-<pid>` (0600, `O_EXCL`), renamed to `<dir>/<name>`
/// (never replacing a file) after `<name>.sha256` is in place. Dropped uncommitted, the temp
/// file is removed.
pub struct LocalFile {
    final_path: PathBuf,
    temp: PathBuf,
    out: Option<BufWriter<File>>,
}

impl LocalFile {
    /// Creates the temp file for `path`. Fails if `path` exists or its directory does not.
    pub fn create(path: &Path) -> Result<LocalFile, ExportError> {
        let dir = parent_dir(path);
        let name = file_name(path)?;
        if !dir.is_dir() {
            return Err(ExportError::NoDirectory { path: dir });
        }
        if fs::symlink_metadata(path).is_ok() {
            return Err(ExportError::DestinationExists {
                path: path.to_owned(),
            });
        }
        clean_leftovers(&dir);
        let temp = dir.join(temp_name(&name, std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&temp)
            .map_err(|e| ExportError::io("creating", &temp, e))?;
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(|e| ExportError::io("setting the mode of", &temp, e))?;
        Ok(LocalFile {
            final_path: path.to_owned(),
            temp,
            out: Some(BufWriter::with_capacity(BUF_BYTES, file)),
        })
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }
}

impl Write for LocalFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.out.as_mut() {
            Some(o) => o.write(buf),
            None => Err(io::Error::other("export already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self.out.as_mut() {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

impl Sink for LocalFile {
    fn destination(&self) -> String {
        self.final_path.display().to_string()
    }

    fn commit(&mut self, sha256: &str, _size: u64) -> Result<String, ExportError> {
        let out = self
            .out
            .take()
            .ok_or_else(|| ExportError::io("committing", &self.temp, io::Error::other("twice")))?;
        let file = out
            .into_inner()
            .map_err(|e| ExportError::io("writing", &self.temp, e.into_error()))?;
        file.sync_all()
            .map_err(|e| ExportError::io("syncing", &self.temp, e))?;
        drop(file);
        let dir = parent_dir(&self.final_path);
        let name = file_name(&self.final_path)?;
        let sidecar = sidecar_path(&self.final_path);
        let side_name = file_name(&sidecar)?;
        let side_temp = dir.join(temp_name(&side_name, std::process::id()));
        let written = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&side_temp)?;
            f.set_permissions(Permissions::from_mode(0o600))?;
            f.write_all(format_sidecar(sha256, &name).as_bytes())?;
            f.sync_all()?;
            rename_noreplace(&side_temp, &sidecar)
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&side_temp);
            return Err(ExportError::io("writing", &sidecar, e));
        }
        // The rename is the commit point: before it, nothing at the final name.
        if let Err(e) = rename_noreplace(&self.temp, &self.final_path) {
            let _ = fs::remove_file(&sidecar);
            return Err(if e.kind() == io::ErrorKind::AlreadyExists {
                ExportError::DestinationExists {
                    path: self.final_path.clone(),
                }
            } else {
                ExportError::io("renaming into place", &self.temp, e)
            });
        }
        self.temp = PathBuf::new();
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(self.final_path.display().to_string())
    }

    fn abort(&mut self) -> Result<String, String> {
        drop(self.out.take());
        let temp = std::mem::take(&mut self.temp);
        match fs::remove_file(&temp) {
            Ok(()) => Ok(format!("the unfinished {} was removed", temp.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok("nothing was left".into()),
            Err(e) => Err(format!("cannot remove {}: {e}", temp.display())),
        }
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        if self.temp.as_os_str().is_empty() {
            return;
        }
        drop(self.out.take());
        match fs::remove_file(&self.temp) {
            Ok(()) => tracing::debug!(path = %self.temp.display(), "removed unfinished export"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.temp.display(), error = %e, "cannot remove unfinished export")
            }
        }
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

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> Result<String, ExportError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| ExportError::BadDestination {
            dest: path.display().to_string(),
            reason: "not a UTF-8 file name".into(),
        })
}

fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(io::Error::from(e)),
    }
}
