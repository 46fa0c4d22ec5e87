//! The local checkpoint store: a directory of `<id>.tar` archives, each with a
//! `<id>.tar.sha256` sidecar.
//!
//! * [`Store::open`] creates the directory (0700) or checks the existing one, and removes
//!   leftovers of killed runs.
//! * [`Store::begin`] starts a checkpoint as `.<id>.tar.partial-<pid>` (0600, `O_EXCL`); the
//!   [`Pending`] hashes everything written through it, and [`Pending::commit`] fsyncs, writes
//!   the sidecar and renames the temp file to `<id>.tar`: that rename is the commit point.
//!   Dropping an uncommitted `Pending` removes the temp file.
//! * [`Store::list`], [`Store::select`] and [`Store::delete`] with a [`Selector`].
//! * [`available_bytes`] and [`ensure_room`] for space checks.

mod age;
mod cleanup;
mod delete;
mod error;

mod id;
mod list;
mod pending;
mod remote;
mod select;
mod space;

use crate::durable;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::statvfs::{statvfs, FsFlags};
use nix::unistd::{access, AccessFlags};

pub use age::parse_age;
pub use delete::Deleted;
pub use error::StoreError;
pub use id::{base_id, validate_id, validate_pod_name, MAX_ID_LEN};
pub use list::{in_namespace, CheckpointSummary, StoredCheckpoint};
pub use pending::{Pending, StoredArchive};
pub use remote::{RemoteCheckpoint, REMOTE_SUFFIX};
pub use select::{Selector, SelectorSpec};
pub use space::{available_bytes, ensure_room};

/// The default store directory.
pub const DEFAULT_ROOT: &str = "/var/lib/reel/checkpoints";
/// The environment variable the CLI reads for the store directory (like `--root`).
pub const ROOT_ENV: &str = "REEL_STORE";
/// Archive file suffix.
pub const ARCHIVE_SUFFIX: &str = ".tar";
/// The suffix of a staging directory's name (`<id>.stage`, written as a temp directory).
pub const STAGE_SUFFIX: &str = ".stage";

/// An open checkpoint store.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    removed_leftovers: Vec<PathBuf>,
}

impl Store {
    /// Opens the store at `root`, creating it (and missing parents) with mode 0700.
    ///
    /// Fails if `root` is not a directory or is not writable. Removes temp files of runs whose
    /// process is gone ([`Store::removed_leftovers`] lists them); a live run's files are kept.
    pub fn open(root: impl AsRef<Path>) -> Result<Store, StoreError> {
        let root = root.as_ref().to_path_buf();
        let created = durable::create_private_dirs(&root)
            .map_err(|e| StoreError::io("creating the checkpoint store", &root, e))?;
        let meta = fs::metadata(&root).map_err(|e| StoreError::io("inspecting", &root, e))?;
        if !meta.is_dir() {
            return Err(StoreError::NotADirectory { path: root });
        }
        check_writable(&root)?;
        let mode = meta.permissions().mode() & 0o777;
        if !created && mode & 0o077 != 0 {
            tracing::warn!(
                path = %root.display(),
                mode = format!("{mode:o}"),
                "checkpoint store is accessible to other users; archives themselves are 0600"
            );
        }
        let mut store = Store {
            root,
            removed_leftovers: Vec::new(),
        };
        store.removed_leftovers = store.clean_leftovers()?;
        Ok(store)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Temp files of dead runs that [`Store::open`] removed.
    pub fn removed_leftovers(&self) -> &[PathBuf] {
        &self.removed_leftovers
    }

    /// The archive path of `id` (whether or not it exists).
    pub fn archive_path(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}{ARCHIVE_SUFFIX}"))
    }

    /// The sidecar path of `id` (whether or not it exists).
    pub fn sidecar_path(&self, id: &str) -> PathBuf {
        crate::archive::sidecar_path(&self.archive_path(id))
    }

    /// Whether a finished checkpoint, its sidecar, or an in-progress temp file uses `id`.
    pub(crate) fn id_in_use(&self, id: &str) -> Result<bool, StoreError> {
        Ok(durable::exists(&self.archive_path(id))
            || durable::exists(&self.sidecar_path(id))
            || durable::exists(&self.root.join(format!("{id}{REMOTE_SUFFIX}")))
            || !self.partials_of(id)?.is_empty())
    }
}

fn check_writable(root: &Path) -> Result<(), StoreError> {
    let not_writable = |reason: String| {
        tracing::warn!(path = %root.display(), %reason, "checkpoint store not writable");
        StoreError::NotWritable {
            path: root.to_owned(),
            reason,
        }
    };
    access(root, AccessFlags::W_OK | AccessFlags::X_OK).map_err(|e| not_writable(e.to_string()))?;
    let vfs = statvfs(root).map_err(|e| not_writable(e.to_string()))?;
    if vfs.flags().contains(FsFlags::ST_RDONLY) {
        return Err(not_writable("read-only file system".to_owned()));
    }
    Ok(())
}
