// @generated from the pinned CRIU 4.2.1 (include/criu/version.h): do not edit.
// Regenerate: `cargo run -p criu-sys-codegen --bin regenerate` (needs the pinned CRIU from
// `vendor/criu.sh`, libclang and protoc). criu-sys-codegen's test checks it is current.

/// The version of the CRIU this crate's code was generated from.
pub const CRIU_VERSION: &str = "4.2.1";
