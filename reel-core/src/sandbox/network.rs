//! The sandbox's network namespace: `lo` up, and (isolated mode) one device with no way out
//! holding every address the checkpoint's sockets used, with a default route into it.
//!
//! The device is a `dummy` where the kernel has the driver, else a bridge without ports: both
//! accept addresses and routes, and drop every packet sent through them. There is no veth
//! and no uplink, so nothing the restored processes send can reach another host or the
//! original's peers; listeners on the pod IP and connected UDP sockets still restore.
//!
//! The namespace is named `reel-<sandbox>` under `/run/netns` (`ip -n reel-<sandbox> ...`
//! looks inside). It is built with iproute2's `ip`, which every node has.

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::state::{NetworkMode, NetworkRecord};
use super::SandboxError;

/// The device holding the addresses.
pub const DEVICE: &str = "reel0";

/// The namespace's name for sandbox `name`.
pub fn netns_name(sandbox: &str) -> String {
    format!("reel-{sandbox}")
}

/// `/run/netns/<name>`.
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

fn ip(args: &[&str]) -> Result<(), String> {
    ip_in(None, args)
}

/// `ip ARGS`, in the mount namespace `mnt_ns` when given (names under `/run/netns` are bind
/// mounts, so they must be made where the host sees them).
fn ip_in(mnt_ns: Option<&File>, args: &[&str]) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let bin = crate::host::which("ip").ok_or("iproute2's `ip` is not installed")?;
    let mut cmd = Command::new(bin);
    if let Some(ns) = mnt_ns {
        let fd = ns.as_raw_fd();
        // SAFETY: setns is async-signal-safe; the forked child is single-threaded.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNS) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Creates the empty namespace `name`.
pub fn create(name: &str) -> Result<(), SandboxError> {
    ip(&["netns", "add", name]).map_err(|e| SandboxError::step("creating the network namespace", e))
}

/// Names the network namespace of process `pid` `name` (CRIU made it), in the host's mount
/// namespace `host_mnt`.
pub fn attach(name: &str, pid: i32, host_mnt: Option<&File>) -> Result<(), SandboxError> {
    ip_in(host_mnt, &["netns", "attach", name, &pid.to_string()])
        .map_err(|e| SandboxError::step("naming the restored network namespace", e))
}

/// Opens the namespace (for CRIU's `extRootNetNS`).
pub fn open(name: &str) -> Result<File, SandboxError> {
    let p = netns_path(name);
    File::open(&p).map_err(|e| SandboxError::io("opening", &p, e))
}

/// Sets the namespace up: `lo`, and in isolated mode the device with `addresses` and the
/// default routes (`ip` runs in the mount namespace `host_mnt` when given, where the name is).
pub fn configure(
    name: &str,
    mode: NetworkMode,
    addresses: &[IpAddr],
    host_mnt: Option<&File>,
) -> Result<NetworkRecord, SandboxError> {
    let step = |e| SandboxError::step("setting up the sandbox's network", e);
    let n = |args: &[&str]| {
        let mut all = vec!["-n", name];
        all.extend_from_slice(args);
        ip_in(host_mnt, &all)
    };
    n(&["link", "set", "lo", "up"]).map_err(step)?;
    if mode == NetworkMode::None {
        return Ok(NetworkRecord {
            mode,
            device: None,
            addresses: Vec::new(),
        });
    }
    // A dummy where the driver exists, else a bridge with no ports.
    if n(&["link", "add", DEVICE, "type", "dummy"]).is_err() {
        n(&["link", "add", DEVICE, "type", "bridge"]).map_err(step)?;
    }
    n(&["link", "set", DEVICE, "up"]).map_err(step)?;
    for a in addresses {
        let (cidr, extra): (String, &[&str]) = match a {
            IpAddr::V4(v4) => (format!("{v4}/32"), &[]),
            IpAddr::V6(v6) => (format!("{v6}/128"), &["nodad"]),
        };
        let mut args = vec!["addr", "add", cidr.as_str(), "dev", DEVICE];
        args.extend_from_slice(extra);
        n(&args).map_err(step)?;
    }
    n(&["route", "add", "default", "dev", DEVICE]).map_err(step)?;
    // IPv6 may be off in the namespace: its route matters only when an address needs it.
    if let Err(e) = n(&["-6", "route", "add", "default", "dev", DEVICE]) {
        if addresses.iter().any(IpAddr::is_ipv6) {
            return Err(step(e));
        }
    }
    Ok(NetworkRecord {
        mode,
        device: Some(DEVICE.into()),
        addresses: addresses.to_vec(),
    })
}

/// Removes the namespace (nothing when it is gone).
pub fn delete(name: &str) -> Result<(), SandboxError> {
    if !netns_path(name).exists() {
        return Ok(());
    }
    ip(&["netns", "delete", name])
        .map_err(|e| SandboxError::step("removing the network namespace", e))
}
