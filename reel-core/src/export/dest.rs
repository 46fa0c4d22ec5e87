//! `--dest` and `--compress`: where the archive goes, under which name, compressed how.

use std::path::{Path, PathBuf};

use super::{ExportError, Level};

/// A parsed `--dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A file path (its directory must exist).
    File(PathBuf),
    /// An existing directory: the archive is named after the checkpoint there.
    Dir(PathBuf),
    /// Standard output.
    Stdout,
    /// An S3 object; `key` ending in `/` (or empty) is a prefix that gets the default name.
    S3 { bucket: String, key: String },
}

impl Destination {
    /// Parses `--dest` (`None`: the current directory).
    pub fn parse(dest: Option<&str>) -> Result<Destination, ExportError> {
        let Some(d) = dest else {
            return Ok(Destination::Dir(PathBuf::from(".")));
        };
        let bad = |reason: &str| ExportError::BadDestination {
            dest: d.to_owned(),
            reason: reason.to_owned(),
        };
        if d.is_empty() {
            return Err(bad("empty"));
        }
        if d == "-" {
            return Ok(Destination::Stdout);
        }
        if let Some(rest) = d.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket: use s3://BUCKET/PREFIX/ or s3://BUCKET/KEY"));
            }
            let valid = bucket.len() >= 3
                && bucket.len() <= 63
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                });
            if !valid {
                return Err(bad("not a valid S3 bucket name"));
            }
            if key.split('/').any(|c| c == "." || c == "..") {
                return Err(bad("'.' and '..' are not allowed in the key"));
            }
            return Ok(Destination::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        if d.contains("://") {
            return Err(bad("only file paths, '-' and s3:// are supported"));
        }
        let p = PathBuf::from(d);
        if p.is_dir() {
            return Ok(Destination::Dir(p));
        }
        if d.ends_with('/') {
            return Err(ExportError::NoDirectory { path: p });
        }
        Ok(Destination::File(p))
    }
}

/// What an export will do: the destination with its final name, and the compression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    File(PathBuf),
    Stdout,
    S3 { bucket: String, key: String },
}

impl Plan {
    /// For people: the path, `-`, or `s3://bucket/key`.
    pub fn describe(&self) -> String {
        match self {
            Plan::File(p) => p.display().to_string(),
            Plan::Stdout => "-".into(),
            Plan::S3 { bucket, key } => format!("s3://{bucket}/{key}"),
        }
    }
}

/// The level a name implies: `.tar` ⇒ none, `.tar.zst`/`.tzst` ⇒ zstd, else no opinion.
fn implied(name: &str) -> Option<bool> {
    if name.ends_with(".tar") {
        Some(false)
    } else if name.ends_with(".tar.zst") || name.ends_with(".tzst") {
        Some(true)
    } else {
        None
    }
}

/// Decides the final name and the level. `requested` is `--compress` as given (`None`: not
/// given), `id` the checkpoint id (default names are `<id>.tar` or `<id>.tar.zst`).
pub fn plan(
    dest: &Destination,
    requested: Option<&str>,
    id: &str,
) -> Result<(Plan, Level), ExportError> {
    let requested = match requested {
        None => None,
        Some(s) => Some(Level::parse(s).ok_or_else(|| ExportError::UnknownLevel {
            value: s.to_owned(),
        })?),
    };
    let decide = |name: &str, shown: &str| -> Result<Level, ExportError> {
        match (implied(name), requested) {
            (None, r) => Ok(r.unwrap_or(Level::Default)),
            (Some(false), None | Some(Level::None)) => Ok(Level::None),
            (Some(false), Some(r)) => Err(ExportError::Contradiction {
                dest: shown.to_owned(),
                implied: "plain tar (.tar)",
                requested: r.as_str(),
            }),
            (Some(true), Some(Level::None)) => Err(ExportError::Contradiction {
                dest: shown.to_owned(),
                implied: "zstd (.tar.zst)",
                requested: "none",
            }),
            (Some(true), r) => Ok(r.unwrap_or(Level::Default)),
        }
    };
    let default_level = requested.unwrap_or(Level::Default);
    let default_name = format!("{id}{}", default_level.suffix());
    Ok(match dest {
        Destination::Stdout => (Plan::Stdout, default_level),
        Destination::Dir(d) => (Plan::File(d.join(&default_name)), default_level),
        Destination::File(p) => {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let shown = p.display().to_string();
            let level = decide(name, &shown)?;
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                if !parent.is_dir() {
                    return Err(ExportError::NoDirectory {
                        path: parent.to_owned(),
                    });
                }
            }
            (Plan::File(p.clone()), level)
        }
        Destination::S3 { bucket, key } => {
            if key.is_empty() || key.ends_with('/') {
                (
                    Plan::S3 {
                        bucket: bucket.clone(),
                        key: format!("{key}{default_name}"),
                    },
                    default_level,
                )
            } else {
                let name = key.rsplit('/').next().unwrap_or(key);
                let level = decide(name, &format!("s3://{bucket}/{key}"))?;
                (
                    Plan::S3 {
                        bucket: bucket.clone(),
                        key: key.clone(),
                    },
                    level,
                )
            }
        }
    })
}

/// Whether `path`'s directory exists (for checks before a dump).
pub fn parent_exists(path: &Path) -> bool {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.is_dir(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_levels() {
        let d = Destination::parse(Some("/tmp/x.tar")).unwrap();
        assert_eq!(plan(&d, None, "id").unwrap().1, Level::None);
        assert!(plan(&d, Some("best"), "id").unwrap_err().is_usage());
        assert_eq!(plan(&d, Some("none"), "id").unwrap().1, Level::None);
        let d = Destination::parse(Some("/tmp/x.tar.zst")).unwrap();
        assert_eq!(plan(&d, None, "id").unwrap().1, Level::Default);
        assert_eq!(plan(&d, Some("best"), "id").unwrap().1, Level::Best);
        assert!(plan(&d, Some("none"), "id").is_err());
        assert!(plan(&d, Some("huge"), "id").unwrap_err().is_usage());
        let d = Destination::parse(Some("/tmp")).unwrap();
        assert_eq!(
            plan(&d, None, "cp-1").unwrap(),
            (Plan::File("/tmp/cp-1.tar.zst".into()), Level::Default)
        );
        assert_eq!(
            plan(&d, Some("none"), "cp-1").unwrap().0,
            Plan::File("/tmp/cp-1.tar".into())
        );
        let d = Destination::parse(Some("s3://bkt/a/b/")).unwrap();
        assert_eq!(
            plan(&d, Some("fast"), "cp").unwrap(),
            (
                Plan::S3 {
                    bucket: "bkt".into(),
                    key: "a/b/cp.tar.zst".into()
                },
                Level::Fast
            )
        );
        let d = Destination::parse(Some("s3://bkt")).unwrap();
        assert_eq!(
            plan(&d, None, "cp").unwrap().0,
            Plan::S3 {
                bucket: "bkt".into(),
                key: "cp.tar.zst".into()
            }
        );
        assert!(Destination::parse(Some("s3:///x")).is_err());
        assert!(matches!(
            Destination::parse(Some("/nonexistent-dir-xyz/")),
            Err(ExportError::NoDirectory { .. })
        ));
        let d = Destination::parse(Some("/nonexistent-dir-xyz/a.tar")).unwrap();
        assert!(matches!(
            plan(&d, None, "x"),
            Err(ExportError::NoDirectory { .. })
        ));
    }
}
