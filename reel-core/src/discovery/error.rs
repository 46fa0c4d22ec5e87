//! Discovery's errors: reading the runtimes' state, and finding a container by name.

use std::path::PathBuf;

use super::State;

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

/// What can go wrong while listing containers or looking one up.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// A state file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A state file is not the JSON its runtime writes.
    #[error("cannot parse {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A state file or directory is readable but inconsistent.
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    /// No container on this host is in that namespace.
    #[error("no namespace {namespace:?} on this host; namespaces: {}", list(.known))]
    UnknownNamespace {
        namespace: String,
        known: Vec<String>,
    },
    /// The namespace has no such pod.
    #[error("no pod {pod:?} in namespace {namespace:?}; pods there: {}", list(.known))]
    UnknownPod {
        namespace: String,
        pod: String,
        known: Vec<String>,
    },
    /// The pod has no such container.
    #[error("no container {container:?} in pod {namespace}/{pod}; its containers: {}", list(.known))]
    UnknownContainer {
        namespace: String,
        pod: String,
        container: String,
        known: Vec<String>,
    },
    /// No container was named and the pod has several (or several match).
    #[error(
        "pod {namespace}/{pod} has several containers{}, name one: {}",
        .container.as_deref().map(|c| format!(" called {c:?}")).unwrap_or_default(),
        list(.candidates)
    )]
    AmbiguousContainer {
        namespace: String,
        pod: String,
        container: Option<String>,
        candidates: Vec<String>,
    },
    /// The container exists but is not running any more.
    #[error("container {namespace}/{pod}/{container} ({id}) is {state}: it has exited")]
    Exited {
        namespace: String,
        pod: String,
        container: String,
        id: String,
        state: State,
    },
}

impl DiscoveryError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DiscoveryError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        DiscoveryError::Json {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        DiscoveryError::Invalid {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
