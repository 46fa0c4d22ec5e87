//! One file per verb: each maps its arguments to reel-core calls and prints the result.

pub mod capabilities;
pub mod create;
pub mod delete;
pub mod export;
pub mod list;
pub mod restore;
pub mod sandbox;
pub mod verify;
pub mod version;
pub mod workloads;

use std::path::PathBuf;

use anyhow::Context;
use reel_core::criu::Criu;
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

/// Says which container a failed checkpoint was of.
pub fn with_target<T>(
    r: reel_core::Result<T>,
    target: &reel_core::checkpoint::Target,
) -> anyhow::Result<T> {
    r.with_context(|| format!("checkpointing {target}"))
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
pub fn checkpointer(cli: &Cli) -> anyhow::Result<reel_core::checkpoint::Checkpointer> {
    Ok(reel_core::checkpoint::Checkpointer {
        criu: criu(cli)?,
        store: open_store(cli)?,
        discovery: reel_core::discovery::DiscoveryConfig::default(),
        locks: reel_core::lock::Locker::default(),
    })
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
    if let Some(reel_core::Error::Lock(_)) = core {
        return Some("another reel is working on this container; wait for it and try again".into());
    }
    None
}
