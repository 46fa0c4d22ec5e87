//! The generated code is committed (`src/generated/`, see `criu-sys/codegen`), so by default
//! this script only records where the pinned CRIU is installed (`CRIU_PREFIX`):
//! `REEL_CRIU_PREFIX` (or `CRIU_PREFIX`) at build time, else `/opt/reel/criu`. It needs
//! nothing installed.
//!
//! With the `libcriu` feature it also links libcriu, statically so that Debian's 3.17
//! `libcriu.so.2`, if present, can never be loaded in its place at run time. Where libcriu is
//! looked for, in order:
//! 1. `REEL_CRIU_PREFIX` (or `CRIU_PREFIX`): an install prefix laid out by `vendor/criu.sh`
//!    (`include/criu/version.h`, `lib/libcriu.a`).
//! 2. pkg-config `criu`, searching `/opt/reel/criu/lib/pkgconfig` (where `vendor/criu.sh`
//!    installs) before the system's paths, so that Debian's 3.17 `criu.pc` can never win.
//!
//! The CRIU found must be the version the committed bindings were generated from.

use std::path::PathBuf;

const DEFAULT_PREFIX: &str = "/opt/reel/criu";

fn prefix_from_env() -> Option<PathBuf> {
    ["REEL_CRIU_PREFIX", "CRIU_PREFIX"].iter().find_map(|var| {
        println!("cargo:rerun-if-env-changed={var}");
        std::env::var_os(var)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    })
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let prefix = prefix_from_env().unwrap_or_else(|| PathBuf::from(DEFAULT_PREFIX));
    println!("cargo:rustc-env=CRIU_SYS_PREFIX={}", prefix.display());
    #[cfg(feature = "libcriu")]
    libcriu::link();
}

#[cfg(feature = "libcriu")]
mod libcriu {
    use std::path::{Path, PathBuf};

    use super::{prefix_from_env, DEFAULT_PREFIX};

    const HOW_TO_FIX: &str = "Run the project's set-up as root (`scripts/setup.sh`, or just \
`vendor/criu.sh` to build and install the pinned CRIU into /opt/reel/criu), or point \
REEL_CRIU_PREFIX at the pinned CRIU's install prefix.";

    fn fail(msg: &str) -> ! {
        eprintln!("\nerror: criu-sys (feature libcriu): {msg}\n  {HOW_TO_FIX}\n");
        panic!("criu-sys (feature libcriu): {msg}. {HOW_TO_FIX}");
    }

    /// The version the committed bindings were generated from (`src/generated/version.rs`).
    fn generated_version() -> String {
        let path = Path::new("src/generated/version.rs");
        println!("cargo:rerun-if-changed={}", path.display());
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("pub const CRIU_VERSION: &str = \"")
                        .and_then(|v| v.strip_suffix("\";"))
                        .map(str::to_string)
                })
            })
            .unwrap_or_else(|| fail("cannot read CRIU_VERSION from src/generated/version.rs"))
    }

    fn version_from_header(include: &Path) -> Option<String> {
        let text = std::fs::read_to_string(include.join("version.h")).ok()?;
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("#define CRIU_VERSION ")
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    }

    /// (library dir, version) of the CRIU to link.
    fn find() -> (PathBuf, String) {
        if let Some(prefix) = prefix_from_env() {
            let include = prefix.join("include/criu");
            let version = version_from_header(&include).unwrap_or_else(|| {
                fail(&format!(
                    "cannot read CRIU's version from {}/version.h",
                    include.display()
                ))
            });
            return (prefix.join("lib"), version);
        }
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
        let mut path = Path::new(DEFAULT_PREFIX)
            .join("lib/pkgconfig")
            .display()
            .to_string();
        if let Ok(old) = std::env::var("PKG_CONFIG_PATH") {
            if !old.is_empty() {
                path = format!("{path}:{old}");
            }
        }
        std::env::set_var("PKG_CONFIG_PATH", path);
        let lib = pkg_config::Config::new()
            .cargo_metadata(false)
            .env_metadata(false)
            .probe("criu")
            .unwrap_or_else(|e| fail(&format!("CRIU not found (pkg-config: {e})")));
        let dir = lib
            .link_paths
            .first()
            .cloned()
            .unwrap_or_else(|| fail("pkg-config's criu has no library path"));
        (dir, lib.version)
    }

    pub(super) fn link() {
        let want = generated_version();
        let (lib, version) = find();
        if version != want {
            fail(&format!(
                "found CRIU {version} (libraries in {}) but the committed bindings are of CRIU \
                 {want} (3.17 fails on kernels >= 6.13, 4.1 cannot dump IPv4/IPv6 sockets on \
                 kernels >= 6.16)",
                lib.display()
            ));
        }
        let archive = lib.join("libcriu.a");
        if !archive.is_file() {
            fail(&format!("{} has no libcriu.a", lib.display()));
        }
        println!("cargo:rerun-if-changed={}", archive.display());
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-lib=static=criu");
        println!("cargo:rustc-link-lib=dylib=protobuf-c");
    }
}
