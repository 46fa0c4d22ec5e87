//! Raw bindings to the pinned CRIU.
//!
//! * [`ffi`]: bindgen's bindings of libcriu's `criu.h` (`criu_local_*`, `criu_*`). libcriu keeps
//!   its options in process globals and forks on its own; it is linked statically from the
//!   pinned CRIU so that an older system `libcriu.so` can never be loaded in its place.
//! * [`proto`]: Rust types generated with the `protobuf` crate from the `.proto` files of the
//!   pinned CRIU: the RPC messages (`rpc`) spoken with `criu swrk`, and the image messages
//!   (`stats`, `inventory`, `pstree`, `core`, `mm`, `pagemap`, `fdinfo`, `sk_inet`, ...).
//!
//! Nothing here is safe to use directly from several threads; `reel-core` is the safe layer.

/// The install prefix of the CRIU this crate was built against.
pub const CRIU_PREFIX: &str = env!("CRIU_SYS_PREFIX");
/// The version of the CRIU this crate was built against (e.g. `4.2.1`).
pub const CRIU_VERSION: &str = env!("CRIU_SYS_VERSION");

/// bindgen output for `criu.h`.
#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    clippy::all,
    missing_docs
)]
pub mod ffi {
    include!(concat!(env!("OUT_DIR"), "/criu_bindings.rs"));
}

/// Types generated from CRIU's `.proto` files.
#[allow(
    clippy::all,
    missing_docs,
    unused_imports,
    non_camel_case_types,
    non_snake_case
)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));
}

pub use protobuf;
