//! `reel --version`: reel's build and the CRIU it will use.

use crate::cli::Cli;

pub fn run(cli: &Cli) -> anyhow::Result<()> {
    println!(
        "reel {} (commit {}, {}, {} {})",
        env!("CARGO_PKG_VERSION"),
        env!("REEL_GIT_COMMIT"),
        env!("REEL_RUSTC_VERSION"),
        env!("REEL_TARGET"),
        env!("REEL_PROFILE"),
    );
    println!(
        "criu-sys built against CRIU {} ({}); pinned CRIU {}",
        reel_core::criu_sys::CRIU_VERSION,
        reel_core::criu_sys::CRIU_PREFIX,
        env!("REEL_CRIU_PIN")
    );
    match super::criu(cli) {
        Ok(c) => println!("criu {} at {}", c.known_version(), c.binary().display()),
        Err(e) => {
            println!("criu: unusable: {e:#}");
            println!("hint: {}", reel_core::criu::HOW_TO_FIX);
        }
    }
    Ok(())
}
