//! The `<archive>.sha256` sidecar: `<hex>  <file name>\n` (the `sha256sum` format).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The sidecar's suffix, appended to the archive's file name.
pub const SIDECAR_SUFFIX: &str = ".sha256";

/// The sidecar path of `archive` (`x.tar` ⇒ `x.tar.sha256`).
pub fn sidecar_path(archive: &Path) -> PathBuf {
    let mut s: OsString = archive.as_os_str().to_owned();
    s.push(SIDECAR_SUFFIX);
    PathBuf::from(s)
}

/// The sidecar's content for a file named `file_name` with hex digest `sha256`.
pub fn format_sidecar(sha256: &str, file_name: &str) -> String {
    format!("{sha256}  {file_name}\n")
}

/// The lower-case hex digest from a sidecar's content, if the first field is 64 hex digits.
pub fn parse_sidecar(content: &str) -> Option<String> {
    let first = content.split_whitespace().next()?;
    (first.len() == 64 && first.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| first.to_ascii_lowercase())
}
