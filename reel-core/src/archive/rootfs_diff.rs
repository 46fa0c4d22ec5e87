//! The rootfs diff: `rootfs-diff.tar` and `deleted.files` from an overlay upper dir.
//!
//! The upper dir of the container's overlay mount holds exactly what changed:
//!
//! * regular files, symlinks, hard links, device nodes and FIFOs are added or changed files and
//!   go into `rootfs-diff.tar`, a plain tar with paths relative to `/` (`etc/foo`) and no
//!   directory entries, as CRI-O and Podman write it; owner, mode, mtime and the
//!   `security.capability` attribute (as a PAX `SCHILY.xattr`) are kept;
//! * whiteouts (a 0:0 character device, or a file with the `overlay.whiteout` attribute) and
//!   opaque directories (`overlay.opaque` = `y`) are deletions and go into `deleted.files` as
//!   absolute paths (`["/etc/removed"]`). Both the `trusted.` and the `user.` (`userxattr`)
//!   attribute namespaces are recognised.
//!
//! Upper dirs whose data partly lives elsewhere (metacopy files, redirected directories) are
//! refused rather than archived wrong.
//!
//! [`stage_rootfs_diff`] writes the diff tar to a file in a staging directory: a tar member's
//! size goes in its header, so the diff must be complete before it can be appended to (and
//! hashed into) the checkpoint archive without seeking. [`write_rootfs_diff`] streams the same
//! tar to any writer. Files are read while the container is still frozen (CRI-O learned that
//! files changing between the memory dump and the diff break restores, cri-o#6977); a file
//! whose size changes while it is read is an error.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{Builder, EntryType, Header};

use super::{xattr, ArchiveError, RootfsDiffInfo, ROOTFS_DIFF_TAR};

/// Where to take the rootfs diff from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSource {
    /// The container's overlay upper dir. A missing dir gives an empty diff, recorded as
    /// [`RootfsDiffInfo::None`].
    OverlayUpper(PathBuf),
    /// No writable layer to diff, e.g. "bare runc bundle on a plain directory has no writable
    /// layer".
    None {
        /// Recorded in the manifest.
        reason: String,
    },
}

/// What [`write_rootfs_diff`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootfsDiffListing {
    /// Entries written to the diff tar.
    pub entries: u64,
    /// Absolute paths of deleted files and opaque directories, sorted.
    pub deleted: Vec<String>,
}

/// A complete diff ready for [`super::ArchiveWriter::append_rootfs_diff`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedRootfsDiff {
    /// The finished `rootfs-diff.tar` in the staging dir.
    pub diff_tar: PathBuf,
    /// The content of `deleted.files`.
    pub deleted: Vec<String>,
    /// What the manifest records.
    pub info: RootfsDiffInfo,
}

/// Writes `<staging_dir>/rootfs-diff.tar` from `source` and returns it with the deleted paths.
pub fn stage_rootfs_diff(
    source: &RootfsSource,
    staging_dir: &Path,
) -> Result<StagedRootfsDiff, ArchiveError> {
    let diff_tar = staging_dir.join(ROOTFS_DIFF_TAR);
    // It holds container files: 0600 regardless of the umask.
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&diff_tar)
        .and_then(|f| {
            f.set_permissions(fs::Permissions::from_mode(0o600))
                .map(|()| f)
        })
        .map_err(|e| ArchiveError::io("creating", &diff_tar, e))?;
    let mut out = BufWriter::new(file);
    let (listing, info) = match source {
        RootfsSource::OverlayUpper(upper) if !upper_exists(upper)? => {
            let reason = format!("overlay upper dir {} does not exist", upper.display());
            tracing::info!(%reason, "empty rootfs diff");
            (
                empty_tar(&mut out, &diff_tar)?,
                RootfsDiffInfo::None { reason },
            )
        }
        RootfsSource::OverlayUpper(upper) => {
            let listing = write_rootfs_diff(upper, &mut out)?;
            let info = RootfsDiffInfo::OverlayUpper {
                upper_dir: upper.clone(),
                entries: listing.entries,
                deleted: listing.deleted.len() as u64,
            };
            (listing, info)
        }
        RootfsSource::None { reason } => (
            empty_tar(&mut out, &diff_tar)?,
            RootfsDiffInfo::None {
                reason: reason.clone(),
            },
        ),
    };
    let file = out
        .into_inner()
        .map_err(|e| ArchiveError::io("writing", &diff_tar, e.into_error()))?;
    file.sync_all()
        .map_err(|e| ArchiveError::io("syncing", &diff_tar, e))?;
    Ok(StagedRootfsDiff {
        diff_tar,
        deleted: listing.deleted,
        info,
    })
}

fn upper_exists(upper: &Path) -> Result<bool, ArchiveError> {
    match fs::symlink_metadata(upper) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(ArchiveError::io("inspecting", upper, e)),
    }
}

fn empty_tar<W: Write>(out: W, path: &Path) -> Result<RootfsDiffListing, ArchiveError> {
    Builder::new(out)
        .into_inner()
        .map_err(|e| ArchiveError::io("writing", path, e))?;
    Ok(RootfsDiffListing::default())
}

/// Streams the diff tar of the overlay upper dir `upper` to `out` (ended with the tar
/// trailer) and returns the entry count and the deleted paths.
pub fn write_rootfs_diff<W: Write>(
    upper: &Path,
    out: W,
) -> Result<RootfsDiffListing, ArchiveError> {
    let mut walk = Walk {
        upper,
        builder: Builder::new(out),
        listing: RootfsDiffListing::default(),
        links: HashMap::new(),
    };
    walk.dir(upper, Path::new(""))?;
    walk.builder
        .into_inner()
        .map_err(|e| ArchiveError::io("writing the rootfs diff of", upper, e))?;
    let mut listing = walk.listing;
    listing.deleted.sort();
    Ok(listing)
}

/// Overlay attribute names, in both namespaces overlayfs uses.
fn overlay_attr(names: &[Vec<u8>], attr: &str) -> Option<Vec<u8>> {
    ["trusted.overlay.", "user.overlay."]
        .iter()
        .map(|prefix| format!("{prefix}{attr}").into_bytes())
        .find(|full| names.contains(full))
}

/// Whether the container's base (`lowers`, an overlay's lower dirs, top first, on this host)
/// holds `path` (absolute, as in the rootfs diff): `Some(true)` when a layer has it (a diff
/// entry at that path is then a changed file, copied up), `Some(false)` when no layer has
/// it or a higher layer hides it (a whiteout, an opaque directory; the entry was added),
/// `None` when it cannot tell (a path with `..`, a symlink on the way, a read error).
/// Nothing is followed: each component is looked at with `lstat`.
pub fn base_has(lowers: &[PathBuf], path: &str) -> Option<bool> {
    let parts: Vec<&std::ffi::OsStr> = Path::new(path.trim_start_matches('/'))
        .components()
        .map(|c| match c {
            std::path::Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect::<Option<_>>()?;
    let (last, dirs) = parts.split_last()?;
    'layers: for layer in lowers {
        let mut at = layer.clone();
        // An opaque directory on the way: the layers below show nothing under it.
        let mut opaque = false;
        for d in dirs {
            at.push(d);
            match fs::symlink_metadata(&at) {
                Ok(m) if is_whiteout(&m) => return Some(false),
                Ok(m) if m.file_type().is_symlink() => return None,
                Ok(m) if m.is_dir() => {
                    let names = xattr::list(&at).ok()?;
                    if let Some(name) = overlay_attr(&names, "opaque") {
                        opaque |= xattr::get(&at, &name).ok()?.as_deref() == Some(b"y");
                    }
                }
                // A file where the path needs a directory hides the layers below.
                Ok(_) => return Some(false),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if opaque {
                        return Some(false);
                    }
                    continue 'layers;
                }
                Err(_) => return None,
            }
        }
        at.push(last);
        match fs::symlink_metadata(&at) {
            Ok(m) => return Some(!is_whiteout(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && !opaque => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(false),
            Err(_) => return None,
        }
    }
    Some(false)
}

fn is_whiteout(m: &fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

const CAPABILITY_XATTR: &[u8] = b"security.capability";

struct Walk<'a, W: Write> {
    upper: &'a Path,
    builder: Builder<W>,
    listing: RootfsDiffListing,
    /// (dev, ino) of multiply-linked files already archived ⇒ their archive path.
    links: HashMap<(u64, u64), PathBuf>,
}

impl<W: Write> Walk<'_, W> {
    fn dir(&mut self, dir: &Path, rel: &Path) -> Result<(), ArchiveError> {
        let mut entries = Vec::new();
        let rd = fs::read_dir(dir).map_err(|e| ArchiveError::io("listing", dir, e))?;
        for entry in rd {
            let entry = entry.map_err(|e| ArchiveError::io("listing", dir, e))?;
            entries.push(entry.file_name());
        }
        entries.sort();
        for name in entries {
            self.entry(&dir.join(&name), &rel.join(&name))?;
        }
        Ok(())
    }

    fn entry(&mut self, path: &Path, rel: &Path) -> Result<(), ArchiveError> {
        let meta =
            fs::symlink_metadata(path).map_err(|e| ArchiveError::io("inspecting", path, e))?;
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            return self.deleted(rel);
        }
        let attrs =
            xattr::list(path).map_err(|e| ArchiveError::io("listing xattrs of", path, e))?;
        if ft.is_dir() {
            if overlay_attr(&attrs, "redirect").is_some() {
                return Err(unsupported(
                    path,
                    "redirected directory (redirect_dir); its content lives in a lower layer",
                ));
            }
            if let Some(name) = overlay_attr(&attrs, "opaque") {
                let value = xattr::get(path, &name)
                    .map_err(|e| ArchiveError::io("reading xattrs of", path, e))?;
                if value.as_deref() == Some(b"y") {
                    self.deleted(rel)?;
                }
            }
            return self.dir(path, rel);
        }
        if overlay_attr(&attrs, "whiteout").is_some() {
            return self.deleted(rel);
        }
        if overlay_attr(&attrs, "metacopy").is_some() {
            return Err(unsupported(
                path,
                "metacopy file; its data lives in a lower layer",
            ));
        }
        if ft.is_socket() {
            tracing::warn!(path = %path.display(), "skipping socket in the rootfs diff");
            return Ok(());
        }
        let mut header = Header::new_gnu();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(meta.uid().into());
        header.set_gid(meta.gid().into());
        header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
        header.set_size(0);
        if attrs.iter().any(|a| a == CAPABILITY_XATTR) {
            if let Some(cap) = xattr::get(path, CAPABILITY_XATTR)
                .map_err(|e| ArchiveError::io("reading xattrs of", path, e))?
            {
                self.builder
                    .append_pax_extensions([("SCHILY.xattr.security.capability", cap.as_slice())])
                    .map_err(|e| self.write_err(e))?;
            }
        }
        if ft.is_symlink() {
            let target =
                fs::read_link(path).map_err(|e| ArchiveError::io("reading link", path, e))?;
            header.set_entry_type(EntryType::Symlink);
            self.builder
                .append_link(&mut header, rel, target)
                .map_err(|e| self.write_err(e))?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key).cloned() {
                    header.set_entry_type(EntryType::Link);
                    self.builder
                        .append_link(&mut header, rel, first)
                        .map_err(|e| self.write_err(e))?;
                    self.listing.entries += 1;
                    return Ok(());
                }
                self.links.insert(key, rel.to_owned());
            }
            self.regular(path, rel, &mut header, meta.len())?;
        } else if ft.is_char_device() || ft.is_block_device() || ft.is_fifo() {
            let kind = if ft.is_char_device() {
                EntryType::Char
            } else if ft.is_block_device() {
                EntryType::Block
            } else {
                EntryType::Fifo
            };
            header.set_entry_type(kind);
            if kind != EntryType::Fifo {
                let dev = meta.rdev();
                let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
                header
                    .set_device_major(u32::try_from(major).unwrap_or(u32::MAX))
                    .and_then(|()| {
                        header.set_device_minor(u32::try_from(minor).unwrap_or(u32::MAX))
                    })
                    .map_err(|e| self.write_err(e))?;
            }
            self.builder
                .append_data(&mut header, rel, io::empty())
                .map_err(|e| self.write_err(e))?;
        } else {
            tracing::warn!(path = %path.display(), "skipping unknown file type in the rootfs diff");
            return Ok(());
        }
        self.listing.entries += 1;
        Ok(())
    }

    fn regular(
        &mut self,
        path: &Path,
        rel: &Path,
        header: &mut Header,
        size: u64,
    ) -> Result<(), ArchiveError> {
        let file = File::open(path).map_err(|e| ArchiveError::io("opening", path, e))?;
        header.set_entry_type(EntryType::Regular);
        header.set_size(size);
        let mut counted = Counting {
            inner: file.take(size),
            bytes: 0,
            failed: false,
        };
        if let Err(e) = self.builder.append_data(header, rel, &mut counted) {
            return Err(if counted.failed {
                ArchiveError::io("reading", path, e)
            } else {
                self.write_err(e)
            });
        }
        let mut actual = counted.bytes;
        if actual == size && super::writer::grew(counted.inner.into_inner()) {
            actual = size + 1; // at least
        }
        if actual != size {
            return Err(ArchiveError::FileChanged {
                path: path.to_owned(),
                expected: size,
                actual,
            });
        }
        Ok(())
    }

    fn deleted(&mut self, rel: &Path) -> Result<(), ArchiveError> {
        let s = rel.to_str().ok_or_else(|| ArchiveError::NonUtf8Path {
            path: rel.to_owned(),
            what: super::DELETED_FILES,
        })?;
        self.listing.deleted.push(format!("/{s}"));
        Ok(())
    }

    fn write_err(&self, source: io::Error) -> ArchiveError {
        tracing::warn!(upper = %self.upper.display(), error = %source, "writing the rootfs diff failed");
        ArchiveError::io("writing the rootfs diff of", self.upper, source)
    }
}

fn unsupported(path: &Path, reason: &'static str) -> ArchiveError {
    ArchiveError::UnsupportedOverlay {
        path: path.to_owned(),
        reason,
    }
}

/// Counts the bytes read and remembers whether reading failed.
struct Counting<R> {
    inner: R,
    bytes: u64,
    failed: bool,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        match &r {
            Ok(n) => self.bytes += *n as u64,
            Err(e) => self.failed |= e.kind() != io::ErrorKind::Interrupted,
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_has_follows_overlay_lookup_without_following_links() {
        let d = tempfile::tempdir().unwrap();
        let (top, bottom) = (d.path().join("top"), d.path().join("bottom"));
        for p in [
            bottom.join("etc"),
            bottom.join("opt/app"),
            bottom.join("var/cache"),
            top.join("opt"),
            top.join("var"),
        ] {
            fs::create_dir_all(p).unwrap();
        }
        fs::write(bottom.join("etc/passwd"), "root").unwrap();
        fs::write(bottom.join("opt/app/bin"), "x").unwrap();
        fs::write(bottom.join("var/cache/old"), "x").unwrap();
        fs::write(bottom.join("gone"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", bottom.join("link")).unwrap();
        // A whiteout for /gone and an opaque /var in the top layer (as root: mknod, trusted.*).
        nix::sys::stat::mknod(
            &top.join("gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .expect("mknod a whiteout (needs root)");
        xattr::set(&top.join("var"), "trusted.overlay.opaque", b"y")
            .expect("set trusted.overlay.opaque (needs root)");
        let lowers = vec![top, bottom];
        assert_eq!(base_has(&lowers, "/etc/passwd"), Some(true));
        assert_eq!(base_has(&lowers, "/opt/app/bin"), Some(true));
        assert_eq!(base_has(&lowers, "/etc/new.conf"), Some(false));
        assert_eq!(base_has(&lowers, "/tmp/x"), Some(false));
        assert_eq!(base_has(&lowers, "/gone"), Some(false));
        assert_eq!(base_has(&lowers, "/var/cache/old"), Some(false));
        assert_eq!(base_has(&lowers, "/etc/passwd/x"), Some(false));
        // Never through a link, never out of the layers.
        assert_eq!(base_has(&lowers, "/link/passwd"), None);
        assert_eq!(base_has(&lowers, "/etc/../../../etc/passwd"), None);
        assert_eq!(base_has(&lowers, "/"), None);
    }
}
