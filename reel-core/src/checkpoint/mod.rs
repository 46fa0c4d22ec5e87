//! The checkpoint pipeline: one path from a container to an archive, wherever it goes.
//!
//! ```text
//!  Target ─► discovery ─► [open the destination: a store id, a local temp file, S3 bucket
//!                          check; nothing frozen yet, so a bad destination costs no pause]
//!         ─► method: the container's CRIU images in a staging directory ([`Dumped`])
//!         ─► export chain: archive ─► (zstd) ─► SHA-256 ─► sink: the store, a file,
//!                          stdout or S3 (and the store too with `keep`) ─► commit
//! ```
//!
//! `reel create checkpoint` is an export whose sink is the store ([`Output::Store`]);
//! `reel export checkpoint` sends the same archive to a destination ([`Output::Export`]).
//! The method is where a checkpoint's images come from: today `direct` ([`direct`]: reel
//! freezes the cgroup and drives CRIU itself); runtimes that checkpoint on their own plug in
//! at the same point, and the rest of the pipeline is shared.

mod direct;
mod error;
pub mod plan;
pub mod preflight;
mod stage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

pub use direct::{Captured, Dumped};
pub use error::CheckpointError;
pub use plan::DumpPlan;

use crate::archive::RootfsDiffInfo;
use crate::cgroups::Preference;
use crate::criu::Criu;
use crate::discovery::DiscoveryConfig;
use crate::export::local::StoreSink;
use crate::export::{self, Encoding, ExportError, ExportSpec, Exported, Level, Phase, Progress};
use crate::lock::Locker;
use crate::store::{Store, StoredArchive};

/// How a container is dumped: the flags users control.
#[derive(Debug, Clone, Serialize)]
pub struct CheckpointOptions {
    /// Dump established TCP connections, with their queued bytes (on by default: real
    /// services hold connections). CRIU locks only the container's own network namespace
    /// (or, for a container in the host's, each connection) while it dumps, and the
    /// connections go on afterwards.
    pub tcp_established: bool,
    /// The largest open-but-deleted file kept as a CRIU ghost file, in bytes (default
    /// 64 MiB; 0 refuses deleted files). A larger one is refused before the freeze.
    pub ghost_limit: u64,
    /// Dump file locks (on by default, as CRI-O does: Java workloads need it).
    pub file_locks: bool,
    /// Allow unix sockets connected outside the container.
    pub ext_unix_sk: bool,
    /// The init is a shell job.
    pub shell_job: bool,
    /// Link open-but-deleted files back so they can be dumped.
    pub link_remap: bool,
    /// The longest reel may keep the container frozen. Past it, reel gives up at CRIU's next
    /// step, thaws and says so.
    #[serde(with = "secs")]
    pub timeout: Duration,
    /// Which cgroup freezer to use.
    #[serde(skip)]
    pub freezer: Preference,
    /// How long to wait for another reel working on the same container.
    #[serde(skip)]
    pub lock_wait: Duration,
}

mod secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            tcp_established: true,
            ghost_limit: DEFAULT_GHOST_LIMIT,
            file_locks: true,
            ext_unix_sk: false,
            shell_job: false,
            link_remap: false,
            timeout: Duration::from_secs(60),
            freezer: Preference::Auto,
            lock_wait: Duration::from_secs(5),
        }
    }
}

/// The default ghost-file limit: large enough for typical evidence (a dropped binary, an
/// unlinked log), small enough not to surprise.
pub const DEFAULT_GHOST_LIMIT: u64 = 64 << 20;

/// The largest ghost-file limit CRIU takes (its RPC field is 32 bits).
pub const MAX_GHOST_LIMIT: u64 = u32::MAX as u64;

/// Which container: namespace, pod, and the container's name when the pod has several.
#[derive(Debug, Clone)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.pod)?;
        if let Some(c) = &self.container {
            write!(f, "/{c}")?;
        }
        Ok(())
    }
}

/// Where a checkpoint goes.
#[derive(Debug, Clone)]
pub enum Output {
    /// The store, as `<id>.tar` (`reel create checkpoint`).
    Store,
    /// One archive at a destination (`reel export checkpoint`); with `keep`, the store too.
    Export(Box<ExportSpec>),
}

/// A finished checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub container_id: String,
    pub runtime: String,
    /// How long the container was frozen, as reel measured it (freeze to thaw).
    pub frozen_ms: u64,
    /// CRIU's own frozen time (from `stats-dump`).
    pub criu_frozen_ms: Option<u64>,
    /// Pages CRIU wrote.
    pub pages_written: Option<u64>,
    /// Whole run, discovery to commit.
    pub total_ms: u64,
    /// The container was frozen before reel came, and was left frozen.
    pub left_frozen: bool,
    pub rootfs_diff: RootfsDiffInfo,
    /// What the dump kept that a restore must know about.
    pub captured: Captured,
    /// The archive as written to its destination.
    pub archive: Exported,
    /// The checkpoint committed to the store (always with [`Output::Store`], with `keep` for
    /// an export).
    #[serde(skip)]
    pub stored: Option<StoredArchive>,
}

/// Checkpoints containers.
#[derive(Debug)]
pub struct Checkpointer {
    pub criu: Criu,
    pub store: Store,
    pub discovery: DiscoveryConfig,
    pub locks: Locker,
}

impl Checkpointer {
    /// Checkpoints `target` and writes the archive to `output`; the container keeps running
    /// (or stays frozen if it was). Everything that can be checked is checked before the
    /// container is touched; a failure leaves nothing that looks complete.
    pub fn run(
        &self,
        target: &Target,
        opts: &CheckpointOptions,
        output: &Output,
        progress: Arc<dyn Progress>,
    ) -> crate::Result<Outcome> {
        let started = Instant::now();
        let _scope = crate::signals::cancellable();
        let spec = match output {
            Output::Export(spec) => {
                spec.validate()?;
                Some(&**spec)
            }
            Output::Store => None,
        };
        let found = crate::discovery::discover(&self.discovery)?;
        let c = found
            .find(&target.namespace, &target.pod, target.container.as_deref())?
            .clone();
        let s3 = match spec {
            Some(s) => s.connect()?,
            None => None,
        };

        // The id, and every local file, before the freeze: a bad destination never costs the
        // workload a pause.
        let now = Utc::now();
        let pending = match spec {
            Some(s) if !s.keep => None,
            _ => Some(self.store.begin_new(&c.pod, now)?),
        };
        let id = match &pending {
            Some(p) => p.id().to_owned(),
            None => self.store.new_id(&c.pod, now)?,
        };
        let planned = spec.map(|s| s.plan(&id)).transpose()?;
        let mut local = match &planned {
            Some((export::Plan::File(p), _)) => Some(export::local::LocalFile::create(p)?),
            _ => None,
        };
        let staging_root = spec
            .and_then(|s| s.staging_dir.clone())
            .unwrap_or_else(|| self.store.root().to_owned());

        progress.start(Phase::Dump, None);
        let dumped = self.dump(&c, &id, &staging_root, opts)?;
        progress.finish(Phase::Dump);
        if crate::signals::interrupted() {
            return Err(ExportError::Interrupted {
                when: " after the dump; nothing was written",
            }
            .into());
        }

        let (sink, keep, level): (Box<dyn export::Sink>, _, _) = match (planned, pending) {
            (None, Some(p)) => (Box::new(StoreSink::new(p)), None, Level::None),
            (Some((plan, level)), keep) => {
                let sink: Box<dyn export::Sink> = match local.take() {
                    Some(l) => Box::new(l),
                    None => export::open_sink(
                        &plan,
                        s3.as_ref(),
                        Some(export::dir_bytes(dumped.stage_dir())),
                        progress.clone(),
                    )?,
                };
                (sink, keep, level)
            }
            (None, None) => unreachable!("the store is the sink when there is no export"),
        };
        let mut enc = Encoding::new(level);
        enc.progress = progress;
        let mut archive = export::write_dumped(&dumped, sink, keep, &enc)?;
        let stored = archive.kept.take();
        let frozen_ms = dumped.frozen.as_millis() as u64;
        tracing::info!(id = %id, frozen_ms, destination = %archive.destination, "checkpoint written");
        Ok(Outcome {
            id,
            namespace: c.namespace.clone(),
            pod: c.pod.clone(),
            container: c.name.clone(),
            container_id: c.id.clone(),
            runtime: c.runtime.as_str().to_string(),
            frozen_ms,
            criu_frozen_ms: dumped.stats.frozen_time.map(|d| d.as_millis() as u64),
            pages_written: dumped.stats.pages_written,
            total_ms: started.elapsed().as_millis() as u64,
            left_frozen: dumped.left_frozen,
            captured: dumped.captured,
            rootfs_diff: archive
                .manifest
                .as_ref()
                .map(|m| m.rootfs_diff.clone())
                .unwrap_or(RootfsDiffInfo::None {
                    reason: "the archive has no manifest".into(),
                }),
            archive,
            stored,
        })
    }
}
