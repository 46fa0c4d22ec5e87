//! Finds the pinned CRIU, generates bindings for `criu.h` and Rust types for CRIU's `.proto`
//! files, and links `libcriu`.
//!
//! Where CRIU is looked for, in order:
//! 1. `REEL_CRIU_PREFIX` (or `CRIU_PREFIX`): an install prefix laid out by `vendor/criu.sh`
//!    (`include/criu/criu.h`, `lib/libcriu.a`, `share/criu/images/*.proto`).
//! 2. pkg-config `criu >= 4.2`, searching `/opt/reel/criu/lib/pkgconfig` (where
//!    `vendor/criu.sh` installs) before the system's paths, so that Debian's 3.17 `criu.pc`
//!    can never win.
//!
//! libcriu is linked statically so that Debian's 3.17 `libcriu.so.2`, if present, can never be
//! loaded in its place at run time.

use std::path::{Path, PathBuf};

const MIN_VERSION: &str = "4.2";
const DEFAULT_PREFIX: &str = "/opt/reel/criu";
const HOW_TO_FIX: &str = "Run the project's set-up as root (`scripts/setup.sh`, or just \
`vendor/criu.sh` to build and install the pinned CRIU into /opt/reel/criu), or point \
REEL_CRIU_PREFIX at a CRIU >= 4.2 install prefix.";

/// The image and RPC messages Rust code reads and writes.
const PROTOS: &[&str] = &[
    "rpc",
    "stats",
    "inventory",
    "pstree",
    "core",
    "mm",
    "pagemap",
    "fdinfo",
    "sk-inet",
    "sk-unix",
    "regfile",
    "pipe",
    "pipe-data",
    "fs",
    "timer",
    "timerfd",
    "eventfd",
    "memfd",
    "tty",
    "cgroup",
    "mnt",
    "ns",
    "creds",
    "siginfo",
    "sa",
    "rlimit",
    "vma",
    "ghost-file",
    "file-lock",
    "fown",
    "eventpoll",
    "signalfd",
    "fsnotify",
    "packet-sock",
    "sk-netlink",
    "sk-opts",
    "tcp-stream",
    "opts",
    "utsns",
    "ipc-var",
    "pidns",
    "timens",
    "seccomp",
    "remap-file-path",
    "fifo",
    "ext-file",
    "tun",
    "netdev",
    "sysctl",
    "userns",
    "time",
    "core-x86",
    "core-aarch64",
    "core-arm",
    "core-ppc64",
    "core-s390",
    "core-mips",
    "core-loongarch64",
    "core-riscv64",
    "rseq",
    "pidfd",
    "apparmor",
    "bpfmap-file",
    "fh",
    "cpuinfo",
    "autofs",
    "binfmt-misc",
    "ipc-desc",
    "ipc-msg",
    "ipc-sem",
    "ipc-shm",
    "macvlan",
    "sit",
    "bpfmap-data",
];

struct Criu {
    include: PathBuf,
    lib: PathBuf,
    protos: PathBuf,
    version: String,
    prefix: PathBuf,
}

fn fail(msg: &str) -> ! {
    eprintln!("\nerror: criu-sys: {msg}\n  {HOW_TO_FIX}\n");
    panic!("criu-sys: {msg}. {HOW_TO_FIX}");
}

fn version_at_least(v: &str, min: &str) -> bool {
    let parse = |s: &str| -> Vec<u32> {
        s.split('.')
            .map(|p| p.trim().parse::<u32>().unwrap_or(0))
            .collect()
    };
    let (a, b) = (parse(v), parse(min));
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (
            a.get(i).copied().unwrap_or(0),
            b.get(i).copied().unwrap_or(0),
        );
        if x != y {
            return x > y;
        }
    }
    true
}

fn version_from_header(include: &Path) -> Option<String> {
    let text = std::fs::read_to_string(include.join("version.h")).ok()?;
    text.lines().find_map(|l| {
        let l = l.trim();
        l.strip_prefix("#define CRIU_VERSION ")
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

fn from_prefix(prefix: &Path) -> Criu {
    let include = prefix.join("include/criu");
    if !include.join("criu.h").is_file() {
        fail(&format!("{} has no include/criu/criu.h", prefix.display()));
    }
    let version = version_from_header(&include).unwrap_or_else(|| {
        fail(&format!(
            "cannot read CRIU's version from {}/version.h",
            include.display()
        ))
    });
    Criu {
        include,
        lib: prefix.join("lib"),
        protos: prefix.join("share/criu/images"),
        version,
        prefix: prefix.to_path_buf(),
    }
}

fn find() -> Criu {
    for var in ["REEL_CRIU_PREFIX", "CRIU_PREFIX"] {
        println!("cargo:rerun-if-env-changed={var}");
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            return from_prefix(Path::new(&p));
        }
    }
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    let default_pc = Path::new(DEFAULT_PREFIX).join("lib/pkgconfig");
    let mut path = default_pc.display().to_string();
    if let Ok(old) = std::env::var("PKG_CONFIG_PATH") {
        if !old.is_empty() {
            path = format!("{path}:{old}");
        }
    }
    std::env::set_var("PKG_CONFIG_PATH", path);
    let lib = match pkg_config::Config::new()
        .cargo_metadata(false)
        .env_metadata(false)
        .probe("criu")
    {
        Ok(lib) => lib,
        Err(e) => fail(&format!(
            "CRIU >= {MIN_VERSION} not found (pkg-config: {e})"
        )),
    };
    if !version_at_least(&lib.version, MIN_VERSION) {
        fail(&format!(
            "pkg-config found CRIU {} but reel needs >= {MIN_VERSION} (3.17 fails on kernels >= 6.13, \
             4.1 cannot dump IPv4/IPv6 sockets on kernels >= 6.16)",
            lib.version
        ));
    }
    let include = lib
        .include_paths
        .iter()
        .find(|p| p.join("criu.h").is_file())
        .cloned()
        .unwrap_or_else(|| fail("pkg-config's criu include path has no criu.h"));
    let libdir = lib
        .link_paths
        .first()
        .cloned()
        .unwrap_or_else(|| fail("pkg-config's criu has no library path"));
    let prefix = libdir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| libdir.clone());
    Criu {
        protos: prefix.join("share/criu/images"),
        include,
        lib: libdir,
        version: lib.version,
        prefix,
    }
}

fn main() {
    let criu = find();
    if !version_at_least(&criu.version, MIN_VERSION) {
        fail(&format!(
            "CRIU {} in {} is older than {MIN_VERSION}",
            criu.version,
            criu.prefix.display()
        ));
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_else(|| fail("OUT_DIR not set")));

    // --- libcriu: static, so no other libcriu.so can be picked up at run time. ---
    if !criu.lib.join("libcriu.a").is_file() {
        fail(&format!("{} has no libcriu.a", criu.lib.display()));
    }
    println!("cargo:rustc-link-search=native={}", criu.lib.display());
    println!("cargo:rustc-link-lib=static=criu");
    println!("cargo:rustc-link-lib=dylib=protobuf-c");
    println!(
        "cargo:rerun-if-changed={}",
        criu.include.join("criu.h").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        criu.lib.join("libcriu.a").display()
    );
    // For dependents (DEP_CRIU_PREFIX / DEP_CRIU_VERSION) and for criu-sys itself.
    println!("cargo:prefix={}", criu.prefix.display());
    println!("cargo:version={}", criu.version);
    println!("cargo:rustc-env=CRIU_SYS_PREFIX={}", criu.prefix.display());
    println!("cargo:rustc-env=CRIU_SYS_VERSION={}", criu.version);

    // --- bindgen over criu.h ---
    let bindings = bindgen::Builder::default()
        .header(criu.include.join("criu.h").display().to_string())
        .clang_arg(format!("-I{}", criu.include.display()))
        .allowlist_function("criu_.*")
        .allowlist_type("criu_.*")
        .allowlist_var("CRIU_.*")
        .allowlist_type("CriuReq|CriuResp|CriuNotify|CriuOpts")
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| {
            fail(&format!(
                "bindgen over criu.h failed: {e} (is libclang-dev installed?)"
            ))
        });
    bindings
        .write_to_file(out.join("criu_bindings.rs"))
        .unwrap_or_else(|e| fail(&format!("cannot write bindings: {e}")));

    // --- protobuf types from the installed .proto files ---
    let proto_out = out.join("protos");
    std::fs::create_dir_all(&proto_out)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", proto_out.display())));
    let inputs: Vec<PathBuf> = PROTOS
        .iter()
        .map(|p| criu.protos.join(format!("{p}.proto")))
        .collect();
    for p in &inputs {
        if !p.is_file() {
            fail(&format!("{} is missing", p.display()));
        }
        println!("cargo:rerun-if-changed={}", p.display());
    }
    protobuf_codegen::Codegen::new()
        .pure()
        .include(&criu.protos)
        .inputs(&inputs)
        .out_dir(&proto_out)
        .run()
        .unwrap_or_else(|e| fail(&format!("protobuf code generation failed: {e:#}")));
}
