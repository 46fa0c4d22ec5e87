//! Generates the code `criu-sys` commits in `criu-sys/src/generated/` from the pinned CRIU.
//!
//! * `proto.rs`: prost's types for every `.proto` file the CRIU install ships
//!   (`share/criu/images/*.proto`: the RPC and every image message), in one flat module, as
//!   CRIU's `.proto` files declare no package.
//! * `libcriu.rs`: bindgen's bindings of `include/criu/criu.h`.
//! * `version.rs`: `CRIU_VERSION`, from `include/criu/version.h`.
//!
//! It needs what a normal build of reel does not: the pinned CRIU's install prefix
//! (`vendor/criu.sh`), libclang (bindgen) and protoc (prost-build). The output depends only on
//! those inputs and on the versions of bindgen and prost-build in `Cargo.lock`, so the test of
//! this crate can regenerate into a temporary directory and compare byte for byte.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where `vendor/criu.sh` installs the pinned CRIU unless `REEL_CRIU_PREFIX` says otherwise.
pub const DEFAULT_PREFIX: &str = "/opt/reel/criu";

/// The command that regenerates the committed code (named in headers and in errors).
pub const REGENERATE: &str = "cargo run -p criu-sys-codegen --bin regenerate";

/// The files this crate writes into the generated directory.
pub const FILES: &[&str] = &["libcriu.rs", "proto.rs", "version.rs"];

/// CRIU's `opts.proto` declares the message `CRIU_Opts` (the options of CRIU's own `.proto`
/// fields, for crit); `rpc.proto` declares `criu_opts`. prost names both `CriuOpts`, so the
/// first is generated as `CriuFieldOpts`, the name this message has everywhere else in reel.
const RENAMED: &[(&str, &str)] = &[("CRIU_Opts", "CRIU_Field_Opts")];

/// Why generation failed.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(msg: impl Into<String>) -> Error {
    Error(msg.into())
}

/// The workspace root (where `vendor/criu.pin` is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")))
}

/// The directory `criu-sys` includes its generated code from.
pub fn committed_dir() -> PathBuf {
    workspace_root().join("criu-sys/src/generated")
}

/// The pinned CRIU install prefix: `REEL_CRIU_PREFIX`, else `/opt/reel/criu`.
pub fn prefix() -> PathBuf {
    std::env::var_os("REEL_CRIU_PREFIX")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PREFIX))
}

/// The CRIU version `vendor/criu.pin` pins.
pub fn pinned_version() -> Result<String, Error> {
    let pin = workspace_root().join("vendor/criu.pin");
    let text = std::fs::read_to_string(&pin)
        .map_err(|e| err(format!("cannot read {}: {e}", pin.display())))?;
    text.lines()
        .find_map(|l| {
            l.strip_prefix("CRIU_VERSION=")
                .map(|v| v.trim().to_string())
        })
        .ok_or_else(|| err(format!("{} has no CRIU_VERSION=", pin.display())))
}

/// The version of the CRIU installed at `prefix` (its `version.h`).
pub fn installed_version(prefix: &Path) -> Result<String, Error> {
    let header = prefix.join("include/criu/version.h");
    let text = std::fs::read_to_string(&header).map_err(|e| {
        err(format!(
            "cannot read {}: {e}; install the pinned CRIU with `vendor/criu.sh` (as root) or \
             point REEL_CRIU_PREFIX at its install prefix",
            header.display()
        ))
    })?;
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("#define CRIU_VERSION ")
                .map(|v| v.trim().trim_matches('"').to_string())
        })
        .ok_or_else(|| err(format!("no CRIU_VERSION in {}", header.display())))
}

fn header(version: &str, source: &str) -> String {
    format!(
        "// @generated from the pinned CRIU {version} ({source}): do not edit.\n\
         // Regenerate: `{REGENERATE}` (needs the pinned CRIU from\n\
         // `vendor/criu.sh`, libclang and protoc). criu-sys-codegen's test checks it is current.\n\n"
    )
}

fn write(out: &Path, name: &str, text: &str) -> Result<(), Error> {
    let path = out.join(name);
    std::fs::write(&path, text).map_err(|e| err(format!("cannot write {}: {e}", path.display())))
}

/// Generates every file of [`FILES`] into `out` from the CRIU installed at `prefix`, which must
/// be the pinned version.
pub fn generate(prefix: &Path, out: &Path) -> Result<(), Error> {
    let version = installed_version(prefix)?;
    let pinned = pinned_version()?;
    if version != pinned {
        return Err(err(format!(
            "{} has CRIU {version} but vendor/criu.pin pins {pinned}: install the pin with \
             `vendor/criu.sh --force`",
            prefix.display()
        )));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| err(format!("cannot create {}: {e}", out.display())))?;
    write(
        out,
        "version.rs",
        &format!(
            "{}/// The version of the CRIU this crate's code was generated from.\n\
             pub const CRIU_VERSION: &str = \"{version}\";\n",
            header(&version, "include/criu/version.h")
        ),
    )?;
    write(
        out,
        "proto.rs",
        &format!(
            "{}{}",
            header(&version, "share/criu/images/*.proto, by prost-build"),
            protos(prefix)?
        ),
    )?;
    write(
        out,
        "libcriu.rs",
        &format!(
            "{}{}",
            header(&version, "include/criu/criu.h, by bindgen"),
            bindings(prefix)?
        ),
    )
}

/// Every `.proto` file of the install, sorted.
fn proto_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| err(format!("cannot list {}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    if !files.iter().any(|p| p.ends_with("rpc.proto")) {
        return Err(err(format!("{} has no rpc.proto", dir.display())));
    }
    Ok(files)
}

fn protos(prefix: &Path) -> Result<String, Error> {
    let dir = prefix.join("share/criu/images");
    let files = proto_files(&dir)?;
    let tmp = tempfile::tempdir().map_err(|e| err(format!("temporary dir: {e}")))?;
    let mut config = prost_build::Config::new();
    config.out_dir(tmp.path());
    let mut fds = config.load_fds(&files, &[&dir]).map_err(|e| {
        err(format!(
            "protoc over {}: {e} (is protobuf-compiler installed?)",
            dir.display()
        ))
    })?;
    rename_messages(&mut fds);
    config
        .compile_fds(fds)
        .map_err(|e| err(format!("prost-build: {e}")))?;
    // CRIU's .proto files have no package: prost writes them all to `_.rs`.
    let path = tmp.path().join("_.rs");
    std::fs::read_to_string(&path)
        .map_err(|e| err(format!("prost-build wrote no {}: {e}", path.display())))
}

/// Applies [`RENAMED`] to the messages and to the fields that refer to them.
fn rename_messages(fds: &mut prost_types::FileDescriptorSet) {
    for file in &mut fds.file {
        for msg in &mut file.message_type {
            for (from, to) in RENAMED {
                if msg.name() == *from {
                    msg.name = Some((*to).to_string());
                }
            }
        }
        let fields = file.extension.iter_mut().chain(
            file.message_type
                .iter_mut()
                .flat_map(|m| m.field.iter_mut()),
        );
        for field in fields {
            for (from, to) in RENAMED {
                if field.type_name() == format!(".{from}") {
                    field.type_name = Some(format!(".{to}"));
                }
            }
        }
    }
}

fn bindings(prefix: &Path) -> Result<String, Error> {
    let include = prefix.join("include/criu");
    let bindings = bindgen::Builder::default()
        .header(include.join("criu.h").display().to_string())
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_function("criu_.*")
        .allowlist_type("criu_.*")
        .allowlist_var("CRIU_.*")
        .allowlist_type("CriuReq|CriuResp|CriuNotify|CriuOpts")
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .map_err(|e| {
            err(format!(
                "bindgen over {}/criu.h: {e} (are libclang-dev and libprotobuf-c-dev installed?)",
                include.display()
            ))
        })?;
    Ok(bindings.to_string())
}

/// The files of `generated` that differ from those of `committed` (or are missing there).
pub fn differences(generated: &Path, committed: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for name in FILES {
        let want = std::fs::read(generated.join(name));
        let have = std::fs::read(committed.join(name));
        match (want, have) {
            (Ok(w), Ok(h)) if w == h => {}
            (Ok(_), Ok(_)) => out.push(format!("{name} differs")),
            (Ok(_), Err(e)) => out.push(format!("{name} cannot be read from the tree: {e}")),
            (Err(e), _) => out.push(format!("{name} was not generated: {e}")),
        }
    }
    if let Ok(entries) = std::fs::read_dir(committed) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !FILES.contains(&name.as_str()) {
                out.push(format!("{name} is not generated (remove it)"));
            }
        }
    }
    out
}
