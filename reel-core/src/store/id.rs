//! Checkpoint ids: `checkpoint-<pod>-<YYYYMMDD-HHMMSS>` (UTC), `-2`, `-3`, ... when taken.

use chrono::{DateTime, Utc};

use super::{Store, StoreError};

/// Longest accepted pod name (a Kubernetes object name is at most 253 bytes).
const MAX_POD_LEN: usize = 253;
/// Longest accepted id, leaving room in a 255-byte file name for `.`, `.tar.sha256.partial-<pid>`.
pub const MAX_ID_LEN: usize = 200;
/// Suffixes tried before giving up.
const MAX_SUFFIX: u32 = 10_000;

/// Checks that `pod` can go into a checkpoint id: not empty, no `/`, no `..`, no control
/// characters.
pub fn validate_pod_name(pod: &str) -> Result<(), StoreError> {
    let reason = if pod.is_empty() {
        "empty"
    } else if pod.len() > MAX_POD_LEN {
        "longer than 253 bytes"
    } else if pod.contains('/') {
        "contains '/'"
    } else if pod.contains("..") {
        "contains '..'"
    } else if pod.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidPodName {
        name: pod.to_owned(),
        reason,
    })
}

/// Checks that `id` is a safe file name for the store.
pub fn validate_id(id: &str) -> Result<(), StoreError> {
    let reason = if id.is_empty() {
        "empty"
    } else if id.len() > MAX_ID_LEN {
        "longer than 200 bytes"
    } else if id.starts_with('.') {
        "starts with '.'"
    } else if id.contains('/') {
        "contains '/'"
    } else if id.contains("..") {
        "contains '..'"
    } else if id.chars().any(char::is_control) {
        "contains control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidId {
        id: id.to_owned(),
        reason,
    })
}

/// The id for `pod` at `at`, without a suffix: `checkpoint-<pod>-<YYYYMMDD-HHMMSS>`.
pub fn base_id(pod: &str, at: DateTime<Utc>) -> Result<String, StoreError> {
    validate_pod_name(pod)?;
    let id = format!("checkpoint-{pod}-{}", at.format("%Y%m%d-%H%M%S"));
    validate_id(&id)?;
    Ok(id)
}

impl Store {
    /// A checkpoint id for `pod` at `at` that no finished or in-progress checkpoint uses: the
    /// base id, else the base id with `-2`, `-3`, ...
    ///
    /// Another process may take the same id before [`Store::begin`]; `begin` detects that
    /// (use [`Store::begin_new`] to retry automatically).
    pub fn new_id(&self, pod: &str, at: DateTime<Utc>) -> Result<String, StoreError> {
        let base = base_id(pod, at)?;
        if !self.id_in_use(&base)? {
            return Ok(base);
        }
        for n in 2..=MAX_SUFFIX {
            let id = format!("{base}-{n}");
            validate_id(&id)?;
            if !self.id_in_use(&id)? {
                return Ok(id);
            }
        }
        Err(StoreError::NoFreeId {
            base,
            tried: MAX_SUFFIX,
        })
    }
}
