//! `reel inspect`: what a checkpointed container was doing, read straight from the checkpoint.
//!
//! * [`source`]: [`CheckpointSource`], the one place that opens a checkpoint (store `.tar`,
//!   exported `.tar.zst`, unpacked directory, other tools' archives) and reads its members,
//!   bounded, verified per member against the manifest, never extracting anything;
//! * [`zstd_seek`]: random access into reel's framed zstd exports through their seek table;
//! * [`pages`]: a process's memory through its pagemap ([`PageIndex`], [`ProcessMemory`]),
//!   argv and environment included, and with its shared memory ([`MemoryIndex`]);
//! * [`search`]: `reel search` (patterns, `--strings`) and `inspect --maps`.
//!
//! The CLI only renders what this module returns.

pub mod diff;
mod error;
mod load;
pub mod model;
pub mod names;
pub mod pages;
pub mod search;
pub mod source;
pub mod zstd_seek;

pub use diff::{diff, Change, Diff, DiffOptions};
pub use error::InspectError;
pub use load::{inspect, rootfs, InspectOptions, SENSITIVE_PATHS, SUSPICIOUS_COMMANDS};
pub use model::Inspection;
pub use pages::{
    args_env, ArgsEnv, MemoryIndex, PageIndex, PageRun, Piece, ProcessMemory, SharedMemory,
};
pub use search::{
    search, strings, Hit, Pattern, PatternKind, Place, RegionKind, SearchOptions, SearchResult,
    StringHit, StringsResult,
};
pub use source::{resolve, CheckpointSource, Layout, Member, SourceOptions, Verification};
