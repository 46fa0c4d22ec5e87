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
//! The method is where a checkpoint's images come from ([`method`]): `direct` (reel freezes
//! the cgroup and drives CRIU itself) and `containerd` (containerd's task checkpoint into
//! reel's staging dir) give a [`Dumped`], written by [`export::write_dumped`]; `crio` (the CRI
//! call) and `k8s-api` (the kubelet) give a runtime's archive, [`Received`], whose members
//! [`export::write_imported`] copies as received. Everything before and after is shared.

mod containerd;
mod cri;
mod direct;
mod error;
pub mod kubelet;
mod method;
pub mod plan;
pub mod preflight;
mod received;
mod stage;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

pub use containerd::ContainerdTask;
pub use cri::{CriContainer, CRIU_SUPPORT_OFF};
pub use direct::{Captured, Dumped};
pub use error::CheckpointError;
pub use kubelet::{KubeFailure, KubeTarget, KubeletCheckpoint};
pub use method::{Method, MethodChoice, MethodConfig, MethodRecord};
pub use plan::DumpPlan;
pub use received::Received;

use crate::archive::RootfsDiffInfo;
use crate::cgroups::Preference;
use crate::criu::Criu;
use crate::discovery::{Container, DiscoveryConfig};
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
    /// Which method takes the checkpoint.
    #[serde(skip)]
    pub method: MethodChoice,
}

impl CheckpointOptions {
    /// The options set away from their defaults (by field name), for the methods to check.
    pub fn changed(&self) -> Vec<&'static str> {
        let d = CheckpointOptions::default();
        [
            ("tcp_established", self.tcp_established != d.tcp_established),
            ("file_locks", self.file_locks != d.file_locks),
            ("ext_unix_sk", self.ext_unix_sk != d.ext_unix_sk),
            ("shell_job", self.shell_job != d.shell_job),
            ("link_remap", self.link_remap != d.link_remap),
            ("timeout", self.timeout != d.timeout),
            ("freezer", self.freezer != d.freezer),
        ]
        .into_iter()
        .filter_map(|(n, changed)| changed.then_some(n))
        .collect()
    }
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
            method: MethodChoice::Auto,
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
    /// The method that took it.
    pub method: Method,
    /// Who dumped, and its version, as recorded in the manifest.
    pub method_record: Option<MethodRecord>,
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
    /// The archive as written to its destination (none when the kubelet took it on another
    /// node: see `remote`).
    pub archive: Option<Exported>,
    /// `k8s-api` from elsewhere: the checkpoint is on the pod's node, at this path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<KubeletCheckpoint>,
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
    /// Where the methods reach containerd, the CRI runtime and the cluster.
    pub methods: MethodConfig,
}

/// The method chosen for one checkpoint, with what it found before anything is touched.
// One per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Chosen {
    Direct(Container),
    Containerd(Container, ContainerdTask),
    Cri(CriContainer),
    K8s(KubeTarget),
}

impl Chosen {
    fn method(&self) -> Method {
        match self {
            Chosen::Direct(_) => Method::Direct,
            Chosen::Containerd(..) => Method::Containerd,
            Chosen::Cri(_) => Method::Crio,
            Chosen::K8s(_) => Method::K8sApi,
        }
    }
}

/// What the method produced.
enum Produced {
    Dumped(Box<Dumped>),
    Received(Box<Received>),
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
        // A forced method's flags are checked before anything is asked of anyone.
        if let MethodChoice::Use(m) = opts.method {
            m.check_options(opts)?;
        }
        let chosen = self.choose(target, opts)?;
        let method = chosen.method();
        method.check_options(opts)?;
        tracing::info!(method = %method, target = %target, "checkpoint method");
        let here = self.methods.this_node();
        if let (Chosen::K8s(t), Some(_)) = (&chosen, spec) {
            if t.node != here {
                return Err(CheckpointError::ElsewhereExport {
                    target: target.to_string(),
                    node: t.node.clone(),
                    here,
                }
                .into());
            }
        }
        let s3 = match spec {
            Some(s) => s.connect()?,
            None => None,
        };
        let pod = match &chosen {
            Chosen::Direct(c) | Chosen::Containerd(c, _) => c.pod.clone(),
            _ => target.pod.clone(),
        };

        // The id, and every local file, before the freeze: a bad destination never costs the
        // workload a pause.
        let now = Utc::now();
        let mut pending = match spec {
            Some(s) if !s.keep => None,
            _ => Some(self.store.begin_new(&pod, now)?),
        };
        let id = match &pending {
            Some(p) => p.id().to_owned(),
            None => self.store.new_id(&pod, now)?,
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
        let produced = match &chosen {
            Chosen::Direct(c) => {
                Produced::Dumped(Box::new(self.dump(c, &id, &staging_root, opts)?))
            }
            Chosen::Containerd(c, task) => Produced::Dumped(Box::new(self.dump_containerd(
                c,
                task,
                &id,
                &staging_root,
                opts,
            )?)),
            Chosen::Cri(c) => Produced::Received(Box::new(self.take_cri(
                c,
                target,
                &id,
                &staging_root,
                opts,
            )?)),
            Chosen::K8s(t) => {
                let at = self.kubelet_checkpoint(t, opts)?;
                if t.node != here {
                    // Taken on another node: say where it is, and keep that in the store.
                    progress.finish(Phase::Dump);
                    if let Some(p) = pending.take() {
                        let _ = p.abort();
                    }
                    self.store.record_remote(&crate::store::RemoteCheckpoint {
                        id: id.clone(),
                        created: now,
                        namespace: t.namespace.clone(),
                        pod: t.pod.clone(),
                        container: t.container.clone(),
                        node: at.node.clone(),
                        path: at.path.clone(),
                        method: method.to_string(),
                    })?;
                    return Ok(Outcome {
                        id,
                        method,
                        captured: Captured::default(),
                        method_record: None,
                        namespace: t.namespace.clone(),
                        pod: t.pod.clone(),
                        container: t.container.clone(),
                        container_id: String::new(),
                        runtime: "kubelet".into(),
                        frozen_ms: 0,
                        criu_frozen_ms: None,
                        pages_written: None,
                        total_ms: started.elapsed().as_millis() as u64,
                        left_frozen: false,
                        rootfs_diff: RootfsDiffInfo::None {
                            reason: format!("the archive is on node {}", at.node),
                        },
                        archive: None,
                        remote: Some(at),
                        stored: None,
                    });
                }
                Produced::Received(Box::new(self.take_kubelet(t, &at, &id, opts)?))
            }
        };
        progress.finish(Phase::Dump);
        if crate::signals::interrupted() {
            return Err(ExportError::Interrupted {
                when: " after the dump; nothing was written",
            }
            .into());
        }

        let expected = match &produced {
            Produced::Dumped(d) => export::dir_bytes(d.stage_dir()),
            Produced::Received(r) => r.archive_bytes(),
        };
        let (sink, keep, level): (Box<dyn export::Sink>, _, _) = match (planned, pending) {
            (None, Some(p)) => (Box::new(StoreSink::new(p)), None, Level::None),
            (Some((plan, level)), keep) => {
                let sink: Box<dyn export::Sink> = match local.take() {
                    Some(l) => Box::new(l),
                    None => {
                        export::open_sink(&plan, s3.as_ref(), Some(expected), progress.clone())?
                    }
                };
                (sink, keep, level)
            }
            (None, None) => unreachable!("the store is the sink when there is no export"),
        };
        let mut enc = Encoding::new(level);
        enc.progress = progress;
        let (mut archive, frozen, stats, left_frozen, container_id, record, captured) =
            match produced {
                Produced::Dumped(d) => {
                    let a = export::write_dumped(&d, sink, keep, &enc)?;
                    (
                        a,
                        d.frozen,
                        d.stats.clone(),
                        d.left_frozen,
                        None,
                        d.method().cloned(),
                        d.captured,
                    )
                }
                Produced::Received(mut r) => {
                    let a = export::write_imported(&r, sink, keep, &enc)?;
                    // Written and committed: the runtime's copy can go.
                    r.remove_runtime_copy();
                    (
                        a,
                        Duration::ZERO,
                        r.stats.clone(),
                        false,
                        Some(r.container_id.clone()),
                        r.method().cloned(),
                        Captured::default(),
                    )
                }
            };
        let stored = archive.kept.take();
        let frozen_ms = frozen.as_millis() as u64;
        tracing::info!(id = %id, method = %method, frozen_ms, destination = %archive.destination, "checkpoint written");
        let (namespace, pod, container, cid, runtime) = match &chosen {
            Chosen::Direct(c) | Chosen::Containerd(c, _) => (
                c.namespace.clone(),
                c.pod.clone(),
                c.name.clone(),
                c.id.clone(),
                c.runtime.as_str().to_string(),
            ),
            Chosen::Cri(c) => (
                target.namespace.clone(),
                target.pod.clone(),
                c.name.clone(),
                c.id.clone(),
                c.runtime_name.clone(),
            ),
            Chosen::K8s(t) => (
                t.namespace.clone(),
                t.pod.clone(),
                t.container.clone(),
                container_id.clone().unwrap_or_default(),
                "kubelet".into(),
            ),
        };
        Ok(Outcome {
            id,
            method,
            method_record: record,
            namespace,
            pod,
            container,
            container_id: container_id.unwrap_or(cid),
            runtime,
            frozen_ms,
            criu_frozen_ms: stats.frozen_time.map(|d| d.as_millis() as u64),
            pages_written: stats.pages_written,
            total_ms: started.elapsed().as_millis() as u64,
            left_frozen,
            captured,
            rootfs_diff: archive
                .manifest
                .as_ref()
                .map(|m| m.rootfs_diff.clone())
                .unwrap_or(RootfsDiffInfo::None {
                    reason: "the archive has no manifest".into(),
                }),
            archive: Some(archive),
            remote: None,
            stored,
        })
    }

    /// Chooses the method for `target` (see [`method`]) and finds what it needs, before
    /// anything is frozen.
    fn choose(&self, target: &Target, opts: &CheckpointOptions) -> crate::Result<Chosen> {
        let local = || -> crate::Result<Container> {
            let found = crate::discovery::discover(&self.discovery)?;
            Ok(found
                .find(&target.namespace, &target.pod, target.container.as_deref())?
                .clone())
        };
        match opts.method {
            MethodChoice::Use(Method::Direct) => Ok(Chosen::Direct(local()?)),
            MethodChoice::Use(Method::Containerd) => {
                let c = local()?;
                let task = self.containerd_task(&c)?;
                Ok(Chosen::Containerd(c, task))
            }
            MethodChoice::Use(Method::Crio) => Ok(Chosen::Cri(self.cri_container(target)?)),
            MethodChoice::Use(Method::K8sApi) => Ok(Chosen::K8s(self.kube_target(target)?)),
            MethodChoice::Auto => {
                let mut tried = Vec::new();
                match local() {
                    Ok(c) => match self.direct_possible(&c) {
                        Ok(()) => return Ok(Chosen::Direct(c)),
                        Err(why) => tried.push(format!("direct: {why}")),
                    },
                    Err(e) => tried.push(format!("direct: {e}")),
                }
                match kubelet::cluster_config() {
                    Ok(config) => {
                        tracing::info!(tried = ?tried, "auto: direct is not possible; using k8s-api");
                        return Ok(Chosen::K8s(self.kube_target_with(target, config)?));
                    }
                    Err(e) => tried.push(format!("k8s-api: {e}")),
                }
                Err(CheckpointError::NoMethod {
                    target: target.to_string(),
                    tried,
                }
                .into())
            }
        }
    }

    /// Whether `direct` can checkpoint `c` here: discovery found no blocker, reel is root and
    /// CRIU answers.
    fn direct_possible(&self, c: &Container) -> Result<(), String> {
        direct::ensure_checkpointable(c).map_err(|e| e.to_string())?;
        if !nix::unistd::geteuid().is_root() {
            return Err("reel is not root".into());
        }
        self.criu
            .version()
            .map(drop)
            .map_err(|e| format!("CRIU does not answer: {e}"))
    }
}
