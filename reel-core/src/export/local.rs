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
    out: Option<Direct>,
}

/// Writes the archive with `O_DIRECT`, in large aligned blocks, when the filesystem allows it.
///
/// An archive is written once and not read again by reel: through the page cache it would
/// cost a fresh page per 4 KiB (slow on a VM), push out the node's useful cache, and leave the
/// `fsync` before the rename to wait for all of it. Direct blocks go straight to the disk while
/// zstd compresses the next ones; only the unaligned tail goes through the page cache. Where
/// `O_DIRECT` is refused (tmpfs, some network filesystems), the writes are plain ones.
struct Direct {
    file: File,
    buf: Vec<u8>,
    /// Where the aligned block starts in `buf`.
    start: usize,
    /// Bytes waiting in the block.
    len: usize,
    direct: bool,
}

/// The alignment `O_DIRECT` needs (a page covers every logical block size in use).
const ALIGN: usize = 4096;
/// One direct write.
const DIRECT_BYTES: usize = 4 << 20;

impl Direct {
    fn new(file: File, direct: bool) -> Direct {
        let buf = vec![0u8; DIRECT_BYTES + ALIGN];
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        Direct {
            file,
            buf,
            start,
            len: 0,
            direct,
        }
    }

    /// Writes the block (a whole one, or the tail at the end).
    fn write_block(&mut self) -> io::Result<()> {
        let mut done = 0;
        while done < self.len {
            let chunk = &self.buf[self.start + done..self.start + self.len];
            match self.file.write(chunk) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A filesystem that took O_DIRECT at open but not for this write, or a short
                // write that left the offset unaligned: go on with plain writes.
                Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    self.buffered()?
                }
                Err(e) => return Err(e),
            }
        }
        self.len = 0;
        Ok(())
    }

    /// Turns `O_DIRECT` off.
    fn buffered(&mut self) -> io::Result<()> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use std::os::fd::AsRawFd;
        let fd = self.file.as_raw_fd();
        let flags = fcntl(fd, FcntlArg::F_GETFL).map_err(io::Error::from)?;
        let flags = OFlag::from_bits_truncate(flags) - OFlag::O_DIRECT;
        fcntl(fd, FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
        self.direct = false;
        Ok(())
    }

    /// Writes what is left (through the page cache: it need not be aligned) and returns the file.
    fn finish(mut self) -> io::Result<File> {
        if self.len > 0 {
            if self.direct {
                self.buffered()?;
            }
            self.write_block()?;
        }
        Ok(self.file)
    }
}

impl Write for Direct {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(DIRECT_BYTES - self.len);
        let at = self.start + self.len;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        if self.len == DIRECT_BYTES {
            self.write_block()?;
        }
        Ok(n)
    }
    /// Nothing: a partial block can only be written at the end ([`Direct::finish`]).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Opens `path` for a new archive, with `O_DIRECT` if the filesystem takes it.
fn create_direct(path: &Path) -> io::Result<(File, bool)> {
    let open = |flags| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC | flags)
            .open(path)
    };
    match open(libc::O_DIRECT) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            tracing::debug!(path = %path.display(), "O_DIRECT refused: plain writes");
            let _ = fs::remove_file(path);
            open(0).map(|f| (f, false))
        }
        Err(e) => Err(e),
    }
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
        let (file, direct) =
            create_direct(&temp).map_err(|e| ExportError::io("creating", &temp, e))?;
        file.set_permissions(Permissions::from_mode(0o600))
            .map_err(|e| ExportError::io("setting the mode of", &temp, e))?;
        Ok(LocalFile {
            final_path: path.to_owned(),
            temp,
            out: Some(Direct::new(file, direct)),
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
            .finish()
            .map_err(|e| ExportError::io("writing", &self.temp, e))?;
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
