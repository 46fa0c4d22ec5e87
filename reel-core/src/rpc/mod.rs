//! gRPC over a unix socket, for the runtimes' own APIs: containerd's ([`containerd`]) and the
//! CRI ([`cri`], served by CRI-O and by containerd's CRI plugin).
//!
//! The few messages reel sends and reads are declared by hand with `prost` derives, field
//! numbers as in the upstream `.proto` files (named in each module): nothing is generated at
//! build time, so building reel needs neither `protoc` nor the runtimes' sources. Unknown
//! fields of an answer are skipped by prost, so newer runtimes answer just as well.
//!
//! Every call is blocking from the caller's point of view: it runs on a small tokio runtime of
//! the [`Connection`], with a deadline.

pub mod containerd;
pub mod cri;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Request};
use tonic_prost::ProstCodec;

use crate::error::error_chain;

/// What can go wrong talking to a runtime's API.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("cannot start the gRPC client: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("cannot connect to {}: {reason}", socket.display())]
    Connect { socket: PathBuf, reason: String },
    /// The server answered with a gRPC error status.
    #[error("{method} on {}: {code:?}: {message}", socket.display())]
    Status {
        socket: PathBuf,
        method: &'static str,
        code: Code,
        message: String,
    },
    #[error("{method} on {} did not answer within {timeout:?}", socket.display())]
    Timeout {
        socket: PathBuf,
        method: &'static str,
        timeout: Duration,
    },
}

impl RpcError {
    /// The gRPC status code of a server's answer.
    pub fn code(&self) -> Option<Code> {
        match self {
            RpcError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The server's message, for a status answer.
    pub fn message(&self) -> Option<&str> {
        match self {
            RpcError::Status { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A connection to one unix socket, with the runtime that drives it.
pub struct Connection {
    socket: PathBuf,
    channel: Channel,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("socket", &self.socket)
            .finish()
    }
}

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Connection {
    /// Connects to the gRPC server on the unix socket `socket`.
    pub fn connect(socket: &Path) -> Result<Connection, RpcError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(RpcError::Runtime)?;
        let path = socket.to_path_buf();
        let fail = |reason: String| RpcError::Connect {
            socket: path.clone(),
            reason,
        };
        if !socket.exists() {
            return Err(fail("no such socket".into()));
        }
        // The URI is not used to connect (the connector dials the socket), only for `:authority`.
        let endpoint = Endpoint::from_static("http://localhost").connect_timeout(CONNECT_TIMEOUT);
        let dial = path.clone();
        let channel = rt
            .block_on(async {
                tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                        let dial = dial.clone();
                        async move {
                            tokio::net::UnixStream::connect(dial)
                                .await
                                .map(TokioIo::new)
                        }
                    })),
                )
                .await
            })
            .map_err(|_| fail(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| fail(error_chain(&e)))?;
        Ok(Connection {
            socket: path,
            channel,
            rt,
        })
    }

    /// The socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One unary call of `path` (`/package.Service/Method`) with `metadata` headers, within
    /// `timeout`.
    pub fn unary<Req, Resp>(
        &self,
        path: &'static str,
        metadata: &[(&'static str, &str)],
        req: Req,
        timeout: Duration,
    ) -> Result<Resp, RpcError>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let method = path.rsplit('/').next().unwrap_or(path);
        let mut request = Request::new(req);
        request.set_timeout(timeout);
        for (k, v) in metadata {
            if let Ok(v) = v.parse() {
                request.metadata_mut().insert(*k, v);
            }
        }
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let result = self.rt.block_on(async {
            tokio::time::timeout(timeout + Duration::from_secs(1), async {
                grpc.ready().await.map_err(|e| {
                    tonic::Status::unavailable(format!("the connection is not ready: {e}"))
                })?;
                let codec: ProstCodec<Req, Resp> = ProstCodec::default();
                grpc.unary(request, PathAndQuery::from_static(path), codec)
                    .await
            })
            .await
        });
        match result {
            Err(_) => Err(RpcError::Timeout {
                socket: self.socket.clone(),
                method,
                timeout,
            }),
            Ok(Err(s)) if s.code() == Code::DeadlineExceeded => Err(RpcError::Timeout {
                socket: self.socket.clone(),
                method,
                timeout,
            }),
            Ok(Err(s)) => Err(RpcError::Status {
                socket: self.socket.clone(),
                method,
                code: s.code(),
                message: s.message().to_string(),
            }),
            Ok(Ok(resp)) => Ok(resp.into_inner()),
        }
    }
}

/// `google.protobuf.Empty`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Empty {}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}
