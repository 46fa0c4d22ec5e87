//! Checkpoint methods: where a checkpoint's CRIU images come from.
//!
//! | method | who dumps | what reel receives | needs |
//! |---|---|---|---|
//! | `direct` | reel drives CRIU itself ([`super::direct`]) | images in its staging dir | root and CRIU on the container's host |
//! | `containerd` | containerd's task checkpoint (runc through the shim) ([`super::containerd`]) | images in its staging dir | containerd's socket on the container's host |
//! | `crio` | the CRI `CheckpointContainer` call ([`super::cri`]) | a tar in CRI-O's layout | a CRI runtime that implements it (CRI-O, containerd ≥ 2.0) |
//! | `k8s-api` | the kubelet, through the API server ([`super::kubelet`]) | a tar on the pod's node | a kubeconfig; the `ContainerCheckpoint` feature (Kubernetes ≥ 1.30, or gated before) |
//!
//! `auto` ([`MethodChoice::Auto`]) takes `direct` when the container is on this host and reel
//! can checkpoint it here (root, CRIU), else `k8s-api` when a cluster is configured, else
//! fails naming what was tried. Images from `direct` and `containerd` are archived by reel
//! (the rootfs diff taken by reel while the container is still frozen); archives from `crio`
//! and `k8s-api` are imported member by member, each hashed as received.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Serialize;

use super::{CheckpointError, CheckpointOptions};

/// One way of checkpointing a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// reel freezes the cgroup and drives CRIU itself.
    Direct,
    /// containerd's task checkpoint (`Tasks/Checkpoint`), images into reel's staging dir.
    Containerd,
    /// The CRI `CheckpointContainer` call (CRI-O, containerd 2.x): an archive.
    Crio,
    /// The kubelet's checkpoint API through the Kubernetes API server: an archive on the node.
    K8sApi,
}

impl Method {
    pub const ALL: [Method; 4] = [
        Method::Direct,
        Method::Containerd,
        Method::Crio,
        Method::K8sApi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Direct => "direct",
            Method::Containerd => "containerd",
            Method::Crio => "crio",
            Method::K8sApi => "k8s-api",
        }
    }

    /// The dump options this method can honour (by their names in [`CheckpointOptions`]).
    pub fn honoured_options(self) -> &'static [&'static str] {
        match self {
            Method::Direct => &[
                "tcp_established",
                "file_locks",
                "ext_unix_sk",
                "shell_job",
                "link_remap",
                "timeout",
                "freezer",
            ],
            Method::Containerd => &["tcp_established", "ext_unix_sk", "file_locks", "shell_job"],
            Method::Crio | Method::K8sApi => &["timeout"],
        }
    }

    /// Fails on the first option set away from its default that this method cannot honour.
    pub fn check_options(self, opts: &CheckpointOptions) -> Result<(), CheckpointError> {
        let honoured = self.honoured_options();
        match opts.changed().into_iter().find(|o| !honoured.contains(o)) {
            None => Ok(()),
            Some(option) => Err(CheckpointError::OptionNotHonoured {
                method: self,
                option,
                honoured,
            }),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--method`: one method, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MethodChoice {
    /// direct when possible here, else k8s-api when a cluster is configured.
    #[default]
    Auto,
    Use(Method),
}

impl FromStr for MethodChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(MethodChoice::Auto);
        }
        Method::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .map(MethodChoice::Use)
            .ok_or_else(|| {
                format!("unknown method {s:?}: use auto, direct, containerd, crio or k8s-api")
            })
    }
}

impl fmt::Display for MethodChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MethodChoice::Auto => f.write_str("auto"),
            MethodChoice::Use(m) => m.fmt(f),
        }
    }
}

/// Where the methods reach their runtimes.
#[derive(Debug, Clone)]
pub struct MethodConfig {
    /// containerd's socket (default `/run/containerd/containerd.sock`).
    pub containerd_socket: PathBuf,
    /// The CRI socket (default CRI-O's, `/var/run/crio/crio.sock`).
    pub cri_socket: PathBuf,
    /// The kubelet to call directly (`https://host:10250`) instead of through the API
    /// server's node proxy.
    pub kubelet: Option<String>,
    /// This host's node name (default: `$NODE_NAME`, else the host name).
    pub node_name: Option<String>,
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig {
            containerd_socket: crate::rpc::containerd::DEFAULT_SOCKET.into(),
            cri_socket: crate::rpc::cri::CRIO_SOCKET.into(),
            kubelet: None,
            node_name: None,
        }
    }
}

impl MethodConfig {
    /// This host's node name: the configured one, `$NODE_NAME` (as a DaemonSet sets it from
    /// `spec.nodeName`), else the host name.
    pub fn this_node(&self) -> String {
        self.node_name
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|n| !n.is_empty()))
            .or_else(|| crate::archive::node_hostname().ok())
            .unwrap_or_default()
    }
}

/// How the method used is recorded in the manifest's custody.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct MethodRecord {
    /// `direct`, `containerd`, `crio` or `k8s-api`.
    pub name: String,
    /// Who took the dump: `reel`, `containerd`, the CRI runtime's name (`cri-o`), `kubelet`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Its version, as it reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    /// Where reel reached it (a socket, the API server's URL, the kubelet's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The archive as the runtime handed it over (its path, on the node for `k8s-api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<String>,
    /// SHA-256 of the archive as received (`crio`, `k8s-api`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_sha256: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_refuses_what_it_cannot_honour() {
        let mut o = CheckpointOptions::default();
        for m in Method::ALL {
            m.check_options(&o).unwrap();
        }
        // Established connections are kept by default (#10): turning that off is the change
        // a method must be able to honour.
        o.tcp_established = false;
        Method::Direct.check_options(&o).unwrap();
        Method::Containerd.check_options(&o).unwrap();
        let e = Method::Crio.check_options(&o).unwrap_err().to_string();
        assert!(e.contains("crio") && e.contains("tcp_established"), "{e}");
        let mut o = CheckpointOptions {
            link_remap: true,
            ..CheckpointOptions::default()
        };
        let e = Method::Containerd
            .check_options(&o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("containerd") && e.contains("link_remap"), "{e}");
        o.link_remap = false;
        o.timeout = std::time::Duration::from_secs(5);
        Method::K8sApi.check_options(&o).unwrap();
        assert!(Method::Containerd.check_options(&o).is_err());
        o.timeout = CheckpointOptions::default().timeout;
        o.file_locks = false;
        assert!(Method::K8sApi.check_options(&o).is_err());
        Method::Containerd.check_options(&o).unwrap();
    }

    #[test]
    fn choices_parse() {
        assert_eq!("auto".parse::<MethodChoice>().unwrap(), MethodChoice::Auto);
        for m in Method::ALL {
            assert_eq!(
                m.as_str().parse::<MethodChoice>().unwrap(),
                MethodChoice::Use(m)
            );
        }
        assert!("cri-o".parse::<MethodChoice>().is_err());
    }
}
