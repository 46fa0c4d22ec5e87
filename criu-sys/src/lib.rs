//! Raw bindings to the pinned CRIU, generated from it and committed (`src/generated/`), so a
//! build needs neither CRIU, libclang nor protoc.
//!
//! * [`proto`]: prost's types for every `.proto` file of the pinned CRIU: the RPC messages
//!   spoken with `criu swrk` (`CriuReq`, `CriuResp`, `CriuOpts`, ...) and every image message
//!   (`InventoryEntry`, `CoreEntry`, `PagemapEntry`, `FileEntry`, `StatsEntry`, ...). CRIU's
//!   `.proto` files declare no package, so they share one flat module; names are prost's
//!   (`file_entry` is `FileEntry`, enum values lose their enum's prefix: `fd_types.TIMERFD` is
//!   `FdTypes::Timerfd`). Proto2 `optional` fields are `Option`s (unset is absent on the wire),
//!   `required` ones plain values, enum fields `i32`s with typed accessors. One exception to
//!   CRIU's names: `opts.proto`'s `CRIU_Opts` (the options of CRIU's own `.proto` fields) is
//!   [`proto::CriuFieldOpts`], because prost would name it like `rpc.proto`'s `criu_opts`.
//! * `ffi` (feature `libcriu`): bindgen's bindings of libcriu's `criu.h` (`criu_local_*`,
//!   `criu_*`), with libcriu linked statically from the pinned CRIU so that an older system
//!   `libcriu.so` can never be loaded in its place. libcriu keeps its options in process
//!   globals and forks on its own.
//!
//! Regenerate with `cargo run -p criu-sys-codegen --bin regenerate`; the test of
//! `criu-sys-codegen` fails when what is committed is not what the pin generates.
//!
//! Nothing here is safe to use directly from several threads; `reel-core` is the safe layer.

include!("generated/version.rs");

/// Where the pinned CRIU is installed (`sbin/criu`, `lib/libcriu.a`, ...): `REEL_CRIU_PREFIX`
/// (or `CRIU_PREFIX`) when this crate was built, else `/opt/reel/criu`, where
/// `vendor/criu.sh` installs it.
pub const CRIU_PREFIX: &str = env!("CRIU_SYS_PREFIX");

/// bindgen output for `criu.h`.
#[cfg(feature = "libcriu")]
#[allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    clippy::all,
    missing_docs
)]
pub mod ffi {
    include!("generated/libcriu.rs");
}

/// Types generated with prost from CRIU's `.proto` files.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!("generated/proto.rs");
}

/// The prost runtime the [`proto`] types implement `prost::Message` of.
pub use prost;
