//! Writing files so that nothing half-written ever looks complete: the one durable-commit
//! helper of reel (the store's archives, exported archives, staging directories).
//!
//! * A file is written as `.<name>.partial-<pid>` (0600, `O_EXCL`, `O_CLOEXEC`) in the directory
//!   of its final name, with `O_DIRECT` in large aligned blocks where the file system allows it
//!   ([`DurableFile`]). [`DurableFile::commit`] syncs it, writes the `<name>.sha256` sidecar the
//!   same way, renames the file to its final name without ever replacing one (the commit
//!   point) and syncs the directory. Dropped uncommitted, the temp file is removed.
//! * A scratch directory is `.<name>.partial-<pid>` (0700) and is removed when dropped
//!   ([`TempDir`]).
//! * What a killed run left behind (names of that form whose pid is gone) is removed by the
//!   next run ([`clean_leftovers`]), only for the names its caller accepts.
//!
//! Permissions are always set explicitly, never left to the umask.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{renameat2, RenameFlags};

/// Mode of reel's directories (store, staging).
pub const DIR_MODE: u32 = 0o700;
/// Mode of archives, sidecars and staged files.
pub const FILE_MODE: u32 = 0o600;

const PARTIAL: &str = ".partial-";

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// Something already has the final name; nothing was replaced.
    #[error("{} already exists", path.display())]
    Exists { path: PathBuf },
    /// The directory of the final name does not exist.
    #[error("the directory {} does not exist", path.display())]
    NoDirectory { path: PathBuf },
    /// An I/O step failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl DurableError {
    fn io(what: &'static str, path: &Path, source: io::Error) -> DurableError {
        if source.kind() == io::ErrorKind::AlreadyExists {
            DurableError::Exists {
                path: path.to_owned(),
            }
        } else {
            DurableError::Io {
                what,
                path: path.to_owned(),
                source,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

/// The temp name of `name` written by process `pid`: `.<name>.partial-<pid>`.
pub fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}{PARTIAL}{pid}")
}

/// Splits a temp name into the final name and the writer's pid.
pub fn parse_temp_name(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix('.')?;
    let (file, pid) = rest.rsplit_once(PARTIAL)?;
    if file.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    (pid != 0).then_some((file, pid))
}

/// Whether process `pid` exists (in this pid namespace).
pub fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temp files and directories in `dir` whose writer is gone and whose final name
/// `accept(name, is_dir)` recognises; returns what was removed. Nothing is removed when
/// `/proc` is not mounted (liveness cannot be judged).
pub fn clean_leftovers(dir: &Path, accept: impl Fn(&str, bool) -> bool) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    if !Path::new("/proc/self").exists() {
        tracing::warn!(dir = %dir.display(), "/proc is not mounted; leftovers are not cleaned");
        return removed;
    }
    let Ok(rd) = fs::read_dir(dir) else {
        return removed;
    };
    for e in rd.flatten() {
        let Ok(name) = e.file_name().into_string() else {
            continue;
        };
        let Some((file, pid)) = parse_temp_name(&name) else {
            continue;
        };
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_symlink() || !accept(file, kind.is_dir()) || pid_alive(pid) {
            continue;
        }
        let path = e.path();
        let gone = if kind.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match gone {
            Ok(()) => {
                tracing::info!(path = %path.display(), pid, "removed a killed run's leftover");
                removed.push(path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove a leftover")
            }
        }
    }
    removed
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// Creates `path` exclusively (`O_EXCL`, `O_CLOEXEC`) with mode 0600, set explicitly.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    open_private(path, 0)
}

fn open_private(path: &Path, flags: i32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_CLOEXEC | flags)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Writes a root-only file (created or truncated, mode 0600).
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    f.write_all(data)
}

/// Replaces `path` atomically with a root-only file holding `data`: written under its temp
/// name, synced, renamed over `path` (readers see the old or the new content, never a part).
pub fn replace_private(path: &Path, data: &[u8]) -> io::Result<()> {
    let name = file_name(path)?;
    let temp = parent_dir(path).join(temp_name(&name, std::process::id()));
    let _ = fs::remove_file(&temp);
    let written = (|| {
        let mut f = create_private_file(&temp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&temp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    written
}

/// Creates `path` and any missing parents, each with mode 0700 set explicitly. Returns whether
/// `path` itself was created.
pub fn create_private_dirs(path: &Path) -> io::Result<bool> {
    if fs::metadata(path).is_ok() {
        return Ok(false);
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_private_dirs(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {}
        // Created concurrently by someone else: fine, but not ours to chmod.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    }
    fs::set_permissions(path, Permissions::from_mode(DIR_MODE))?;
    Ok(true)
}

/// Renames `from` to `to`, failing with `AlreadyExists` instead of replacing `to`.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    match renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        // File systems without RENAME_NOREPLACE: check, then rename (racy but best effort).
        Err(nix::errno::Errno::EINVAL) => {
            tracing::debug!(to = %to.display(), "RENAME_NOREPLACE unsupported; falling back");
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(io::Error::from(e)),
    }
}

/// Makes the directory's entries (renames, unlinks) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether `path` exists (without following a final symlink); errors other than "not found"
/// count as existing, so callers never overwrite what they cannot see.
pub fn exists(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// The directory of `path` (`.` for a bare name).
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn file_name(path: &Path) -> io::Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a UTF-8 file name", path.display()),
            )
        })
}

/// Writes `data` as `path` through a temp file renamed without replacing anything.
fn write_new(path: &Path, data: &[u8]) -> Result<(), DurableError> {
    let dir = parent_dir(path);
    let name = file_name(path).map_err(|e| DurableError::io("naming", path, e))?;
    let temp = dir.join(temp_name(&name, std::process::id()));
    let written = (|| {
        let mut f = create_private_file(&temp)?;
        f.write_all(data)?;
        f.sync_all()?;
        rename_noreplace(&temp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(DurableError::io("writing", path, e));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// DurableFile
// ---------------------------------------------------------------------------------------------

/// A new file written under its temp name and committed by a no-replace rename.
///
/// Writes go straight to the disk with `O_DIRECT`, in 4 MiB aligned blocks, where the file
/// system takes it: an archive is written once and not read again by reel; through the page
/// cache it would cost a fresh page per 4 KiB (slow on a VM), push out the node's useful
/// cache, and leave the final `fsync` to wait for all of it. Only the unaligned tail goes
/// through the page cache. Where `O_DIRECT` is refused (tmpfs, some network file systems) the
/// writes are plain ones.
#[derive(Debug)]
pub struct DurableFile {
    final_path: PathBuf,
    temp: PathBuf,
    out: Option<Direct>,
}

impl DurableFile {
    /// Creates the temp file for `path`. Fails if `path` exists or its directory does not.
    pub fn create(path: &Path) -> Result<DurableFile, DurableError> {
        DurableFile::create_inner(path, false)
    }

    /// [`DurableFile::create`] for a file that [`DurableFile::commit_replacing`] puts in place
    /// of whatever `path` holds (an explicit `--force`).
    pub fn create_replacing(path: &Path) -> Result<DurableFile, DurableError> {
        DurableFile::create_inner(path, true)
    }

    fn create_inner(path: &Path, replacing: bool) -> Result<DurableFile, DurableError> {
        let dir = parent_dir(path);
        let name = file_name(path).map_err(|e| DurableError::io("naming", path, e))?;
        if !dir.is_dir() {
            return Err(DurableError::NoDirectory { path: dir });
        }
        if !replacing && exists(path) {
            return Err(DurableError::Exists {
                path: path.to_owned(),
            });
        }
        let temp = dir.join(temp_name(&name, std::process::id()));
        let (file, direct) = match open_private(&temp, libc::O_DIRECT) {
            Ok(f) => (f, true),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(path = %temp.display(), "O_DIRECT refused: plain writes");
                let _ = fs::remove_file(&temp);
                let f = create_private_file(&temp)
                    .map_err(|e| DurableError::io("creating", &temp, e))?;
                (f, false)
            }
            Err(e) => return Err(DurableError::io("creating", &temp, e)),
        };
        Ok(DurableFile {
            final_path: path.to_owned(),
            temp,
            out: Some(Direct::new(file, direct)),
        })
    }

    /// The temp file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Where the file goes on commit.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Leaves `n` bytes unwritten (a hole of a sparse file, read as zeros) at the current end.
    pub fn skip(&mut self, n: u64) -> io::Result<()> {
        match self.out.as_mut() {
            Some(o) => o.skip(n),
            None => Err(io::Error::other("already committed")),
        }
    }

    /// Makes the file durable and visible: writes what is buffered, syncs it, writes the
    /// sidecar `<path>.sha256` with `sidecar` as its content (when given) the same way, then
    /// renames the temp file into place without replacing anything (the commit point) and
    /// syncs the directory. On failure nothing is left at the final names.
    pub fn commit(self, sidecar: Option<(&Path, &[u8])>) -> Result<(), DurableError> {
        self.commit_inner(sidecar, false)
    }

    /// [`DurableFile::commit`] without a sidecar, replacing what `path` holds (a file, or a
    /// symlink itself, never its target; a directory is refused by the rename).
    pub fn commit_replacing(self) -> Result<(), DurableError> {
        self.commit_inner(None, true)
    }

    fn commit_inner(
        mut self,
        sidecar: Option<(&Path, &[u8])>,
        replace: bool,
    ) -> Result<(), DurableError> {
        let out = self
            .out
            .take()
            .ok_or_else(|| DurableError::io("committing", &self.temp, io::Error::other("twice")))?;
        let file = out
            .finish()
            .map_err(|e| DurableError::io("writing", &self.temp, e))?;
        file.sync_all()
            .map_err(|e| DurableError::io("syncing", &self.temp, e))?;
        drop(file);
        if let Some((path, content)) = sidecar {
            write_new(path, content)?;
        }
        let renamed = if replace {
            fs::rename(&self.temp, &self.final_path)
        } else {
            rename_noreplace(&self.temp, &self.final_path)
        };
        if let Err(e) = renamed {
            // Our sidecar must not describe someone else's file.
            if let Some((path, _)) = sidecar {
                if let Err(e) = fs::remove_file(path) {
                    tracing::warn!(path = %path.display(), error = %e, "removing sidecar failed");
                }
            }
            return Err(DurableError::io("renaming into place", &self.final_path, e));
        }
        // Committed: from here on Drop must not remove anything.
        self.temp = PathBuf::new();
        let dir = parent_dir(&self.final_path);
        sync_dir(&dir).map_err(|e| DurableError::io("syncing", &dir, e))
    }

    /// Removes the temp file now; says what was done.
    pub fn abort(mut self) -> Result<String, String> {
        drop(self.out.take());
        let temp = std::mem::take(&mut self.temp);
        match fs::remove_file(&temp) {
            Ok(()) => Ok(format!("the unfinished {} was removed", temp.display())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok("nothing was left".into()),
            Err(e) => Err(format!("cannot remove {}: {e}", temp.display())),
        }
    }
}

impl Write for DurableFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.out.as_mut() {
            Some(o) => o.write(buf),
            None => Err(io::Error::other("already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for DurableFile {
    fn drop(&mut self) {
        if self.temp.as_os_str().is_empty() {
            return;
        }
        drop(self.out.take());
        match fs::remove_file(&self.temp) {
            Ok(()) => tracing::debug!(path = %self.temp.display(), "removed an unfinished file"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.temp.display(), error = %e, "cannot remove an unfinished file")
            }
        }
    }
}

/// Writes with `O_DIRECT` in large aligned blocks, falling back to plain writes.
#[derive(Debug)]
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
                // A file system that took O_DIRECT at open but not for this write, or a short
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

    /// Leaves a hole of `n` bytes: what is buffered is written, then the offset moves on.
    fn skip(&mut self, n: u64) -> io::Result<()> {
        if self.len > 0 {
            if self.direct && !self.len.is_multiple_of(ALIGN) {
                self.buffered()?;
            }
            self.write_block()?;
        }
        let n = i64::try_from(n).map_err(|_| io::Error::other("a hole too large"))?;
        self.file.seek(SeekFrom::Current(n))?;
        Ok(())
    }

    /// Writes what is left (through the page cache: it need not be aligned) and returns the file
    /// (as long as what was written and skipped: a trailing hole counts).
    fn finish(mut self) -> io::Result<File> {
        if self.len > 0 {
            if self.direct {
                self.buffered()?;
            }
            self.write_block()?;
        }
        let end = self.file.stream_position()?;
        if self.file.metadata()?.len() < end {
            self.file.set_len(end)?;
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

// ---------------------------------------------------------------------------------------------
// TempDir
// ---------------------------------------------------------------------------------------------

/// A scratch directory `<dir>/.<name>.partial-<pid>` (0700), removed when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates it (the parent must exist).
    pub fn create(dir: &Path, name: &str) -> Result<TempDir, DurableError> {
        let path = dir.join(temp_name(name, std::process::id()));
        DirBuilder::new()
            .mode(DIR_MODE)
            .create(&path)
            .and_then(|()| fs::set_permissions(&path, Permissions::from_mode(DIR_MODE)))
            .map_err(|e| DurableError::io("creating", &path, e))?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a scratch directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_round_trip() {
        assert_eq!(temp_name("a.tar", 42), ".a.tar.partial-42");
        assert_eq!(parse_temp_name(".a.tar.partial-42"), Some(("a.tar", 42)));
        assert_eq!(parse_temp_name(".a.tar.partial-0"), None);
        assert_eq!(parse_temp_name(".a.tar.partial-x"), None);
        assert_eq!(parse_temp_name("a.tar.partial-1"), None);
        assert_eq!(parse_temp_name("..partial-1"), None);
    }

    #[test]
    fn commit_renames_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tar");
        let side = dir.path().join("x.tar.sha256");
        let mut f = DurableFile::create(&path).unwrap();
        let temp = f.temp_path().to_owned();
        f.write_all(&vec![7u8; (4 << 20) + 123]).unwrap();
        assert!(!path.exists());
        f.commit(Some((&side, b"abc  x.tar\n"))).unwrap();
        assert!(!temp.exists());
        assert_eq!(fs::read(&path).unwrap().len(), (4 << 20) + 123);
        assert_eq!(fs::read(&side).unwrap(), b"abc  x.tar\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            DurableFile::create(&path),
            Err(DurableError::Exists { .. })
        ));
    }

    #[test]
    fn dropped_uncommitted_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.tar");
        let mut f = DurableFile::create(&path).unwrap();
        f.write_all(b"partial").unwrap();
        let temp = f.temp_path().to_owned();
        assert!(temp.exists());
        drop(f);
        assert!(!temp.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn leftovers_of_dead_pids_only_and_only_accepted_names() {
        let dir = tempfile::tempdir().unwrap();
        // pid 2^22 + 1 is above the default pid_max: never alive.
        let dead = 4_194_305;
        let me = std::process::id();
        for (name, pid) in [("a.tar", dead), ("b.tar", me), ("c.txt", dead)] {
            fs::write(dir.path().join(temp_name(name, pid)), b"x").unwrap();
        }
        fs::create_dir(dir.path().join(temp_name("s.stage", dead))).unwrap();
        fs::write(dir.path().join(temp_name("s.stage", dead)).join("f"), b"x").unwrap();
        let removed = clean_leftovers(dir.path(), |n, is_dir| {
            n.ends_with(".tar") || (is_dir && n.ends_with(".stage"))
        });
        assert_eq!(removed.len(), 2, "{removed:?}");
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![temp_name("b.tar", me), temp_name("c.txt", dead)]);
    }
}
