//! [`Received`]: a checkpoint a runtime wrote as an archive (`crio`, `k8s-api`), checked and
//! ready to be written as a reel archive by [`crate::export::write_imported`].

use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::stage::Stage;
use super::{CheckpointOptions, Method, MethodRecord};
use crate::archive::{
    self, ContainerIdentity, ManifestFields, Operator, ReceivedArchive, RootfsDiffInfo,
};
use crate::criu::DumpStats;

/// A runtime's archive, received and checked. Dropping it removes reel's staging directory
/// (the `crio` method's); the kubelet's copy is removed by [`Received::remove_runtime_copy`]
/// once the checkpoint is safely written.
#[derive(Debug)]
pub struct Received {
    archive: ReceivedArchive,
    fields: ManifestFields,
    rootfs: RootfsDiffInfo,
    /// CRIU's statistics, from the archive's `stats-dump` (empty when it has none).
    pub stats: DumpStats,
    /// The container id as the runtime knows it.
    pub container_id: String,
    _stage: Option<Stage>,
    runtime_copy: Option<PathBuf>,
}

/// What the method knows about a received archive.
pub(super) struct Origin<'a> {
    pub method: Method,
    pub record: MethodRecord,
    pub namespace: &'a str,
    pub pod: &'a str,
    pub container: &'a str,
    pub container_id: &'a str,
    pub id: &'a str,
    pub created: DateTime<Utc>,
    pub opts: &'a CheckpointOptions,
}

impl Received {
    /// Checks the archive at `path` and works out its manifest fields. `stage` (reel's staging
    /// directory holding it) is removed with the result; `runtime_copy` is the runtime's own
    /// file, removed after the commit.
    pub(super) fn new(
        path: &std::path::Path,
        stage: Option<Stage>,
        runtime_copy: Option<PathBuf>,
        origin: Origin<'_>,
    ) -> crate::Result<Received> {
        let archive = ReceivedArchive::open(path)?;
        let config: serde_json::Value = archive
            .metadata(archive::CONFIG_DUMP)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let text = |k: &str| {
            config
                .get(k)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let stats = archive
            .metadata(archive::STATS_DUMP)?
            .and_then(|b| crate::criu::decode_stats_image(&b, archive::STATS_DUMP).ok())
            .and_then(|e| DumpStats::from_entry(&e))
            .unwrap_or_default();
        let criu_version = archive
            .metadata(archive::DUMP_LOG)?
            .and_then(|log| archive::criu_version_from_log(&log))
            .unwrap_or_else(|| "unknown".into());
        let runtime = origin
            .record
            .runtime
            .clone()
            .unwrap_or_else(|| origin.method.to_string());
        let mut record = origin.record;
        record.received_sha256 = Some(archive.sha256.clone());
        record.received = Some(
            runtime_copy
                .as_deref()
                .unwrap_or(path)
                .display()
                .to_string(),
        );
        let container_id = text("id").unwrap_or_else(|| origin.container_id.to_string());
        let mut dump_options = std::collections::BTreeMap::new();
        dump_options.insert(
            "timeout".into(),
            serde_json::Value::from(origin.opts.timeout.as_secs_f64()),
        );
        let fields = ManifestFields {
            checkpoint_id: origin.id.to_string(),
            created: origin.created,
            created_by: Operator::current()?,
            node: archive::node_hostname()?,
            criu_version,
            container: ContainerIdentity {
                namespace: Some(origin.namespace.to_string()),
                pod: Some(origin.pod.to_string()),
                name: text("name").unwrap_or_else(|| origin.container.to_string()),
                id: container_id.clone(),
                runtime: text("runtime").unwrap_or_else(|| runtime.clone()),
                image: text("rootfsImageName").or_else(|| text("rootfsImage")),
            },
            criu_frozen_time_us: stats.frozen_time.map(|d| d.as_micros() as u64),
            dump_options,
            method: Some(record),
            // The runtime's archive says nothing of the base layers.
            rootfs_layers: None,
            // The runtime dumped on this host.
            page_size: Some(procfs::page_size()),
        };
        let rootfs = archive.rootfs_info(&runtime);
        Ok(Received {
            archive,
            fields,
            rootfs,
            stats,
            container_id,
            _stage: stage,
            runtime_copy,
        })
    }

    /// The checkpoint id.
    pub fn id(&self) -> &str {
        &self.fields.checkpoint_id
    }

    /// The archive's size as received.
    pub fn archive_bytes(&self) -> u64 {
        self.archive.size
    }

    /// The method's custody record.
    pub fn method(&self) -> Option<&MethodRecord> {
        self.fields.method.as_ref()
    }

    /// Writes the reel archive to `out` (every member as received, then the manifest).
    pub fn write_archive(&self, out: &mut dyn std::io::Write) -> crate::Result<archive::Manifest> {
        Ok(self
            .archive
            .write_to(out, self.fields.clone(), self.rootfs.clone())?
            .0)
    }

    /// Removes the runtime's copy (the kubelet never prunes its checkpoints directory).
    pub fn remove_runtime_copy(&mut self) {
        if let Some(p) = self.runtime_copy.take() {
            match std::fs::remove_file(&p) {
                Ok(()) => tracing::info!(path = %p.display(), "removed the runtime's copy"),
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove the runtime's copy")
                }
            }
        }
    }
}
