//! What a checkpoint needs from its sandbox, and the refusals: read from the private copy of
//! the checkpoint (manifest, `spec.dump`, CRIU images) before any process starts.
//!
//! A checkpoint is refused, naming the reason, when it needs something reel cannot substitute
//! with a private stand-in: a device other than the ones every container has, a pid namespace
//! shared with others (a pod sharing its process namespace), an external resource of a kind
//! reel does not know, a terminal, addresses under `--network none`, or a rootfs base that is
//! no longer on this host (without `--rootfs-base`).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::archive::Manifest;
use crate::checkpoint::plan::clean_destination;
use crate::oci::Spec;

use super::images::{self, InetSocket};
use super::state::{NetworkMode, Request};
use super::SandboxError;

/// The device nodes every runtime gives a container: the sandbox makes its own.
pub const DEFAULT_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// What stands in for one external mount of the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stand {
    /// A private copy of a bind mount: of `original` (the source at checkpoint time) or of the
    /// `--volume` given for it.
    Copy {
        original: Option<PathBuf>,
        volume: Option<PathBuf>,
    },
    /// A device node the sandbox makes itself (`/dev/null` also stands in for masked files).
    Device { name: String },
    /// A v1 cgroup controller directory: the sandbox's own cgroup there.
    Cgroup { mount_point: String },
}

/// One external mount: CRIU's key (the destination, as dumped) and its stand-in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMount {
    pub key: String,
    pub stand: Stand,
}

/// The restore plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub checkpoint_id: String,
    /// The rootfs base, top layer first.
    pub lowers: Vec<PathBuf>,
    /// Where the base came from, for the record.
    pub base_from: String,
    /// The dump declared the network namespace external (a pod's): CRIU wants it as
    /// `extRootNetNS`; otherwise it makes an empty one that reel fills at setup-namespaces.
    pub external_netns: bool,
    /// The addresses the sockets need.
    pub addresses: Vec<IpAddr>,
    pub ext_mounts: Vec<ExtMount>,
    /// Destinations of the spec's tmpfs mounts (CRIU restores their content).
    pub tmpfs: Vec<String>,
    /// The unix sockets whose peer was outside the container: inode and kind (`stream`,
    /// `dgram`, `seqpacket`).
    pub outside_unix_sockets: Vec<(u32, String)>,
    /// `pipe:[ino]` keys of the init's stdio, with the fd number (0, 1, 2).
    pub stdio_pipes: Vec<(usize, String)>,
    pub file_locks: bool,
    pub shell_job: bool,
    /// Memory limit (bytes) and CPU quota (`quota`, `period` µs), default the original's.
    pub memory_limit: Option<u64>,
    pub cpu: Option<(i64, u64)>,
    /// Checkpointed TCP connections (restored closed).
    pub tcp_connections: usize,
}

fn opt_bool(m: &Manifest, key: &str) -> bool {
    m.fields
        .dump_options
        .get(key)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

fn opt_strings(m: &Manifest, key: &str) -> Vec<String> {
    m.fields
        .dump_options
        .get(key)
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Builds the plan for the checkpoint whose manifest is `manifest`, with its `spec.dump` bytes
/// and its images in `images`.
pub fn plan(
    manifest: &Manifest,
    spec_bytes: &[u8],
    images: &Path,
    req: &Request,
) -> Result<Plan, SandboxError> {
    let id = manifest.fields.checkpoint_id.clone();
    let refuse = |reason: String| SandboxError::Refused {
        checkpoint: id.clone(),
        reason,
    };
    let spec = Spec::parse(spec_bytes)
        .map_err(|e| refuse(format!("spec.dump is not an OCI spec: {e}")))?;
    let raw: serde_json::Value = serde_json::from_slice(spec_bytes).unwrap_or_default();

    // Externals: only a pod's network namespace and outside unix peers have stand-ins.
    let mut external_netns = false;
    for e in opt_strings(manifest, "external") {
        if e.starts_with("net[") && e.ends_with(":extRootNetNS") {
            external_netns = true;
        } else if e.starts_with("unix[") {
        } else if e.starts_with("pid[") {
            return Err(refuse(format!(
                "it shares a pid namespace with processes outside it ({e}): a pod sharing its process namespace cannot be restored alone"
            )));
        } else {
            return Err(refuse(format!(
                "it uses the external resource {e}, which reel has no stand-in for"
            )));
        }
    }
    let outside_unix_sockets: Vec<(u32, String)> = manifest
        .fields
        .dump_options
        .get("external_unix_sockets")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| {
                    let ino = u32::try_from(s.get("inode")?.as_u64()?).ok()?;
                    let kind = s.get("kind").and_then(|k| k.as_str()).unwrap_or("stream");
                    Some((ino, kind.to_string()))
                })
                .collect()
        })
        .unwrap_or_default();

    // Devices beyond the usual ones.
    if let Some(linux) = &spec.linux {
        if let Some(d) = linux
            .devices
            .iter()
            .find(|d| !DEFAULT_DEVICES.contains(&clean_destination(&d.path).as_str()))
        {
            return Err(refuse(format!(
                "it holds the device {}, which a sandbox does not give",
                d.path
            )));
        }
    }
    if spec.process.as_ref().is_some_and(|p| p.terminal) {
        return Err(refuse(
            "its init is attached to a terminal (process.terminal)".into(),
        ));
    }

    // External mounts: what the dump declared, each with its stand-in.
    let binds: Vec<(String, Option<PathBuf>)> = spec
        .mounts
        .iter()
        .filter(|m| m.is_bind())
        .map(|m| {
            (
                clean_destination(&m.destination),
                m.source.as_ref().map(PathBuf::from),
            )
        })
        .collect();
    let masked: BTreeSet<String> = spec
        .linux
        .as_ref()
        .map(|l| {
            l.masked_paths
                .iter()
                .map(|p| clean_destination(p))
                .collect()
        })
        .unwrap_or_default();
    let mut used_volumes = BTreeSet::new();
    let mut ext_mounts = Vec::new();
    for entry in opt_strings(manifest, "ext_mnt") {
        let Some((key, value)) = entry.split_once(':') else {
            return Err(refuse(format!(
                "malformed external mount {entry:?} in the manifest"
            )));
        };
        let key = clean_destination(key);
        let stand = if value == "/dev/null" && masked.contains(&key) {
            Stand::Device {
                name: "null".into(),
            }
        } else if let Some(dev) = DEFAULT_DEVICES.iter().find(|d| **d == key) {
            Stand::Device {
                name: dev.trim_start_matches("/dev/").into(),
            }
        } else if key.starts_with("/sys/fs/cgroup/") {
            Stand::Cgroup {
                mount_point: key.clone(),
            }
        } else {
            // A bind mount: the spec's by destination (the dump resolved symlinks of the
            // rootfs; a destination under one matches by its last components).
            let original = binds
                .iter()
                .find(|(d, _)| *d == key)
                .or_else(|| binds.iter().find(|(d, _)| key.ends_with(d.as_str())))
                .and_then(|(_, s)| s.clone());
            let volume = req
                .volumes
                .iter()
                .find(|(d, _)| clean_destination(d) == key)
                .map(|(d, s)| {
                    used_volumes.insert(clean_destination(d));
                    s.clone()
                });
            Stand::Copy { original, volume }
        };
        ext_mounts.push(ExtMount { key, stand });
    }
    if let Some((d, _)) = req
        .volumes
        .iter()
        .find(|(d, _)| !used_volumes.contains(&clean_destination(d)))
    {
        return Err(SandboxError::Invalid(format!(
            "--volume {d}=...: the checkpoint has no bind mount at {d} (its bind mounts: {})",
            ext_mounts
                .iter()
                .filter(|m| matches!(m.stand, Stand::Copy { .. }))
                .map(|m| m.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let tmpfs = spec
        .mounts
        .iter()
        .filter(|m| m.kind.as_deref() == Some("tmpfs"))
        .map(|m| clean_destination(&m.destination))
        .collect();

    // The rootfs base.
    let (lowers, base_from) = match (&req.rootfs_base, &manifest.fields.rootfs_layers) {
        (Some(base), _) => {
            if !base.is_dir() {
                return Err(SandboxError::Invalid(format!(
                    "--rootfs-base {} is not a directory",
                    base.display()
                )));
            }
            (vec![base.clone()], format!("--rootfs-base {}", base.display()))
        }
        (None, Some(layers)) if !layers.lower_dirs.is_empty() => {
            let missing: Vec<String> = layers
                .lower_dirs
                .iter()
                .filter(|d| !d.is_dir())
                .map(|d| d.display().to_string())
                .collect();
            if !missing.is_empty() {
                return Err(refuse(format!(
                    "its base layers are no longer on this host ({}); give the image's root filesystem with --rootfs-base DIR",
                    missing.join(", ")
                )));
            }
            let what = match &layers.image {
                Some(i) => format!("the original's {} layers ({i})", layers.kind),
                None => format!("the original's {} layers", layers.kind),
            };
            (layers.lower_dirs.clone(), what)
        }
        _ => {
            return Err(refuse(
                "the manifest records no base layers (checkpoint taken by an older reel); give the image's root filesystem with --rootfs-base DIR".into(),
            ))
        }
    };

    // Addresses the sockets need; none under --network none.
    let sockets = images::inet_sockets(images)?;
    let addresses = needed_addresses(&sockets);
    if req.network == NetworkMode::None {
        if let Some(a) = addresses.first() {
            return Err(refuse(format!(
                "its sockets use the address {a}, which --network none does not give; use --network isolated"
            )));
        }
        if let Some(s) = sockets
            .iter()
            .find(|s| s.remote.is_some_and(|r| !r.is_loopback()))
        {
            return Err(refuse(format!(
                "a socket is connected to {}, which needs a route --network none does not give; use --network isolated",
                s.remote.map(|r| r.to_string()).unwrap_or_default()
            )));
        }
    }
    let tcp_connections = sockets
        .iter()
        .filter(|s| s.kind == libc::SOCK_STREAM as u32 && s.state == 1)
        .count();

    // Stdio: pipes get files of the sandbox; a terminal has no stand-in.
    let mut stdio_pipes = Vec::new();
    for (fd, d) in images::descriptors(images)?.iter().enumerate().take(3) {
        if d.starts_with("pipe:[") {
            stdio_pipes.push((fd, d.clone()));
        } else if d.starts_with("/dev/pts/") || d.starts_with("/dev/tty") && d != "/dev/tty" {
            return Err(refuse(format!("fd {fd} of its init is the terminal {d}")));
        }
    }

    let resources = &raw["linux"]["resources"];
    let memory_limit = req.memory_limit.or_else(|| {
        resources["memory"]["limit"]
            .as_i64()
            .filter(|l| *l > 0)
            .map(|l| l as u64)
    });
    let cpu = match req.cpus {
        Some(c) => Some(((c * 100_000.0) as i64, 100_000)),
        None => {
            let quota = resources["cpu"]["quota"].as_i64().filter(|q| *q > 0);
            let period = resources["cpu"]["period"].as_u64().unwrap_or(100_000);
            quota.map(|q| (q, period))
        }
    };

    Ok(Plan {
        checkpoint_id: id,
        lowers,
        base_from,
        external_netns,
        addresses,
        ext_mounts,
        tmpfs,
        outside_unix_sockets,
        stdio_pipes,
        file_locks: opt_bool(manifest, "file_locks"),
        shell_job: opt_bool(manifest, "shell_job"),
        memory_limit,
        cpu,
        tcp_connections,
    })
}

/// The local addresses of the sockets that are neither wildcard nor loopback, sorted.
pub fn needed_addresses(sockets: &[InetSocket]) -> Vec<IpAddr> {
    let set: BTreeSet<IpAddr> = sockets
        .iter()
        .filter_map(|s| s.local)
        .filter(|a| !a.is_loopback())
        .collect();
    set.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_loopback_and_wildcards() {
        let s = |l: Option<&str>| InetSocket {
            kind: 1,
            state: 10,
            local: l.map(|a| a.parse().unwrap()),
            local_port: 80,
            remote: None,
        };
        let got = needed_addresses(&[
            s(Some("10.0.0.2")),
            s(Some("127.0.0.1")),
            s(None),
            s(Some("10.0.0.2")),
            s(Some("fd00::2")),
        ]);
        assert_eq!(
            got,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fd00::2".parse().unwrap()
            ]
        );
    }
}
