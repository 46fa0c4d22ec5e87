//! reel-core: checkpoint running containers with CRIU.
//!
//! The modules, one job each:
//! * [`criu`]: the CRIU driver. Speaks CRIU's RPC protocol to `criu swrk` (VERSION, CHECK,
//!   FEATURE_CHECK, DUMP, PRE_DUMP, RESTORE, page server) with a typed options builder.
//! * [`cgroups`]: freezing a container's cgroup (v1 `freezer.state`, v2 `cgroup.freeze`) behind
//!   one trait, as a guard that always thaws, with a watchdog for when reel itself is killed.
//! * [`lock`]: one reel at a time per container.
//! * [`discovery`]: the containers on this host, read from the runtimes' state on disk.
//! * [`archive`]: the checkpoint archive layout the ecosystem reads (checkpointctl, runc).
//! * [`store`]: the local checkpoint store (`<id>.tar` + `<id>.tar.sha256`).
//! * [`checkpoint`]: the runc-compatible dump of a container, tying the modules together.
//! * [`export`]: a checkpoint as one archive (plain or zstd) to a file, stdout or S3.
//! * [`rpc`]: gRPC to the runtimes' own APIs (containerd, the CRI), for the checkpoint methods.
//! * [`capabilities`]: whether checkpoints can work on this host, item by item.
//! * [`sandbox`]: a checkpoint restored as a live copy in a sealed sandbox.
//! * [`evidence`]: evidence taken out of a checkpoint: the rootfs diff, deleted files, memfds.
//!
//! Every module has its own error enum; [`Error`] rolls them up.

pub mod archive;
pub mod capabilities;
pub mod cgroups;
pub mod checkpoint;
pub mod criu;
pub mod discovery;
pub mod durable;
pub mod evidence;
pub mod export;
pub mod host;
pub mod inspect;
pub mod lock;
pub mod oci;
pub mod rpc;
pub mod sandbox;
pub mod signals;
pub mod store;

mod error;
pub use error::{Error, Result};

/// The raw layer, re-exported for callers that read CRIU images themselves.
pub use criu_sys;
