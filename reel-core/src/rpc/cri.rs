//! The Container Runtime Interface (`runtime.v1.RuntimeService`), served by CRI-O and by
//! containerd's CRI plugin: the calls the `crio` method needs. Messages as in Kubernetes'
//! `staging/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto`.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::{Connection, RpcError};

/// CRI-O's socket.
pub const CRIO_SOCKET: &str = "/var/run/crio/crio.sock";

/// The pod labels the kubelet puts on every container.
pub const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD: &str = "io.kubernetes.pod.name";
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";

const SHORT: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionRequest {
    #[prost(string, tag = "1")]
    pub version: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    #[prost(string, tag = "1")]
    pub version: String,
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

/// `ContainerState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ContainerState {
    ContainerCreated = 0,
    ContainerRunning = 1,
    ContainerExited = 2,
    ContainerUnknown = 3,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStateValue {
    #[prost(enumeration = "ContainerState", tag = "1")]
    pub state: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerFilter {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub state: Option<ContainerStateValue>,
    #[prost(string, tag = "3")]
    pub pod_sandbox_id: String,
    #[prost(map = "string, string", tag = "4")]
    pub label_selector: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainersRequest {
    #[prost(message, optional, tag = "1")]
    pub filter: Option<ContainerFilter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    #[prost(string, tag = "1")]
    pub image: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Container {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<ContainerMetadata>,
    #[prost(message, optional, tag = "4")]
    pub image: Option<ImageSpec>,
    #[prost(string, tag = "5")]
    pub image_ref: String,
    #[prost(enumeration = "ContainerState", tag = "6")]
    pub state: i32,
    #[prost(int64, tag = "7")]
    pub created_at: i64,
    #[prost(map = "string, string", tag = "8")]
    pub labels: HashMap<String, String>,
    #[prost(map = "string, string", tag = "9")]
    pub annotations: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainersResponse {
    #[prost(message, repeated, tag = "1")]
    pub containers: Vec<Container>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckpointContainerRequest {
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// The path of the tar file the runtime writes (in the host's mount namespace).
    #[prost(string, tag = "2")]
    pub location: String,
    /// Seconds; 0 means the runtime's default.
    #[prost(int64, tag = "3")]
    pub timeout: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckpointContainerResponse {}

/// A CRI runtime client.
#[derive(Debug)]
pub struct Client {
    conn: Connection,
}

impl Client {
    /// Connects to the CRI socket.
    pub fn connect(socket: &Path) -> Result<Client, RpcError> {
        Ok(Client {
            conn: Connection::connect(socket)?,
        })
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        self.conn.socket()
    }

    /// The runtime's name and version.
    pub fn version(&self) -> Result<VersionResponse, RpcError> {
        self.conn.unary(
            "/runtime.v1.RuntimeService/Version",
            &[],
            VersionRequest {
                version: "v1".into(),
            },
            SHORT,
        )
    }

    /// The containers whose labels include every pair of `labels`.
    pub fn list_containers(&self, labels: &[(&str, &str)]) -> Result<Vec<Container>, RpcError> {
        let resp: ListContainersResponse = self.conn.unary(
            "/runtime.v1.RuntimeService/ListContainers",
            &[],
            ListContainersRequest {
                filter: Some(ContainerFilter {
                    label_selector: labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                    ..ContainerFilter::default()
                }),
            },
            SHORT,
        )?;
        Ok(resp.containers)
    }

    /// Has the runtime write a checkpoint archive of `id` to the file `location`.
    pub fn checkpoint(&self, id: &str, location: &Path, timeout: Duration) -> Result<(), RpcError> {
        self.conn
            .unary::<_, CheckpointContainerResponse>(
                "/runtime.v1.RuntimeService/CheckpointContainer",
                &[],
                CheckpointContainerRequest {
                    container_id: id.to_string(),
                    location: location.to_string_lossy().into_owned(),
                    timeout: timeout.as_secs().max(1) as i64,
                },
                // The runtime gets the timeout; the call a little longer, so its own answer
                // (with its message) arrives first.
                timeout + Duration::from_secs(10),
            )
            .map(drop)
    }
}
