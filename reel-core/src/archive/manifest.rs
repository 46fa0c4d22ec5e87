//! reel's manifest member: member digests and the chain of custody.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{rfc3339, DigestKind, Operator};

/// The manifest schema this code writes. 2 added to `dump_options` what the dump applied and
/// kept (`ghost_limit`, `external_unix_sockets`, `deleted_files`, `tcp_connections`,
/// `page_size`); every addition is a new field that older readers ignore (since 2:
/// [`ManifestFields::rootfs_layers`], the container's base layers, for a sandbox restore;
/// [`ManifestFields::page_size`], the dumping host's page size, for reading the pagemaps;
/// [`MemberDigest::blake3`], each member's BLAKE3).
pub const MANIFEST_SCHEMA_VERSION: u32 = 2;

/// Size and digests of one archive member (directories: size 0, digests of no bytes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDigest {
    /// The member's name as stored in the tar (`checkpoint/`, `checkpoint/pages-1.img`, ...).
    pub name: String,
    /// Content size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
    /// Lower-case hex BLAKE3 of the content (absent in archives of reel before it was
    /// recorded): what reel checks a member against when it reads one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
}

impl MemberDigest {
    /// The recorded digest of kind `kind` (`None`: BLAKE3 not recorded).
    pub fn digest(&self, kind: DigestKind) -> Option<&str> {
        match kind {
            DigestKind::Sha256 => Some(&self.sha256),
            DigestKind::Blake3 => self.blake3.as_deref(),
        }
    }
}

/// Which container was checkpointed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerIdentity {
    /// Kubernetes namespace, when the container belongs to a pod.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Pod name, when the container belongs to a pod.
    #[serde(default)]
    pub pod: Option<String>,
    /// Container name.
    pub name: String,
    /// Container id.
    pub id: String,
    /// OCI runtime (`runc`, `io.containerd.runc.v2`, ...).
    pub runtime: String,
    /// The container's image, when known.
    #[serde(default)]
    pub image: Option<String>,
}

/// Where the rootfs diff came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RootfsDiffInfo {
    /// Taken from an overlay upper dir.
    OverlayUpper {
        /// The upper dir walked.
        upper_dir: PathBuf,
        /// Entries written to `rootfs-diff.tar`.
        entries: u64,
        /// Paths listed in `deleted.files`.
        deleted: u64,
    },
    /// The runtime took the checkpoint and its diff (`crio`, `k8s-api`): the members it
    /// wrote are in the archive as received.
    FromRuntime {
        /// Who wrote them (`cri-o`, `containerd`, `kubelet`).
        runtime: String,
        /// Which of `rootfs-diff.tar` and `deleted.files` it wrote.
        members: Vec<String>,
    },
    /// No diff (empty `rootfs-diff.tar`, `[]` in `deleted.files`), and why.
    None {
        /// Why there is no diff.
        reason: String,
    },
}

/// What the caller knows when finishing an archive: everything in the [`Manifest`] except the
/// member digests, the rootfs diff info (recorded by the writer) and reel's version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFields {
    /// The store id of this checkpoint.
    pub checkpoint_id: String,
    /// When the checkpoint was taken.
    #[serde(with = "rfc3339")]
    pub created: DateTime<Utc>,
    /// Who took it.
    pub created_by: Operator,
    /// This node's host name.
    pub node: String,
    /// CRIU's version (e.g. `4.2.1`).
    pub criu_version: String,
    /// The container.
    pub container: ContainerIdentity,
    /// How long CRIU kept the tasks frozen, in microseconds (from `stats-dump`).
    #[serde(default)]
    pub criu_frozen_time_us: Option<u64>,
    /// The dump options used, as the CRIU driver describes them.
    #[serde(default)]
    pub dump_options: BTreeMap<String, serde_json::Value>,
    /// How the checkpoint was taken (absent in manifests from before methods: `direct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<crate::checkpoint::MethodRecord>,
    /// The container's base: the read-only layers under its writable one, so that a restore
    /// can rebuild the rootfs as base + `rootfs-diff.tar` - `deleted.files`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_layers: Option<RootfsLayers>,
    /// The page size of the dumping host, in bytes: CRIU's pagemaps count pages of this size.
    /// Absent in manifests of reel before it recorded it and in foreign archives: readers take
    /// the architecture's default (4096 on x86-64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u64>,
}

/// The read-only base of a container's rootfs, as found at checkpoint time.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootfsLayers {
    /// `overlay` (the lower dirs of the rootfs's overlay mount, top first) or `directory`
    /// (a plain directory rootfs, which is its own base and has no diff).
    pub kind: String,
    /// The directories, top first, on the checkpointing host.
    pub lower_dirs: Vec<PathBuf>,
    /// The image as the runtime names it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The image's id or digest, when the runtime records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_ref: Option<String>,
}

/// The manifest member ([`super::MANIFEST_NAME`]), last in the archive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// reel's version.
    pub reel_version: String,
    /// The chain of custody given by the caller.
    #[serde(flatten)]
    pub fields: ManifestFields,
    /// Where the rootfs diff came from.
    pub rootfs_diff: RootfsDiffInfo,
    /// Every other member, in archive order.
    pub members: Vec<MemberDigest>,
}

impl Manifest {
    /// The digest recorded for `name`.
    pub fn member(&self, name: &str) -> Option<&MemberDigest> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The digest readers check members against: BLAKE3 when every member records one,
    /// else SHA-256.
    pub fn digest_kind(&self) -> DigestKind {
        if self.members.iter().all(|m| m.blake3.is_some()) {
            DigestKind::Blake3
        } else {
            DigestKind::Sha256
        }
    }
}
