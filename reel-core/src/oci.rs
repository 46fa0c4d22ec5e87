//! The OCI runtime spec (`config.json`, an archive's `spec.dump`): the one model of it in reel.
//!
//! Lenient on purpose: specs come from every runtime and, in archives, from compromised
//! containers. Only what reel reads is typed; every field may be missing or `null`; unknown
//! fields and values (a capability name a newer kernel knows, a runtime's extension) are
//! ignored rather than failing the whole spec, as `oci-spec` would. The spec itself is kept
//! byte for byte for `spec.dump`.

use serde::{Deserialize, Deserializer};

/// `null` as the type's default (a `null` list is an empty list).
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// A container's OCI runtime spec, reduced to what reel reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Spec {
    pub root: Option<Root>,
    #[serde(deserialize_with = "nullable")]
    pub mounts: Vec<Mount>,
    pub linux: Option<Linux>,
    pub process: Option<Process>,
    #[serde(deserialize_with = "nullable")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// `root` of the spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Root {
    #[serde(deserialize_with = "nullable")]
    pub path: String,
    #[serde(deserialize_with = "nullable")]
    pub readonly: bool,
}

/// One entry of `mounts`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Mount {
    #[serde(deserialize_with = "nullable")]
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub source: Option<String>,
    #[serde(deserialize_with = "nullable")]
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
    #[serde(deserialize_with = "nullable")]
    pub namespaces: Vec<Namespace>,
    #[serde(deserialize_with = "nullable")]
    pub masked_paths: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub readonly_paths: Vec<String>,
    #[serde(deserialize_with = "nullable")]
    pub devices: Vec<Device>,
    pub cgroups_path: Option<String>,
}

/// One entry of `linux.namespaces`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Namespace {
    #[serde(rename = "type", deserialize_with = "nullable")]
    pub kind: String,
    pub path: Option<String>,
}

/// One entry of `linux.devices`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Device {
    #[serde(deserialize_with = "nullable")]
    pub path: String,
}

/// `process` of the spec.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Process {
    #[serde(deserialize_with = "nullable")]
    pub terminal: bool,
}

impl Spec {
    /// Parse a spec from its JSON bytes.
    /// A spec is a JSON object (serde would also take an array for a struct).
    pub fn parse(bytes: &[u8]) -> Result<Spec, serde_json::Error> {
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(serde::de::Error::custom(
                "a spec is a JSON object, not an array",
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_with_nulls_missing_and_unknown_fields() {
        let s = Spec::parse(
            br#"{"ociVersion":"1.2.0","root":null,"mounts":null,"annotations":null,
                "process":{"terminal":null,"capabilities":{"bounding":["CAP_NEW_IN_2030"]}},
                "linux":{"namespaces":[{"type":"network","path":"/proc/1/ns/net"},{"type":null}],
                         "maskedPaths":null,"devices":[{"path":"/dev/fuse","type":"c"}],
                         "cgroupsPath":"/k8s.io/x","seccomp":{"defaultAction":"SCMP_ACT_NEW"}}}"#,
        )
        .unwrap();
        assert!(s.mounts.is_empty() && s.annotations.is_empty());
        assert_eq!(s.namespace_path("network"), Some("/proc/1/ns/net"));
        assert!(!s.has_namespace("pid"));
        assert_eq!(s.linux.unwrap().devices[0].path, "/dev/fuse");
        assert!(Spec::parse(b"[]").is_err());
        assert!(Spec::parse(b"{").is_err());
        assert!(Spec::parse(b"{}").is_ok());
    }
}
