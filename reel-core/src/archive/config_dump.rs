//! `config.dump`: the container metadata schema shared by checkpointctl, CRI-O and containerd.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::rfc3339;

/// The `config.dump` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigDump {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Image as requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_image: Option<String>,
    /// Image id or digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_image_ref: Option<String>,
    /// Resolved image name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_image_name: Option<String>,
    /// OCI runtime, e.g. `runc` or `io.containerd.runc.v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// When the container was created.
    #[serde(with = "rfc3339")]
    pub created_time: DateTime<Utc>,
    /// When the checkpoint was taken.
    #[serde(with = "rfc3339")]
    pub checkpointed_time: DateTime<Utc>,
    /// When it was restored; [`ConfigDump::zero_time`] if never.
    #[serde(with = "rfc3339")]
    pub restored_time: DateTime<Utc>,
    /// Whether this container was restored from a checkpoint.
    pub restored: bool,
}

impl ConfigDump {
    /// A never-restored container's metadata; the optional fields start empty.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        created_time: DateTime<Utc>,
        checkpointed_time: DateTime<Utc>,
    ) -> Self {
        ConfigDump {
            id: id.into(),
            name: name.into(),
            rootfs_image: None,
            rootfs_image_ref: None,
            rootfs_image_name: None,
            runtime: None,
            created_time,
            checkpointed_time,
            restored_time: Self::zero_time(),
            restored: false,
        }
    }

    /// Go's zero `time.Time`, `0001-01-01T00:00:00Z`, which means "never".
    pub fn zero_time() -> DateTime<Utc> {
        NaiveDate::from_ymd_opt(1, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|t| t.and_utc())
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}
