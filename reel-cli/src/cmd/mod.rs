//! One file per verb: each maps its arguments to reel-core calls and prints the result.

pub mod capabilities;
pub mod create;
pub mod delete;
pub mod diff;
pub mod export;
pub mod extract;
pub mod inspect;
pub mod list;
pub mod restore;
pub mod sandbox;
pub mod search;
pub mod verify;
pub mod version;
pub mod workloads;

use std::path::PathBuf;

use anyhow::Context;
use reel_core::criu::Criu;
use reel_core::inspect::{resolve, CheckpointSource, SourceOptions};
use reel_core::store::{Store, DEFAULT_ROOT};

use crate::cli::{Cli, Namespaces};

/// The namespace `-n`/`-A` select: `None` for all, else the one named (default `default`).
pub fn selected_namespace(ns: &Namespaces) -> Option<String> {
    if ns.all_namespaces {
        None
    } else {
        Some(
            ns.namespace
                .clone()
                .unwrap_or_else(|| "default".to_string()),
        )
    }
}

/// The store's directory: `--root`, `$REEL_STORE`, else the default.
/// Opens the checkpoint `arg` names (a store id or a path) to be read in place, members checked
/// against the manifest unless `no_verify`; warns when there is no reel manifest at all.
pub fn open_checkpoint(cli: &Cli, arg: &str, no_verify: bool) -> anyhow::Result<CheckpointSource> {
    let path = resolve(arg, &store_root(cli))?;
    let src = CheckpointSource::open(&path, SourceOptions { verify: !no_verify })
        .with_context(|| format!("opening checkpoint {}", path.display()))?;
    if src.manifest().is_none() {
        eprintln!(
            "WARNING: {} has no reel manifest (an archive from another tool?): nothing in it can be verified",
            path.display()
        );
    }
    Ok(src)
}

pub fn store_root(cli: &Cli) -> PathBuf {
    cli.root
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// Opens the store (creating it root-only when needed). Opening removes what killed runs left
/// there: temp archives and staging directories.
pub fn open_store(cli: &Cli) -> anyhow::Result<Store> {
    let root = store_root(cli);
    Store::open(&root).with_context(|| format!("opening the checkpoint store {}", root.display()))
}

/// Says which container a failed checkpoint was of; a dump flag the method cannot honour is
/// a usage error, named by its flag.
pub fn with_target<T>(
    r: reel_core::Result<T>,
    target: &reel_core::checkpoint::Target,
) -> anyhow::Result<T> {
    use reel_core::checkpoint::CheckpointError;
    if let Err(reel_core::Error::Checkpoint(CheckpointError::OptionNotHonoured {
        method,
        option,
        honoured,
    })) = &r
    {
        let flags: Vec<String> = honoured.iter().map(|o| flag_name(o)).collect();
        return Err(crate::hints::usage(format!(
            "{} cannot be used with --method {method}: it honours only {}",
            flag_name(option),
            flags.join(", ")
        )));
    }
    r.with_context(|| format!("checkpointing {target}"))
}

/// A dump option's flag (`tcp_established` -> `--tcp-established`).
fn flag_name(option: &str) -> String {
    format!("--{}", option.replace('_', "-"))
}

/// The CRIU reel will use: `--criu`/`$REEL_CRIU`, else the pinned one, else PATH.
pub fn criu(cli: &Cli) -> anyhow::Result<Criu> {
    let c = match &cli.criu {
        Some(p) => Criu::with_binary(p),
        None => Criu::locate(),
    };
    c.context("finding CRIU")
}

/// A checkpointer with reel's CRIU, the store, discovery from the runtimes' state and the
/// container locks.
pub fn checkpointer(
    cli: &Cli,
    methods: &crate::cli::MethodFlags,
) -> anyhow::Result<reel_core::checkpoint::Checkpointer> {
    Ok(reel_core::checkpoint::Checkpointer {
        methods: method_config(&methods.endpoints),
        criu: criu(cli)?,
        store: open_store(cli)?,
        discovery: reel_core::discovery::DiscoveryConfig::default(),
        locks: reel_core::lock::Locker::default(),
    })
}

/// `--containerd-socket`, `--cri-socket`, `--kubelet`, `--node-name` as the library's config.
pub fn method_config(e: &crate::cli::Endpoints) -> reel_core::checkpoint::MethodConfig {
    reel_core::checkpoint::MethodConfig {
        containerd_socket: e.containerd_socket.clone(),
        cri_socket: e.cri_socket.clone(),
        kubelet: e.kubelet.clone(),
        node_name: e.node_name.clone(),
    }
}

/// Refuse early what only root can do: every method but k8s-api (a kubeconfig is enough) and
/// auto (which falls back on k8s-api when reel cannot checkpoint here).
pub fn require_root_for(method: reel_core::checkpoint::MethodChoice) -> anyhow::Result<()> {
    use reel_core::checkpoint::{Method, MethodChoice};
    match method {
        MethodChoice::Use(Method::K8sApi) => Ok(()),
        // Without root, auto can only go through a cluster.
        MethodChoice::Auto
            if nix::unistd::geteuid().is_root()
                || reel_core::checkpoint::kubelet::cluster_config().is_ok() =>
        {
            Ok(())
        }
        MethodChoice::Auto => require_root("checkpointing a container"),
        MethodChoice::Use(m) => require_root(&format!("checkpointing with --method {m}")),
    }
}

/// Refuse early, with a clear message, what only root can do.
pub fn require_root(what: &str) -> anyhow::Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        anyhow::bail!(
            "{what} needs root (CAP_SYS_ADMIN, CAP_SYS_PTRACE, access to cgroups and /proc); run reel as root"
        )
    }
}

/// A hint for one cause of an error, when reel knows one.
pub fn hint_for(cause: &(dyn std::error::Error + 'static)) -> Option<String> {
    use reel_core::criu::CriuError;
    use reel_core::discovery::DiscoveryError;
    use reel_core::store::StoreError;
    let core = cause.downcast_ref::<reel_core::Error>();
    let criu = cause.downcast_ref::<CriuError>().or(match core {
        Some(reel_core::Error::Criu(e)) => Some(e),
        _ => None,
    });
    if let Some(CriuError::RequestFailed {
        hint: Some(known), ..
    }) = criu
    {
        return Some(crate::hints::criu(*known).to_string());
    }
    let export = cause
        .downcast_ref::<reel_core::export::ExportError>()
        .or(match core {
            Some(reel_core::Error::Export(e)) => Some(e),
            _ => None,
        });
    if let Some(reel_core::export::ExportError::S3Untrusted { .. }) = export {
        return Some("give the CA's PEM bundle with --s3-ca FILE".into());
    }
    let disc = cause.downcast_ref::<DiscoveryError>().or(match core {
        Some(reel_core::Error::Discovery(e)) => Some(e),
        _ => None,
    });
    if let Some(e) = disc {
        return match e {
            DiscoveryError::UnknownNamespace { .. } => {
                Some("list the workloads with `reel get workloads -A`".into())
            }
            DiscoveryError::UnknownPod { namespace, .. } => Some(format!(
                "list the pods with `reel get workloads -n {namespace}`"
            )),
            DiscoveryError::AmbiguousContainer { pod, .. } => Some(format!(
                "name the container: `reel create checkpoint {pod} <container> -n <namespace>`"
            )),
            _ => None,
        };
    }
    let store = cause.downcast_ref::<StoreError>().or(match core {
        Some(reel_core::Error::Store(e)) => Some(e),
        _ => None,
    });
    if let Some(e) = store {
        return match e {
            StoreError::NoRoom { .. } => {
                Some("free space there, or move the store with --root DIR (or REEL_STORE)".into())
            }
            StoreError::NotWritable { .. } | StoreError::NotADirectory { .. } => {
                Some("choose a writable store directory with --root DIR (or REEL_STORE)".into())
            }
            StoreError::NotFound { .. } => {
                Some("see the ids with `reel list checkpoint -A`".into())
            }
            _ => None,
        };
    }
    let checkpoint = cause
        .downcast_ref::<reel_core::checkpoint::CheckpointError>()
        .or(match core {
            Some(reel_core::Error::Checkpoint(e)) => Some(e),
            _ => None,
        });
    match checkpoint {
        Some(reel_core::checkpoint::CheckpointError::GhostTooLarge { size, .. }) => {
            return Some(format!(
                "keep it with --ghost-limit {} (or larger; 0 refuses deleted files)",
                crate::output::size_flag(*size)
            ))
        }
        Some(reel_core::checkpoint::CheckpointError::OtherUser { .. }) => {
            return Some(crate::hints::OTHER_USER.into())
        }
        _ => {}
    }
    let sandbox = cause
        .downcast_ref::<reel_core::sandbox::SandboxError>()
        .or(match core {
            Some(reel_core::Error::Sandbox(e)) => Some(e),
            _ => None,
        });
    if let Some(e) = sandbox {
        use reel_core::sandbox::SandboxError as S;
        return match e {
            S::Exists { name } => Some(format!(
                "choose another --name, or remove it with `reel delete sandbox {name}`"
            )),
            S::NotFound { .. } => Some("see the sandboxes with `reel list sandbox`".into()),
            S::RestoreFailed { .. } => Some(
                "the lines above are CRIU's own; nothing of the sandbox was left behind (run with -v for the monitor's steps)"
                    .into(),
            ),
            S::Refused { .. } => Some("nothing was started and nothing was left behind".into()),
            _ => None,
        };
    }
    if let Some(h) = method_hint(cause, core) {
        return Some(h);
    }
    if let Some(reel_core::Error::Lock(_)) = core {
        return Some("another reel is working on this container; wait for it and try again".into());
    }
    None
}

/// Hints for the methods' failures (the runtimes' and the cluster's answers).
fn method_hint(
    cause: &(dyn std::error::Error + 'static),
    core: Option<&reel_core::Error>,
) -> Option<String> {
    use reel_core::checkpoint::{CheckpointError, KubeFailure, CRIU_SUPPORT_OFF};
    let cp = cause.downcast_ref::<CheckpointError>().or(match core {
        Some(reel_core::Error::Checkpoint(e)) => Some(e),
        _ => None,
    })?;
    let unimplemented = "this runtime cannot checkpoint through the CRI (containerd 1.6/1.7): use --method containerd or --method direct";
    let criu_off = "turn on CRI-O's CRIU support: enable_criu_support = true in [crio.runtime] of crio.conf, then restart CRI-O (or use --method direct)";
    Some(match cp {
        CheckpointError::CriUnimplemented { .. } => unimplemented.into(),
        CheckpointError::CriCheckpointDisabled { .. } => criu_off.into(),
        CheckpointError::NotContainerd { .. } => "use --method direct (or auto)".into(),
        CheckpointError::NoMethod { .. } => "run reel as root on the container's node (direct), or give it a kubeconfig (KUBECONFIG, ~/.kube/config) for --method k8s-api".into(),
        CheckpointError::ElsewhereExport { node, .. } => format!("run reel on node {node}, or `reel create checkpoint` here to record where the archive is"),
        CheckpointError::Kube(k) => match k {
            KubeFailure::NoCluster { .. } => "set KUBECONFIG or write ~/.kube/config".into(),
            KubeFailure::Unauthorized { .. } => "the kubeconfig's credentials are not accepted: renew the token or certificate".into(),
            KubeFailure::ForbiddenProxy { .. } => "the caller needs `create` on `nodes/proxy`: kubectl create clusterrole reel-checkpoint --verb=create --resource=nodes/proxy, then a clusterrolebinding to your user or service account".into(),
            KubeFailure::ForbiddenKubelet { identity, direct: false, .. } => format!(
                "the kubelet checks the API server's own kubelet-client identity ({}), which needs `create` on `nodes/checkpoint` (kubeadm's system:kubelet-api-admin lacks it): kubectl create clusterrole kubelet-checkpoint --verb=create --resource=nodes/checkpoint && kubectl create clusterrolebinding kubelet-checkpoint --clusterrole=kubelet-checkpoint --user={}",
                identity.as_deref().unwrap_or("see the API server's --kubelet-client-certificate"),
                identity.as_deref().unwrap_or("<kubelet-client user>")
            ),
            KubeFailure::ForbiddenKubelet { direct: true, .. } => "with --kubelet, your own identity needs `create` on `nodes/checkpoint` (a ClusterRole with that rule, bound to you)".into(),
            KubeFailure::FeatureGateOff { .. } => "Kubernetes >= 1.30 has the ContainerCheckpoint feature on by default; before, start the kubelet with --feature-gates=ContainerCheckpoint=true (or use --method direct on the node)".into(),
            KubeFailure::PodNotFound { namespace, .. } => format!("list the pods with `kubectl get pods -n {namespace}`"),
            KubeFailure::ContainerNotFound { .. } | KubeFailure::AmbiguousContainer { .. } => "name one of the pod's containers: `reel create checkpoint POD CONTAINER -n NS`".into(),
            KubeFailure::Timeout { .. } => "give the runtime more time with --timeout".into(),
            KubeFailure::Runtime { message, .. } if message.contains("not implemented") || message.contains("Unimplemented") => unimplemented.into(),
            KubeFailure::Runtime { message, .. } if message.contains(CRIU_SUPPORT_OFF) => criu_off.into(),
            _ => return None,
        },
        _ => return None,
    })
}
