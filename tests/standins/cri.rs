//! A stand-in CRI runtime (no CRI-O can be installed on the test machines): a gRPC server on a
//! temporary unix socket serving `runtime.v1.RuntimeService` `Version`, `ListContainers`
//! (label selector as the kubelet uses it) and `CheckpointContainer`, which checkpoints a REAL
//! runc container and writes a real archive in CRI-O's layout to `location`, as CRI-O does
//! (cri-o `internal/lib/checkpoint.go`; here through `tests/standins/crio-archive.sh`). On
//! demand it answers as the real runtimes do when they cannot: `Unimplemented` "method
//! CheckpointContainer not implemented" (containerd 1.6/1.7's CRI plugin), CRI-O's
//! "checkpoint/restore support not available" (CRIU support off), and `NotFound`.
//!
//! Messages are reel-core's own hand-declared prost types (`reel_core::rpc::cri`), so this
//! server and reel's client agree on field numbers only if both follow the upstream
//! `api.proto`; the real containerd 1.6 CRI socket is called too (`tests/methods.rs`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use reel_core::rpc::cri::{
    CheckpointContainerRequest, CheckpointContainerResponse, Container, ContainerMetadata,
    ContainerState, ListContainersRequest, ListContainersResponse, VersionRequest, VersionResponse,
    LABEL_CONTAINER, LABEL_NAMESPACE, LABEL_POD,
};
use tonic::server::{Grpc, UnaryService};
use tonic::Status;
use tonic_prost::ProstCodec;

/// How the stand-in answers `CheckpointContainer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Checkpoint the runc container and write the archive.
    Checkpoint,
    /// containerd 1.6/1.7: `Unimplemented`.
    Unimplemented,
    /// CRI-O with `enable_criu_support = false`.
    CriuOff,
    /// The runtime lost the container: `NotFound`.
    NotFound,
}

/// A container the stand-in knows: CRI id, pod labels, and the runc container behind it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub id: String,
    pub namespace: String,
    pub pod: String,
    pub name: String,
    pub runc_id: String,
    pub bundle: PathBuf,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    entries: Vec<Entry>,
    /// `location`s asked for.
    locations: Vec<String>,
}

/// The running stand-in; stopped (and its socket removed) when dropped.
pub struct CriStandIn {
    pub socket: PathBuf,
    state: Arc<Mutex<State>>,
    rt: Option<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

/// A unary handler: a closure from request to response.
struct Call<F>(F);

impl<Req, Resp, F> UnaryService<Req> for Call<F>
where
    F: FnMut(Req) -> Result<Resp, Status>,
    Resp: Send + 'static,
{
    type Response = Resp;
    type Future = std::future::Ready<Result<tonic::Response<Resp>, Status>>;
    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        std::future::ready((self.0)(request.into_inner()).map(tonic::Response::new))
    }
}

fn archive_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/standins/crio-archive.sh")
}

impl CriStandIn {
    /// Starts the server on a socket in a new temp dir.
    pub fn start() -> CriStandIn {
        let dir = tempfile::Builder::new()
            .prefix("reel-cri-standin.")
            .tempdir()
            .unwrap();
        let socket = dir.path().join("crio.sock");
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Checkpoint,
            entries: Vec::new(),
            locations: Vec::new(),
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(async { tokio::net::UnixListener::bind(&socket) })
            .unwrap();
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        CriStandIn {
            socket,
            state,
            rt: Some(rt),
            _dir: dir,
        }
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    pub fn add(&self, e: Entry) {
        self.state.lock().unwrap().entries.push(e);
    }

    /// The locations `CheckpointContainer` was asked to write.
    pub fn locations(&self) -> Vec<String> {
        self.state.lock().unwrap().locations.clone()
    }
}

impl Drop for CriStandIn {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let path = req.uri().path().to_string();
    let resp = match path.as_str() {
        "/runtime.v1.RuntimeService/Version" => {
            let mut g: Grpc<ProstCodec<VersionResponse, VersionRequest>> =
                Grpc::new(ProstCodec::default());
            g.unary(
                Call(|_: VersionRequest| {
                    Ok(VersionResponse {
                        version: "0.1.0".into(),
                        runtime_name: "cri-o".into(),
                        runtime_version: "1.33.0-standin".into(),
                        runtime_api_version: "v1".into(),
                    })
                }),
                req,
            )
            .await
        }
        "/runtime.v1.RuntimeService/ListContainers" => {
            let st = state.clone();
            let mut g: Grpc<ProstCodec<ListContainersResponse, ListContainersRequest>> =
                Grpc::new(ProstCodec::default());
            g.unary(
                Call(move |r: ListContainersRequest| {
                    let want = r.filter.map(|f| f.label_selector).unwrap_or_default();
                    let st = st.lock().unwrap();
                    let containers = st
                        .entries
                        .iter()
                        .map(|e| {
                            let labels: HashMap<String, String> = [
                                (LABEL_NAMESPACE, &e.namespace),
                                (LABEL_POD, &e.pod),
                                (LABEL_CONTAINER, &e.name),
                            ]
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v.clone()))
                            .collect();
                            Container {
                                id: e.id.clone(),
                                pod_sandbox_id: format!("sandbox-{}", e.pod),
                                metadata: Some(ContainerMetadata {
                                    name: e.name.clone(),
                                    attempt: 0,
                                }),
                                state: ContainerState::ContainerRunning as i32,
                                labels,
                                ..Container::default()
                            }
                        })
                        .filter(|c| want.iter().all(|(k, v)| c.labels.get(k) == Some(v)))
                        .collect();
                    Ok(ListContainersResponse { containers })
                }),
                req,
            )
            .await
        }
        "/runtime.v1.RuntimeService/CheckpointContainer" => {
            let st = state.clone();
            let mut g: Grpc<ProstCodec<CheckpointContainerResponse, CheckpointContainerRequest>> =
                Grpc::new(ProstCodec::default());
            g.unary(
                Call(move |r: CheckpointContainerRequest| checkpoint(&st, r)),
                req,
            )
            .await
        }
        _ => Status::unimplemented(format!("unknown method {path}")).into_http(),
    };
    Ok(resp)
}

fn checkpoint(
    state: &Mutex<State>,
    r: CheckpointContainerRequest,
) -> Result<CheckpointContainerResponse, Status> {
    let (mode, entry) = {
        let mut st = state.lock().unwrap();
        st.locations.push(r.location.clone());
        (
            st.mode,
            st.entries.iter().find(|e| e.id == r.container_id).cloned(),
        )
    };
    match mode {
        Mode::Unimplemented => {
            return Err(Status::unimplemented(
                "method CheckpointContainer not implemented",
            ))
        }
        Mode::CriuOff => return Err(Status::unknown("checkpoint/restore support not available")),
        Mode::NotFound => {
            return Err(Status::not_found(format!(
                "could not find container {:?}",
                r.container_id
            )))
        }
        Mode::Checkpoint => {}
    }
    let e = entry.ok_or_else(|| {
        Status::not_found(format!("could not find container {:?}", r.container_id))
    })?;
    let out = Command::new(archive_script())
        .arg(&e.runc_id)
        .arg(&e.bundle)
        .arg(&r.location)
        .env("REEL_STANDIN_CONTAINER", &e.name)
        .output()
        .map_err(|err| Status::internal(err.to_string()))?;
    if !out.status.success() {
        return Err(Status::unknown(format!(
            "failed to checkpoint container {}: {}",
            e.id,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    // Keep what was handed over, for the test to compare with what reel archived.
    let _ = std::fs::copy(&r.location, e.bundle.join("standin-copy.tar"));
    Ok(CheckpointContainerResponse {})
}

/// The copy of the last archive handed over for `bundle`'s container.
pub fn handed_over(bundle: &Path) -> PathBuf {
    bundle.join("standin-copy.tar")
}
