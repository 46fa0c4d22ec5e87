//! The sandbox's root filesystem and mounts, all private:
//!
//! * an overlay whose lower layers are the original's base (read-only) and whose upper dir,
//!   in the sandbox's data directory, starts as `rootfs-diff.tar` minus `deleted.files`
//!   (whiteouts; opaque markers for directories that were replaced); every write of the
//!   sandbox lands there;
//! * for each bind mount of the original, a private copy (of the original source when it is
//!   still there, of `--volume DEST=SRC` when given, else an empty directory or file, said
//!   so); for each device node, one the sandbox makes; for each v1 cgroup mount, the
//!   sandbox's own cgroup. Nothing of the host's filesystem is mounted into the sandbox.
//!
//! The overlay is mounted in the monitor's own mount namespace ([`private_mount_ns`]), so the
//! host never sees it and it goes away with the sandbox's last process.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};

use super::plan::{ExtMount, Plan, Stand};
use super::state::MountRecord;
use super::SandboxError;
use crate::checkpoint::plan::resolve_in_root;

/// The most paths `deleted.files` may list.
const MAX_DELETED: usize = 1_000_000;

/// Gives the calling (single-threaded) process its own mount namespace whose mounts never
/// propagate to the host's.
pub fn private_mount_ns() -> Result<(), SandboxError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| SandboxError::step("creating the monitor's mount namespace", e))?;
    mount::<str, str, str, str>(None, "/", None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
        .map_err(|e| SandboxError::step("making the monitor's mounts private", e))
}

/// Builds the upper dir `upper` from the diff tar and the deleted paths.
pub fn build_upper(
    upper: &Path,
    diff_tar: Option<&Path>,
    deleted: Option<&Path>,
) -> Result<(), SandboxError> {
    fs::create_dir_all(upper).map_err(|e| SandboxError::io("creating", upper, e))?;
    if let Some(tar_path) = diff_tar {
        let f = fs::File::open(tar_path).map_err(|e| SandboxError::io("opening", tar_path, e))?;
        let mut ar = tar::Archive::new(io::BufReader::new(f));
        ar.set_preserve_permissions(true);
        ar.set_preserve_ownerships(true);
        ar.set_unpack_xattrs(true);
        ar.set_overwrite(true);
        // `unpack` never writes outside `upper` (`..` entries are refused, symlinks are not
        // followed out of it).
        ar.unpack(upper)
            .map_err(|e| SandboxError::io("unpacking the rootfs diff into", upper, e))?;
    }
    if let Some(list) = deleted {
        let bytes = fs::read(list).map_err(|e| SandboxError::io("reading", list, e))?;
        let paths: Vec<String> = if bytes.iter().all(u8::is_ascii_whitespace) {
            Vec::new()
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| SandboxError::io("decoding", list, io::Error::other(e)))?
        };
        if paths.len() > MAX_DELETED {
            return Err(SandboxError::step(
                "applying deleted.files",
                format!("more than {MAX_DELETED} paths"),
            ));
        }
        for p in paths {
            whiteout(upper, &p)?;
        }
    }
    Ok(())
}

/// Marks `path` (inside the container) deleted in `upper`: a whiteout, or an opaque marker
/// when the diff recreated it as a directory. Paths that would leave `upper` are skipped.
fn whiteout(upper: &Path, path: &str) -> Result<(), SandboxError> {
    let mut at = upper.to_path_buf();
    let parts: Vec<_> = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            _ => None,
        })
        .collect();
    if parts.is_empty()
        || Path::new(path)
            .components()
            .any(|c| c == Component::ParentDir)
    {
        tracing::warn!(path, "skipping an unusable path of deleted.files");
        return Ok(());
    }
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        match fs::symlink_metadata(&at) {
            Ok(md) if md.file_type().is_symlink() => {
                tracing::warn!(path, "deleted.files path goes through a symlink; skipped");
                return Ok(());
            }
            Ok(md) if last && md.is_dir() => {
                return crate::archive::xattr::set(&at, "trusted.overlay.opaque", b"y")
                    .map_err(|e| SandboxError::io("marking opaque", &at, e));
            }
            Ok(_) if last => return Ok(()),
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if last {
                    return mknod(&at, SFlag::S_IFCHR, Mode::empty(), 0)
                        .map_err(|e| SandboxError::io("making a whiteout", &at, e.into()));
                }
                fs::create_dir(&at).map_err(|e| SandboxError::io("creating", &at, e))?;
            }
            Err(e) => return Err(SandboxError::io("inspecting", &at, e)),
        }
    }
    Ok(())
}

/// Mounts the overlay of `lowers` (top first) and `upper` at `merged`.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    merged: &Path,
) -> Result<(), SandboxError> {
    for d in [work, merged] {
        fs::create_dir_all(d).map_err(|e| SandboxError::io("creating", d, e))?;
    }
    let esc = |p: &Path| {
        p.to_string_lossy()
            .replace('\\', "\\\\")
            .replace(':', "\\:")
            .replace(',', "\\,")
    };
    let lower = lowers.iter().map(|l| esc(l)).collect::<Vec<_>>().join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        esc(upper),
        esc(work)
    );
    mount(
        Some("overlay"),
        merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .map_err(|e| SandboxError::step(format!("mounting the sandbox's rootfs overlay ({opts})"), e))
}

/// What the external mounts become: CRIU's mapping (key, host path) and the record.
#[derive(Debug, Default)]
pub struct Mapped {
    pub ext_mnt: Vec<(String, String)>,
    pub records: Vec<MountRecord>,
    pub warnings: Vec<String>,
}

fn copy(src: &Path, dst: &Path) -> Result<(), SandboxError> {
    let out = Command::new("cp")
        .args(["-a", "--reflink=auto", "--"])
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| SandboxError::io("copying", src, e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SandboxError::step(
            format!("copying {} to {}", src.display(), dst.display()),
            String::from_utf8_lossy(&out.stderr).trim(),
        ))
    }
}

/// The host's node for device `name` (`null`, `zero`...), recreated under `dir`.
fn device(dir: &Path, name: &str) -> Result<PathBuf, SandboxError> {
    let host = Path::new("/dev").join(name);
    let md = fs::metadata(&host).map_err(|e| SandboxError::io("inspecting", &host, e))?;
    if !md.file_type().is_char_device() {
        return Err(SandboxError::step(
            "making the sandbox's devices",
            format!("{} is not a character device", host.display()),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| SandboxError::io("creating", dir, e))?;
    let node = dir.join(name);
    if !node.exists() {
        mknod(
            &node,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            md.rdev(),
        )
        .map_err(|e| SandboxError::io("making the device node", &node, e.into()))?;
        // mknod is subject to the umask.
        fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o666))
            .map_err(|e| SandboxError::io("setting the mode of", &node, e))?;
    }
    Ok(node)
}

/// Makes the stand-in of every external mount under `data/mounts`, and its mountpoint in the
/// rootfs `merged` (outside the spec's tmpfs mounts, whose content CRIU restores).
pub fn map_mounts(
    plan: &Plan,
    merged: &Path,
    data: &Path,
    cgroups: &[PathBuf],
) -> Result<Mapped, SandboxError> {
    let mut m = Mapped::default();
    let dev_dir = data.join("dev");
    let vol_dir = data.join("volumes");
    fs::create_dir_all(&vol_dir).map_err(|e| SandboxError::io("creating", &vol_dir, e))?;
    let in_tmpfs = |key: &str| {
        plan.tmpfs
            .iter()
            .any(|t| key == t || key.starts_with(&format!("{}/", t.trim_end_matches('/'))))
    };
    let mut copies: Vec<(String, PathBuf)> = Vec::new();
    for (i, ExtMount { key, stand }) in plan.ext_mounts.iter().enumerate() {
        let (source, from, is_dir) = match stand {
            Stand::Device { name } => (
                device(&dev_dir, name)?,
                format!("a device node of the sandbox (/dev/{name})"),
                false,
            ),
            Stand::Cgroup { mount_point } => {
                let base = Path::new(mount_point).file_name().map(|n| n.to_owned());
                let dir = cgroups
                    .iter()
                    .find(|d| {
                        d.parent()
                            .and_then(Path::parent)
                            .and_then(Path::file_name)
                            .map(|n| n.to_owned())
                            == base
                    })
                    .cloned()
                    .ok_or_else(|| {
                        SandboxError::step(
                            "mapping the cgroup mounts",
                            format!("no hierarchy of this host matches {mount_point}"),
                        )
                    })?;
                (dir, "the sandbox's own cgroup".to_string(), true)
            }
            Stand::Copy { original, volume } => {
                let target = vol_dir.join(format!("{i}"));
                let (src, from) = match (volume, original) {
                    (Some(v), _) => (
                        Some(v.clone()),
                        format!("a copy of --volume {}", v.display()),
                    ),
                    (None, Some(o)) if o.exists() => {
                        (Some(o.clone()), format!("a copy of {}", o.display()))
                    }
                    (None, Some(o)) => (
                        None,
                        format!("empty: its source {} no longer exists", o.display()),
                    ),
                    (None, None) => (None, "empty: the spec names no source".to_string()),
                };
                let is_dir = match &src {
                    Some(s) => {
                        copy(s, &target)?;
                        target.is_dir()
                    }
                    None => {
                        // A file when the rootfs has a file there, else a directory.
                        let inside =
                            merged.join(resolve_in_root(merged, key).trim_start_matches('/'));
                        let file = fs::metadata(&inside).is_ok_and(|md| !md.is_dir());
                        if file {
                            fs::write(&target, b"")
                                .map_err(|e| SandboxError::io("creating", &target, e))?;
                        } else {
                            fs::create_dir(&target)
                                .map_err(|e| SandboxError::io("creating", &target, e))?;
                        }
                        m.warnings.push(format!(
                            "{key}: {from}, so an empty private {} was mounted (give one with --volume {key}=SRC)",
                            if file { "file" } else { "directory" }
                        ));
                        !file
                    }
                };
                copies.push((key.clone(), target.clone()));
                (target, from, is_dir)
            }
        };
        if !in_tmpfs(key) {
            mountpoint(merged, key, is_dir)?;
        }
        m.ext_mnt
            .push((key.clone(), source.to_string_lossy().into_owned()));
        m.records.push(MountRecord {
            destination: key.clone(),
            source,
            from,
        });
    }
    // Mountpoints of mounts nested in a bind mount live in that mount's copy.
    let keys: BTreeSet<&String> = plan.ext_mounts.iter().map(|e| &e.key).collect();
    for k in keys {
        for (parent, copy) in &copies {
            if let Some(rel) = k.strip_prefix(&format!("{}/", parent.trim_end_matches('/'))) {
                if copy.is_dir() {
                    let is_dir = m
                        .records
                        .iter()
                        .any(|r| &r.destination == k && r.source.is_dir());
                    mountpoint(copy, rel, is_dir)?;
                }
            }
        }
    }
    Ok(m)
}

/// Copies up every regular file the checkpoint's processes had open, and gives it the size
/// CRIU recorded where it differs: the base (a plain directory rootfs, a volume's source) may
/// have changed since the checkpoint, and CRIU refuses such a file. Only the sandbox's copies
/// change. Returns what was resized.
pub fn fit_open_files(
    files: &[(String, u64)],
    merged: &Path,
    mounts: &[MountRecord],
) -> Result<Vec<String>, SandboxError> {
    let mut changed = Vec::new();
    for (path, size) in files {
        // In the stand-in of the mount that holds it, else in the rootfs.
        let host = mounts
            .iter()
            .filter(|m| m.source.is_dir())
            .filter_map(|m| {
                let rel =
                    path.strip_prefix(&format!("{}/", m.destination.trim_end_matches('/')))?;
                Some((m.destination.len(), m.source.join(rel)))
            })
            .max_by_key(|(l, _)| *l)
            .map(|(_, p)| p)
            .unwrap_or_else(|| merged.join(resolve_in_root(merged, path).trim_start_matches('/')));
        let Ok(md) = fs::symlink_metadata(&host) else {
            continue; // a deleted file (CRIU restores it from its ghost image)
        };
        if !md.is_file() {
            continue;
        }
        // Opened for writing even when the size is right: the overlay copies the file up, so
        // later writes of the original to a live base no longer show through.
        let f = fs::OpenOptions::new()
            .write(true)
            .open(&host)
            .map_err(|e| SandboxError::io("copying up", &host, e))?;
        let now = f
            .metadata()
            .map_err(|e| SandboxError::io("inspecting", &host, e))?
            .len();
        if now == *size {
            continue;
        }
        f.set_len(*size)
            .map_err(|e| SandboxError::io("resizing", &host, e))?;
        changed.push(format!(
            "{path} had changed since the checkpoint ({now} bytes now, {size} then): the sandbox's copy was cut to its checkpointed size"
        ));
    }
    Ok(changed)
}

/// Makes sure `key` (inside `root`) exists, as a directory or a file, resolving symlinks
/// inside `root`.
fn mountpoint(root: &Path, key: &str, is_dir: bool) -> Result<(), SandboxError> {
    let resolved = resolve_in_root(root, key);
    let p = root.join(resolved.trim_start_matches('/'));
    if fs::symlink_metadata(&p).is_ok() {
        return Ok(());
    }
    let made = if is_dir {
        fs::create_dir_all(&p)
    } else {
        p.parent()
            .map(fs::create_dir_all)
            .unwrap_or(Ok(()))
            .and_then(|()| fs::write(&p, b""))
    };
    made.map_err(|e| SandboxError::io("creating the mountpoint", &p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteouts_never_leave_the_upper_dir() {
        let dir = tempfile::tempdir().unwrap();
        let upper = dir.path().join("upper");
        fs::create_dir_all(upper.join("etc/replaced")).unwrap();
        std::os::unix::fs::symlink("/", upper.join("link")).unwrap();
        whiteout(&upper, "/etc/gone").unwrap();
        let md = fs::symlink_metadata(upper.join("etc/gone")).unwrap();
        assert!(md.file_type().is_char_device() && md.rdev() == 0);
        whiteout(&upper, "/a/b/c").unwrap();
        assert!(upper.join("a/b").is_dir());
        // Through a symlink, or upwards: skipped.
        whiteout(&upper, "/link/tmp/x").unwrap();
        assert!(
            !Path::new("/tmp/x").exists() || fs::symlink_metadata("/tmp/x").unwrap().rdev() != 0
        );
        whiteout(&upper, "/../x").unwrap();
        assert!(!dir.path().join("x").exists());
        whiteout(&upper, "/").unwrap();
    }
}
