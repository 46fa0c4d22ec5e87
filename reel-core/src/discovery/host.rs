//! What discovery reads of cgroups and mounts beyond the shared readers of [`crate::host`]
//! (processes, mountinfo) and [`crate::cgroups::Hierarchies`] (where hierarchies are mounted).

use std::fs;
use std::path::{Path, PathBuf};

use crate::host::Mount;

/// The overlay upper dir of the mount at `/` in `mounts` (the last mount there wins: it is the
/// one on top), if that mount is an overlay.
pub(crate) fn root_upper_dir(mounts: &[Mount], mount_point: &str) -> Option<PathBuf> {
    let m = mounts.iter().rev().find(|m| m.mount_point == mount_point)?;
    if m.fstype != "overlay" {
        return None;
    }
    m.super_option("upperdir").map(PathBuf::from)
}

/// Reads a cgroup file holding one number.
pub(crate) fn read_u64(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pids in a cgroup directory (`cgroup.procs`).
pub(crate) fn cgroup_procs(dir: &Path) -> Option<Vec<i32>> {
    let text = fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// Whether a cgroup is frozen: v1 `freezer.state` is `FROZEN`, v2 `cgroup.freeze` is `1`.
pub(crate) fn is_frozen(v1_freezer: Option<&Path>, v2: Option<&Path>) -> bool {
    if let Some(d) = v1_freezer {
        if let Ok(s) = fs::read_to_string(d.join("freezer.state")) {
            return s.trim() == "FROZEN";
        }
    }
    if let Some(d) = v2 {
        if let Ok(s) = fs::read_to_string(d.join("cgroup.freeze")) {
            return s.trim() == "1";
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Hierarchies;
    use crate::host::{parse_cgroups, parse_mountinfo};

    #[test]
    fn mountinfo_overlay_upper() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n\
            69 46 0:39 / / rw,relatime - overlay overlay rw,lowerdir=/l/1/fs:/l/2/fs,\
            upperdir=/a\\054b/fs,workdir=/w\\040x/work\n\
            70 69 0:42 / /proc rw - proc proc rw\n";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(root_upper_dir(&m, "/"), Some(PathBuf::from("/a,b/fs")));
        assert_eq!(m[1].super_option("workdir"), Some("/w x/work"));
        assert_eq!(root_upper_dir(&m[..1], "/"), None);
    }

    #[test]
    fn cgroup_lines_and_mounts() {
        let cg = parse_cgroups("6:freezer:/k8s.io/a\n1:cpu,cpuacct:/k8s.io/a\n0::/k8s.io/a\n");
        assert_eq!(cg.get("freezer").map(String::as_str), Some("/k8s.io/a"));
        assert_eq!(cg.get("").map(String::as_str), Some("/k8s.io/a"));
        let h = Hierarchies::parse(
            "37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        assert_eq!(
            h.resolve_v1("freezer", "/k8s.io/a"),
            Some(PathBuf::from("/sys/fs/cgroup/freezer/k8s.io/a"))
        );
        assert!(h.resolve_v1("cpuacct", "/").is_some());
        assert_eq!(
            h.resolve(crate::cgroups::CgroupKind::V2, "/"),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }
}
