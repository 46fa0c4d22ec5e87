//! Small file helpers whose errors carry the path.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use super::error::{FreezerError, Result};

/// Read a (small) cgroup file.
pub(crate) fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| FreezerError::io("read", path, e))
}

/// Write a value to an existing cgroup file, in a single `write(2)`. Never creates the file.
pub(crate) fn write(path: &Path, value: &str) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| FreezerError::io("open", path, e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| FreezerError::io("write", path, e))
}
