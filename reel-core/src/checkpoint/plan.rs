//! What CRIU must be told to dump a container so that runc (and so containerd and CRI-O,
//! which restore through runc) can restore the images: the same external mounts, external
//! namespaces and empty namespaces runc declares when it checkpoints a container itself.
//!
//! runc's restore only maps the external-mount keys runc writes at dump time, so the keys here
//! follow runc's conventions exactly: the mount destination inside the container.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use super::spec::Spec;
use super::CheckpointError;

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

        // Bind mounts of the spec.
        for m in spec.mounts.iter().filter(|m| m.is_bind()) {
            let dest = clean_destination(&m.destination);
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
            let dest = clean_destination(d);
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

/// `/proc/<pid>/root/<path inside the container>`.
pub fn proc_root_path(pid: i32, inside: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root"))
        .join(clean_destination(inside).trim_start_matches('/'))
}

/// The v1 cgroup mounts inside the container (as seen in its own mountinfo), e.g.
/// `/sys/fs/cgroup/freezer`, `/sys/fs/cgroup/cpu,cpuacct`.
fn v1_cgroup_mounts(pid: i32) -> Result<Vec<String>, CheckpointError> {
    let path = PathBuf::from(format!("/proc/{pid}/mountinfo"));
    let text = std::fs::read_to_string(&path).map_err(|e| CheckpointError::Inspect {
        path: path.clone(),
        source: e,
    })?;
    let mut out = Vec::new();
    for line in text.lines() {
        // mountinfo: id parent maj:min root mountpoint opts [optional...] - fstype source super
        let mut halves = line.splitn(2, " - ");
        let (left, right) = (halves.next().unwrap_or(""), halves.next().unwrap_or(""));
        let fstype = right.split_whitespace().next().unwrap_or("");
        let mountpoint = left.split_whitespace().nth(4).unwrap_or("");
        if fstype == "cgroup" && mountpoint.starts_with("/sys/fs/cgroup/") {
            out.push(unescape_mountinfo(mountpoint));
        }
    }
    Ok(out)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
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
    fn mountinfo_unescapes_octal() {
        assert_eq!(
            unescape_mountinfo("/sys/fs/cgroup/a\\040b"),
            "/sys/fs/cgroup/a b"
        );
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
