//! Free-space checks (statvfs).

use std::io;
use std::path::Path;

use nix::sys::statvfs::statvfs;

use super::StoreError;

/// Bytes available to unprivileged users on the file system holding `path`.
pub fn available_bytes(path: &Path) -> Result<u64, StoreError> {
    let vfs = statvfs(path)
        .map_err(|e| StoreError::io("checking free space on", path, io::Error::from(e)))?;
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((vfs.blocks_available() as u64).saturating_mul(vfs.fragment_size() as u64))
}

/// Fails with [`StoreError::NoRoom`] unless `needed_bytes` are available at `path`; returns
/// the available bytes.
pub fn ensure_room(path: &Path, needed_bytes: u64) -> Result<u64, StoreError> {
    let available = available_bytes(path)?;
    if available < needed_bytes {
        tracing::warn!(path = %path.display(), needed_bytes, available, "not enough space");
        return Err(StoreError::NoRoom {
            path: path.to_owned(),
            needed: needed_bytes,
            available,
        });
    }
    Ok(available)
}
