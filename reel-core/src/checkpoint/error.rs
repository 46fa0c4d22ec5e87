//! Errors of the checkpoint orchestration itself (the modules it drives have their own).

use std::path::PathBuf;
use std::time::Duration;

use super::Method;

/// What can go wrong while checkpointing, beyond the errors of CRIU, the freezer, the lock,
/// discovery, the archive and the store.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("container {container} cannot be checkpointed: {reason}")]
    NotCheckpointable { container: String, reason: String },
    #[error("cannot read {}: {source}", path.display())]
    Inspect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the container's OCI spec {} is not valid JSON: {source}", path.display())]
    Spec {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode {what}: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot prepare the staging directory {}: {source}", path.display())]
    Stage {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot prepare the staging directory: {0}")]
    Durable(#[from] crate::durable::DurableError),
    // Durations as `1ms`, `312.5ms`, `1.2s`: a sub-second timeout must not read `0.0s`.
    #[error(
        "gave up: the container was frozen for {frozen_for:.1?}, past the {limit:?} timeout; it was thawed and runs on"
    )]
    Timeout {
        limit: Duration,
        frozen_for: Duration,
    },
    #[error(
        "process {pid} keeps the deleted file {path} open ({size} bytes), larger than the ghost file limit ({limit} bytes): CRIU would fail the whole dump; the container was not frozen"
    )]
    GhostTooLarge {
        pid: i32,
        path: String,
        size: u64,
        limit: u64,
    },
    #[error(
        "process {pid} runs as uid {uid} gid {gid}: CRIU needs CAP_SYS_RESOURCE to dump a process of another user, and this process lacks it; the container was not frozen"
    )]
    OtherUser { pid: i32, uid: u32, gid: u32 },
    #[error(
        "CRIU dumped without its pre-dump notification, so reel never froze the container itself; the checkpoint was discarded (is the CRIU at {criu} the pinned one?)"
    )]
    NoPreDumpNotification { criu: String },
    /// A dump option the chosen method cannot honour.
    #[error("the {method} method cannot honour the option {option} (it honours: {})", honoured.join(", "))]
    OptionNotHonoured {
        method: Method,
        option: &'static str,
        honoured: &'static [&'static str],
    },
    /// `--method containerd` for a container containerd does not manage.
    #[error("container {container} is run by {runtime}, not containerd")]
    NotContainerd { container: String, runtime: String },
    /// The runtime's checkpoint failed.
    #[error("{method}: the runtime's checkpoint failed: {error}{}", if log.is_empty() { String::new() } else { format!("; CRIU's log: {log}") })]
    RuntimeFailed {
        method: Method,
        error: String,
        log: String,
    },
    /// The CRI runtime does not implement `CheckpointContainer` (containerd 1.6/1.7).
    #[error(
        "the CRI runtime {runtime} at {socket} does not implement CheckpointContainer ({message})"
    )]
    CriUnimplemented {
        runtime: String,
        socket: String,
        message: String,
    },
    /// CRI-O runs with its CRIU support off.
    #[error("the CRI runtime {runtime} has checkpoint/restore support turned off ({message})")]
    CriCheckpointDisabled { runtime: String, message: String },
    /// The runtime does not know the container.
    #[error("{runtime} knows no container {what}")]
    RuntimeNotFound { runtime: String, what: String },
    /// Several containers match: the container name is needed.
    #[error("pod {pod} has several containers ({}): name one", candidates.join(", "))]
    AmbiguousContainer {
        pod: String,
        candidates: Vec<String>,
    },
    /// `auto` found no method that can work.
    #[error("no checkpoint method can reach {target}: {}", tried.join("; "))]
    NoMethod { target: String, tried: Vec<String> },
    /// A Kubernetes API or kubelet failure (see [`super::kubelet::KubeFailure`]).
    #[error("{0}")]
    Kube(#[from] super::kubelet::KubeFailure),
    /// The k8s-api checkpoint is on another node, and an export needs its archive here.
    #[error("the checkpoint of {target} is taken by the kubelet on node {node}, and this is {here}: exporting it needs reel on {node} (or `reel create checkpoint` to record where it is)")]
    ElsewhereExport {
        target: String,
        node: String,
        here: String,
    },
}
