//! What a sandbox keeps on disk: `/run/reel/sandboxes/<name>/` (root-only) holds the request
//! (`request.json`, written by the reel that asked for it), the record (`state.json`, written
//! by the monitor, atomically replaced at every change) and the monitor's log. The record
//! names every resource as soon as it exists, so a teardown always knows what to remove.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SandboxError;
use crate::durable;
use crate::host;

/// `request.json`.
pub const REQUEST_FILE: &str = "request.json";
/// `state.json`.
pub const STATE_FILE: &str = "state.json";
/// The monitor's own log.
pub const MONITOR_LOG: &str = "monitor.log";

/// How the sandbox's network is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// `lo`, and a port-less device holding every address the checkpoint's sockets used, with
    /// a default route into it: sockets restore, every packet is dropped.
    #[default]
    Isolated,
    /// `lo` only; a checkpoint whose sockets need an address is refused.
    None,
}

/// What the reel that asked for a sandbox hands its monitor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub name: String,
    /// The archive (plain or zstd tar), never written to.
    pub archive: PathBuf,
    pub paused: bool,
    pub network: NetworkMode,
    /// Use this directory as the rootfs base instead of the recorded lower layers.
    pub rootfs_base: Option<PathBuf>,
    /// `--volume DEST=SRC`: copy SRC for the mount at DEST.
    pub volumes: Vec<(String, PathBuf)>,
    /// Memory limit in bytes (default: the original's).
    pub memory_limit: Option<u64>,
    /// CPU limit in CPUs (default: the original's).
    pub cpus: Option<f64>,
    /// The CRIU binary.
    pub criu: PathBuf,
    /// The sandbox's private data (images copy, rootfs layers, volume copies, logs).
    pub data_dir: PathBuf,
    /// Where the private copy of the images goes instead when it fits in memory: a directory
    /// to create on a tmpfs (no disk writes for bytes that live a few seconds).
    #[serde(default)]
    pub scratch_dir: Option<PathBuf>,
    /// The parent cgroup, relative to each hierarchy's root (`reel-sandboxes`).
    pub cgroup_parent: String,
    /// The reel that asks (it waits for the monitor's report).
    pub owner: Option<ProcRef>,
}

/// A process identified against pid reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcRef {
    pub pid: i32,
    /// `/proc/<pid>/stat` field 22.
    pub start_time: u64,
}

impl ProcRef {
    /// This process.
    pub fn me() -> Option<ProcRef> {
        ProcRef::of(std::process::id() as i32)
    }

    /// Process `pid` as it is now.
    pub fn of(pid: i32) -> Option<ProcRef> {
        let s = host::stat(Path::new(host::PROC), pid)?;
        Some(ProcRef {
            pid,
            start_time: s.starttime,
        })
    }

    /// Still the same process, and not a zombie.
    pub fn alive(&self) -> bool {
        host::stat(Path::new(host::PROC), self.pid)
            .is_some_and(|s| s.starttime == self.start_time && s.alive())
    }
}

/// Where a sandbox is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Being built; nothing runs yet.
    Creating,
    /// The restored processes run (or are stopped, with `--paused`).
    Running,
    /// The restored init ended on its own.
    Exited,
    /// Stopped with `reel stop sandbox`.
    Stopped,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Creating => "creating",
            Phase::Running => "running",
            Phase::Exited => "exited",
            Phase::Stopped => "stopped",
        }
    }
}

/// What a sandbox made, each recorded as soon as it exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// The private data directory.
    pub data_dir: Option<PathBuf>,
    /// The network namespace, by its name under `/run/netns`.
    pub netns: Option<String>,
    /// The cgroup directories, one per hierarchy.
    pub cgroups: Vec<PathBuf>,
    /// The private copy of the images when it is on a tmpfs (see [`Request::scratch_dir`]).
    #[serde(default)]
    pub scratch_dir: Option<PathBuf>,
}

/// One restored process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredProcess {
    /// Its pid on the host.
    pub pid: i32,
    /// Its pid when checkpointed (inside the container's pid namespace).
    pub checkpointed_pid: i32,
    pub command: String,
}

/// How the restored init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    #[serde(with = "crate::archive::rfc3339")]
    pub at: DateTime<Utc>,
}

/// The sandbox's network, as built.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub mode: NetworkMode,
    /// The device holding the addresses.
    pub device: Option<String>,
    pub addresses: Vec<IpAddr>,
}

/// A mount of the original and what the sandbox put there instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// The destination inside the container.
    pub destination: String,
    /// The private copy (or device node) mounted there.
    pub source: PathBuf,
    /// Where its content came from: the original source, a `--volume`, or nothing.
    pub from: String,
}

/// `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub checkpoint_id: Option<String>,
    pub archive: PathBuf,
    pub phase: Phase,
    #[serde(with = "crate::archive::rfc3339")]
    pub created: DateTime<Utc>,
    /// The monitor.
    pub monitor: Option<ProcRef>,
    /// The reel that asked for the sandbox, while it waits.
    pub owner: Option<ProcRef>,
    pub paused: bool,
    pub resources: Resources,
    /// The restored init's host pid.
    pub root_pid: Option<i32>,
    pub processes: Vec<RestoredProcess>,
    pub network: NetworkRecord,
    pub mounts: Vec<MountRecord>,
    /// The overlay's writable layer: every write of the sandbox lands here.
    pub upper_dir: Option<PathBuf>,
    pub exit: Option<ExitRecord>,
    /// Things the analyst should know (an empty volume, ...).
    pub warnings: Vec<String>,
    /// How long each step of building the sandbox took, in ms.
    #[serde(default)]
    pub steps_ms: std::collections::BTreeMap<String, u64>,
}

impl Record {
    pub fn new(req: &Request) -> Record {
        Record {
            name: req.name.clone(),
            checkpoint_id: None,
            archive: req.archive.clone(),
            phase: Phase::Creating,
            created: Utc::now(),
            monitor: None,
            owner: req.owner,
            paused: req.paused,
            resources: Resources::default(),
            root_pid: None,
            processes: Vec::new(),
            network: NetworkRecord::default(),
            mounts: Vec::new(),
            upper_dir: None,
            exit: None,
            warnings: Vec::new(),
            steps_ms: Default::default(),
        }
    }
}

/// Writes `value` as JSON to `path`, replacing it atomically (root-only).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), SandboxError> {
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| SandboxError::io("encoding", path, std::io::Error::other(e)))?;
    durable::replace_private(path, &bytes).map_err(|e| SandboxError::io("writing", path, e))
}

/// Reads JSON from `path` (bounded: these files are small).
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, SandboxError> {
    let bytes = fs::read(path).map_err(|e| SandboxError::io("reading", path, e))?;
    if bytes.len() > 16 << 20 {
        return Err(SandboxError::io(
            "reading",
            path,
            std::io::Error::other("larger than 16 MiB"),
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| SandboxError::io("decoding", path, std::io::Error::other(e)))
}
