//! Readers for what each runtime leaves on disk. Nothing here runs a runtime or talks to a
//! daemon: it reads files, and reports each unreadable entry as a problem of its own.
//!
//! The layouts (checked against runc 1.1, crun 1.8, containerd 1.6, Podman 4.3):
//!
//! * runc: `<root>/<id>/state.json` (`init_process_pid`, `init_process_start` in clock ticks,
//!   `created`, `config.rootfs`, `config.labels` = the spec's annotations as `key=value` plus
//!   `bundle=<dir>`, `cgroup_paths` per controller with `""` for cgroup2); `exec.fifo` exists
//!   while the container is created but not started. Roots: `/run/runc` (runc, Podman, CRI-O),
//!   `/run/containerd/runc/<namespace>` (containerd's runc shim).
//! * crun: `<root>/<id>/status` (`pid`, `process-start-time`, `cgroup-path`, `rootfs`
//!   (may be relative to the bundle), `bundle`, `created`), a copy of the spec in
//!   `<root>/<id>/config.json`, `exec.fifo` while created. Root: `/run/crun`.
//! * containerd (runtime v2): the bundle `/run/containerd/io.containerd.runtime.v2.task/<ns>/<id>/`
//!   with `config.json`, `init.pid`, `rootfs/` (the mounted snapshot), `options.json` (the
//!   shim's runc options: `binary_name`, `root`), `shim-binary-path`, `address`.
//! * containers/storage (Podman and CRI-O): `<runroot>/<driver>-containers/<id>/userdata/`
//!   (`/run/containers/storage/...`: `pidfile`, `conmon.pid`, for CRI-O also the bundle's
//!   `config.json`) and `<graphroot>/<driver>-containers/<id>/userdata/`
//!   (`/var/lib/containers/storage/...`: Podman's bundle `config.json`, CRI-O's `state.json`
//!   and a copy of `config.json`); `<graphroot>/<driver>-containers/containers.json` names
//!   each container and its image.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::error::DiscoveryError;
use super::OciRuntimeKind;

/// A state directory younger than this without its state file is a container being created,
/// not a problem.
const CREATING_GRACE: Duration = Duration::from_secs(10);

/// Collects the problems met while scanning.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<DiscoveryError>);

impl Problems {
    pub fn push(&mut self, e: DiscoveryError) {
        tracing::warn!("container discovery: skipping: {e}");
        self.0.push(e);
    }
}

fn is_young(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < CREATING_GRACE)
}

/// The entries of a directory that are directories; a missing directory has none.
fn subdirs(dir: &Path, problems: &mut Problems) -> Vec<(String, PathBuf)> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            problems.push(DiscoveryError::io(dir, e));
            return Vec::new();
        }
    };
    let mut out: Vec<(String, PathBuf)> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
        .collect();
    out.sort();
    out
}

/// Reads a file; `Ok(None)` when it does not exist.
fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, DiscoveryError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DiscoveryError::io(path, e)),
    }
}

fn parse_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    bytes: &[u8],
) -> Result<T, DiscoveryError> {
    serde_json::from_slice(bytes).map_err(|e| DiscoveryError::json(path, e))
}

pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A pid file: one decimal number, maybe with a newline.
fn read_pid(path: &Path) -> Result<Option<(i32, Option<SystemTime>)>, DiscoveryError> {
    let Some(bytes) = read_opt(path)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let pid: i32 = text
        .parse()
        .map_err(|_| DiscoveryError::invalid(path, format!("not a pid: {text:?}")))?;
    let mtime = fs::metadata(path).and_then(|m| m.modified()).ok();
    Ok(Some((pid, mtime)))
}

// ---------------------------------------------------------------------------------------------
// The OCI spec (config.json)
// ---------------------------------------------------------------------------------------------

pub(crate) use crate::oci::Spec;

pub(crate) fn read_spec(path: &Path) -> Result<Option<Spec>, DiscoveryError> {
    match read_opt(path)? {
        Some(b) => Spec::parse(&b)
            .map(Some)
            .map_err(|e| DiscoveryError::json(path, e)),
        None => Ok(None),
    }
}

// ---------------------------------------------------------------------------------------------
// Low-level runtimes: runc and crun state directories
// ---------------------------------------------------------------------------------------------

/// One container in a runc or crun state root.
#[derive(Debug, Clone)]
pub(crate) struct OciState {
    pub kind: OciRuntimeKind,
    /// The state root (`--root`).
    pub root: PathBuf,
    pub id: String,
    /// The file read (`state.json`, `status`).
    pub state_file: PathBuf,
    pub bundle: Option<PathBuf>,
    /// The rootfs, absolute when the runtime recorded it so.
    pub rootfs: Option<PathBuf>,
    pub pid: i32,
    /// The init's start time in clock ticks after boot, as the runtime recorded it.
    pub start_time: Option<u64>,
    pub created: Option<DateTime<Utc>>,
    /// `exec.fifo` exists: created, not started.
    pub created_not_started: bool,
    /// The annotations the runtime recorded (runc's labels).
    pub annotations: BTreeMap<String, String>,
    /// runc's absolute cgroup paths (controller, `""` for cgroup2).
    pub cgroup_paths: BTreeMap<String, PathBuf>,
    /// crun's cgroup path, relative to each hierarchy.
    pub cgroup_path: Option<String>,
    /// crun's copy of the spec.
    pub spec_copy: Option<PathBuf>,
    /// The containerd namespace, when the root is one of containerd's.
    pub containerd_namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RuncStateFile {
    id: String,
    init_process_pid: i32,
    #[serde(default)]
    init_process_start: serde_json::Value,
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    config: RuncConfig,
    #[serde(default)]
    cgroup_paths: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
struct RuncConfig {
    #[serde(default)]
    rootfs: Option<String>,
    #[serde(default)]
    labels: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct CrunStatusFile {
    pid: i32,
    #[serde(default, rename = "process-start-time")]
    process_start_time: Option<u64>,
    #[serde(default, rename = "cgroup-path")]
    cgroup_path: Option<String>,
    #[serde(default)]
    rootfs: Option<String>,
    #[serde(default)]
    bundle: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

fn number(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Reads one state directory `<root>/<id>`, whichever of runc or crun wrote it.
fn read_oci_dir(
    root: &Path,
    id: &str,
    dir: &Path,
    containerd_namespace: Option<&str>,
) -> Result<Option<OciState>, DiscoveryError> {
    let fifo = dir.join("exec.fifo").exists();
    let runc_file = dir.join("state.json");
    if let Some(bytes) = read_opt(&runc_file)? {
        let st: RuncStateFile = parse_json(&runc_file, &bytes)?;
        if st.id != id {
            return Err(DiscoveryError::invalid(
                &runc_file,
                format!("holds container {:?}, not {id:?}", st.id),
            ));
        }
        let mut annotations = BTreeMap::new();
        let mut bundle = None;
        for l in st.config.labels.unwrap_or_default() {
            if let Some((k, v)) = l.split_once('=') {
                if k == "bundle" {
                    bundle = Some(PathBuf::from(v));
                } else {
                    annotations.insert(k.to_string(), v.to_string());
                }
            }
        }
        return Ok(Some(OciState {
            kind: OciRuntimeKind::Runc,
            root: root.to_path_buf(),
            id: id.to_string(),
            state_file: runc_file,
            bundle,
            rootfs: st
                .config
                .rootfs
                .filter(|r| !r.is_empty())
                .map(PathBuf::from),
            pid: st.init_process_pid,
            start_time: number(&st.init_process_start),
            created: st.created.as_deref().and_then(parse_time),
            created_not_started: fifo,
            annotations,
            cgroup_paths: st
                .cgroup_paths
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, PathBuf::from(v)))
                .collect(),
            cgroup_path: None,
            spec_copy: None,
            containerd_namespace: containerd_namespace.map(str::to_string),
        }));
    }
    let crun_file = dir.join("status");
    if let Some(bytes) = read_opt(&crun_file)? {
        let st: CrunStatusFile = parse_json(&crun_file, &bytes)?;
        let bundle = st.bundle.filter(|b| !b.is_empty()).map(PathBuf::from);
        let rootfs = st.rootfs.filter(|r| !r.is_empty()).map(|r| {
            let r = PathBuf::from(r);
            match (&bundle, r.is_absolute()) {
                (Some(b), false) => b.join(r),
                _ => r,
            }
        });
        let spec_copy = dir.join("config.json");
        let annotations = match read_spec(&spec_copy) {
            Ok(Some(spec)) => spec.annotations,
            _ => BTreeMap::new(),
        };
        return Ok(Some(OciState {
            kind: OciRuntimeKind::Crun,
            root: root.to_path_buf(),
            id: id.to_string(),
            state_file: crun_file,
            bundle,
            rootfs,
            pid: st.pid,
            start_time: st.process_start_time,
            created: st.created.as_deref().and_then(parse_time),
            created_not_started: fifo,
            annotations,
            cgroup_paths: BTreeMap::new(),
            cgroup_path: st.cgroup_path.filter(|p| !p.is_empty()),
            spec_copy: spec_copy.is_file().then_some(spec_copy),
            containerd_namespace: containerd_namespace.map(str::to_string),
        }));
    }
    if is_young(dir) || !dir.exists() {
        return Ok(None);
    }
    Err(DiscoveryError::invalid(
        dir,
        "neither runc's state.json nor crun's status in this state directory",
    ))
}

/// Every container of one runc/crun state root.
pub(crate) fn scan_oci_root(
    root: &Path,
    containerd_namespace: Option<&str>,
    problems: &mut Problems,
) -> Vec<OciState> {
    let mut out = Vec::new();
    for (id, dir) in subdirs(root, problems) {
        match read_oci_dir(root, &id, &dir, containerd_namespace) {
            Ok(Some(st)) => out.push(st),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    out
}

/// containerd's runc roots: `<base>/<namespace>/<id>`.
pub(crate) fn scan_containerd_runc_base(base: &Path, problems: &mut Problems) -> Vec<OciState> {
    let mut out = Vec::new();
    for (ns, dir) in subdirs(base, problems) {
        out.extend(scan_oci_root(&dir, Some(&ns), problems));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// containerd task bundles
// ---------------------------------------------------------------------------------------------

/// One containerd (runtime v2) task bundle.
#[derive(Debug, Clone)]
pub(crate) struct TaskDir {
    pub namespace: String,
    pub id: String,
    pub bundle: PathBuf,
    pub spec: Spec,
    pub pid: Option<(i32, Option<SystemTime>)>,
    /// The shim's runc options: binary name and runc root base, when set.
    pub binary_name: Option<String>,
    pub runc_root_base: Option<PathBuf>,
}

fn read_task_dir(ns: &str, id: &str, dir: &Path) -> Result<Option<TaskDir>, DiscoveryError> {
    let config = dir.join("config.json");
    let Some(spec) = read_spec(&config)? else {
        if is_young(dir) || !dir.exists() {
            return Ok(None);
        }
        return Err(DiscoveryError::invalid(
            dir,
            "task bundle without config.json",
        ));
    };
    let pid = read_pid(&dir.join("init.pid"))?;
    let mut binary_name = None;
    let mut runc_root_base = None;
    let options = dir.join("options.json");
    if let Some(bytes) = read_opt(&options)? {
        let v: serde_json::Value = parse_json(&options, &bytes)?;
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        binary_name = get(&["binary_name", "BinaryName", "binaryName"]);
        runc_root_base = get(&["root", "Root"]).map(PathBuf::from);
    }
    Ok(Some(TaskDir {
        namespace: ns.to_string(),
        id: id.to_string(),
        bundle: dir.to_path_buf(),
        spec,
        pid,
        binary_name,
        runc_root_base,
    }))
}

/// Every task bundle under `<base>/<namespace>/<id>`.
pub(crate) fn scan_containerd_tasks(base: &Path, problems: &mut Problems) -> Vec<TaskDir> {
    let mut out = Vec::new();
    for (ns, ns_dir) in subdirs(base, problems) {
        for (id, dir) in subdirs(&ns_dir, problems) {
            match read_task_dir(&ns, &id, &dir) {
                Ok(Some(t)) => out.push(t),
                Ok(None) => {}
                Err(e) => problems.push(e),
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// containers/storage: Podman and CRI-O
// ---------------------------------------------------------------------------------------------

/// One container of containers/storage with a spec (Podman or CRI-O).
#[derive(Debug, Clone)]
pub(crate) struct StorageContainer {
    pub id: String,
    /// The bundle: the `userdata` dir holding the `config.json` read (the run dir first).
    pub bundle: PathBuf,
    pub spec_path: PathBuf,
    pub spec: Spec,
    /// Both `userdata` dirs that exist.
    pub userdata: Vec<PathBuf>,
    pub pid: Option<(i32, Option<SystemTime>)>,
    /// CRI-O's `state.json`.
    pub crio_state: Option<CrioState>,
    /// From `containers.json`.
    pub names: Vec<String>,
    pub image_name: Option<String>,
    pub created: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct CrioState {
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub pid: Option<i32>,
    #[serde(default, rename = "initPid")]
    pub init_pid: Option<i32>,
    /// Seconds: the ctime of `/proc/<pid>` when CRI-O recorded it.
    #[serde(default, rename = "initStartTime")]
    pub init_start_time: Option<i64>,
    #[serde(default)]
    pub created: Option<String>,
}

/// One record of `containers.json`.
#[derive(Debug, Clone, Default, Deserialize)]
struct StorageRecord {
    id: String,
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    metadata: Option<String>,
    #[serde(default)]
    created: Option<String>,
}

/// `<dir>/*-containers` (one per storage driver: overlay, vfs, btrfs...).
fn driver_dirs(storage_root: &Path, problems: &mut Problems) -> Vec<PathBuf> {
    subdirs(storage_root, problems)
        .into_iter()
        .filter(|(n, _)| n.ends_with("-containers"))
        .map(|(_, p)| p)
        .collect()
}

fn read_storage_records(
    driver_dir: &Path,
    records: &mut BTreeMap<String, StorageRecord>,
    problems: &mut Problems,
) {
    for name in ["containers.json", "volatile-containers.json"] {
        let path = driver_dir.join(name);
        match read_opt(&path) {
            Ok(Some(bytes)) => match parse_json::<Vec<StorageRecord>>(&path, &bytes) {
                Ok(list) => {
                    for r in list {
                        records.insert(r.id.clone(), r);
                    }
                }
                Err(e) => problems.push(e),
            },
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
}

/// Every container with a spec in containers/storage: `run_roots` (`/run/containers/storage`)
/// and `graph_roots` (`/var/lib/containers/storage`).
pub(crate) fn scan_storage(
    run_roots: &[PathBuf],
    graph_roots: &[PathBuf],
    problems: &mut Problems,
) -> Vec<StorageContainer> {
    // id -> (run userdata dirs, graph userdata dirs)
    let mut dirs: BTreeMap<String, (Vec<PathBuf>, Vec<PathBuf>)> = BTreeMap::new();
    let mut records = BTreeMap::new();
    for (roots, is_run) in [(run_roots, true), (graph_roots, false)] {
        for root in roots {
            for driver_dir in driver_dirs(root, problems) {
                read_storage_records(&driver_dir, &mut records, problems);
                for (id, dir) in subdirs(&driver_dir, problems) {
                    let userdata = dir.join("userdata");
                    if !userdata.is_dir() {
                        continue;
                    }
                    let e = dirs.entry(id).or_default();
                    if is_run {
                        e.0.push(userdata);
                    } else {
                        e.1.push(userdata);
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    for (id, (run, graph)) in dirs {
        match read_storage_container(&id, &run, &graph, records.get(&id)) {
            Ok(Some(c)) => out.push(c),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
    }
    out
}

fn read_storage_container(
    id: &str,
    run: &[PathBuf],
    graph: &[PathBuf],
    record: Option<&StorageRecord>,
) -> Result<Option<StorageContainer>, DiscoveryError> {
    // The bundle: CRI-O's is the run dir, Podman's the graph dir.
    let mut found = None;
    for dir in run.iter().chain(graph) {
        let p = dir.join("config.json");
        if let Some(spec) = read_spec(&p)? {
            found = Some((dir.clone(), p, spec));
            break;
        }
    }
    // No spec: a storage-only container (buildah, or not created yet): not a container.
    let Some((bundle, spec_path, spec)) = found else {
        return Ok(None);
    };
    let mut pid = None;
    for dir in run.iter().chain(graph) {
        if let Some(p) = read_pid(&dir.join("pidfile"))? {
            pid = Some(p);
            break;
        }
    }
    let mut crio_state = None;
    for dir in graph.iter().chain(run) {
        let p = dir.join("state.json");
        if let Some(bytes) = read_opt(&p)? {
            crio_state = Some(parse_json::<CrioState>(&p, &bytes)?);
            break;
        }
    }
    let meta: Option<serde_json::Value> = record
        .and_then(|r| r.metadata.as_deref())
        .and_then(|m| serde_json::from_str(m).ok());
    let image_name = meta
        .as_ref()
        .and_then(|m| m.get("image-name"))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let mut names = record.and_then(|r| r.names.clone()).unwrap_or_default();
    if let Some(n) = meta
        .as_ref()
        .and_then(|m| m.get("name"))
        .and_then(|v| v.as_str())
    {
        if !names.iter().any(|x| x == n) {
            names.push(n.to_string());
        }
    }
    Ok(Some(StorageContainer {
        id: id.to_string(),
        bundle,
        spec_path,
        spec,
        userdata: run.iter().chain(graph).cloned().collect(),
        pid,
        crio_state,
        names,
        image_name,
        created: record
            .and_then(|r| r.created.as_deref())
            .and_then(parse_time),
    }))
}
