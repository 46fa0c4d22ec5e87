//! containerd's own gRPC API (not the CRI): version, and the task calls the `containerd`
//! method needs. Messages as in containerd's `api/services/version/v1/version.proto`,
//! `api/services/tasks/v1/tasks.proto`, `api/types/task/task.proto` and the runc shim's
//! `runtime/v2/runc/options/oci.proto` (the same numbers in 1.6, 1.7 and 2.x).
//!
//! Calls name their containerd namespace in the `containerd-namespace` header.

use std::path::Path;
use std::time::Duration;

use super::{Any, Connection, Empty, RpcError};

/// containerd's default socket.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// The header carrying the containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// The type URL the runc shims (`io.containerd.runc.v1`/`v2`) read checkpoint options under.
pub const CHECKPOINT_OPTIONS_TYPE: &str = "containerd.runc.v1.CheckpointOptions";

/// Short calls (version, get, pause, resume).
const SHORT: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub revision: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub exec_id: String,
}

/// `containerd.v1.types.Process` (the fields reel reads).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Process {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub id: String,
    #[prost(uint32, tag = "3")]
    pub pid: u32,
    #[prost(enumeration = "TaskStatus", tag = "4")]
    pub status: i32,
}

/// `containerd.v1.types.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum TaskStatus {
    Unknown = 0,
    Created = 1,
    Running = 2,
    Stopped = 3,
    Paused = 4,
    Pausing = 5,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct GetResponse {
    #[prost(message, optional, tag = "1")]
    pub process: Option<Process>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TaskRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckpointTaskRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    #[prost(string, tag = "2")]
    pub parent_checkpoint: String,
    #[prost(message, optional, tag = "3")]
    pub options: Option<Any>,
}

/// `containerd.types.Descriptor` (what a checkpoint put in the content store).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Descriptor {
    #[prost(string, tag = "1")]
    pub media_type: String,
    #[prost(string, tag = "2")]
    pub digest: String,
    #[prost(int64, tag = "3")]
    pub size: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckpointTaskResponse {
    #[prost(message, repeated, tag = "1")]
    pub descriptors: Vec<Descriptor>,
}

/// `containerd.runc.v1.CheckpointOptions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckpointOptions {
    /// Kill the task after the checkpoint (never, for reel).
    #[prost(bool, tag = "1")]
    pub exit: bool,
    #[prost(bool, tag = "2")]
    pub open_tcp: bool,
    #[prost(bool, tag = "3")]
    pub external_unix_sockets: bool,
    /// runc's `--shell-job`.
    #[prost(bool, tag = "4")]
    pub terminal: bool,
    #[prost(bool, tag = "5")]
    pub file_locks: bool,
    #[prost(string, repeated, tag = "6")]
    pub empty_namespaces: Vec<String>,
    #[prost(string, tag = "7")]
    pub cgroups_mode: String,
    /// Where the CRIU images go; with it set, containerd keeps nothing in its content store.
    #[prost(string, tag = "8")]
    pub image_path: String,
    /// CRIU's work dir (`dump.log`, `stats-dump`).
    #[prost(string, tag = "9")]
    pub work_path: String,
}

/// A containerd client for one namespace.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
    namespace: String,
}

impl Client {
    /// Connects to containerd's socket, for calls in `namespace`.
    pub fn connect(socket: &Path, namespace: &str) -> Result<Client, RpcError> {
        Ok(Client {
            conn: Connection::connect(socket)?,
            namespace: namespace.to_string(),
        })
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        self.conn.socket()
    }

    fn call<Req, Resp>(
        &self,
        path: &'static str,
        req: Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.conn
            .unary(path, &[(NAMESPACE_HEADER, &self.namespace)], req, timeout)
    }

    /// The server's version (`1.6.20~ds1`, ...).
    pub fn version(&self) -> Result<VersionResponse, RpcError> {
        self.call(
            "/containerd.services.version.v1.Version/Version",
            Empty {},
            SHORT,
        )
    }

    /// The task's init process: pid and status.
    pub fn task(&self, id: &str) -> Result<Process, RpcError> {
        let resp: GetResponse = self.call(
            "/containerd.services.tasks.v1.Tasks/Get",
            GetRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
            },
            SHORT,
        )?;
        Ok(resp.process.unwrap_or_default())
    }

    /// Pauses the task (freezes its cgroup through runc).
    pub fn pause(&self, id: &str) -> Result<(), RpcError> {
        self.call::<_, Empty>(
            "/containerd.services.tasks.v1.Tasks/Pause",
            TaskRequest {
                container_id: id.to_string(),
            },
            SHORT,
        )
        .map(drop)
    }

    /// Resumes a paused task.
    pub fn resume(&self, id: &str) -> Result<(), RpcError> {
        self.call::<_, Empty>(
            "/containerd.services.tasks.v1.Tasks/Resume",
            TaskRequest {
                container_id: id.to_string(),
            },
            SHORT,
        )
        .map(drop)
    }

    /// Checkpoints the task with the runc shim's `options`, within `timeout`.
    pub fn checkpoint(
        &self,
        id: &str,
        options: &CheckpointOptions,
        timeout: Duration,
    ) -> Result<CheckpointTaskResponse, RpcError> {
        self.call(
            "/containerd.services.tasks.v1.Tasks/Checkpoint",
            CheckpointTaskRequest {
                container_id: id.to_string(),
                parent_checkpoint: String::new(),
                options: Some(Any {
                    type_url: CHECKPOINT_OPTIONS_TYPE.to_string(),
                    value: prost::Message::encode_to_vec(options),
                }),
            },
            timeout,
        )
    }
}
