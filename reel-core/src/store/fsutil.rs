//! File-system helpers with explicit permissions (never relying on the umask).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use nix::fcntl::{renameat2, RenameFlags};

/// Mode of the store directory.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of archives and sidecars.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `path` exclusively (`O_EXCL`) with mode 0600, set explicitly.
pub(crate) fn create_private_file(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Creates `path` and any missing parents, each with mode 0700 set explicitly.
/// Returns whether `path` itself was created.
pub(crate) fn create_private_dirs(path: &Path) -> io::Result<bool> {
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
pub(crate) fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
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
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Whether `path` exists (without following a final symlink); errors other than
/// "not found" count as existing, so callers never overwrite what they cannot see.
pub(crate) fn exists(path: &Path) -> bool {
    match fs::symlink_metadata(path) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}
