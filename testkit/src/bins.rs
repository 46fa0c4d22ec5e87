//! The binaries the tests run that cargo does not hand them (`CARGO_BIN_EXE_*` only covers a
//! package's own binaries): the `reel` binary of `reel-cli` and reel-core's helper examples
//! (`freeze_hold`, `lock_hold`).
//!
//! They are built BEFORE the tests, never by them: `scripts/test.sh` runs
//! `cargo build --workspace --all-targets --locked` first. A test only locates them next to its
//! own target profile directory (`<target>/[<triple>/]<profile>/`), and panics with the exact
//! cargo command to run when one is missing or older than a file cargo built it from (a stale
//! binary must never be tested by accident).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::repo_root;

/// The environment variable that makes the tests run another `reel` binary (an installed one,
/// or an older build to show what a fix changes). It must exist; it is used as it is.
pub const REEL_BIN_ENV: &str = "REEL_BIN";

/// The target profile directory the running test (or benchmark) was built into:
/// `<target>/[<triple>/]<profile>`, the parent of its `deps/`.
pub fn profile_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test executable's path");
        exe.parent()
            .filter(|d| d.file_name().is_some_and(|n| n == "deps"))
            .and_then(Path::parent)
            .unwrap_or_else(|| {
                panic!(
                    "{} is not in a cargo target directory (<target>/<profile>/deps/): set \
                     {REEL_BIN_ENV} to the reel binary",
                    exe.display()
                )
            })
            .to_path_buf()
    })
}

/// The cargo target directory of the running test (the one holding `CACHEDIR.TAG`).
pub fn target_dir() -> &'static Path {
    let profile = profile_dir();
    let parent = profile
        .parent()
        .expect("the profile directory has a parent");
    if parent.join("CACHEDIR.TAG").is_file() {
        parent
    } else {
        // `--target <triple>` puts one more level in between.
        parent.parent().unwrap_or(parent)
    }
}

/// The flags that make cargo build into [`profile_dir`]: `--release`, `--profile P`,
/// `--target T`, `--target-dir D` as needed.
fn cargo_flags() -> String {
    let profile = profile_dir();
    let mut flags = String::new();
    match profile.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => flags.push_str(" --release"),
        Some(other) => flags.push_str(&format!(" --profile {other}")),
    }
    let target = target_dir();
    if let Some(triple) = profile.parent().filter(|p| *p != target) {
        flags.push_str(&format!(
            " --target {}",
            triple.file_name().unwrap_or_default().to_string_lossy()
        ));
    }
    if target != repo_root().join("target") {
        flags.push_str(&format!(" --target-dir {}", target.display()));
    }
    flags
}

/// The files cargo built `bin` from: its dep-info file `<bin>.d`, which cargo writes next to every
/// binary it builds (`<bin>: <file> <file> ...`, spaces in names escaped). Empty when there is
/// none.
fn sources_of(bin: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string(bin.with_extension("d")) else {
        return Vec::new();
    };
    let Some((_, deps)) = text.split_once(": ") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = deps.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => cur.extend(chars.next()),
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(PathBuf::from(std::mem::take(&mut cur)));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(cur));
    }
    out
}

/// `bin` as cargo built it: panics saying how to build it (`build`, a cargo command) when it is
/// missing, or older than a file cargo built it from (cargo would build it again).
fn built(bin: PathBuf, build: &str) -> PathBuf {
    let how = format!(
        "build it before the tests: `{build}{}` (scripts/test.sh builds everything with `cargo \
         build --workspace --all-targets --locked`)",
        cargo_flags()
    );
    let made = fs::metadata(&bin)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("{} is missing: {how}", bin.display()));
    for source in sources_of(&bin) {
        match fs::metadata(&source).and_then(|m| m.modified()) {
            Ok(t) if t <= made => {}
            Ok(_) => panic!(
                "{} is older than {}, which it is built from: {how}",
                bin.display(),
                source.display()
            ),
            Err(_) => panic!(
                "{} was built from {}, which is gone: {how}",
                bin.display(),
                source.display()
            ),
        }
    }
    bin
}

/// The `reel` binary the tests run: `$REEL_BIN` when set, else `reel` in [`profile_dir`] (where
/// `cargo build -p reel-cli` puts it), checked to be newer than the files it is built from.
pub fn reel_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os(REEL_BIN_ENV) {
            let bin = PathBuf::from(bin);
            assert!(
                bin.is_file(),
                "{REEL_BIN_ENV}={} is not a file: unset it, or build reel with `cargo build -p \
                 reel-cli`",
                bin.display()
            );
            eprintln!("testing {} ({REEL_BIN_ENV})", bin.display());
            return bin;
        }
        built(
            profile_dir().join("reel"),
            "cargo build -p reel-cli --bin reel",
        )
    })
}

/// reel-core's example `name` (a helper process of its tests, e.g. `freeze_hold`), in
/// `<profile_dir>/examples/`, checked to be newer than the files it is built from.
pub fn core_example(name: &str) -> PathBuf {
    built(
        profile_dir().join("examples").join(name),
        &format!("cargo build -p reel-core --example {name}"),
    )
}
