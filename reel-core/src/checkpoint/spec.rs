//! The parts of an OCI runtime spec (`config.json`) that decide how a container is dumped.
//!
//! Only what the dump needs is typed; the spec itself is kept byte for byte for `spec.dump`.

use serde::Deserialize;

/// A container's OCI runtime spec, reduced to what the dump reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    pub root: Option<Root>,
    pub mounts: Vec<Mount>,
    pub linux: Option<Linux>,
    pub process: Option<Process>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// `root` of the spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Root {
    pub path: String,
    pub readonly: bool,
}

/// One entry of `mounts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Mount {
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    pub options: Vec<String>,
}

impl Mount {
    /// A bind mount, by type or by option (runtimes accept both spellings).
    pub fn is_bind(&self) -> bool {
        self.kind.as_deref() == Some("bind")
            || self.options.iter().any(|o| o == "bind" || o == "rbind")
    }
}

/// `linux` of the spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Linux {
    pub namespaces: Vec<Namespace>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub devices: Vec<Device>,
    pub cgroups_path: Option<String>,
}

/// One entry of `linux.namespaces`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Namespace {
    #[serde(rename = "type")]
    pub kind: String,
    pub path: Option<String>,
}

/// One entry of `linux.devices`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Device {
    pub path: String,
}

/// `process` of the spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Process {
    pub terminal: bool,
}

impl Spec {
    /// Parse a spec from its JSON bytes.
    pub fn parse(bytes: &[u8]) -> Result<Spec, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The namespaces of the spec.
    pub fn namespaces(&self) -> &[Namespace] {
        self.linux
            .as_ref()
            .map(|l| l.namespaces.as_slice())
            .unwrap_or(&[])
    }

    /// Whether the spec asks for a namespace of this type (`network`, `pid`, `cgroup`, ...).
    pub fn has_namespace(&self, kind: &str) -> bool {
        self.namespaces().iter().any(|n| n.kind == kind)
    }

    /// The path of a namespace the container joins instead of creating it.
    pub fn namespace_path(&self, kind: &str) -> Option<&str> {
        self.namespaces()
            .iter()
            .find(|n| n.kind == kind)
            .and_then(|n| n.path.as_deref())
            .filter(|p| !p.is_empty())
    }
}
