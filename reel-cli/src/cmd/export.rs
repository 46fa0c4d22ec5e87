//! `reel export checkpoint`: not in this build yet.

use crate::cli::{Cli, ExportCheckpoint};

pub fn run(_cli: &Cli, _args: &ExportCheckpoint) -> anyhow::Result<()> {
    anyhow::bail!(
        "`reel export checkpoint` is not implemented in this build yet; the archive is in the store: see `reel list checkpoint -A`"
    )
}
