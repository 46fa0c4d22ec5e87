//! What discovery reads from the host kernel: `/proc/<pid>/{stat,cgroup,mountinfo,statm}`,
//! `/proc/self/mountinfo` (where the cgroup hierarchies are mounted) and the cgroup files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The fields of `/proc/<pid>/stat` discovery needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcStat {
    /// `R`, `S`, `D`, `Z`, `T`, `t`, `X`, `I`...
    pub state: char,
    pub ppid: i32,
    /// Start time after boot, in clock ticks (field 22).
    pub starttime: u64,
}

impl ProcStat {
    /// A zombie or dead task is not a running container init.
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses `/proc/<pid>/stat`; the command may hold spaces and parentheses, so the fields
/// are counted from the last `)`.
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); starttime is field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

pub(crate) fn proc_stat(proc_root: &Path, pid: i32) -> Option<ProcStat> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub(crate) fn clk_tck() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// The boot time (`btime` of `/proc/stat`), seconds since the epoch.
pub(crate) fn boot_time(proc_root: &Path) -> Option<u64> {
    let text = fs::read_to_string(proc_root.join("stat")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// When a process started, as wall-clock time (precision: one clock tick).
pub(crate) fn process_start(proc_root: &Path, stat: &ProcStat) -> Option<SystemTime> {
    let boot = boot_time(proc_root)?;
    let tck = clk_tck();
    let since_boot = Duration::from_secs(stat.starttime / tck)
        + Duration::from_nanos((stat.starttime % tck) * 1_000_000_000 / tck);
    Some(UNIX_EPOCH + Duration::from_secs(boot) + since_boot)
}

/// Resident memory of one process, bytes (`/proc/<pid>/statm`).
pub(crate) fn rss_bytes(proc_root: &Path, pid: i32) -> Option<u64> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * if page > 0 { page as u64 } else { 4096 })
}

/// Every process of the host with its parent: `(pid, ppid)`.
pub(crate) fn all_processes(proc_root: &Path) -> Vec<(i32, i32)> {
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        Some((pid, proc_stat(proc_root, pid)?.ppid))
    })
    .collect()
}

/// `pid` and all its descendants.
pub(crate) fn descendants(proc_root: &Path, pid: i32) -> Vec<i32> {
    let all = all_processes(proc_root);
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// mountinfo
// ---------------------------------------------------------------------------------------------

/// One line of a mountinfo file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountInfo {
    /// The root of the mount within its filesystem (field 4).
    pub root: String,
    /// Where it is mounted (field 5).
    pub mount_point: String,
    pub fstype: String,
    pub source: String,
    /// The super block options (the last field), split on commas, unescaped.
    pub super_options: Vec<String>,
}

impl MountInfo {
    /// The value of super option `key=`.
    pub fn super_option(&self, key: &str) -> Option<&str> {
        self.super_options
            .iter()
            .find_map(|o| o.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    }
}

/// Undoes the kernel's octal escapes (`\040` for a space, `\054` for a comma...).
pub(crate) fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(MountInfo {
                root: unescape(pre.get(3)?),
                mount_point: unescape(pre.get(4)?),
                fstype: post.first()?.to_string(),
                source: unescape(post.get(1)?),
                super_options: post
                    .get(2)
                    .map_or_else(Vec::new, |o| o.split(',').map(unescape).collect()),
            })
        })
        .collect()
}

pub(crate) fn mountinfo_of(path: &Path) -> Option<Vec<MountInfo>> {
    fs::read_to_string(path).ok().map(|t| parse_mountinfo(&t))
}

/// The overlay upper dir of the mount at `/` in `mounts` (the last mount there wins: it is the
/// one on top), if that mount is an overlay.
pub(crate) fn root_upper_dir(mounts: &[MountInfo], mount_point: &str) -> Option<PathBuf> {
    let m = mounts.iter().rev().find(|m| m.mount_point == mount_point)?;
    if m.fstype != "overlay" {
        return None;
    }
    m.super_option("upperdir").map(PathBuf::from)
}

// ---------------------------------------------------------------------------------------------
// cgroups
// ---------------------------------------------------------------------------------------------

/// The cgroup hierarchies mounted on the host.
#[derive(Debug, Clone, Default)]
pub(crate) struct CgroupMounts {
    /// v1: (controllers or `name=...` of the hierarchy, mount point, mount root).
    pub v1: Vec<(Vec<String>, PathBuf, String)>,
    /// v2: (mount point, mount root).
    pub v2: Option<(PathBuf, String)>,
}

impl CgroupMounts {
    pub fn from_mountinfo(mounts: &[MountInfo]) -> Self {
        let mut out = CgroupMounts::default();
        for m in mounts {
            match m.fstype.as_str() {
                "cgroup" => {
                    let ctrls: Vec<String> = m
                        .super_options
                        .iter()
                        .filter(|o| {
                            !matches!(o.as_str(), "rw" | "ro")
                                && !o.starts_with("release_agent=")
                                && *o != "clone_children"
                                && *o != "noprefix"
                                && *o != "xattr"
                                && *o != "cpuset_v2_mode"
                        })
                        .cloned()
                        .collect();
                    // Keep the first mount of each hierarchy.
                    if !out.v1.iter().any(|(c, _, _)| *c == ctrls) {
                        out.v1
                            .push((ctrls, PathBuf::from(&m.mount_point), m.root.clone()));
                    }
                }
                "cgroup2" if out.v2.is_none() => {
                    out.v2 = Some((PathBuf::from(&m.mount_point), m.root.clone()));
                }
                _ => {}
            }
        }
        out
    }

    /// The mount point and root of the v1 hierarchy holding `controller`.
    pub fn v1_mount(&self, controller: &str) -> Option<(&Path, &str)> {
        self.v1
            .iter()
            .find(|(c, _, _)| c.iter().any(|x| x == controller))
            .map(|(_, p, r)| (p.as_path(), r.as_str()))
    }
}

/// `mount_point` + (`path` relative to the mount's `root`).
pub(crate) fn join_cgroup(mount_point: &Path, root: &str, path: &str) -> PathBuf {
    let rel = if root != "/" {
        path.strip_prefix(root).unwrap_or(path)
    } else {
        path
    };
    mount_point.join(rel.trim_start_matches('/'))
}

/// The lines of `/proc/<pid>/cgroup`: controllers (`""` for v2) to path.
pub(crate) fn proc_cgroups(proc_root: &Path, pid: i32) -> Option<BTreeMap<String, String>> {
    let text = fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()?;
    Some(parse_proc_cgroup(&text))
}

pub(crate) fn parse_proc_cgroup(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            let ctrls = it.next()?;
            let path = it.next()?;
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
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

    #[test]
    fn stat_with_odd_command() {
        let s = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let st = parse_stat(s).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.starttime, 987654);
    }

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
        let cg = parse_proc_cgroup("6:freezer:/k8s.io/a\n1:cpu,cpuacct:/k8s.io/a\n0::/k8s.io/a\n");
        assert_eq!(cg.get("freezer").map(String::as_str), Some("/k8s.io/a"));
        assert_eq!(cg.get("").map(String::as_str), Some("/k8s.io/a"));
        let mounts = parse_mountinfo(
            "37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n\
             32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n",
        );
        let cm = CgroupMounts::from_mountinfo(&mounts);
        let (p, r) = cm.v1_mount("freezer").unwrap();
        assert_eq!(
            join_cgroup(p, r, "/k8s.io/a"),
            PathBuf::from("/sys/fs/cgroup/freezer/k8s.io/a")
        );
        assert!(cm.v1_mount("cpuacct").is_some());
        assert_eq!(cm.v2.unwrap().0, PathBuf::from("/sys/fs/cgroup/unified"));
    }
}
