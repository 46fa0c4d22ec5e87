//! Everything that decides whether a checkpoint can work on this host, each item with a
//! verdict and, when it is not fine, a hint of what to do.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::criu::Criu;

/// How one item stands.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Not fatal, but worth knowing (e.g. a host CRIU config file that changes options).
    Warning,
    /// Checkpoints cannot work until this is fixed.
    Missing,
}

/// One line of the capabilities report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub name: String,
    pub status: Status,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// True when a `direct` checkpoint can work here (no item is `missing`).
    pub checkpoint_possible: bool,
    /// The checkpoint methods this reel offers, and whether each works here.
    pub methods: Vec<Item>,
    pub items: Vec<Item>,
}

fn item(name: &str, status: Status, detail: impl Into<String>, hint: Option<&str>) -> Item {
    Item {
        name: name.to_string(),
        status,
        detail: detail.into(),
        hint: hint.map(str::to_string),
    }
}

/// Inputs of the report that callers may move.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    /// An explicit CRIU binary (else the usual search).
    pub criu: Option<PathBuf>,
    /// Where discovery looks for runtimes.
    pub discovery: crate::discovery::DiscoveryConfig,
    /// Where the methods reach containerd, the CRI runtime and the cluster.
    pub methods: crate::checkpoint::MethodConfig,
}

/// Look at this host.
pub fn probe(p: &Probe) -> Report {
    let mut items = Vec::new();
    items.extend(criu_items(p.criu.as_deref()));
    items.push(criu_config_item());
    items.push(kernel_item());
    items.push(cgroup_item());
    items.extend(process_capability_items());
    items.push(netlock_item());
    items.push(runtimes_item(&p.discovery));

    let possible = !items.iter().any(|i| i.status == Status::Missing);
    let mut methods = vec![item(
        "direct",
        if possible {
            Status::Ok
        } else {
            Status::Missing
        },
        "reel freezes the cgroup and drives CRIU itself; no container runtime is asked",
        if possible {
            None
        } else {
            Some("fix the items marked missing")
        },
    )];
    methods.push(containerd_item(&p.methods));
    methods.push(crio_item(&p.methods));
    methods.push(k8s_item(&p.methods));
    Report {
        checkpoint_possible: possible,
        methods,
        items,
    }
}

fn criu_items(explicit: Option<&Path>) -> Vec<Item> {
    let criu = match explicit {
        Some(p) => Criu::with_binary(p),
        None => Criu::locate(),
    };
    let criu = match criu {
        Ok(c) => c,
        Err(e) => {
            return vec![item(
                "criu",
                Status::Missing,
                e.to_string(),
                Some("run `vendor/criu.sh` (or `scripts/setup.sh`) as root to build and install the pinned CRIU 4.2.1"),
            )]
        }
    };
    let mut out = Vec::new();
    let path = criu.binary().display().to_string();
    match criu.version() {
        Ok(v) if v.at_least(4, 2) => out.push(item(
            "criu",
            Status::Ok,
            format!("{path}, version {v} (>= 4.2 needed on kernels >= 6.16)"),
            None,
        )),
        Ok(v) => out.push(item(
            "criu",
            Status::Missing,
            format!("{path}, version {v}: too old for this kernel (3.17 fails on >= 6.13, 4.1 cannot dump inet sockets on >= 6.16)"),
            Some("run `vendor/criu.sh` as root to install CRIU 4.2.1, first on PATH"),
        )),
        Err(e) => {
            out.push(item(
                "criu",
                Status::Missing,
                format!("{path}: {e}"),
                Some("run `vendor/criu.sh` as root to install CRIU 4.2.1"),
            ));
            return out;
        }
    }
    match criu.check() {
        Ok(()) => out.push(item(
            "criu check",
            Status::Ok,
            "CRIU's kernel checks pass",
            None,
        )),
        Err(e) => out.push(item(
            "criu check",
            Status::Missing,
            e.to_string(),
            Some("run `criu check --all` as root to see which kernel feature is missing"),
        )),
    }
    match criu.feature_check() {
        Ok(f) => out.push(item(
            "criu features",
            Status::Ok,
            format!(
                "mem_track {} (pre-dump {}), lazy_pages {}, pidfd_store {}",
                yes(f.mem_track),
                if f.mem_track {
                    "possible"
                } else {
                    "impossible"
                },
                yes(f.lazy_pages),
                yes(f.pidfd_store)
            ),
            None,
        )),
        Err(e) => out.push(item("criu features", Status::Warning, e.to_string(), None)),
    }
    out
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Host CRIU configuration files are read by `criu swrk` before reel's options.
fn criu_config_item() -> Item {
    let mut found: Vec<String> = ["/etc/criu/default.conf", "/etc/criu/runc.conf"]
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| p.to_string())
        .collect();
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".criu/default.conf");
        if p.exists() {
            found.push(p.display().to_string());
        }
    }
    if let Some(p) = std::env::var_os("CRIU_CONFIG_FILE") {
        found.push(format!("{} (CRIU_CONFIG_FILE)", Path::new(&p).display()));
    }
    if found.is_empty() {
        item(
            "criu config",
            Status::Ok,
            "no host CRIU configuration file",
            None,
        )
    } else {
        item(
            "criu config",
            Status::Warning,
            format!("{} would change reel's CRIU options", found.join(", ")),
            Some("review these files: CRIU reads them before reel's RPC options"),
        )
    }
}

fn kernel_item() -> Item {
    match nix::sys::utsname::uname() {
        Ok(u) => item(
            "kernel",
            Status::Ok,
            format!(
                "{} {}",
                u.sysname().to_string_lossy(),
                u.release().to_string_lossy()
            ),
            None,
        ),
        Err(e) => item(
            "kernel",
            Status::Warning,
            format!("uname failed: {e}"),
            None,
        ),
    }
}

fn cgroup_item() -> Item {
    use crate::cgroups::{CgroupKind, Hierarchies};
    let h = match Hierarchies::from_mountinfo() {
        Ok(h) => h,
        Err(e) => return item("cgroups", Status::Missing, e.to_string(), None),
    };
    let show =
        |k: CgroupKind| -> Option<String> { h.root_mount(k).map(|p| p.display().to_string()) };
    match (show(CgroupKind::V1), show(CgroupKind::V2)) {
        (Some(v1), Some(v2)) => item(
            "cgroups",
            Status::Ok,
            format!(
                "hybrid: v1 freezer at {v1}, cgroup2 at {v2}; reel uses a container's v1 freezer \
                 when it has one, else cgroup2 (--freezer v1|v2 forces one)"
            ),
            None,
        ),
        (Some(v1), None) => item(
            "cgroups",
            Status::Ok,
            format!("v1: freezer at {v1}; reel uses the v1 freezer"),
            None,
        ),
        (None, Some(v2)) => item(
            "cgroups",
            Status::Ok,
            format!("v2 at {v2}; reel uses cgroup.freeze"),
            None,
        ),
        (None, None) => item(
            "cgroups",
            Status::Missing,
            "neither a v1 freezer nor cgroup2 is mounted",
            Some("mount cgroup2 or the v1 freezer controller"),
        ),
    }
}

fn process_capability_items() -> Vec<Item> {
    use caps::{CapSet, Capability};
    let has = |c: Capability| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
    let admin = has(Capability::CAP_SYS_ADMIN);
    let cr = has(Capability::CAP_CHECKPOINT_RESTORE);
    let mut out = vec![item(
        "CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE",
        if admin || cr {
            Status::Ok
        } else {
            Status::Missing
        },
        format!(
            "CAP_SYS_ADMIN {}, CAP_CHECKPOINT_RESTORE {}",
            yes(admin),
            yes(cr)
        ),
        if admin || cr {
            None
        } else {
            Some("run reel as root")
        },
    )];
    for (name, c) in [
        ("CAP_SYS_PTRACE", Capability::CAP_SYS_PTRACE),
        ("CAP_DAC_OVERRIDE", Capability::CAP_DAC_OVERRIDE),
        ("CAP_NET_ADMIN", Capability::CAP_NET_ADMIN),
    ] {
        let ok = has(c);
        out.push(item(
            name,
            if ok { Status::Ok } else { Status::Missing },
            if ok { "present" } else { "absent" },
            if ok { None } else { Some("run reel as root") },
        ));
    }
    // CRIU reads the rlimits of every task it dumps; for a task of another uid or gid that
    // takes CAP_SYS_RESOURCE (`Can't get rlimit`). Hardened nodes' agents may lack it.
    let resource = has(Capability::CAP_SYS_RESOURCE);
    out.push(item(
        "CAP_SYS_RESOURCE",
        if resource {
            Status::Ok
        } else {
            Status::Warning
        },
        if resource {
            "present: containers whose processes run as other users can be dumped".to_string()
        } else {
            "absent: CRIU cannot dump a process whose uids or gids differ from reel's; such \
             containers are refused before they are frozen"
                .to_string()
        },
        if resource {
            None
        } else {
            Some("run reel with CAP_SYS_RESOURCE (a node's root has it)")
        },
    ));
    out
}

/// CRIU locks a container's network with iptables (or nftables) while it dumps.
fn netlock_item() -> Item {
    match (
        crate::host::which("iptables-restore"),
        crate::host::which("nft"),
    ) {
        (Some(p), _) => item(
            "network lock",
            Status::Ok,
            format!("iptables ({})", p.display()),
            None,
        ),
        (None, Some(p)) => item(
            "network lock",
            Status::Ok,
            format!("nftables ({})", p.display()),
            None,
        ),
        (None, None) => item(
            "network lock",
            Status::Missing,
            "neither iptables-restore nor nft found",
            Some("apt-get install iptables"),
        ),
    }
}

fn runtimes_item(cfg: &crate::discovery::DiscoveryConfig) -> Item {
    match crate::discovery::discover(cfg) {
        Ok(d) => {
            let mut seen: Vec<String> =
                d.containers.iter().map(|c| c.runtime.to_string()).collect();
            seen.sort();
            seen.dedup();
            let n = d.containers.len();
            if seen.is_empty() {
                item("runtimes", Status::Warning, "no containers found", None)
            } else {
                item(
                    "runtimes",
                    Status::Ok,
                    format!("{} ({n} containers)", seen.join(", ")),
                    None,
                )
            }
        }
        Err(e) => item("runtimes", Status::Warning, e.to_string(), None),
    }
}

/// containerd's API: the socket answers, and its version (Tasks/Checkpoint with an image path
/// exists since 1.6).
fn containerd_item(m: &crate::checkpoint::MethodConfig) -> Item {
    use crate::rpc::containerd::Client;
    let sock = m.containerd_socket.display();
    match Client::connect(&m.containerd_socket, "default").and_then(|c| c.version()) {
        Ok(v) => item(
            "containerd",
            Status::Ok,
            format!(
                "containerd {} at {sock}: task checkpoint (Tasks/Checkpoint) into reel's staging directory",
                v.version
            ),
            None,
        ),
        Err(e) => item(
            "containerd",
            Status::Missing,
            e.to_string(),
            Some("start containerd, or name its socket with --containerd-socket"),
        ),
    }
}

/// The CRI runtime: its name and version, and whether it implements CheckpointContainer (a
/// real call for a container id that cannot exist, into a directory that does not: nothing is
/// checkpointed or written).
fn crio_item(m: &crate::checkpoint::MethodConfig) -> Item {
    use crate::rpc::cri::Client;
    use tonic::Code;
    let sock = m.cri_socket.display();
    let client = match Client::connect(&m.cri_socket) {
        Ok(c) => c,
        Err(e) => {
            return item(
                "crio",
                Status::Missing,
                e.to_string(),
                Some("start CRI-O, or name the CRI socket with --cri-socket"),
            )
        }
    };
    let who = match client.version() {
        Ok(v) => format!("{} {}", v.runtime_name, v.runtime_version),
        Err(e) => return item("crio", Status::Missing, e.to_string(), None),
    };
    let probe_id = format!("reel-capability-probe-{}", std::process::id());
    let nowhere = std::path::Path::new("/nonexistent/reel-capability-probe/x.tar");
    match client.checkpoint(&probe_id, nowhere, std::time::Duration::from_secs(5)) {
        Err(e) if e.code() == Some(Code::Unimplemented) => item(
            "crio",
            Status::Missing,
            format!("{who} at {sock}: CheckpointContainer is not implemented"),
            Some("this runtime cannot checkpoint through the CRI (containerd 1.6/1.7): use --method containerd or --method direct"),
        ),
        Err(e) if e.message().is_some_and(|m| m.contains(crate::checkpoint::CRIU_SUPPORT_OFF)) => item(
            "crio",
            Status::Missing,
            format!("{who} at {sock}: checkpoint/restore support is off"),
            Some("enable_criu_support = true in [crio.runtime] of crio.conf, then restart CRI-O"),
        ),
        Err(e) => item(
            "crio",
            Status::Ok,
            format!(
                "{who} at {sock}: CheckpointContainer is implemented (an unknown container got {:?})",
                e.code().unwrap_or(Code::Unknown)
            ),
            None,
        ),
        Ok(()) => item(
            "crio",
            Status::Warning,
            format!("{who} at {sock}: CheckpointContainer accepted an unknown container"),
            None,
        ),
    }
}

/// The cluster: configured, its version, and whether this identity may reach the kubelet's
/// checkpoint API.
fn k8s_item(m: &crate::checkpoint::MethodConfig) -> Item {
    match crate::checkpoint::kubelet::cluster_access(m.kubelet.is_some()) {
        Ok(crate::checkpoint::kubelet::ClusterAccess {
            url,
            version,
            allowed,
        }) => {
            let denied: Vec<&str> = allowed
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(w, _)| w.as_str())
                .collect();
            let list = allowed
                .iter()
                .map(|(w, ok)| format!("create {w}: {}", yes(*ok)))
                .collect::<Vec<_>>()
                .join(", ");
            item(
                "k8s-api",
                if denied.is_empty() {
                    Status::Ok
                } else {
                    Status::Missing
                },
                format!("{url} ({version}); {list}"),
                (!denied.is_empty())
                    .then_some("bind your identity to a ClusterRole allowing create on nodes/proxy (and nodes/checkpoint with --kubelet)"),
            )
        }
        Err(e) => item(
            "k8s-api",
            Status::Missing,
            e.to_string(),
            Some("set KUBECONFIG or write ~/.kube/config"),
        ),
    }
}
