//! Who and where: the operator and the node recorded in the manifest.

use nix::unistd::{gethostname, getuid, User};
use serde::{Deserialize, Serialize};

use super::ArchiveError;

/// The user who took a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    /// Real uid of the reel process.
    pub uid: u32,
    /// The uid's name from the user database (`/etc/passwd`), if it has one.
    pub user: Option<String>,
}

impl Operator {
    /// The operator running this process (real uid, name via `getpwuid_r`).
    pub fn current() -> Result<Operator, ArchiveError> {
        let uid = getuid();
        let user = User::from_uid(uid).map_err(|source| {
            tracing::warn!(uid = uid.as_raw(), %source, "user lookup failed");
            ArchiveError::UserLookup {
                uid: uid.as_raw(),
                source,
            }
        })?;
        Ok(Operator {
            uid: uid.as_raw(),
            user: user.map(|u| u.name),
        })
    }
}

/// This node's host name (`gethostname`; non-UTF-8 bytes are replaced).
pub fn node_hostname() -> Result<String, ArchiveError> {
    let name = gethostname().map_err(|e| {
        tracing::warn!(error = %e, "gethostname failed");
        ArchiveError::Hostname(e)
    })?;
    Ok(name.to_string_lossy().into_owned())
}
