//! The `k8s-api` method: the kubelet's checkpoint API, through the Kubernetes API server (or,
//! with [`MethodConfig::kubelet`](super::MethodConfig), the kubelet itself).
//!
//! Credentials come from the usual places (`KUBECONFIG`, `~/.kube/config`, the in-cluster
//! service account) through `kube`. reel reads the pod (its node and containers), then calls
//! `POST /api/v1/nodes/{node}/proxy/checkpoint/{namespace}/{pod}/{container}?timeout=<s>`
//! (directly: `POST /checkpoint/...` on the kubelet). The kubelet answers 200 with
//! `{"items":["/var/lib/kubelet/checkpoints/checkpoint-<pod>_<ns>-<container>-<time>.tar"]}`,
//! a path ON THE NODE. When that node is this host ([`MethodConfig::this_node`](super::MethodConfig::this_node)),
//! reel imports the archive like the `crio` method's and then deletes the kubelet's copy (the
//! kubelet never prunes that directory); elsewhere it reports the node and the path.
//!
//! The kubelet's and the API server's answers, as their sources write them, become
//! [`KubeFailure`]s a person can act on: 401; 403 from the API server (the caller lacks
//! `create` on `nodes/proxy`) or from the kubelet (`Forbidden (user=..., verb=create,
//! resource=nodes, subresource(s)=[checkpoint])`: through the API server it is the API
//! server's own kubelet-client identity that needs `nodes/checkpoint`); 404 `404 page not
//! found` (the `ContainerCheckpoint` feature gate is off), `pod does not exist`, `container X
//! does not exist`; 500 with the runtime's error text.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;

use super::received::{Origin, Received};
use super::{CheckpointOptions, Checkpointer, Method, MethodRecord, Target};

/// How much longer than the checkpoint's own timeout reel waits for the kubelet's answer.
const ANSWER_GRACE: Duration = Duration::from_secs(5);
/// The largest answer body reel reads.
const MAX_BODY: usize = 1 << 20;

/// What went wrong reaching the kubelet's checkpoint API, in the cluster's terms.
#[derive(Debug, thiserror::Error)]
pub enum KubeFailure {
    #[error("no Kubernetes cluster is configured: {reason}")]
    NoCluster { reason: String },
    #[error("cannot reach the Kubernetes API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} refused the credentials (401 Unauthorized): {message}")]
    Unauthorized { url: String, message: String },
    #[error("the API server refused (403): {message}")]
    ForbiddenProxy { message: String },
    #[error("the kubelet on {node} refused (403): {message}")]
    ForbiddenKubelet {
        node: String,
        /// The identity the kubelet checked (`user=` of its answer).
        identity: Option<String>,
        /// The caller called the kubelet itself (`--kubelet`).
        direct: bool,
        message: String,
    },
    #[error("the kubelet on {node} has no checkpoint API (404 page not found): the ContainerCheckpoint feature is off")]
    FeatureGateOff { node: String },
    #[error("no pod {pod} in namespace {namespace}{}", if known.is_empty() { String::new() } else { format!(" (pods: {})", known.join(", ")) })]
    PodNotFound {
        namespace: String,
        pod: String,
        known: Vec<String>,
    },
    #[error("pod {pod} has no container {container} (containers: {})", known.join(", "))]
    ContainerNotFound {
        pod: String,
        container: String,
        known: Vec<String>,
    },
    #[error("pod {pod} has several containers ({}): name one", known.join(", "))]
    AmbiguousContainer { pod: String, known: Vec<String> },
    #[error("pod {pod} is not scheduled on a node yet")]
    NotScheduled { pod: String },
    #[error("the kubelet on {node} says: {message} (404)")]
    KubeletNotFound { node: String, message: String },
    #[error("the kubelet on {node} could not checkpoint (500): {message}")]
    Runtime { node: String, message: String },
    #[error("the kubelet on {node} did not answer within {after:?}")]
    Timeout { node: String, after: Duration },
    #[error("{what}: HTTP {status}: {message}")]
    Http {
        what: String,
        status: u16,
        message: String,
    },
    #[error("the kubelet's answer is not usable: {reason}")]
    BadAnswer { reason: String },
    #[error("{what} {value:?} cannot be used in a URL path")]
    BadName { what: &'static str, value: String },
}

impl From<KubeFailure> for crate::Error {
    fn from(e: KubeFailure) -> Self {
        super::CheckpointError::Kube(e).into()
    }
}

impl KubeFailure {
    /// A 500's runtime text that reel knows (the CRI answers).
    pub fn runtime_text(&self) -> Option<&str> {
        match self {
            KubeFailure::Runtime { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// The pod's container, its node, and a client, found before anything is checkpointed.
pub struct KubeTarget {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    /// The API server's (or the kubelet's) URL.
    pub url: String,
    /// The API server's version (`v1.33.1`).
    pub server_version: Option<String>,
    /// The kubelet's version on the pod's node, when the node may be read.
    pub kubelet_version: Option<String>,
    pub namespace: String,
    pub pod: String,
    pub container: String,
    pub node: String,
    /// The kubelet is called directly.
    pub direct: bool,
}

impl std::fmt::Debug for KubeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeTarget")
            .field("url", &self.url)
            .field("namespace", &self.namespace)
            .field("pod", &self.pod)
            .field("container", &self.container)
            .field("node", &self.node)
            .finish()
    }
}

/// Where a kubelet's checkpoint ended up.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KubeletCheckpoint {
    pub node: String,
    /// The archive's path on the node.
    pub path: String,
}

fn runtime() -> Result<tokio::runtime::Runtime, KubeFailure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| KubeFailure::NoCluster {
            reason: format!("cannot start the client runtime: {e}"),
        })
}

/// A cluster's configuration (kube's).
pub type ClusterConfig = kube::Config;

/// The cluster configuration from the usual places, if there is one.
pub fn cluster_config() -> Result<kube::Config, KubeFailure> {
    let rt = runtime()?;
    rt.block_on(kube::Config::infer())
        .map_err(|e| KubeFailure::NoCluster {
            reason: e.to_string(),
        })
}

/// What the cluster says about the current identity: the API server's URL and version, and
/// whether it may `create` `nodes/proxy` (and, for `--kubelet`, `nodes/checkpoint`), by
/// `SelfSubjectAccessReview`.
pub fn cluster_access(kubelet: bool) -> Result<ClusterAccess, KubeFailure> {
    use k8s_openapi::api::authorization::v1::{
        ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
    };
    let config = cluster_config()?;
    let rt = runtime()?;
    // kube's client spawns its buffer task on the runtime it is made in.
    let _in_rt = rt.enter();
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| KubeFailure::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let version = rt
        .block_on(client.apiserver_version())
        .map_err(|e| api_failure(e, &url))?
        .git_version;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client);
    let mut allowed = Vec::new();
    let subresources: &[&str] = if kubelet {
        &["proxy", "checkpoint"]
    } else {
        &["proxy"]
    };
    for sub in subresources {
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some("create".into()),
                    resource: Some("nodes".into()),
                    subresource: Some(sub.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = rt
            .block_on(reviews.create(&Default::default(), &review))
            .map_err(|e| api_failure(e, &url))?;
        allowed.push((
            format!("nodes/{sub}"),
            answer.status.is_some_and(|s| s.allowed),
        ));
    }
    Ok(ClusterAccess {
        url,
        version,
        allowed,
    })
}

/// A pod as the API server lists it (`reel get workloads` with a cluster configured).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterPod {
    pub namespace: String,
    pub pod: String,
    pub containers: Vec<String>,
    pub node: Option<String>,
    pub phase: Option<String>,
}

/// The pods of `namespace` (`None`: every namespace) from the configured cluster.
pub fn cluster_pods(
    config: kube::Config,
    namespace: Option<&str>,
) -> Result<Vec<ClusterPod>, KubeFailure> {
    let rt = runtime()?;
    let _in_rt = rt.enter();
    let url = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(|e| KubeFailure::Unreachable {
        url: url.clone(),
        reason: e.to_string(),
    })?;
    let api: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let list = rt
        .block_on(api.list(&Default::default()))
        .map_err(|e| api_failure(e, &url))?;
    let mut pods: Vec<ClusterPod> = list
        .items
        .into_iter()
        .map(|p| {
            let spec = p.spec.unwrap_or_default();
            ClusterPod {
                namespace: p.metadata.namespace.unwrap_or_default(),
                pod: p.metadata.name.unwrap_or_default(),
                containers: spec.containers.into_iter().map(|c| c.name).collect(),
                node: spec.node_name,
                phase: p.status.and_then(|s| s.phase),
            }
        })
        .collect();
    pods.sort_by(|a, b| (&a.namespace, &a.pod).cmp(&(&b.namespace, &b.pod)));
    Ok(pods)
}

/// What [`cluster_access`] found.
#[derive(Debug, Clone)]
pub struct ClusterAccess {
    /// The API server's URL.
    pub url: String,
    /// Its version (`v1.33.1`).
    pub version: String,
    /// `nodes/<subresource>` and whether `create` on it is allowed.
    pub allowed: Vec<(String, bool)>,
}

/// A name usable as one URL path segment (Kubernetes names are DNS labels or subdomains).
fn path_segment(what: &'static str, value: &str) -> Result<(), KubeFailure> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value != "."
        && value != "..";
    if ok {
        Ok(())
    } else {
        Err(KubeFailure::BadName {
            what,
            value: value.to_string(),
        })
    }
}

impl Checkpointer {
    /// Loads the cluster configuration and finds `target`'s pod, container and node.
    pub fn kube_target(&self, target: &Target) -> crate::Result<KubeTarget> {
        let config = cluster_config()?;
        Ok(self.kube_target_with(target, config)?)
    }

    pub(super) fn kube_target_with(
        &self,
        target: &Target,
        config: kube::Config,
    ) -> Result<KubeTarget, KubeFailure> {
        let rt = runtime()?;
        // kube's client spawns its buffer task on the runtime it is made in.
        let in_rt = rt.enter();
        let url = config.cluster_url.to_string();
        let unreachable = |e: kube::Error| KubeFailure::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let api_client = kube::Client::try_from(config.clone()).map_err(unreachable)?;
        let pods: Api<Pod> = Api::namespaced(api_client.clone(), &target.namespace);
        let pod = rt
            .block_on(pods.get_opt(&target.pod))
            .map_err(|e| api_failure(e, &url))?;
        let Some(pod) = pod else {
            let known = rt
                .block_on(pods.list(&Default::default()))
                .map(|l| {
                    l.items
                        .into_iter()
                        .filter_map(|p| p.metadata.name)
                        .collect()
                })
                .unwrap_or_default();
            return Err(KubeFailure::PodNotFound {
                namespace: target.namespace.clone(),
                pod: target.pod.clone(),
                known,
            });
        };
        let spec = pod.spec.unwrap_or_default();
        let known: Vec<String> = spec.containers.iter().map(|c| c.name.clone()).collect();
        let pod_name = format!("{}/{}", target.namespace, target.pod);
        let container = match (&target.container, known.as_slice()) {
            (Some(c), _) if known.contains(c) => c.clone(),
            (Some(c), _) => {
                return Err(KubeFailure::ContainerNotFound {
                    pod: pod_name,
                    container: c.clone(),
                    known,
                })
            }
            (None, [one]) => one.clone(),
            (None, _) => {
                return Err(KubeFailure::AmbiguousContainer {
                    pod: pod_name,
                    known,
                })
            }
        };
        let node = spec
            .node_name
            .clone()
            .ok_or(KubeFailure::NotScheduled { pod: pod_name })?;
        for (what, v) in [
            ("namespace", target.namespace.as_str()),
            ("pod", target.pod.as_str()),
            ("container", container.as_str()),
            ("node", node.as_str()),
        ] {
            path_segment(what, v)?;
        }
        let server_version = rt
            .block_on(api_client.apiserver_version())
            .ok()
            .map(|v| v.git_version);
        let kubelet_version = rt
            .block_on(Api::<Node>::all(api_client.clone()).get_opt(&node))
            .ok()
            .flatten()
            .and_then(|n| n.status?.node_info)
            .map(|i| i.kubelet_version);
        let (client, url, direct) = match &self.methods.kubelet {
            None => (api_client, url, false),
            Some(kubelet) => {
                let mut c = config;
                c.cluster_url = kubelet.parse().map_err(|e| KubeFailure::Unreachable {
                    url: kubelet.clone(),
                    reason: format!("not a URL: {e}"),
                })?;
                let client = kube::Client::try_from(c).map_err(|e| KubeFailure::Unreachable {
                    url: kubelet.clone(),
                    reason: e.to_string(),
                })?;
                (client, kubelet.clone(), true)
            }
        };
        drop(in_rt);
        Ok(KubeTarget {
            rt,
            client,
            url,
            server_version,
            kubelet_version,
            namespace: target.namespace.clone(),
            pod: target.pod.clone(),
            container,
            node,
            direct,
        })
    }

    /// Asks the kubelet to checkpoint the container; returns where the archive is.
    pub fn kubelet_checkpoint(
        &self,
        t: &KubeTarget,
        opts: &CheckpointOptions,
    ) -> Result<KubeletCheckpoint, KubeFailure> {
        let secs = opts.timeout.as_secs().max(1);
        let rest = format!(
            "checkpoint/{}/{}/{}?timeout={secs}",
            t.namespace, t.pod, t.container
        );
        let uri = if t.direct {
            format!("/{rest}")
        } else {
            format!("/api/v1/nodes/{}/proxy/{rest}", t.node)
        };
        let req = http::Request::post(&uri)
            .body(kube::client::Body::empty())
            .map_err(|e| KubeFailure::BadAnswer {
                reason: format!("cannot build the request {uri}: {e}"),
            })?;
        let wait = Duration::from_secs(secs) + ANSWER_GRACE;
        let answer = t.rt.block_on(async {
            tokio::time::timeout(wait, async {
                let resp = t.client.send(req).await?;
                let status = resp.status();
                let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .map_err(kube::Error::Service)?;
                Ok::<_, kube::Error>((status, body))
            })
            .await
        });
        let (status, body) = match answer {
            Err(_) => {
                return Err(KubeFailure::Timeout {
                    node: t.node.clone(),
                    after: wait,
                })
            }
            Ok(Err(e)) => {
                return Err(KubeFailure::Unreachable {
                    url: t.url.clone(),
                    reason: e.to_string(),
                })
            }
            Ok(Ok(x)) => x,
        };
        let text = String::from_utf8_lossy(&body).trim().to_string();
        if status.is_success() {
            #[derive(serde::Deserialize)]
            struct Items {
                items: Vec<String>,
            }
            let items: Items =
                serde_json::from_slice(&body).map_err(|e| KubeFailure::BadAnswer {
                    reason: format!("{e}: {}", clip(&text)),
                })?;
            let path = items
                .items
                .into_iter()
                .next()
                .ok_or_else(|| KubeFailure::BadAnswer {
                    reason: "no archive path in the answer".into(),
                })?;
            return Ok(KubeletCheckpoint {
                node: t.node.clone(),
                path,
            });
        }
        Err(classify(status.as_u16(), &text, &t.node, &t.url, t.direct))
    }

    /// Takes in the kubelet's archive at `at` (on this node), then the caller removes the
    /// kubelet's copy once the checkpoint is written.
    pub fn take_kubelet(
        &self,
        t: &KubeTarget,
        at: &KubeletCheckpoint,
        id: &str,
        opts: &CheckpointOptions,
    ) -> crate::Result<Received> {
        let path = kubelet_archive_path(&at.path)?;
        Received::new(
            &path,
            None,
            Some(path.clone()),
            Origin {
                method: Method::K8sApi,
                record: MethodRecord {
                    name: Method::K8sApi.to_string(),
                    runtime: Some("kubelet".into()),
                    runtime_version: t.kubelet_version.clone().or(t.server_version.clone()),
                    endpoint: Some(t.url.clone()),
                    ..MethodRecord::default()
                },
                namespace: &t.namespace,
                pod: &t.pod,
                container: &t.container,
                container_id: &t.container,
                id,
                created: Utc::now(),
                opts,
            },
        )
    }
}

/// The kubelet's archive path, checked before reel reads and later deletes it: an absolute
/// path, no `..`, in a directory named `checkpoints`, a file named `checkpoint-*.tar`.
pub fn kubelet_archive_path(p: &str) -> Result<PathBuf, KubeFailure> {
    let path = Path::new(p);
    let bad = |why: &str| KubeFailure::BadAnswer {
        reason: format!("the archive path {p:?} {why}"),
    };
    if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(bad("is not a plain absolute path"));
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| bad("has no file name"))?;
    if !(name.starts_with("checkpoint-") && name.ends_with(".tar")) {
        return Err(bad("is not a kubelet checkpoint (checkpoint-*.tar)"));
    }
    if path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        != Some("checkpoints")
    {
        return Err(bad("is not in a kubelet checkpoints directory"));
    }
    Ok(path.to_path_buf())
}

fn clip(s: &str) -> String {
    s.chars().take(500).collect()
}

/// The `message` of a Kubernetes `Status` body, else the text itself.
fn status_message(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(str::to_string))
        .unwrap_or_else(|| clip(text))
}

fn api_failure(e: kube::Error, url: &str) -> KubeFailure {
    match e {
        kube::Error::Api(s) if s.code == 401 => KubeFailure::Unauthorized {
            url: url.to_string(),
            message: s.message,
        },
        kube::Error::Api(s) if s.code == 403 => KubeFailure::ForbiddenProxy { message: s.message },
        kube::Error::Api(s) => KubeFailure::Http {
            what: format!("the API server at {url}"),
            status: s.code,
            message: s.message,
        },
        other => KubeFailure::Unreachable {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

/// Maps the checkpoint route's answer (see the module documentation).
fn classify(status: u16, text: &str, node: &str, url: &str, direct: bool) -> KubeFailure {
    let message = status_message(text);
    match status {
        401 => KubeFailure::Unauthorized {
            url: url.to_string(),
            message,
        },
        403 if direct || text.starts_with("Forbidden (user=") => KubeFailure::ForbiddenKubelet {
            node: node.to_string(),
            identity: text
                .split_once("user=")
                .and_then(|(_, rest)| rest.split([',', ')']).next())
                .map(str::to_string),
            direct,
            message,
        },
        403 => KubeFailure::ForbiddenProxy { message },
        404 if text == "404 page not found" => KubeFailure::FeatureGateOff {
            node: node.to_string(),
        },
        404 => KubeFailure::KubeletNotFound {
            node: node.to_string(),
            message,
        },
        500 => KubeFailure::Runtime {
            node: node.to_string(),
            message,
        },
        _ => KubeFailure::Http {
            what: format!("the checkpoint of the kubelet on {node}"),
            status,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_failures() {
        let k = classify(
            403,
            "Forbidden (user=kube-apiserver-kubelet-client, verb=create, resource=nodes, subresource(s)=[checkpoint])",
            "n1",
            "https://x",
            false,
        );
        assert!(
            matches!(&k, KubeFailure::ForbiddenKubelet { identity: Some(i), direct: false, .. } if i == "kube-apiserver-kubelet-client"),
            "{k:?}"
        );
        let k = classify(
            403,
            r#"{"kind":"Status","message":"nodes \"n1\" is forbidden: User \"u\" cannot create resource \"nodes/proxy\""}"#,
            "n1",
            "u",
            false,
        );
        assert!(
            matches!(&k, KubeFailure::ForbiddenProxy { message } if message.contains("nodes/proxy")),
            "{k:?}"
        );
        assert!(matches!(
            classify(404, "404 page not found", "n1", "u", false),
            KubeFailure::FeatureGateOff { .. }
        ));
        assert!(matches!(
            classify(404, "container x does not exist", "n1", "u", false),
            KubeFailure::KubeletNotFound { .. }
        ));
        assert!(matches!(
            classify(500, "checkpointing of a/b/c failed (x)", "n1", "u", false),
            KubeFailure::Runtime { .. }
        ));
    }

    #[test]
    fn only_kubelet_checkpoint_paths_are_taken() {
        assert!(kubelet_archive_path(
            "/var/lib/kubelet/checkpoints/checkpoint-web_default-app-2024-01-01T00:00:00Z.tar"
        )
        .is_ok());
        for p in [
            "relative/checkpoints/checkpoint-a.tar",
            "/var/lib/kubelet/checkpoints/../../../etc/shadow",
            "/etc/shadow",
            "/var/lib/kubelet/checkpoints/evil.tar",
            "/tmp/checkpoint-a.tar",
        ] {
            assert!(kubelet_archive_path(p).is_err(), "{p}");
        }
    }
}
