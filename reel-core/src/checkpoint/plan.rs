//! What CRIU must be told to dump a container so that runc (and so containerd and CRI-O,
//! which restore through runc) can restore the images: the same external mounts, external
//! namespaces and empty namespaces runc declares when it checkpoints a container itself.
//!
//! runc's restore only maps the external-mount keys runc writes at dump time, so the keys here
//! follow runc's conventions exactly: the mount destination inside the container, resolved in
//! the rootfs the way runc resolves it (symlinks followed, never leaving the rootfs).
//!
//! [`rearm_expired_timerfds`] fixes, after the dump, one thing in CRIU's images that its
//! restore would otherwise get wrong (an expired periodic timerfd restored disarmed).

use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::CheckpointError;
use crate::criu::image::{ImageError, ImageKind, ImageReader, ImageWriter};
use crate::oci::Spec;

/// The devices runc creates in every container (besides the spec's `linux.devices`).
const DEFAULT_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/random",
    "/dev/full",
    "/dev/tty",
    "/dev/zero",
    "/dev/urandom",
];

/// `CLONE_NEWNET`: runc does not manage network devices, so the netns is restored empty.
pub const EMPTY_NS_NET: u32 = libc::CLONE_NEWNET as u32;

/// The container-specific part of a dump request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DumpPlan {
    /// The container's root on the host.
    pub root: PathBuf,
    /// External mounts: key and value, both the destination inside the container (masked
    /// files map to `/dev/null`).
    pub ext_mnt: Vec<(String, String)>,
    /// `--external` entries: namespaces the container joins by path.
    pub external: Vec<String>,
    /// Namespaces restored empty (`CLONE_NEWNET`, as runc).
    pub empty_ns: u32,
}

/// Clean a destination inside the container the way a secure join does: resolve `.` and `..`
/// lexically without ever leaving `/`.
pub fn clean_destination(dest: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

impl DumpPlan {
    /// Work out the plan for the container whose init is `pid`, with root `root` and `spec`.
    ///
    /// `pid` is used to look inside the container from the host (`/proc/<pid>/root/...`,
    /// `/proc/<pid>/mountinfo`); nothing enters the container's namespaces.
    pub fn new(pid: i32, root: &Path, spec: &Spec) -> Result<DumpPlan, CheckpointError> {
        let mut plan = DumpPlan {
            root: root.to_path_buf(),
            empty_ns: EMPTY_NS_NET,
            ..DumpPlan::default()
        };
        let mut add = |key: String, val: String| {
            if !plan.ext_mnt.iter().any(|(k, _)| *k == key) {
                plan.ext_mnt.push((key, val));
            }
        };

        // Bind mounts of the spec, where the runtime really mounted them: a destination
        // under a symlink of the rootfs is mounted at the symlink's target (runc and crun
        // resolve it inside the rootfs), and CRIU only matches the real mountpoint.
        for m in spec.mounts.iter().filter(|m| m.is_bind()) {
            let dest = resolve_in_root(root, &m.destination);
            add(dest.clone(), dest);
        }

        // cgroup v1 without a cgroup namespace: runc bind-mounts one directory per controller.
        let cgroup_mount = spec
            .mounts
            .iter()
            .any(|m| m.kind.as_deref() == Some("cgroup"));
        if cgroup_mount && !spec.has_namespace("cgroup") {
            for dest in v1_cgroup_mounts(pid)? {
                add(dest.clone(), dest);
            }
        }

        // Masked paths that are files are bind mounts of /dev/null.
        if let Some(linux) = &spec.linux {
            for p in &linux.masked_paths {
                let inside = proc_root_path(pid, p);
                match std::fs::metadata(&inside) {
                    Ok(md) if !md.is_dir() => add(clean_destination(p), "/dev/null".into()),
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(CheckpointError::Inspect {
                            path: inside,
                            source: e,
                        })
                    }
                }
            }
        }

        // Device nodes.
        let spec_devices = spec
            .linux
            .as_ref()
            .map(|l| {
                l.devices
                    .iter()
                    .map(|d| d.path.as_str())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        for d in DEFAULT_DEVICES.iter().copied().chain(spec_devices) {
            let dest = resolve_in_root(root, d);
            add(dest.clone(), dest);
        }

        // Namespaces the container joins by path are external, under runc's keys.
        for (kind, crit, key) in [
            ("network", "net", "extRootNetNS"),
            ("pid", "pid", "extRootPidNS"),
        ] {
            if let Some(path) = spec.namespace_path(kind) {
                let md = std::fs::metadata(path).map_err(|e| CheckpointError::Inspect {
                    path: PathBuf::from(path),
                    source: e,
                })?;
                plan.external.push(format!("{crit}[{}]:{key}", md.ino()));
            }
        }
        Ok(plan)
    }
}

/// The most symlinks [`resolve_in_root`] follows (as filepath-securejoin, which runc uses).
const MAX_SYMLINKS: usize = 255;

/// Resolves `dest`, a path inside the container, in the rootfs `root` on the host the way
/// runc does for mount destinations (filepath-securejoin's `SecureJoin`): `.` and `..` are
/// resolved without ever going above `/`, every symlink met is followed (an absolute target
/// from the rootfs, a relative one from the link's directory) and components that do not exist
/// are taken as they are. Returns the resolved path inside the container, starting with `/`.
/// With more than 255 symlinks the lexically cleaned `dest` is returned, as runc then keeps
/// the destination unresolved.
///
/// Nothing is opened: only `lstat` and `readlink` under `root`.
pub fn resolve_in_root(root: &Path, dest: &str) -> String {
    fn parts(p: &Path) -> impl Iterator<Item = String> + '_ {
        p.components().filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_string()),
            _ => None,
        })
    }
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: VecDeque<String> = parts(Path::new(dest)).collect();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let on_host = resolved
            .iter()
            .fold(root.to_path_buf(), |p, c| p.join(c))
            .join(&part);
        let target = match std::fs::symlink_metadata(&on_host) {
            Ok(md) if md.file_type().is_symlink() => std::fs::read_link(&on_host).ok(),
            _ => None,
        };
        let Some(target) = target else {
            resolved.push(part);
            continue;
        };
        links += 1;
        if links > MAX_SYMLINKS {
            return clean_destination(dest);
        }
        if target.is_absolute() {
            resolved.clear();
        }
        for (i, c) in parts(&target).enumerate() {
            pending.insert(i, c);
        }
    }
    format!("/{}", resolved.join("/"))
}

/// `/proc/<pid>/root/<path inside the container>`.
pub fn proc_root_path(pid: i32, inside: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root"))
        .join(clean_destination(inside).trim_start_matches('/'))
}

/// The v1 cgroup mounts inside the container (as seen in its own mountinfo), e.g.
/// `/sys/fs/cgroup/freezer`, `/sys/fs/cgroup/cpu,cpuacct`.
fn v1_cgroup_mounts(pid: i32) -> Result<Vec<String>, CheckpointError> {
    let path = PathBuf::from(format!("/proc/{pid}/mountinfo"));
    let mounts = crate::host::mountinfo_file(&path)
        .map_err(|source| CheckpointError::Inspect { path, source })?;
    Ok(mounts
        .into_iter()
        .filter(|m| m.fstype == "cgroup" && m.mount_point.starts_with("/sys/fs/cgroup/"))
        .map(|m| m.mount_point)
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Image fix-ups
// ---------------------------------------------------------------------------------------------

/// `TFD_TIMER_ABSTIME` of `timerfd_settime`.
const TFD_TIMER_ABSTIME: u32 = 1;

/// Re-arms the periodic timerfds CRIU dumped as expired, so that a restore keeps them ticking.
/// Returns the ids of the timerfds changed (empty when none was).
///
/// CRIU reads a timerfd's state from `/proc/<pid>/fdinfo`, where the kernel shows an expired
/// timer that nobody has read yet with `it_value: (0, 0)`: unlike `timerfd_gettime`, fdinfo
/// does not forward a periodic timer to its next expiry. CRIU's restore then calls
/// `timerfd_settime` with that zero `it_value`, which DISARMS the timer: a periodic timerfd
/// that had ticked (the usual state of one read less often than it fires) never ticks again
/// after the restore, whoever restores it (CRIU 4.2.1 and upstream at the time of writing;
/// `runc checkpoint` images have the same defect). The pending expirations (`ticks`) are kept
/// by CRIU; what is lost is only that the timer goes on. This sets `it_value` of such entries
/// (a relative timer with a non-zero `it_interval`, `it_value` zero) to one interval: the next
/// expiry comes one period after the restore, as it would have come at most one period after
/// the dump. Entries are rewritten only when changed; every other entry of `files.img` is kept
/// byte for byte. A missing `files.img` (nothing to fix) is not an error.
pub fn rearm_expired_timerfds(images_dir: &Path) -> Result<Vec<u32>, CheckpointError> {
    use criu_sys::proto::FileEntry;

    let path = images_dir.join("files.img");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(CheckpointError::Inspect { path, source }),
    };
    let invalid = |e: ImageError| CheckpointError::Inspect {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    };
    let name = path.display().to_string();
    let mut image = ImageReader::from_bytes(&bytes, name.clone()).map_err(invalid)?;
    image.expect_kind(ImageKind::Files).map_err(invalid)?;
    let mut out = ImageWriter::new(Vec::with_capacity(bytes.len()), ImageKind::Files, name)
        .map_err(invalid)?;
    let mut changed = Vec::new();
    while let Some(e) = image.next_entry().map_err(invalid)? {
        let mut entry: FileEntry = e.decode().map_err(invalid)?;
        let rearm = entry.tfd.as_ref().is_some_and(|t| {
            t.vsec == 0
                && t.vnsec == 0
                && (t.isec != 0 || t.insec != 0)
                && t.settime_flags & TFD_TIMER_ABSTIME == 0
        });
        match entry.tfd.as_mut().filter(|_| rearm) {
            Some(t) => {
                (t.vsec, t.vnsec) = (t.isec, t.insec);
                changed.push(t.id);
                out.write_entry(&entry)
            }
            None => out.write_raw_entry(e.bytes()),
        }
        .map_err(invalid)?;
    }
    let out = out.finish().map_err(invalid)?;
    if !changed.is_empty() {
        // Rewritten in place: the file keeps its mode (0600) and owner.
        std::fs::write(&path, &out).map_err(|source| CheckpointError::Inspect {
            path: path.clone(),
            source,
        })?;
        tracing::info!(ids = ?changed, "re-armed expired periodic timerfds in files.img");
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_never_leave_root() {
        assert_eq!(clean_destination("/data"), "/data");
        assert_eq!(clean_destination("data/./x/"), "/data/x");
        assert_eq!(clean_destination("/../../etc/x"), "/etc/x");
        assert_eq!(clean_destination("/a/b/../c"), "/a/c");
    }

    #[test]
    fn resolves_destinations_like_securejoin() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("mnt/real")).unwrap();
        std::os::unix::fs::symlink("/mnt", r.join("abs")).unwrap();
        std::os::unix::fs::symlink("mnt/real", r.join("rel")).unwrap();
        std::os::unix::fs::symlink("../../../../etc", r.join("mnt/up")).unwrap();
        std::os::unix::fs::symlink("loop", r.join("loop")).unwrap();
        assert_eq!(resolve_in_root(r, "/data"), "/data");
        assert_eq!(resolve_in_root(r, "/abs/data"), "/mnt/data");
        assert_eq!(resolve_in_root(r, "/rel/x/"), "/mnt/real/x");
        assert_eq!(resolve_in_root(r, "/abs/real/../x"), "/mnt/x");
        // A symlink pointing above the root stays inside it.
        assert_eq!(resolve_in_root(r, "/mnt/up/hosts"), "/etc/hosts");
        assert_eq!(resolve_in_root(r, "/../abs"), "/mnt");
        // Too many links: the lexical path, as runc keeps it.
        assert_eq!(resolve_in_root(r, "/loop/x"), "/loop/x");
    }

    fn files_image(entries: &[FileEntry]) -> Vec<u8> {
        let mut w = ImageWriter::new(Vec::new(), ImageKind::Files, "files.img").unwrap();
        for e in entries {
            w.write_entry(e).unwrap();
        }
        w.finish().unwrap()
    }

    fn timerfd(id: u32, value: (u64, u64), interval: (u64, u64), flags: u32) -> FileEntry {
        use criu_sys::proto::{FdTypes, TimerfdEntry};
        let mut e = FileEntry {
            id,
            tfd: Some(TimerfdEntry {
                id,
                flags: 2,
                fown: Default::default(),
                clockid: 1,
                ticks: 3,
                settime_flags: flags,
                vsec: value.0,
                vnsec: value.1,
                isec: interval.0,
                insec: interval.1,
            }),
            ..Default::default()
        };
        e.set_type(FdTypes::Timerfd);
        e
    }

    use criu_sys::proto::FileEntry;

    #[test]
    fn rearms_only_expired_relative_periodic_timerfds() {
        let dir = tempfile::tempdir().unwrap();
        let expired = timerfd(1, (0, 0), (0, 10_000_000), 0);
        let pending = timerfd(2, (0, 5_000), (0, 10_000_000), 0);
        let one_shot = timerfd(3, (0, 0), (0, 0), 0);
        let absolute = timerfd(4, (0, 0), (1, 0), TFD_TIMER_ABSTIME);
        let img = files_image(&[
            expired.clone(),
            pending.clone(),
            one_shot.clone(),
            absolute.clone(),
        ]);
        std::fs::write(dir.path().join("files.img"), &img).unwrap();

        assert_eq!(rearm_expired_timerfds(dir.path()).unwrap(), vec![1]);
        let mut want = expired;
        want.tfd.as_mut().unwrap().vnsec = 10_000_000;
        let fixed = std::fs::read(dir.path().join("files.img")).unwrap();
        assert_eq!(fixed, files_image(&[want, pending, one_shot, absolute]));
        // Idempotent.
        assert!(rearm_expired_timerfds(dir.path()).unwrap().is_empty());
        assert_eq!(std::fs::read(dir.path().join("files.img")).unwrap(), fixed);
    }

    #[test]
    fn timerfd_fixup_tolerates_no_files_image_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(rearm_expired_timerfds(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join("files.img"), b"not an image").unwrap();
        assert!(rearm_expired_timerfds(dir.path()).is_err());
    }
}
