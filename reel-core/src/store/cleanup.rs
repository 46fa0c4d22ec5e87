//! Removing what killed runs left in the store.

use std::fs;
use std::path::PathBuf;

use super::{Store, StoreError, ARCHIVE_SUFFIX};
use crate::archive::SIDECAR_SUFFIX;
use crate::durable;

/// Whether a temp name's final name is one of the store's: an archive, its sidecar, or a
/// staging directory (`<id>.stage`).
pub(crate) fn is_store_name(name: &str, is_dir: bool) -> bool {
    if is_dir {
        return name.ends_with(super::STAGE_SUFFIX);
    }
    name.ends_with(ARCHIVE_SUFFIX)
        || name
            .strip_suffix(SIDECAR_SUFFIX)
            .is_some_and(|f| f.ends_with(ARCHIVE_SUFFIX))
}

impl Store {
    /// Temp files (archive or sidecar) being written, or left behind, for `id`.
    pub(crate) fn partials_of(&self, id: &str) -> Result<Vec<(PathBuf, u32)>, StoreError> {
        let archive = format!("{id}{ARCHIVE_SUFFIX}");
        let sidecar = format!("{archive}{SIDECAR_SUFFIX}");
        let mut out = Vec::new();
        for (name, path) in self.entries()? {
            if let Some((file, pid)) = durable::parse_temp_name(&name) {
                if file == archive || file == sidecar {
                    out.push((path, pid));
                }
            }
        }
        Ok(out)
    }

    /// Names and paths of the store's directory entries (non-UTF-8 names are skipped).
    pub(crate) fn entries(&self) -> Result<Vec<(String, PathBuf)>, StoreError> {
        let rd = fs::read_dir(&self.root).map_err(|e| StoreError::io("listing", &self.root, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| StoreError::io("listing", &self.root, e))?;
            match entry.file_name().into_string() {
                Ok(name) => out.push((name, entry.path())),
                Err(name) => tracing::debug!(?name, "ignoring non-UTF-8 name in the store"),
            }
        }
        Ok(out)
    }

    /// Removes temp files and staging directories whose writer process is gone, then sidecars
    /// left without an archive (a run killed between writing the sidecar and the rename, or a
    /// delete interrupted between the two unlinks). Returns what was removed.
    ///
    /// Liveness is judged by `/proc/<pid>` in this process's pid namespace; if `/proc` is not
    /// mounted nothing is removed.
    pub fn clean_leftovers(&self) -> Result<Vec<PathBuf>, StoreError> {
        let mut removed = durable::clean_leftovers(&self.root, is_store_name);
        for (name, path) in &self.entries()? {
            let Some(id) = name
                .strip_suffix(SIDECAR_SUFFIX)
                .and_then(|a| a.strip_suffix(ARCHIVE_SUFFIX))
            else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            // Partials first, then the archive: a concurrent commit renames partial ⇒ archive,
            // so one of the two checks sees it.
            if !self.partials_of(id)?.is_empty() || durable::exists(&self.archive_path(id)) {
                continue;
            }
            match fs::remove_file(path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "removed sidecar without an archive");
                    removed.push(path.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("removing orphan sidecar", path, e)),
            }
        }
        Ok(removed)
    }
}
