//! The `containerd` method: containerd's own task checkpoint (`Tasks/Checkpoint`, runc through
//! the shim), with the CRIU images written straight into reel's staging directory.
//!
//! [`Checkpointer::dump_containerd`] pauses the task through containerd (`Tasks/Pause`), has it
//! checkpoint the paused task with the runc shim's `CheckpointOptions` (`exit` false,
//! `image_path` = `<stage>/checkpoint`, `work_path` = `<stage>`: with `image_path` set,
//! containerd puts nothing in its content store), takes the rootfs diff from the container's
//! writable layer while it is still paused (CRI-O's lesson, cri-o#6977), and resumes it
//! (`Tasks/Resume`). The result is a [`Dumped`], archived exactly like a `direct` one.
//!
//! The pause is held by a [`crate::cgroups::FreezeGuard`] on the task's cgroup (the one runc
//! freezes): it thaws on every path and on SIGINT/SIGTERM, and its watchdog, if reel is
//! killed, runs `ctr --address SOCK -n NS tasks resume ID` and then thaws the cgroup itself
//! (and keeps thawing while CRIU still traces the tasks), so the workload is never left
//! frozen. A task that was paused before reel came is checkpointed and left paused.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::time::{Duration, Instant};

use super::{CheckpointError, CheckpointOptions, Checkpointer, Dumped, MethodRecord};
use crate::archive;
use crate::cgroups::{FreezeOptions, Freezer};
use crate::discovery::Container;
use crate::rpc::containerd::{CheckpointOptions as RuncOptions, Client, TaskStatus};

/// The longest containerd may take to checkpoint (the CRIU dump of a large container).
const CHECKPOINT_DEADLINE: Duration = Duration::from_secs(600);
/// The longest reel waits for the paused cgroup to read FROZEN.
const PAUSE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to containerd for one container, checked before anything is paused.
#[derive(Debug)]
pub struct ContainerdTask {
    pub(super) client: Client,
    pub(super) version: String,
    pub(super) namespace: String,
}

impl Checkpointer {
    /// Connects to containerd for `c` (which must be one of containerd's containers) and
    /// checks that containerd knows its task.
    pub(super) fn containerd_task(&self, c: &Container) -> crate::Result<ContainerdTask> {
        let namespace =
            c.runtime_namespace
                .clone()
                .ok_or_else(|| CheckpointError::NotContainerd {
                    container: super::direct::describe(c),
                    runtime: c.runtime.as_str().to_string(),
                })?;
        let client = Client::connect(&self.methods.containerd_socket, &namespace)?;
        let version = client.version()?.version;
        let task = client.task(&c.id)?;
        if task.status() == TaskStatus::Stopped {
            return Err(CheckpointError::NotCheckpointable {
                container: super::direct::describe(c),
                reason: "containerd says its task has stopped".into(),
            }
            .into());
        }
        Ok(ContainerdTask {
            client,
            version,
            namespace,
        })
    }

    /// Checkpoints `c` through containerd into a staging directory under `staging_root`:
    /// pause, checkpoint, rootfs diff, resume. See the module documentation.
    pub fn dump_containerd(
        &self,
        c: &Container,
        task: &ContainerdTask,
        id: &str,
        staging_root: &std::path::Path,
        opts: &CheckpointOptions,
    ) -> crate::Result<Dumped> {
        let prepared = self.prepare(c, id, staging_root, opts)?;
        let stage = &prepared.stage;

        let freezer = Freezer::for_pid(prepared.pid, opts.freezer)?;
        let socket = task.client.socket().to_owned();
        let resume = match crate::host::which("ctr") {
            Some(ctr) => vec![
                ctr.into_os_string(),
                "--address".into(),
                socket.clone().into_os_string(),
                "-n".into(),
                OsString::from(&task.namespace),
                "tasks".into(),
                "resume".into(),
                OsString::from(&c.id),
            ],
            None => Vec::new(),
        };
        let freeze_opts = FreezeOptions::default()
            .timeout(PAUSE_TIMEOUT)
            .resume_command(resume);
        let paused_at = Instant::now();
        let guard = freezer.freeze_via(&freeze_opts, || {
            task.client.pause(&c.id).map_err(|e| e.to_string())
        })?;
        let left_frozen = guard.was_frozen();

        let runc = RuncOptions {
            exit: false,
            open_tcp: opts.tcp_established,
            external_unix_sockets: opts.ext_unix_sk,
            terminal: opts.shell_job,
            file_locks: opts.file_locks,
            image_path: stage.images_dir().to_string_lossy().into_owned(),
            work_path: stage.dir().to_string_lossy().into_owned(),
            ..RuncOptions::default()
        };
        let checkpointed = task
            .client
            .checkpoint(&c.id, &runc, CHECKPOINT_DEADLINE)
            .map_err(|e| {
                let log = super::direct::log_tail(&stage.dir().join(archive::DUMP_LOG));
                CheckpointError::RuntimeFailed {
                    method: super::Method::Containerd,
                    error: e.to_string(),
                    log,
                }
            });
        // The diff while the task is still paused, as for direct.
        let diff = checkpointed
            .as_ref()
            .ok()
            .map(|_| archive::stage_rootfs_diff(&super::direct::rootfs_source(c), stage.dir()));
        let resumed = if left_frozen {
            Ok(())
        } else {
            task.client.resume(&c.id)
        };
        if let Err(e) = &resumed {
            tracing::warn!(error = %e, "containerd could not resume the task; thawing its cgroup");
        }
        guard.thaw()?;
        let frozen = paused_at.elapsed();
        let response = checkpointed?;
        if !response.descriptors.is_empty() {
            tracing::warn!(
                blobs = response.descriptors.len(),
                "containerd stored checkpoint blobs despite image_path"
            );
        }
        let diff = diff.expect("taken after a successful checkpoint")?;
        let stats = crate::criu::read_dump_stats(&stage.dir().join(archive::STATS_DUMP))
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "no CRIU statistics from containerd's dump");
                Default::default()
            });
        let criu_version = std::fs::read(stage.dir().join(archive::DUMP_LOG))
            .ok()
            .and_then(|log| archive::criu_version_from_log(&log))
            .unwrap_or_else(|| "unknown".into());

        let mut dump_options = BTreeMap::new();
        for (k, v) in [
            ("tcp_established", opts.tcp_established),
            ("ext_unix_sk", opts.ext_unix_sk),
            ("file_locks", opts.file_locks),
            ("shell_job", opts.shell_job),
            ("leave_running", true),
        ] {
            dump_options.insert(k.to_string(), serde_json::Value::from(v));
        }
        dump_options.insert("containerd_namespace".into(), task.namespace.clone().into());
        let tcp_connections = super::direct::count_images(&stage.images_dir(), "tcp-stream-");
        dump_options.insert("tcp_connections".into(), tcp_connections.into());
        dump_options.insert("page_size".into(), procfs::page_size().into());
        let method = MethodRecord {
            name: super::Method::Containerd.to_string(),
            runtime: Some("containerd".into()),
            runtime_version: Some(task.version.clone()),
            endpoint: Some(socket.display().to_string()),
            ..MethodRecord::default()
        };
        super::direct::dumped_here(
            prepared,
            c,
            id,
            super::direct::Taken {
                diff,
                frozen,
                stats,
                left_frozen,
                prefix_digests: Vec::new(),
                criu_version,
                dump_options,
                method,
                captured: super::Captured {
                    tcp_connections,
                    ..super::Captured::default()
                },
            },
        )
    }
}
