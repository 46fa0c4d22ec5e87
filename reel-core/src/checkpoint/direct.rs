//! The `direct` method: reel freezes the container's cgroup and drives CRIU itself; no
//! container runtime is asked anything.
//!
//! [`Checkpointer::dump`] takes the container's lock, freezes the cgroup at CRIU's pre-dump
//! notification (a guard that always thaws, with a watchdog for when reel is killed), has CRIU
//! dump it with the options runc would use (so runc, and containerd and CRI-O through it, can
//! restore the images), takes the rootfs diff while still frozen (so memory and files agree),
//! thaws, and leaves the images in a staging directory as a [`Dumped`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::plan::{self, DumpPlan};
use super::preflight::{self, Preflight};
use super::stage::Stage;
use super::{CheckpointError, CheckpointOptions, Checkpointer};
use crate::archive::{
    self, ArchiveWriter, ConfigDump, ContainerIdentity, ManifestFields, Operator, RootfsSource,
};
use crate::cgroups::{FreezeOptions, Freezer, FreezerError};
use crate::criu::{CgroupMode, CriuError, DumpStats, NotifyKind, Options};
use crate::discovery::Container;
use crate::durable;
use crate::lock::ContainerLock;
use crate::oci::Spec;

/// Headroom asked of the staging directory beyond the container's memory: images carry more
/// than pages.
pub(super) const ROOM_MARGIN: u64 = 64 << 20;

/// The longest reel waits for the cgroup to reach FROZEN.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a dump kept that a restore must know about.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Captured {
    /// Established TCP connections (restoring them takes `tcp_established`).
    pub tcp_connections: usize,
    /// Unix sockets whose peer was outside the container (declared external).
    pub external_unix_sockets: usize,
    /// Open-but-deleted files kept as ghost files.
    pub deleted_files: usize,
}

/// A container dumped into a staging directory, not yet written as an archive. Holds the
/// container's lock; dropping it removes the staging directory.
#[derive(Debug)]
pub struct Dumped {
    stage: Stage,
    spec_bytes: Vec<u8>,
    config: ConfigDump,
    fields: ManifestFields,
    diff: archive::StagedRootfsDiff,
    /// How long the container was frozen, as reel measured it (freeze to thaw).
    pub frozen: Duration,
    /// CRIU's statistics.
    pub stats: DumpStats,
    /// The container was frozen before reel came and was left frozen.
    pub left_frozen: bool,
    /// How far the page images were hashed while CRIU wrote them.
    prefix_digests: Vec<archive::PrefixDigest>,
    /// What the dump kept of the evidence.
    pub captured: Captured,
    _lock: ContainerLock,
}

impl Dumped {
    /// The method's custody record.
    pub fn method(&self) -> Option<&super::MethodRecord> {
        self.fields.method.as_ref()
    }

    /// The checkpoint id.
    pub fn id(&self) -> &str {
        &self.fields.checkpoint_id
    }

    /// The staging directory (`checkpoint/` images, `dump.log`, `stats-dump`, rootfs diff).
    pub fn stage_dir(&self) -> &Path {
        self.stage.dir()
    }

    /// Writes the checkpoint as an archive to `out` (images first, the manifest last; each
    /// member hashed as it streams) and returns the manifest and `out`.
    pub fn write_archive<W: std::io::Write>(
        &self,
        out: W,
    ) -> crate::Result<(archive::Manifest, W)> {
        let mut w = ArchiveWriter::new(out, self.fields.created);
        w.use_prefix_digests(self.prefix_digests.clone());
        w.append_images_dir(&self.stage.images_dir())?;
        w.append_config_dump(&self.config)?;
        w.append_bytes(archive::SPEC_DUMP, &self.spec_bytes)?;
        w.append_file(
            archive::STATS_DUMP,
            &self.stage.dir().join(archive::STATS_DUMP),
        )?;
        w.append_file(archive::DUMP_LOG, &self.stage.dir().join(archive::DUMP_LOG))?;
        w.append_rootfs_diff(&self.diff)?;
        Ok(w.finish(self.fields.clone())?)
    }
}

impl Checkpointer {
    /// Dumps a container into a staging directory under `staging_root` (which must have room
    /// for the container's memory): lock, freeze, CRIU dump, rootfs diff, thaw. The result is
    /// written as an archive with [`Dumped::write_archive`]; dropping it removes the staging
    /// directory.
    pub fn dump(
        &self,
        c: &Container,
        id: &str,
        staging_root: &Path,
        opts: &CheckpointOptions,
    ) -> crate::Result<Dumped> {
        let prepared = self.prepare(c, id, staging_root, opts)?;
        let (pid, stage) = (prepared.pid, &prepared.stage);
        let spec = Spec::parse(&prepared.spec_bytes).map_err(|source| CheckpointError::Spec {
            path: c.spec_path.clone(),
            source,
        })?;
        let plan = DumpPlan::new(pid, &c.rootfs, &spec)?;
        // Everything that would make CRIU fail after the freeze is found now, while the
        // workload runs; and the sockets CRIU must treat as external.
        let pre = preflight::inspect(c, pid, opts)?;
        write_descriptors(pid, &stage.images_dir())?;

        // Freeze, dump, take the rootfs diff, thaw: nothing else happens while frozen. CRIU
        // needs some 30 ms to start (more on a host whose /run is not a tmpfs: it cannot keep
        // its kernel-feature cache there); reel freezes only when CRIU announces the dump
        // (the pre-dump notification, just before CRIU collects the tasks), so the workload
        // does not wait for that.
        let freezer = Freezer::for_pid(pid, opts.freezer)?;
        let criu_opts = self.dump_options(pid, &plan, &pre, &freezer, stage, opts);
        let freeze_opts = FreezeOptions::default().timeout(opts.timeout.min(FREEZE_TIMEOUT));
        let mut guard = None;
        let mut freeze_failed = None;
        let mut freeze_started = Instant::now();
        // Hashes the page images on the idle core while CRIU writes them (see PreHasher);
        // without it, they are hashed while archiving.
        let prehash = archive::PreHasher::start(&stage.images_dir())
            .map_err(|e| tracing::debug!(error = %e, "no pre-hash thread"))
            .ok();
        let dumped = self.criu.dump_with(&criu_opts, |n| match n.kind() {
            NotifyKind::PreDump if guard.is_none() => {
                freeze_started = Instant::now();
                match freezer.freeze_with(&freeze_opts) {
                    Ok(g) => {
                        guard = Some(g);
                        Ok(())
                    }
                    Err(e) => {
                        let msg = format!("freezing the container: {e}");
                        freeze_failed = Some(e);
                        Err(msg)
                    }
                }
            }
            // post-dump is CRIU's last safe point: failing it keeps the tasks alive.
            NotifyKind::PostDump if freeze_started.elapsed() > opts.timeout => Err(format!(
                "the container has been frozen longer than the {:?} timeout",
                opts.timeout
            )),
            _ => Ok(()),
        });
        let timed_out = freeze_started.elapsed() > opts.timeout;
        let (stats, guard) = match (dumped, guard) {
            (Ok(stats), Some(guard)) => (stats, guard),
            (Ok(_), None) => {
                return Err(CheckpointError::NoPreDumpNotification {
                    criu: self.criu.binary().display().to_string(),
                }
                .into())
            }
            (Err(e), guard) => {
                let frozen_for = freeze_started.elapsed();
                if let Some(guard) = guard {
                    if let Err(t) = guard.thaw() {
                        tracing::error!(error = %t, "thawing after a failed dump");
                    }
                }
                return Err(match freeze_failed {
                    // The user's timeout bounded the wait for FROZEN and the freeze was rolled
                    // back: say that reel gave up, as for a timeout during the dump.
                    Some(FreezerError::FreezeTimeout { elapsed, .. })
                        if opts.timeout <= FREEZE_TIMEOUT =>
                    {
                        CheckpointError::Timeout {
                            limit: opts.timeout,
                            frozen_for: elapsed,
                        }
                        .into()
                    }
                    Some(f) => f.into(),
                    None if matches!(&e, CriuError::NotifyFailed { .. }) && timed_out => {
                        CheckpointError::Timeout {
                            limit: opts.timeout,
                            frozen_for,
                        }
                        .into()
                    }
                    None => e.into(),
                });
            }
        };
        let diff = archive::stage_rootfs_diff(&rootfs_source(c), stage.dir());
        let left_frozen = guard.was_frozen();
        guard.thaw()?;
        let frozen = freeze_started.elapsed();
        let prefix_digests = prehash.map(archive::PreHasher::finish).unwrap_or_default();
        let diff = diff?;
        let method = super::MethodRecord {
            name: super::Method::Direct.to_string(),
            runtime: Some("reel".into()),
            runtime_version: Some(archive::REEL_VERSION.into()),
            endpoint: Some(self.criu.binary().display().to_string()),
            ..super::MethodRecord::default()
        };
        let captured = Captured {
            tcp_connections: count_images(&stage.images_dir(), "tcp-stream-"),
            external_unix_sockets: pre.external_unix_sockets.len(),
            deleted_files: pre.deleted_files.len(),
        };
        let mut dump_options = dump_options_record(opts, &plan, &pre, &freezer);
        dump_options.insert(
            "tcp_connections".into(),
            serde_json::Value::from(captured.tcp_connections),
        );
        dumped_here(
            prepared,
            c,
            id,
            Taken {
                diff,
                frozen,
                stats,
                left_frozen,
                prefix_digests,
                criu_version: self.criu.known_version().to_string(),
                dump_options,
                method,
                captured,
            },
        )
    }

    /// What every method that dumps on this host does before it touches the container: the
    /// container's lock, its spec, room for its memory, a staging directory.
    pub(super) fn prepare(
        &self,
        c: &Container,
        id: &str,
        staging_root: &Path,
        opts: &CheckpointOptions,
    ) -> crate::Result<Prepared> {
        let pid = ensure_checkpointable(c)?;
        let lock = self.locks.lock(&c.id, opts.lock_wait)?;
        let spec_bytes =
            std::fs::read(&c.spec_path).map_err(|source| CheckpointError::Inspect {
                path: c.spec_path.clone(),
                source,
            })?;
        let needed = c.memory_bytes.unwrap_or(0).saturating_add(ROOM_MARGIN);
        crate::store::ensure_room(staging_root, needed)?;
        let now = Utc::now();
        let stage = Stage::create(staging_root, id)?;
        Ok(Prepared {
            pid,
            lock,
            spec_bytes,
            stage,
            now,
        })
    }

    fn dump_options(
        &self,
        pid: i32,
        plan: &DumpPlan,
        pre: &Preflight,
        freezer: &Freezer,
        stage: &Stage,
        opts: &CheckpointOptions,
    ) -> Options {
        let mut o = Options::new()
            .pid(pid)
            .images_dir(stage.images_dir())
            .work_dir(stage.dir())
            .log_file(archive::DUMP_LOG)
            .log_level(4)
            .root(&plan.root)
            .leave_running(true)
            .manage_cgroups(CgroupMode::Soft)
            .freeze_cgroup(freezer.path())
            .orphan_pts_master(true)
            .notify_scripts(true)
            .empty_ns(plan.empty_ns)
            .tcp_established(opts.tcp_established)
            .file_locks(opts.file_locks)
            .ext_unix_sk(opts.ext_unix_sk)
            .shell_job(opts.shell_job)
            .link_remap(opts.link_remap)
            .ghost_limit(opts.ghost_limit.min(super::MAX_GHOST_LIMIT) as u32)
            // A last resort only: CRIU is asked to give up at post-dump first (see create).
            .call_timeout(opts.timeout + Duration::from_secs(120));
        for (k, v) in &plan.ext_mnt {
            o = o.ext_mount(k.clone(), v.clone());
        }
        for e in &plan.external {
            o = o.external(e.clone());
        }
        for s in &pre.external_unix_sockets {
            o = o.external(format!("unix[{}]", s.inode));
        }
        o
    }
}

pub(super) fn describe(c: &Container) -> String {
    format!("{}/{}/{} ({})", c.namespace, c.pod, c.name, c.id)
}

/// The container's init pid, unless discovery found a reason it cannot be checkpointed.
pub(super) fn ensure_checkpointable(c: &Container) -> Result<i32, CheckpointError> {
    if !c.checkpointable {
        let reason = c
            .blockers
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(CheckpointError::NotCheckpointable {
            container: describe(c),
            reason,
        });
    }
    c.pid.ok_or_else(|| CheckpointError::NotCheckpointable {
        container: describe(c),
        reason: "it has no init process".into(),
    })
}

/// Where the container's rootfs diff comes from: its overlay upper dir, if it has one.
pub(super) fn rootfs_source(c: &Container) -> RootfsSource {
    match &c.upper_dir {
        Some(upper) => RootfsSource::OverlayUpper(upper.clone()),
        None => RootfsSource::None {
            reason: format!(
                "the rootfs {} is a plain directory (bare {} bundle): it has no writable layer",
                c.rootfs.display(),
                c.runtime.as_str()
            ),
        },
    }
}

/// The last error lines of a CRIU log (empty when there is none).
pub(super) fn log_tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    errors[errors.len().saturating_sub(5)..].join("\n")
}

/// The container's base layers: the lower dirs of its root overlay mount, read from its
/// mountinfo as discovery reads the upper dir (`lowerdir=a:b`, or one `lowerdir+=` per layer
/// on kernels that mount layers one by one), else the plain directory rootfs itself.
fn rootfs_layers(c: &Container, pid: i32) -> Option<archive::RootfsLayers> {
    let image_ref = [
        "io.kubernetes.cri-o.ImageRef",
        "io.kubernetes.cri.image-ref",
        "io.kubernetes.cri.image-id",
    ]
    .iter()
    .find_map(|k| c.annotations.get(*k).filter(|v| !v.is_empty()).cloned());
    let mounts = crate::host::mountinfo(Path::new(crate::host::PROC), pid)?;
    let root = mounts.iter().rev().find(|m| m.mount_point == "/")?;
    let (kind, lower_dirs) = if root.fstype == "overlay" {
        let mut dirs = Vec::new();
        for o in &root.super_options {
            if let Some(v) = o.strip_prefix("lowerdir=") {
                dirs.extend(v.split(':').filter(|d| !d.is_empty()).map(PathBuf::from));
            } else if let Some(v) = o.strip_prefix("lowerdir+=") {
                dirs.push(PathBuf::from(v));
            }
        }
        ("overlay", dirs)
    } else {
        ("directory", vec![c.rootfs.clone()])
    };
    Some(archive::RootfsLayers {
        kind: kind.into(),
        lower_dirs,
        image: c.image.clone(),
        image_ref,
    })
}

/// runc's `descriptors.json`: what fds 0, 1 and 2 of the init point to. runc restore needs it.
fn write_descriptors(pid: i32, images_dir: &Path) -> Result<(), CheckpointError> {
    let mut fds = Vec::with_capacity(3);
    for fd in 0..3 {
        let link = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
        let target = std::fs::read_link(&link).map_err(|source| CheckpointError::Inspect {
            path: link.clone(),
            source,
        })?;
        fds.push(target.to_string_lossy().into_owned());
    }
    let json = serde_json::to_vec(&fds).map_err(|source| CheckpointError::Json {
        what: "descriptors.json",
        source,
    })?;
    let path = images_dir.join("descriptors.json");
    durable::write_private(&path, &json).map_err(|source| CheckpointError::Stage { path, source })
}

/// A container prepared for a dump on this host ([`Checkpointer::prepare`]).
pub(super) struct Prepared {
    pub pid: i32,
    pub lock: ContainerLock,
    /// The runtime's spec, exactly as it wrote it.
    pub spec_bytes: Vec<u8>,
    pub stage: Stage,
    pub now: DateTime<Utc>,
}

/// What a method that dumped on this host found.
pub(super) struct Taken {
    pub diff: archive::StagedRootfsDiff,
    pub frozen: Duration,
    pub stats: DumpStats,
    pub left_frozen: bool,
    pub prefix_digests: Vec<archive::PrefixDigest>,
    pub criu_version: String,
    pub dump_options: BTreeMap<String, serde_json::Value>,
    pub method: super::MethodRecord,
    pub captured: Captured,
}

/// The images a method dumped into `p.stage`, as a [`Dumped`]: expired timerfds re-armed,
/// `config.dump` and the manifest's fields from what discovery knows of `c`.
pub(super) fn dumped_here(p: Prepared, c: &Container, id: &str, t: Taken) -> crate::Result<Dumped> {
    // CRIU dumps an expired periodic timerfd in a state its restore turns into a disarmed
    // timer (see plan::rearm_expired_timerfds): re-arm those entries before archiving. A
    // failure only costs the timerfds of a later restore, never the checkpoint.
    let rearmed = plan::rearm_expired_timerfds(&p.stage.images_dir()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot check the timerfds of files.img");
        Vec::new()
    });
    let now = p.now;
    let mut config = ConfigDump::new(c.id.clone(), c.name.clone(), c.created.unwrap_or(now), now);
    config.runtime = Some(c.runtime.as_str().to_string());
    config.rootfs_image_name = c.image.clone();
    config.rootfs_image = c.image.clone();
    let mut dump_options = t.dump_options;
    if !rearmed.is_empty() {
        dump_options.insert("rearmed_timerfds".into(), rearmed.into());
    }
    let fields = ManifestFields {
        checkpoint_id: id.to_string(),
        created: now,
        created_by: Operator::current()?,
        node: archive::node_hostname()?,
        criu_version: t.criu_version,
        container: ContainerIdentity {
            namespace: Some(c.namespace.clone()),
            pod: Some(c.pod.clone()),
            name: c.name.clone(),
            id: c.id.clone(),
            runtime: c.runtime.as_str().to_string(),
            image: c.image.clone(),
        },
        criu_frozen_time_us: t.stats.frozen_time.map(|d| d.as_micros() as u64),
        dump_options,
        method: Some(t.method),
        rootfs_layers: rootfs_layers(c, p.pid),
        page_size: Some(procfs::page_size()),
    };
    Ok(Dumped {
        stage: p.stage,
        spec_bytes: p.spec_bytes,
        config,
        fields,
        diff: t.diff,
        frozen: t.frozen,
        stats: t.stats,
        left_frozen: t.left_frozen,
        prefix_digests: t.prefix_digests,
        captured: t.captured,
        _lock: p.lock,
    })
}

/// How many images of the dump start with `prefix`.
pub(super) fn count_images(images: &Path, prefix: &str) -> usize {
    std::fs::read_dir(images)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

fn dump_options_record(
    opts: &CheckpointOptions,
    plan: &DumpPlan,
    pre: &Preflight,
    freezer: &Freezer,
) -> BTreeMap<String, serde_json::Value> {
    let mut m = BTreeMap::new();
    if let Ok(serde_json::Value::Object(o)) = serde_json::to_value(opts) {
        m.extend(o);
    }
    // Which freezer froze the container (`--freezer`): its cgroup version and directory, which
    // is also CRIU's `freeze_cgroup`.
    m.insert("freezer".into(), freezer.kind().to_string().into());
    m.insert(
        "freeze_cgroup".into(),
        freezer.path().to_string_lossy().into_owned().into(),
    );
    m.insert("leave_running".into(), true.into());
    m.insert("manage_cgroups_mode".into(), "soft".into());
    m.insert("orphan_pts_master".into(), true.into());
    m.insert(
        "ext_mnt".into(),
        serde_json::Value::from(
            plan.ext_mnt
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>(),
        ),
    );
    let mut external = plan.external.clone();
    external.extend(
        pre.external_unix_sockets
            .iter()
            .map(|s| format!("unix[{}]", s.inode)),
    );
    m.insert("external".into(), serde_json::Value::from(external));
    // What the dump kept of the evidence, and how to read it back: the sockets whose peer
    // was outside (a restore hands each a substitute), the deleted files dumped as ghost
    // files, and the page size of this host (the pagemap counts its pages).
    m.insert(
        "external_unix_sockets".into(),
        serde_json::to_value(&pre.external_unix_sockets).unwrap_or_default(),
    );
    m.insert(
        "deleted_files".into(),
        serde_json::to_value(&pre.deleted_files).unwrap_or_default(),
    );
    m.insert(
        "page_size".into(),
        serde_json::Value::from(procfs::page_size()),
    );
    m
}
