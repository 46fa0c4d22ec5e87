//! Where the cgroup hierarchies are mounted (`/proc/self/mountinfo`) and which cgroups a
//! process belongs to (`/proc/<pid>/cgroup`).

use std::path::{Path, PathBuf};

use super::error::{FreezerError, Result};
use super::CgroupKind;
use crate::host;

/// One mount of a cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// The directory of the hierarchy that is mounted (field 4 of mountinfo, usually `/`).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
}

/// The cgroup hierarchies mounted on the host: every v1 hierarchy (with the `freezer` one
/// apart) and the unified (v2) one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    /// Mounts of the v1 hierarchy that has the `freezer` controller.
    pub v1_freezer: Vec<CgroupMount>,
    /// Mounts of every v1 hierarchy, with its controllers (or `name=...`).
    pub v1: Vec<(Vec<String>, CgroupMount)>,
    /// Mounts of cgroup2.
    pub unified: Vec<CgroupMount>,
}

impl Hierarchies {
    /// Read `/proc/self/mountinfo`.
    pub fn from_mountinfo() -> Result<Self> {
        let path = Path::new("/proc/self/mountinfo");
        let mounts = host::mountinfo_file(path).map_err(|e| FreezerError::io("read", path, e))?;
        Ok(Self::from_mounts(&mounts))
    }

    /// Parse the text of a mountinfo file. Lines that are not cgroup mounts are ignored.
    pub fn parse(mountinfo: &str) -> Self {
        Self::from_mounts(&host::parse_mountinfo(mountinfo))
    }

    /// The cgroup mounts among `mounts`.
    pub fn from_mounts(mounts: &[host::Mount]) -> Self {
        let mut out = Hierarchies::default();
        for m in mounts {
            let mount = CgroupMount {
                root: m.root.clone(),
                mount_point: PathBuf::from(&m.mount_point),
            };
            match m.fstype.as_str() {
                "cgroup2" => out.unified.push(mount),
                "cgroup" => {
                    let controllers: Vec<String> = m
                        .super_options
                        .iter()
                        .filter(|o| {
                            !matches!(
                                o.as_str(),
                                "rw" | "ro"
                                    | "clone_children"
                                    | "noprefix"
                                    | "xattr"
                                    | "cpuset_v2_mode"
                            ) && !o.starts_with("release_agent=")
                        })
                        .cloned()
                        .collect();
                    if controllers.iter().any(|c| c == "freezer") {
                        out.v1_freezer.push(mount.clone());
                    }
                    out.v1.push((controllers, mount));
                }
                _ => {}
            }
        }
        out
    }

    /// The directory of `cgroup` (as written in `/proc/<pid>/cgroup`) in the v1 hierarchy that
    /// holds `controller`.
    pub fn resolve_v1(&self, controller: &str, cgroup: &str) -> Option<PathBuf> {
        let mounts: Vec<CgroupMount> = self
            .v1
            .iter()
            .filter(|(c, _)| c.iter().any(|x| x == controller))
            .map(|(_, m)| m.clone())
            .collect();
        resolve_in(&mounts, cgroup)
    }

    /// The mounts of one kind.
    pub fn mounts(&self, kind: CgroupKind) -> &[CgroupMount] {
        match kind {
            CgroupKind::V1 => &self.v1_freezer,
            CgroupKind::V2 => &self.unified,
        }
    }

    /// The mount point of the whole hierarchy (a mount whose root is `/`), if any.
    pub fn root_mount(&self, kind: CgroupKind) -> Option<&Path> {
        self.mounts(kind)
            .iter()
            .find(|m| m.root == "/")
            .map(|m| m.mount_point.as_path())
    }

    /// The directory of `cgroup` (a path as written in `/proc/<pid>/cgroup`) in a mount of
    /// that hierarchy, preferring the mount that covers the most of the hierarchy.
    pub fn resolve(&self, kind: CgroupKind, cgroup: &str) -> Option<PathBuf> {
        resolve_in(self.mounts(kind), cgroup)
    }
}

/// The directory of `cgroup` in one of `mounts` (of one hierarchy), preferring the mount that
/// covers the most of it; never a path with `..`.
fn resolve_in(mounts: &[CgroupMount], cgroup: &str) -> Option<PathBuf> {
    if !cgroup.starts_with('/') || cgroup.split('/').any(|c| c == "..") {
        return None;
    }
    let mut candidates: Vec<&CgroupMount> = mounts.iter().collect();
    candidates.sort_by_key(|m| m.root.len());
    candidates.into_iter().find_map(|m| {
        let rest = strip_dir_prefix(cgroup, &m.root)?;
        let rest = rest.trim_start_matches('/');
        Some(if rest.is_empty() {
            m.mount_point.clone()
        } else {
            m.mount_point.join(rest)
        })
    })
}

/// `path` without the directory `prefix` (component-wise), or None if `prefix` is not an
/// ancestor of (or equal to) `path`.
fn strip_dir_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let prefix = prefix.trim_end_matches('/');
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The freezer-relevant lines of `/proc/<pid>/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessCgroups {
    /// The path on the `freezer` line (cgroup v1), if there is one.
    pub v1_freezer: Option<String>,
    /// The path on the `0::` line (cgroup v2), if there is one.
    pub unified: Option<String>,
}

impl ProcessCgroups {
    /// Read `/proc/<pid>/cgroup`.
    pub fn of_pid(pid: i32) -> Result<Self> {
        if pid <= 0 {
            return Err(FreezerError::ProcessNotFound { pid });
        }
        let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ESRCH)) {
                tracing::debug!(pid, "no such process");
                FreezerError::ProcessNotFound { pid }
            } else {
                FreezerError::io("read", &path, e)
            }
        })?;
        Ok(Self::parse(&text))
    }

    /// Parse the text of a `/proc/<pid>/cgroup` file.
    pub fn parse(text: &str) -> Self {
        let mut out = ProcessCgroups::default();
        for (controllers, path) in host::parse_cgroups(text) {
            if controllers.is_empty() {
                out.unified = Some(path);
            } else if controllers.split(',').any(|c| c == "freezer") {
                out.v1_freezer = Some(path);
            }
        }
        out
    }

    /// The path for one kind.
    pub fn path(&self, kind: CgroupKind) -> Option<&str> {
        match kind {
            CgroupKind::V1 => self.v1_freezer.as_deref(),
            CgroupKind::V2 => self.unified.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw,nsdelegate
90 41 0:38 /sub /mnt/my\\040cg rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn parses_hybrid_mountinfo() {
        let h = Hierarchies::parse(HYBRID);
        assert_eq!(
            h.root_mount(CgroupKind::V1),
            Some(Path::new("/sys/fs/cgroup/freezer"))
        );
        assert_eq!(
            h.root_mount(CgroupKind::V2),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(h.unified.len(), 2);
        assert_eq!(h.unified[1].mount_point, PathBuf::from("/mnt/my cg"));
        assert_eq!(h.unified[1].root, "/sub");
        assert_eq!(
            h.resolve(CgroupKind::V1, "/docker/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/freezer/docker/abc"))
        );
        assert_eq!(
            h.resolve(CgroupKind::V2, "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(h.resolve(CgroupKind::V2, "/a/../b"), None);
    }

    #[test]
    fn resolves_through_a_non_root_mount() {
        let h = Hierarchies::parse("50 1 0:40 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            h.resolve(CgroupKind::V2, "/kubepods/pod1/c"),
            Some(PathBuf::from("/sys/fs/cgroup/pod1/c"))
        );
        assert_eq!(
            h.resolve(CgroupKind::V2, "/kubepods"),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(h.resolve(CgroupKind::V2, "/kubepodsX/a"), None);
        assert_eq!(h.resolve(CgroupKind::V1, "/kubepods"), None);
    }

    #[test]
    fn parses_pure_v2_mountinfo() {
        let h = Hierarchies::parse(
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
        );
        assert!(h.v1_freezer.is_empty());
        assert_eq!(
            h.root_mount(CgroupKind::V2),
            Some(Path::new("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn parses_proc_cgroup() {
        let p = ProcessCgroups::parse(
            "9:name=systemd:/x\n6:freezer:/docker/a:b\n4:memory:/m\n0::/system.slice/x.scope\n",
        );
        assert_eq!(p.v1_freezer.as_deref(), Some("/docker/a:b"));
        assert_eq!(p.unified.as_deref(), Some("/system.slice/x.scope"));
        let p = ProcessCgroups::parse("0::/\n");
        assert_eq!(p.v1_freezer, None);
        assert_eq!(p.path(CgroupKind::V2), Some("/"));
        let p = ProcessCgroups::parse("3:cpu,freezer:/f\n");
        assert_eq!(p.path(CgroupKind::V1), Some("/f"));
    }
}
