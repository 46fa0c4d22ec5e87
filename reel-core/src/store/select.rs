//! [`Selector`]: which checkpoints a delete applies to. It cannot be empty.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{parse_age, validate_id, RemoteCheckpoint, StoreError, StoredCheckpoint};

/// The user's selection as given (e.g. straight from CLI flags); turned into a [`Selector`]
/// with [`Selector::new`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelectorSpec {
    /// Explicit checkpoint ids.
    pub ids: Vec<String>,
    /// `-n NAMESPACE`.
    pub namespace: Option<String>,
    /// `--filter GLOB` on the id.
    pub filter: Option<String>,
    /// `--older-than AGE` (see [`parse_age`]).
    pub older_than: Option<String>,
    /// `--all`.
    pub all: bool,
}

/// A non-empty selection of checkpoints. A checkpoint is selected when it meets every given
/// criterion; `all` adds no restriction but counts as a selection.
#[derive(Debug, Clone)]
pub struct Selector {
    ids: Vec<String>,
    namespace: Option<String>,
    filter: Option<glob::Pattern>,
    older_than: Option<Duration>,
}

impl Selector {
    /// Validates `spec`; fails with [`StoreError::EmptySelector`] if it selects nothing, and on
    /// an invalid id, glob or age.
    pub fn new(spec: SelectorSpec) -> Result<Selector, StoreError> {
        let empty = spec.ids.is_empty()
            && spec.namespace.is_none()
            && spec.filter.is_none()
            && spec.older_than.is_none()
            && !spec.all;
        if empty {
            return Err(StoreError::EmptySelector);
        }
        for id in &spec.ids {
            validate_id(id)?;
        }
        let filter = spec
            .filter
            .map(|p| {
                glob::Pattern::new(&p).map_err(|e| StoreError::BadFilter {
                    pattern: p.clone(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let older_than = spec.older_than.as_deref().map(parse_age).transpose()?;
        Ok(Selector {
            ids: spec.ids,
            namespace: spec.namespace,
            filter,
            older_than,
        })
    }

    /// Exactly these ids.
    pub fn ids<I: IntoIterator<Item = S>, S: Into<String>>(ids: I) -> Result<Selector, StoreError> {
        Self::new(SelectorSpec {
            ids: ids.into_iter().map(Into::into).collect(),
            ..SelectorSpec::default()
        })
    }

    /// Everything in `namespace`.
    pub fn namespace(namespace: impl Into<String>) -> Selector {
        Selector {
            ids: Vec::new(),
            namespace: Some(namespace.into()),
            filter: None,
            older_than: None,
        }
    }

    /// Ids matching the glob `pattern`.
    pub fn filter(pattern: &str) -> Result<Selector, StoreError> {
        Self::new(SelectorSpec {
            filter: Some(pattern.to_owned()),
            ..SelectorSpec::default()
        })
    }

    /// Checkpoints taken more than `age` ago.
    pub fn older_than(age: Duration) -> Selector {
        Selector {
            ids: Vec::new(),
            namespace: None,
            filter: None,
            older_than: Some(age),
        }
    }

    /// Every checkpoint.
    pub fn all() -> Selector {
        Selector {
            ids: Vec::new(),
            namespace: None,
            filter: None,
            older_than: None,
        }
    }

    /// The explicit ids, if any.
    pub fn explicit_ids(&self) -> &[String] {
        &self.ids
    }

    /// Whether `c` is selected at time `now`. Archives without a readable manifest only match
    /// by id, glob, age (by file mtime) or all, never by namespace.
    pub fn matches(&self, c: &StoredCheckpoint, now: DateTime<Utc>) -> bool {
        self.matches_fields(&c.id, c.namespace(), c.created_or_modified(), now)
    }

    /// Whether the record of a checkpoint on another node is selected at time `now`.
    pub fn matches_remote(&self, r: &RemoteCheckpoint, now: DateTime<Utc>) -> bool {
        self.matches_fields(&r.id, Some(&r.namespace), Some(r.created), now)
    }

    fn matches_fields(
        &self,
        id: &str,
        namespace: Option<&str>,
        created: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> bool {
        if !self.ids.is_empty() && !self.ids.iter().any(|i| i == id) {
            return false;
        }
        if let Some(ns) = &self.namespace {
            if namespace != Some(ns.as_str()) {
                return false;
            }
        }
        if let Some(p) = &self.filter {
            if !p.matches(id) {
                return false;
            }
        }
        if let Some(age) = self.older_than {
            let Some(when) = created else {
                return false;
            };
            let Ok(age) = chrono::Duration::from_std(age) else {
                return false; // older than anything representable
            };
            if now.signed_duration_since(when) <= age {
                return false;
            }
        }
        true
    }
}
