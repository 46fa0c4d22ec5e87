//! The `crio` method: the CRI call `runtime.v1.RuntimeService/CheckpointContainer` on the CRI
//! socket (CRI-O's `/var/run/crio/crio.sock`; containerd 2.0+ serves it too).
//!
//! reel finds the container's CRI id with `ListContainers` filtered by the kubelet's pod
//! labels (`io.kubernetes.pod.namespace`, `io.kubernetes.pod.name`, and
//! `io.kubernetes.container.name` when the container is named), asks the runtime to write its
//! archive to `<staging dir>/<id>.tar` (a file path in the host's mount namespace, which the
//! runtime, running on the host, writes directly), then imports that archive
//! ([`Received`]): checked as hostile input, every member hashed as received, reel's
//! manifest added, and written through the same chain as every checkpoint.
//!
//! The runtime's known refusals become clear errors: `Unimplemented` (containerd 1.6/1.7's
//! CRI plugin), "checkpoint/restore support not available" (CRI-O without
//! `enable_criu_support`), `NotFound`.

use std::collections::BTreeSet;
use std::path::Path;

use chrono::Utc;
use tonic::Code;

use super::received::{Origin, Received};
use super::stage::Stage;
use super::{CheckpointError, CheckpointOptions, Checkpointer, Method, MethodRecord, Target};
use crate::rpc::cri::{self, Client, ContainerState};
use crate::rpc::RpcError;

/// The text CRI-O answers with when its CRIU support is off.
pub const CRIU_SUPPORT_OFF: &str = "checkpoint/restore support not available";

/// A CRI runtime and the container in it, found before anything is checkpointed.
#[derive(Debug)]
pub struct CriContainer {
    client: Client,
    /// `cri-o`, `containerd`, ...
    pub runtime_name: String,
    pub runtime_version: String,
    /// The CRI container id.
    pub id: String,
    /// Its name in the pod.
    pub name: String,
}

impl Checkpointer {
    /// Connects to the CRI socket and finds `target`'s container by the kubelet's labels.
    pub fn cri_container(&self, target: &Target) -> crate::Result<CriContainer> {
        let client = Client::connect(&self.methods.cri_socket)?;
        let v = client.version()?;
        let mut labels = vec![
            (cri::LABEL_NAMESPACE, target.namespace.as_str()),
            (cri::LABEL_POD, target.pod.as_str()),
        ];
        if let Some(c) = &target.container {
            labels.push((cri::LABEL_CONTAINER, c.as_str()));
        }
        let found = client.list_containers(&labels)?;
        let name_of = |c: &cri::Container| {
            c.labels
                .get(cri::LABEL_CONTAINER)
                .cloned()
                .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
                .unwrap_or_default()
        };
        let running: Vec<&cri::Container> = found
            .iter()
            .filter(|c| c.state() == ContainerState::ContainerRunning)
            .collect();
        let names: BTreeSet<String> = running.iter().map(|c| name_of(c)).collect();
        let chosen = match running.as_slice() {
            [one] => *one,
            [] => {
                return Err(CheckpointError::RuntimeNotFound {
                    runtime: v.runtime_name.clone(),
                    what: if found.is_empty() {
                        format!("of pod {target}")
                    } else {
                        format!("running in pod {target} ({} exited)", found.len())
                    },
                }
                .into())
            }
            _ if names.len() > 1 => {
                return Err(CheckpointError::AmbiguousContainer {
                    pod: format!("{}/{}", target.namespace, target.pod),
                    candidates: names.into_iter().collect(),
                }
                .into())
            }
            // Restarted containers share a name: the newest one runs.
            many => many
                .iter()
                .max_by_key(|c| c.created_at)
                .copied()
                .expect("not empty"),
        };
        Ok(CriContainer {
            id: chosen.id.clone(),
            name: name_of(chosen),
            runtime_name: v.runtime_name,
            runtime_version: v.runtime_version,
            client,
        })
    }

    /// Has the CRI runtime checkpoint `c` into `<staging_root>/<id>.stage/<id>.tar` and takes
    /// that archive in.
    pub fn take_cri(
        &self,
        c: &CriContainer,
        target: &Target,
        id: &str,
        staging_root: &Path,
        opts: &CheckpointOptions,
    ) -> crate::Result<Received> {
        let created = Utc::now();
        let stage = Stage::create(staging_root, id)?;
        let location = stage.dir().join(format!("{id}.tar"));
        c.client
            .checkpoint(&c.id, &location, opts.timeout)
            .map_err(|e| cri_error(e, &c.runtime_name, &c.runtime_version, &c.id))?;
        Received::new(
            &location,
            Some(stage),
            None,
            Origin {
                method: Method::Crio,
                record: MethodRecord {
                    name: Method::Crio.to_string(),
                    runtime: Some(c.runtime_name.clone()),
                    runtime_version: Some(c.runtime_version.clone()),
                    endpoint: Some(c.client.socket().display().to_string()),
                    ..MethodRecord::default()
                },
                namespace: &target.namespace,
                pod: &target.pod,
                container: &c.name,
                container_id: &c.id,
                id,
                created,
                opts,
            },
        )
    }
}

/// A CRI error in reel's terms (the texts of containerd and CRI-O).
pub(super) fn cri_error(e: RpcError, runtime: &str, version: &str, id: &str) -> crate::Error {
    let who = if version.is_empty() {
        runtime.to_string()
    } else {
        format!("{runtime} {version}")
    };
    let message = e.message().unwrap_or_default().to_string();
    match e.code() {
        Some(Code::Unimplemented) => CheckpointError::CriUnimplemented {
            runtime: who,
            socket: match &e {
                RpcError::Status { socket, .. } => socket.display().to_string(),
                _ => String::new(),
            },
            message,
        }
        .into(),
        _ if message.contains(CRIU_SUPPORT_OFF) => CheckpointError::CriCheckpointDisabled {
            runtime: who,
            message,
        }
        .into(),
        Some(Code::NotFound) => CheckpointError::RuntimeNotFound {
            runtime: who,
            what: format!("{id} ({message})"),
        }
        .into(),
        _ => e.into(),
    }
}
