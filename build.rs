//! Build provenance for reel's binaries.
//!
//! This script is shared: it is the build script of the root package (end-to-end tests and
//! benchmarks) and of `reel-cli` (`build = "../build.rs"`). It records what `reel --version`
//! reports about the build, so an archive's chain of custody can name the exact reel that made
//! it: the git commit (and whether the tree was dirty), the rustc that compiled it, the target,
//! the profile, and the CRIU version pinned in `vendor/criu.pin`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    manifest
        .ancestors()
        .find(|p| p.join("vendor/criu.pin").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(manifest)
}

fn run(cmd: &str, args: &[&str], dir: &Path) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let root = workspace_root();
    let pin = root.join("vendor/criu.pin");
    println!("cargo:rerun-if-changed={}", pin.display());
    for f in [".git/HEAD", ".git/index"] {
        let p = root.join(f);
        if p.exists() {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }

    let commit =
        run("git", &["rev-parse", "--short=12", "HEAD"], &root).unwrap_or_else(|| "unknown".into());
    let dirty = run(
        "git",
        &["status", "--porcelain", "--untracked-files=no"],
        &root,
    )
    .map(|s| !s.is_empty())
    .unwrap_or(false);
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = run(&rustc, &["--version"], &root).unwrap_or_else(|| "unknown".into());
    let criu_pin = std::fs::read_to_string(&pin)
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("CRIU_VERSION=")
                    .map(|v| v.trim().to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());

    println!(
        "cargo:rustc-env=REEL_GIT_COMMIT={commit}{}",
        if dirty { "-dirty" } else { "" }
    );
    println!("cargo:rustc-env=REEL_RUSTC_VERSION={rustc_version}");
    println!(
        "cargo:rustc-env=REEL_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!(
        "cargo:rustc-env=REEL_PROFILE={}",
        std::env::var("PROFILE").unwrap_or_default()
    );
    println!("cargo:rustc-env=REEL_CRIU_PIN={criu_pin}");
}
