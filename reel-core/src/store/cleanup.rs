//! Temp-file names and removing leftovers of killed runs.

use std::fs;
use std::path::{Path, PathBuf};

use super::{fsutil, Store, StoreError, ARCHIVE_SUFFIX};
use crate::archive::SIDECAR_SUFFIX;

const PARTIAL: &str = ".partial-";

/// The temp name for `file_name` written by `pid`: `.<file_name>.partial-<pid>`.
pub(crate) fn temp_name(file_name: &str, pid: u32) -> String {
    format!(".{file_name}{PARTIAL}{pid}")
}

/// Splits a temp name into the final file name and the writer's pid.
pub(crate) fn parse_temp_name(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix('.')?;
    let (file, pid) = rest.rsplit_once(PARTIAL)?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pid: u32 = pid.parse().ok()?;
    let ours = file.ends_with(ARCHIVE_SUFFIX)
        || file
            .strip_suffix(SIDECAR_SUFFIX)
            .is_some_and(|f| f.ends_with(ARCHIVE_SUFFIX));
    (ours && pid != 0).then_some((file, pid))
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

impl Store {
    /// Temp files (archive or sidecar) being written, or left behind, for `id`.
    pub(crate) fn partials_of(&self, id: &str) -> Result<Vec<(PathBuf, u32)>, StoreError> {
        let archive = format!("{id}{ARCHIVE_SUFFIX}");
        let sidecar = format!("{archive}{SIDECAR_SUFFIX}");
        let mut out = Vec::new();
        for (name, path) in self.entries()? {
            if let Some((file, pid)) = parse_temp_name(&name) {
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

    /// Removes temp files whose writer process is gone, then sidecars left without an archive
    /// (a run killed between writing the sidecar and the rename, or a delete interrupted
    /// between the two unlinks). Returns what was removed.
    ///
    /// Liveness is judged by `/proc/<pid>` in this process's pid namespace; if `/proc` is not
    /// mounted nothing is removed.
    pub fn clean_leftovers(&self) -> Result<Vec<PathBuf>, StoreError> {
        if !Path::new("/proc/self").exists() {
            tracing::warn!("/proc is not mounted; not cleaning leftovers in the checkpoint store");
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        let entries = self.entries()?;
        for (name, path) in &entries {
            let Some((_, pid)) = parse_temp_name(name) else {
                continue;
            };
            if pid_alive(pid) {
                continue;
            }
            match fs::remove_file(path) {
                Ok(()) => {
                    tracing::info!(path = %path.display(), pid, "removed leftover of a dead run");
                    removed.push(path.clone());
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("removing leftover", path, e)),
            }
        }
        for (name, path) in &entries {
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
            if !self.partials_of(id)?.is_empty() || fsutil::exists(&self.archive_path(id)) {
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
