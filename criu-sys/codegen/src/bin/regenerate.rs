//! Rewrites `criu-sys/src/generated/` from the pinned CRIU.
//!
//! `cargo run -p criu-sys-codegen --bin regenerate [OUT_DIR]`: the CRIU install prefix is
//! `REEL_CRIU_PREFIX`, else `/opt/reel/criu`; OUT_DIR defaults to `criu-sys/src/generated`.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let out = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(criu_sys_codegen::committed_dir);
    let prefix = criu_sys_codegen::prefix();
    match criu_sys_codegen::generate(&prefix, &out) {
        Ok(()) => {
            eprintln!(
                "regenerate: wrote {} from the CRIU in {}",
                out.display(),
                prefix.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("regenerate: error: {e}");
            ExitCode::FAILURE
        }
    }
}
