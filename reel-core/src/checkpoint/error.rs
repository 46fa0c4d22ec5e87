//! Errors of the checkpoint orchestration itself (the modules it drives have their own).

use std::path::PathBuf;
use std::time::Duration;

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
}
