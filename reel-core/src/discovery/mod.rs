//! The containers on this host, read from what the runtimes leave on disk.
//!
//! No runtime is run and no daemon is asked: discovery reads runc's and crun's state roots,
//! containerd's task bundles, containers/storage (Podman, CRI-O) and `/proc`, merges what
//! several of them say about the same container (containerd's task bundle and the runc state
//! of its shim; Podman's bundle and the runc state of its conmon), and names each container
//! by namespace/pod/container:
//!
//! * containerd CRI: annotations `io.kubernetes.cri.sandbox-namespace`, `...sandbox-name`,
//!   `...container-name`; CRI-O: `io.kubernetes.pod.namespace`, `io.kubernetes.pod.name`,
//!   `io.kubernetes.container.name`.
//! * A container no pod owns is in the namespace named after its runtime (`runc`, `crun`,
//!   `podman`, `containerd`, `cri-o`), with its own name (Podman's name, or its id) as pod
//!   and container name.
//!
//! Pod sandboxes (`io.kubernetes.cri.container-type: sandbox`,
//! `io.kubernetes.cri-o.ContainerType: sandbox`) are not workloads: they are left out unless
//! [`DiscoveryConfig::include_sandboxes`] is set, and flagged [`Container::sandbox`].
//!
//! A state entry that cannot be read does not fail the listing: it is skipped, logged with
//! `tracing::warn!` and kept in [`Discovery::problems`].
//!
//! ```no_run
//! use reel_core::discovery::{discover, DiscoveryConfig};
//! let found = discover(&DiscoveryConfig::default())?;
//! let c = found.find("default", "web-0", Some("nginx"))?;
//! println!("{} pid {:?} in {:?}", c.id, c.pid, c.cgroups.freezer_dir());
//! # Ok::<(), reel_core::discovery::DiscoveryError>(())
//! ```

mod error;
mod host;
mod scan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};

use crate::cgroups::{CgroupKind, Hierarchies};
use crate::host as procfs_host;
pub use error::DiscoveryError;
use scan::{OciState, Problems, Spec, StorageContainer, TaskDir};

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// Where the runtimes keep their state. [`Default`] is the usual paths of a root install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roots {
    /// runc state roots (`<root>/<id>/state.json`): `/run/runc` (runc, Podman, CRI-O).
    pub runc: Vec<PathBuf>,
    /// crun state roots (`<root>/<id>/status`): `/run/crun`.
    pub crun: Vec<PathBuf>,
    /// containerd's runc roots, one subdirectory per namespace: `/run/containerd/runc`.
    pub containerd_runc: Vec<PathBuf>,
    /// containerd's task bundles (`<dir>/<ns>/<id>/`):
    /// `/run/containerd/io.containerd.runtime.v2.task`.
    pub containerd_tasks: Vec<PathBuf>,
    /// containers/storage run roots: `/run/containers/storage`.
    pub storage_run: Vec<PathBuf>,
    /// containers/storage graph roots: `/var/lib/containers/storage`.
    pub storage: Vec<PathBuf>,
}

impl Default for Roots {
    fn default() -> Self {
        Roots {
            runc: vec!["/run/runc".into()],
            crun: vec!["/run/crun".into()],
            containerd_runc: vec!["/run/containerd/runc".into()],
            containerd_tasks: vec!["/run/containerd/io.containerd.runtime.v2.task".into()],
            storage_run: vec!["/run/containers/storage".into()],
            storage: vec!["/var/lib/containers/storage".into()],
        }
    }
}

impl Roots {
    /// No roots at all (fill in only what a test needs).
    pub fn none() -> Self {
        Roots {
            runc: Vec::new(),
            crun: Vec::new(),
            containerd_runc: Vec::new(),
            containerd_tasks: Vec::new(),
            storage_run: Vec::new(),
            storage: Vec::new(),
        }
    }
}

/// What [`discover`] reads and lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    pub roots: Roots,
    /// List pod sandboxes too (flagged [`Container::sandbox`]). Default: no.
    pub include_sandboxes: bool,
    /// Where procfs is mounted (default `/proc`).
    pub proc_root: PathBuf,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            roots: Roots::default(),
            include_sandboxes: false,
            proc_root: PathBuf::from("/proc"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What is found
// ---------------------------------------------------------------------------------------------

/// Who manages a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Runtime {
    /// runc run directly.
    #[serde(rename = "runc")]
    Runc,
    /// crun run directly.
    #[serde(rename = "crun")]
    Crun,
    #[serde(rename = "containerd")]
    Containerd,
    #[serde(rename = "cri-o")]
    CriO,
    #[serde(rename = "podman")]
    Podman,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Runc => "runc",
            Runtime::Crun => "crun",
            Runtime::Containerd => "containerd",
            Runtime::CriO => "cri-o",
            Runtime::Podman => "podman",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The low-level OCI runtimes whose state discovery reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OciRuntimeKind {
    Runc,
    Crun,
}

impl OciRuntimeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OciRuntimeKind::Runc => "runc",
            OciRuntimeKind::Crun => "crun",
        }
    }
}

impl fmt::Display for OciRuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The low-level runtime that runs a container, as a restore must call it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OciRuntime {
    pub kind: OciRuntimeKind,
    /// The binary: an absolute path when found on `PATH`, else its name.
    pub binary: PathBuf,
    /// Its state root (`--root`), e.g. `/run/runc`, `/run/containerd/runc/k8s.io`.
    pub root: PathBuf,
    /// Whether the container's state was found in that root (false: the root is the
    /// manager's default and the container has no state there, e.g. it has exited).
    pub state_found: bool,
}

/// A container's state, as `runc state` would say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Created, its process not started yet.
    Created,
    Running,
    /// Its cgroup is frozen.
    Paused,
    /// Its init has exited (or its pid now belongs to another process).
    Stopped,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Created => "created",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped => "stopped",
        }
    }

    /// Running or paused: there are processes to checkpoint.
    pub fn is_alive(self) -> bool {
        matches!(self, State::Running | State::Paused)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the init pid was checked against PID reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PidCheck {
    /// The process's start time equals the one the runtime recorded (runc, crun).
    StartTime,
    /// CRI-O's recorded start (the ctime of `/proc/<pid>`) matches.
    ProcCtime,
    /// The process started before the runtime wrote its pid file (containerd, Podman).
    PidFileAge,
}

/// A container's cgroups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cgroups {
    /// The v1 freezer cgroup directory, e.g. `/sys/fs/cgroup/freezer/k8s.io/<id>`.
    pub freezer: Option<PathBuf>,
    /// The v1 memory cgroup directory.
    pub memory: Option<PathBuf>,
    /// The cgroup2 directory, e.g. `/sys/fs/cgroup/unified/k8s.io/<id>` (hybrid) or
    /// `/sys/fs/cgroup/kubepods/...` (pure v2).
    pub unified: Option<PathBuf>,
    /// Every hierarchy, as in `/proc/<pid>/cgroup`: controllers (`""` for cgroup2) to path.
    pub paths: BTreeMap<String, String>,
}

impl Cgroups {
    /// The directory to freeze: the v1 freezer when there is one, else the cgroup2 directory.
    pub fn freezer_dir(&self) -> Option<&Path> {
        self.freezer.as_deref().or(self.unified.as_deref())
    }
}

/// Why a container cannot be checkpointed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Blocker {
    /// It is not running (created, or exited).
    NotRunning { state: State },
    /// It is a pod sandbox, not a workload.
    Sandbox,
    /// It holds a device node CRIU cannot dump (a GPU, an accelerator...).
    Device { path: String },
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Blocker::NotRunning {
                state: State::Stopped,
            } => f.write_str("it has exited"),
            Blocker::NotRunning { state } => write!(f, "it is {state}, not running"),
            Blocker::Sandbox => f.write_str("it is a pod sandbox, not a workload"),
            Blocker::Device { path } => {
                write!(f, "it holds device {path}, which CRIU cannot checkpoint")
            }
        }
    }
}

/// One container on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// Kubernetes namespace, or the runtime's name for a container no pod owns.
    pub namespace: String,
    /// Pod name, or the container's own name.
    pub pod: String,
    /// Container name within the pod.
    pub name: String,
    /// The container id (as its runtime knows it).
    pub id: String,
    /// Who manages it.
    pub runtime: Runtime,
    /// The containerd namespace (`k8s.io`, `default`...), for containerd's containers.
    pub runtime_namespace: Option<String>,
    /// The low-level runtime and its root, when known.
    pub oci_runtime: Option<OciRuntime>,
    /// The OCI bundle directory.
    pub bundle: PathBuf,
    /// The runtime spec (`config.json`).
    pub spec_path: PathBuf,
    /// The root filesystem on the host (absolute).
    pub rootfs: PathBuf,
    /// The init's host PID, when the container has a live one.
    pub pid: Option<i32>,
    /// The init's start time, clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub pid_start_time: Option<u64>,
    /// How `pid` was checked against reuse.
    pub pid_check: Option<PidCheck>,
    pub state: State,
    pub cgroups: Cgroups,
    /// Memory in use: the memory cgroup's usage, else the sum of its processes' RSS.
    pub memory_bytes: Option<u64>,
    /// The overlay upper dir (the container's writable layer), when the rootfs is an overlay.
    pub upper_dir: Option<PathBuf>,
    /// The image, when the runtime recorded it.
    pub image: Option<String>,
    pub created: Option<DateTime<Utc>>,
    /// A pod sandbox (pause / infra container).
    pub sandbox: bool,
    /// Whether reel can checkpoint it now (no [`Container::blockers`]).
    pub checkpointable: bool,
    /// Why not.
    pub blockers: Vec<Blocker>,
    /// The spec's annotations.
    pub annotations: BTreeMap<String, String>,
    /// The state files this entry was built from.
    pub sources: Vec<PathBuf>,
}

/// A state entry discovery skipped.
#[derive(Debug)]
pub struct Problem {
    /// The file or directory that could not be used.
    pub path: PathBuf,
    pub error: DiscoveryError,
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Problem", 2)?;
        st.serialize_field("path", &self.path)?;
        st.serialize_field("error", &self.error.to_string())?;
        st.end()
    }
}

/// Everything [`discover`] found.
#[derive(Debug, Default, Serialize)]
pub struct Discovery {
    /// Sorted by namespace, pod, container name, id.
    pub containers: Vec<Container>,
    pub problems: Vec<Problem>,
}

// ---------------------------------------------------------------------------------------------
// discover
// ---------------------------------------------------------------------------------------------

/// Lists the containers on this host. Fails only when nothing at all can be read (every
/// configured root exists but is unreadable); a broken entry becomes a [`Problem`].
pub fn discover(cfg: &DiscoveryConfig) -> Result<Discovery, DiscoveryError> {
    let mut problems = Problems::default();
    let roots = &cfg.roots;

    // Low-level state, each root once.
    let mut seen_roots = BTreeSet::new();
    let mut oci: Vec<OciState> = Vec::new();
    for root in roots.runc.iter().chain(&roots.crun) {
        if seen_roots.insert(canonical(root)) {
            oci.extend(scan::scan_oci_root(root, None, &mut problems));
        }
    }
    for base in &roots.containerd_runc {
        if seen_roots.insert(canonical(base)) {
            oci.extend(scan::scan_containerd_runc_base(base, &mut problems));
        }
    }
    let mut tasks: Vec<TaskDir> = Vec::new();
    for base in &roots.containerd_tasks {
        tasks.extend(scan::scan_containerd_tasks(base, &mut problems));
    }
    let storage = scan::scan_storage(&roots.storage_run, &roots.storage, &mut problems);

    let all_unreadable = !problems.0.is_empty()
        && oci.is_empty()
        && tasks.is_empty()
        && storage.is_empty()
        && problems
            .0
            .iter()
            .all(|p| matches!(p, DiscoveryError::Io { .. }));
    if all_unreadable {
        let first = problems.0.remove(0);
        return Err(first);
    }

    let ctx = HostContext::new(&cfg.proc_root, &roots.containerd_runc);
    let mut found = Vec::new();
    for entry in merge(tasks, storage, oci) {
        match ctx.assemble(entry) {
            Ok(c) => found.push(c),
            Err(e) => problems.push(e),
        }
    }
    if !cfg.include_sandboxes {
        found.retain(|c| !c.sandbox);
    }
    found.sort_by(|a, b| {
        (&a.namespace, &a.pod, &a.name, &a.id).cmp(&(&b.namespace, &b.pod, &b.name, &b.id))
    });
    Ok(Discovery {
        containers: found,
        problems: problems
            .0
            .into_iter()
            .map(|error| Problem {
                path: error_path(&error),
                error,
            })
            .collect(),
    })
}

fn error_path(e: &DiscoveryError) -> PathBuf {
    match e {
        DiscoveryError::Io { path, .. }
        | DiscoveryError::Json { path, .. }
        | DiscoveryError::Invalid { path, .. } => path.clone(),
        _ => PathBuf::new(),
    }
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Who manages one merged entry.
#[derive(Debug)]
enum Manager {
    Containerd(TaskDir),
    Storage(StorageContainer),
    None,
}

/// The records about one container.
#[derive(Debug)]
struct Entry {
    manager: Manager,
    oci: Option<OciState>,
}

/// Pairs each low-level state with the task bundle or storage container it belongs to:
/// same bundle directory, else same containerd namespace and id, else same storage id.
fn merge(tasks: Vec<TaskDir>, storage: Vec<StorageContainer>, oci: Vec<OciState>) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut by_bundle: HashMap<PathBuf, usize> = HashMap::new();
    let mut by_task: HashMap<(String, String), usize> = HashMap::new();
    let mut by_storage_id: HashMap<String, usize> = HashMap::new();
    for t in tasks {
        let i = entries.len();
        by_bundle.insert(canonical(&t.bundle), i);
        by_task.insert((t.namespace.clone(), t.id.clone()), i);
        entries.push(Entry {
            manager: Manager::Containerd(t),
            oci: None,
        });
    }
    for s in storage {
        let i = entries.len();
        for d in &s.userdata {
            by_bundle.insert(canonical(d), i);
        }
        by_storage_id.insert(s.id.clone(), i);
        entries.push(Entry {
            manager: Manager::Storage(s),
            oci: None,
        });
    }
    for st in oci {
        let target = st
            .bundle
            .as_ref()
            .and_then(|b| by_bundle.get(&canonical(b)).copied())
            .or_else(|| {
                st.containerd_namespace
                    .as_ref()
                    .and_then(|ns| by_task.get(&(ns.clone(), st.id.clone())).copied())
            })
            .or_else(|| {
                // Only a state without a bundle of its own may join a storage container by id.
                st.bundle
                    .is_none()
                    .then(|| by_storage_id.get(&st.id).copied())
                    .flatten()
            })
            .filter(|i| entries[*i].oci.is_none());
        match target {
            Some(i) => entries[i].oci = Some(st),
            None => entries.push(Entry {
                manager: Manager::None,
                oci: Some(st),
            }),
        }
    }
    entries
}

// ---------------------------------------------------------------------------------------------
// Assembling one container
// ---------------------------------------------------------------------------------------------

/// The host facts shared by every container.
struct HostContext {
    proc_root: PathBuf,
    cgroup_mounts: Hierarchies,
    host_mounts: Vec<procfs_host::Mount>,
    containerd_runc_base: PathBuf,
}

/// The device nodes every runtime gives a container; anything else in `linux.devices` is a
/// device CRIU cannot restore on another host.
const DEFAULT_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
    "/dev/pts/ptmx",
];

/// Device nodes that mark an accelerator, also when bind-mounted instead of declared.
const ACCELERATOR_PREFIXES: &[&str] = &[
    "/dev/nvidia",
    "/dev/dri",
    "/dev/kfd",
    "/dev/accel",
    "/dev/vfio",
    "/dev/infiniband",
    "/dev/neuron",
    "/dev/habanalabs",
];

fn is_accelerator(path: &str) -> bool {
    ACCELERATOR_PREFIXES.iter().any(|p| path.starts_with(p))
}

/// Finds a runtime binary on `PATH` (and the usual sbin dirs) without running it; its bare
/// name when it is nowhere.
fn resolve_binary(name: &str) -> PathBuf {
    procfs_host::which(name).unwrap_or_else(|| PathBuf::from(name))
}

/// What the CRI annotations say about a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct CriNames {
    namespace: Option<String>,
    pod: Option<String>,
    container: Option<String>,
    sandbox: bool,
}

/// Names from the CRI annotations of containerd or CRI-O; `None` when there are none.
fn cri_names(a: &BTreeMap<String, String>) -> Option<CriNames> {
    let get = |k: &str| a.get(k).filter(|v| !v.is_empty()).cloned();
    // containerd's CRI plugin.
    if let Some(kind) = get("io.kubernetes.cri.container-type") {
        return Some(CriNames {
            namespace: get("io.kubernetes.cri.sandbox-namespace"),
            pod: get("io.kubernetes.cri.sandbox-name"),
            container: get("io.kubernetes.cri.container-name"),
            sandbox: kind == "sandbox",
        });
    }
    // CRI-O: the labels kubelet sets, as annotations or inside io.kubernetes.cri-o.Labels.
    let crio_kind = get("io.kubernetes.cri-o.ContainerType");
    let labels: BTreeMap<String, String> = get("io.kubernetes.cri-o.Labels")
        .and_then(|l| serde_json::from_str(&l).ok())
        .unwrap_or_default();
    let label = |k: &str| get(k).or_else(|| labels.get(k).filter(|v| !v.is_empty()).cloned());
    let ns = label("io.kubernetes.pod.namespace");
    let pod = label("io.kubernetes.pod.name");
    if crio_kind.is_none() && ns.is_none() && pod.is_none() {
        return None;
    }
    let sandbox = crio_kind.as_deref() == Some("sandbox");
    let name = label("io.kubernetes.container.name").or_else(|| {
        get("io.kubernetes.cri-o.Metadata")
            .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
            .and_then(|m| m.get("name")?.as_str().map(str::to_string))
    });
    Some(CriNames {
        namespace: ns,
        pod,
        container: name,
        sandbox,
    })
}

impl HostContext {
    fn new(proc_root: &Path, containerd_runc: &[PathBuf]) -> Self {
        let host_mounts =
            procfs_host::mountinfo_file(&proc_root.join("self/mountinfo")).unwrap_or_default();
        HostContext {
            proc_root: proc_root.to_path_buf(),
            cgroup_mounts: Hierarchies::from_mounts(&host_mounts),
            host_mounts,
            containerd_runc_base: containerd_runc
                .first()
                .cloned()
                .unwrap_or_else(|| PathBuf::from("/run/containerd/runc")),
        }
    }

    fn assemble(&self, e: Entry) -> Result<Container, DiscoveryError> {
        let Entry { manager, oci } = e;
        let mut sources = Vec::new();
        if let Some(o) = &oci {
            sources.push(o.state_file.clone());
        }

        // Bundle, spec, id.
        let (bundle, spec_path, spec, id) = match &manager {
            Manager::Containerd(t) => {
                sources.push(t.bundle.clone());
                (
                    t.bundle.clone(),
                    t.bundle.join("config.json"),
                    t.spec.clone(),
                    t.id.clone(),
                )
            }
            Manager::Storage(s) => {
                sources.push(s.spec_path.clone());
                (
                    s.bundle.clone(),
                    s.spec_path.clone(),
                    s.spec.clone(),
                    s.id.clone(),
                )
            }
            Manager::None => {
                let o = oci.as_ref().expect("an entry without manager has a state");
                let bundle = o
                    .bundle
                    .clone()
                    .filter(|b| b.is_absolute())
                    .unwrap_or_default();
                let in_bundle =
                    (!bundle.as_os_str().is_empty()).then(|| bundle.join("config.json"));
                // The bundle's spec, else crun's copy; the bundle may be gone while the
                // container runs, and the state still says everything discovery needs.
                let spec_path = in_bundle
                    .iter()
                    .chain(&o.spec_copy)
                    .find(|p| p.is_file())
                    .or(in_bundle.as_ref())
                    .cloned()
                    .unwrap_or_default();
                let spec = if spec_path.is_absolute() {
                    scan::read_spec(&spec_path)?.unwrap_or_default()
                } else {
                    Spec::default()
                };
                (bundle, spec_path, spec, o.id.clone())
            }
        };
        let mut annotations = spec.annotations.clone();
        if let Some(o) = &oci {
            for (k, v) in &o.annotations {
                annotations.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }

        // Runtime.
        let manager_annotation = annotations.get("io.container.manager").map(String::as_str);
        let runtime = match &manager {
            Manager::Containerd(_) => Runtime::Containerd,
            Manager::Storage(_) => match manager_annotation {
                Some("cri-o") => Runtime::CriO,
                Some("libpod") => Runtime::Podman,
                _ if annotations.contains_key("io.kubernetes.cri-o.ContainerType") => Runtime::CriO,
                _ => Runtime::Podman,
            },
            Manager::None => match oci.as_ref().map(|o| o.kind) {
                Some(OciRuntimeKind::Crun) => Runtime::Crun,
                _ => Runtime::Runc,
            },
        };
        let runtime_namespace = match &manager {
            Manager::Containerd(t) => Some(t.namespace.clone()),
            _ => None,
        };

        // The low-level runtime.
        let oci_runtime = match (&oci, &manager) {
            (Some(o), Manager::Containerd(t)) => Some(OciRuntime {
                kind: o.kind,
                binary: resolve_binary(t.binary_name.as_deref().unwrap_or(o.kind.as_str())),
                root: o.root.clone(),
                state_found: true,
            }),
            (Some(o), _) => Some(OciRuntime {
                kind: o.kind,
                binary: resolve_binary(o.kind.as_str()),
                root: o.root.clone(),
                state_found: true,
            }),
            (None, Manager::Containerd(t)) => {
                let binary = t.binary_name.clone().unwrap_or_else(|| "runc".into());
                let kind = if binary.ends_with("crun") {
                    OciRuntimeKind::Crun
                } else {
                    OciRuntimeKind::Runc
                };
                let base = t
                    .runc_root_base
                    .clone()
                    .unwrap_or_else(|| self.containerd_runc_base.clone());
                Some(OciRuntime {
                    kind,
                    binary: resolve_binary(&binary),
                    root: base.join(&t.namespace),
                    state_found: false,
                })
            }
            (None, _) => None,
        };

        // Names.
        let own_name = match &manager {
            Manager::Storage(s) => s.names.first().cloned().unwrap_or_else(|| id.clone()),
            _ => id.clone(),
        };
        let (namespace, pod, name, sandbox) = match cri_names(&annotations) {
            Some(cri) => {
                let pod = cri.pod.unwrap_or_else(|| own_name.clone());
                let name = cri.container.unwrap_or_else(|| {
                    if cri.sandbox {
                        pod.clone()
                    } else {
                        own_name.clone()
                    }
                });
                let ns = cri
                    .namespace
                    .unwrap_or_else(|| runtime.as_str().to_string());
                (ns, pod, name, cri.sandbox)
            }
            None => (
                runtime.as_str().to_string(),
                own_name.clone(),
                own_name,
                false,
            ),
        };

        // Rootfs.
        let rootfs = oci
            .as_ref()
            .and_then(|o| o.rootfs.clone())
            .filter(|r| r.is_absolute())
            .or_else(|| {
                spec.root.as_ref().filter(|r| !r.path.is_empty()).map(|r| {
                    let p = PathBuf::from(&r.path);
                    if p.is_absolute() {
                        p
                    } else {
                        bundle.join(p)
                    }
                })
            })
            .unwrap_or_else(|| bundle.join("rootfs"));

        // The init pid, checked against reuse.
        let (pid, pid_start_time, pid_check) = self.verified_pid(&manager, oci.as_ref(), &spec);

        // Cgroups: the live process's, else what the runtime recorded.
        let cgroups = match pid {
            Some(p) => self.cgroups_of_pid(p),
            None => None,
        }
        .unwrap_or_else(|| self.recorded_cgroups(oci.as_ref()));

        // State.
        let state = match pid {
            None => State::Stopped,
            Some(_) if oci.as_ref().is_some_and(|o| o.created_not_started) => State::Created,
            Some(_) => {
                if host::is_frozen(cgroups.freezer.as_deref(), cgroups.unified.as_deref()) {
                    State::Paused
                } else {
                    State::Running
                }
            }
        };

        let memory_bytes = pid.and_then(|p| self.memory(p, &cgroups));
        let upper_dir = match pid {
            Some(p) => procfs_host::mountinfo(&self.proc_root, p)
                .and_then(|m| host::root_upper_dir(&m, "/")),
            None => None,
        }
        .or_else(|| host::root_upper_dir(&self.host_mounts, &rootfs.to_string_lossy()));

        let image = annotations
            .get("io.kubernetes.cri.image-name")
            .or_else(|| annotations.get("io.kubernetes.cri-o.ImageName"))
            .cloned()
            .or_else(|| match &manager {
                Manager::Storage(s) => s.image_name.clone(),
                _ => None,
            })
            .filter(|s| !s.is_empty());

        let created = oci
            .as_ref()
            .and_then(|o| o.created)
            .or_else(|| match &manager {
                Manager::Storage(s) => s
                    .crio_state
                    .as_ref()
                    .and_then(|c| c.created.as_deref())
                    .and_then(scan::parse_time)
                    .or(s.created),
                _ => None,
            })
            .or_else(|| {
                annotations
                    .get("io.kubernetes.cri-o.Created")
                    .and_then(|t| scan::parse_time(t))
            });

        // Checkpointability.
        let mut blockers = Vec::new();
        if sandbox {
            blockers.push(Blocker::Sandbox);
        }
        if !state.is_alive() {
            blockers.push(Blocker::NotRunning { state });
        }
        for path in self.devices(&spec, pid) {
            blockers.push(Blocker::Device { path });
        }

        Ok(Container {
            namespace,
            pod,
            name,
            id,
            runtime,
            runtime_namespace,
            oci_runtime,
            bundle,
            spec_path,
            rootfs,
            pid,
            pid_start_time,
            pid_check,
            state,
            cgroups,
            memory_bytes,
            upper_dir,
            image,
            created,
            sandbox,
            checkpointable: blockers.is_empty(),
            blockers,
            annotations,
            sources,
        })
    }

    /// The init pid if it still is the container's init: `(pid, start time, how checked)`.
    fn verified_pid(
        &self,
        manager: &Manager,
        oci: Option<&OciState>,
        spec: &Spec,
    ) -> (Option<i32>, Option<u64>, Option<PidCheck>) {
        let none = (None, None, None);
        // 1. runc/crun recorded the start time: compare it.
        if let Some(o) = oci.filter(|o| o.pid > 0) {
            let Some(stat) = procfs_host::stat(&self.proc_root, o.pid).filter(|s| s.alive()) else {
                return none;
            };
            return match o.start_time {
                Some(t) if t == stat.starttime => (Some(o.pid), Some(t), Some(PidCheck::StartTime)),
                Some(_) => none,
                // A state without a start time: fall back on the cgroup check below.
                None if self.pid_in_expected_cgroup(o.pid, spec) => {
                    (Some(o.pid), Some(stat.starttime), None)
                }
                None => none,
            };
        }
        // 2. The manager's pid file.
        let (pid_file, crio) = match manager {
            Manager::Containerd(t) => (t.pid, None),
            Manager::Storage(s) => (s.pid, s.crio_state.as_ref()),
            Manager::None => (None, None),
        };
        let pid = pid_file
            .map(|(p, _)| p)
            .or_else(|| crio.and_then(|c| c.init_pid.or(c.pid)))
            .filter(|p| *p > 0);
        let Some(pid) = pid else {
            return none;
        };
        if crio.and_then(|c| c.status.as_deref()) == Some("stopped") {
            return none;
        }
        let Some(stat) = procfs_host::stat(&self.proc_root, pid).filter(|s| s.alive()) else {
            return none;
        };
        if let Some(want) = crio.and_then(|c| c.init_start_time).filter(|t| *t > 0) {
            let ctime = std::fs::metadata(self.proc_root.join(pid.to_string()))
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ctime(&m));
            return if ctime == Some(want) {
                (Some(pid), Some(stat.starttime), Some(PidCheck::ProcCtime))
            } else {
                none
            };
        }
        if let Some((_, Some(written))) = pid_file {
            // A reused pid belongs to a process started after the pid file was written.
            let started = procfs_host::process_start(&self.proc_root, &stat);
            let slack = Duration::from_secs(1);
            if started.is_some_and(|s| s <= written + slack)
                && self.pid_in_expected_cgroup(pid, spec)
            {
                return (Some(pid), Some(stat.starttime), Some(PidCheck::PidFileAge));
            }
            return none;
        }
        none
    }

    /// Whether the process's cgroup is the one the spec asks for (true when the spec does not
    /// say, or says it in systemd's `slice:prefix:name` form, which maps to a scope name).
    fn pid_in_expected_cgroup(&self, pid: i32, spec: &Spec) -> bool {
        let Some(want) = spec.linux.as_ref().and_then(|l| l.cgroups_path.clone()) else {
            return true;
        };
        let Some(lines) = procfs_host::cgroups(&self.proc_root, pid) else {
            return false;
        };
        let want = if let [_, prefix, name] = want.split(':').collect::<Vec<_>>()[..] {
            format!("{prefix}-{name}.scope")
        } else {
            want.trim_end_matches('/').to_string()
        };
        lines
            .values()
            .any(|p| p.trim_end_matches('/').ends_with(&want))
    }

    fn cgroups_of_pid(&self, pid: i32) -> Option<Cgroups> {
        let paths = procfs_host::cgroups(&self.proc_root, pid)?;
        let mut cg = Cgroups::default();
        for (ctrls, path) in &paths {
            if ctrls.is_empty() {
                cg.unified = self.cgroup_mounts.resolve(CgroupKind::V2, path);
                continue;
            }
            for c in ctrls.split(',') {
                if let Some(dir) = self.cgroup_mounts.resolve_v1(c, path) {
                    match c {
                        "freezer" => cg.freezer = Some(dir),
                        "memory" => cg.memory = Some(dir),
                        _ => {}
                    }
                }
            }
        }
        cg.paths = paths;
        Some(cg)
    }

    fn recorded_cgroups(&self, oci: Option<&OciState>) -> Cgroups {
        let mut cg = Cgroups::default();
        let Some(o) = oci else {
            return cg;
        };
        if !o.cgroup_paths.is_empty() {
            for (ctrl, dir) in &o.cgroup_paths {
                match ctrl.as_str() {
                    "" => cg.unified = Some(dir.clone()),
                    "freezer" => cg.freezer = Some(dir.clone()),
                    "memory" => cg.memory = Some(dir.clone()),
                    _ => {}
                }
            }
        } else if let Some(rel) = &o.cgroup_path {
            // Recorded relative to the hierarchy's root, with or without the leading `/`.
            let path = format!("/{}", rel.trim_start_matches('/'));
            cg.freezer = self.cgroup_mounts.resolve_v1("freezer", &path);
            cg.memory = self.cgroup_mounts.resolve_v1("memory", &path);
            cg.unified = self.cgroup_mounts.resolve(CgroupKind::V2, &path);
        }
        cg
    }

    /// Memory in use: v1 `memory.usage_in_bytes`, v2 `memory.current`, else the sum of the
    /// RSS of the container's processes.
    fn memory(&self, pid: i32, cg: &Cgroups) -> Option<u64> {
        if let Some(v) = cg
            .memory
            .as_ref()
            .and_then(|d| host::read_u64(&d.join("memory.usage_in_bytes")))
        {
            return Some(v);
        }
        if let Some(v) = cg
            .unified
            .as_ref()
            .and_then(|d| host::read_u64(&d.join("memory.current")))
        {
            return Some(v);
        }
        let pids = cg
            .freezer_dir()
            .and_then(host::cgroup_procs)
            .filter(|p| p.contains(&pid))
            .unwrap_or_else(|| procfs_host::descendants(&self.proc_root, pid));
        let total: u64 = pids
            .iter()
            .filter_map(|p| procfs_host::rss_bytes(&self.proc_root, *p))
            .sum();
        (total > 0).then_some(total)
    }

    /// Device nodes that keep a container from being checkpointed: spec devices beyond the
    /// defaults, spec bind mounts of accelerator nodes, and accelerator nodes mounted in the
    /// running container.
    fn devices(&self, spec: &Spec, pid: Option<i32>) -> Vec<String> {
        let mut out = BTreeSet::new();
        let linux = spec.linux.as_ref();
        for d in linux.map(|l| l.devices.as_slice()).unwrap_or_default() {
            if !DEFAULT_DEVICES.contains(&d.path.as_str()) {
                out.insert(d.path.clone());
            }
        }
        for m in &spec.mounts {
            let src = m.source.as_deref().unwrap_or_default();
            if is_accelerator(&m.destination) || is_accelerator(src) {
                out.insert(m.destination.clone());
            }
        }
        if let Some(p) = pid {
            if let Some(mounts) = procfs_host::mountinfo(&self.proc_root, p) {
                for m in mounts.iter().filter(|m| is_accelerator(&m.mount_point)) {
                    out.insert(m.mount_point.clone());
                }
            }
        }
        out.into_iter().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Lookup
// ---------------------------------------------------------------------------------------------

impl Discovery {
    /// The namespaces with at least one workload, sorted.
    pub fn namespaces(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self.workloads().map(|c| c.namespace.as_str()).collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// The pods of a namespace, sorted.
    pub fn pods(&self, namespace: &str) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .workloads()
            .filter(|c| c.namespace == namespace)
            .map(|c| c.pod.as_str())
            .collect();
        set.into_iter().map(str::to_string).collect()
    }

    /// The containers that are not sandboxes.
    pub fn workloads(&self) -> impl Iterator<Item = &Container> {
        self.containers.iter().filter(|c| !c.sandbox)
    }

    /// The containers of one namespace (`None`: all).
    pub fn in_namespace<'a>(
        &'a self,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Container> {
        self.workloads().filter(move |c| match namespace {
            None => true,
            Some(n) => c.namespace == n,
        })
    }

    /// One container by namespace, pod and container name (or id). Without a container name
    /// the pod must have exactly one. When several containers have that name (a restarted
    /// container leaves its exited predecessor), the live one wins.
    ///
    /// Errors: unknown namespace (lists the namespaces), unknown pod (lists the namespace's
    /// pods), unknown or ambiguous container (lists the pod's containers), exited container.
    pub fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
    ) -> Result<&Container, DiscoveryError> {
        if !self.workloads().any(|c| c.namespace == namespace) {
            return Err(DiscoveryError::UnknownNamespace {
                namespace: namespace.to_string(),
                known: self.namespaces(),
            });
        }
        let in_pod: Vec<&Container> = self
            .workloads()
            .filter(|c| c.namespace == namespace && c.pod == pod)
            .collect();
        if in_pod.is_empty() {
            return Err(DiscoveryError::UnknownPod {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                known: self.pods(namespace),
            });
        }
        let names: Vec<String> = in_pod
            .iter()
            .map(|c| c.name.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let wanted: Vec<&Container> = match container {
            Some(name) => {
                let by_name: Vec<&Container> =
                    in_pod.iter().copied().filter(|c| c.name == name).collect();
                if by_name.is_empty() {
                    in_pod.iter().copied().filter(|c| c.id == name).collect()
                } else {
                    by_name
                }
            }
            None if names.len() == 1 => in_pod.clone(),
            None => {
                return Err(DiscoveryError::AmbiguousContainer {
                    namespace: namespace.to_string(),
                    pod: pod.to_string(),
                    container: None,
                    candidates: names,
                })
            }
        };
        if wanted.is_empty() {
            return Err(DiscoveryError::UnknownContainer {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                container: container.unwrap_or_default().to_string(),
                known: names,
            });
        }
        let live: Vec<&Container> = wanted
            .iter()
            .copied()
            .filter(|c| c.state != State::Stopped)
            .collect();
        match live.as_slice() {
            [one] => Ok(one),
            [] => {
                // All exited: report the most recent.
                let c = wanted
                    .iter()
                    .max_by_key(|c| c.created)
                    .expect("wanted is not empty");
                Err(DiscoveryError::Exited {
                    namespace: c.namespace.clone(),
                    pod: c.pod.clone(),
                    container: c.name.clone(),
                    id: c.id.clone(),
                    state: c.state,
                })
            }
            many => Err(DiscoveryError::AmbiguousContainer {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                container: container.map(str::to_string),
                candidates: many
                    .iter()
                    .map(|c| format!("{} ({})", c.name, c.id))
                    .collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ns: &str, pod: &str, name: &str, id: &str, state: State) -> Container {
        Container {
            namespace: ns.into(),
            pod: pod.into(),
            name: name.into(),
            id: id.into(),
            runtime: Runtime::Runc,
            runtime_namespace: None,
            oci_runtime: None,
            bundle: PathBuf::new(),
            spec_path: PathBuf::new(),
            rootfs: PathBuf::new(),
            pid: None,
            pid_start_time: None,
            pid_check: None,
            state,
            cgroups: Cgroups::default(),
            memory_bytes: None,
            upper_dir: None,
            image: None,
            created: None,
            sandbox: false,
            checkpointable: false,
            blockers: Vec::new(),
            annotations: BTreeMap::new(),
            sources: Vec::new(),
        }
    }

    #[test]
    fn find_errors_name_what_exists() {
        let d = Discovery {
            containers: vec![
                c("prod", "web", "app", "1", State::Running),
                c("prod", "web", "sidecar", "2", State::Running),
                c("prod", "db", "pg", "3", State::Stopped),
                c("prod", "db", "pg", "4", State::Running),
                c("prod", "old", "x", "5", State::Stopped),
            ],
            problems: Vec::new(),
        };
        let e = d.find("nope", "web", None).unwrap_err().to_string();
        assert!(e.contains("prod"), "{e}");
        let e = d.find("prod", "nope", None).unwrap_err().to_string();
        assert!(e.contains("db") && e.contains("web"), "{e}");
        let e = d.find("prod", "web", None).unwrap_err().to_string();
        assert!(e.contains("app") && e.contains("sidecar"), "{e}");
        let e = d.find("prod", "web", Some("nope")).unwrap_err().to_string();
        assert!(e.contains("app") && e.contains("sidecar"), "{e}");
        assert_eq!(d.find("prod", "web", Some("sidecar")).unwrap().id, "2");
        assert_eq!(d.find("prod", "web", Some("1")).unwrap().id, "1");
        assert_eq!(d.find("prod", "db", None).unwrap().id, "4");
        let e = d.find("prod", "old", None).unwrap_err();
        assert!(matches!(e, DiscoveryError::Exited { .. }), "{e}");
        assert!(e.to_string().contains("exited"));
    }

    #[test]
    fn cri_names_from_annotations() {
        let mut a = BTreeMap::new();
        a.insert("io.kubernetes.cri.container-type".into(), "sandbox".into());
        a.insert("io.kubernetes.cri.sandbox-namespace".into(), "ns".into());
        a.insert("io.kubernetes.cri.sandbox-name".into(), "pod".into());
        assert_eq!(
            cri_names(&a),
            Some(CriNames {
                namespace: Some("ns".into()),
                pod: Some("pod".into()),
                container: None,
                sandbox: true,
            })
        );
        let mut a = BTreeMap::new();
        a.insert(
            "io.kubernetes.cri-o.ContainerType".into(),
            "container".into(),
        );
        a.insert(
            "io.kubernetes.cri-o.Labels".into(),
            r#"{"io.kubernetes.pod.namespace":"n","io.kubernetes.pod.name":"p"}"#.into(),
        );
        a.insert(
            "io.kubernetes.cri-o.Metadata".into(),
            r#"{"name":"c"}"#.into(),
        );
        assert_eq!(
            cri_names(&a),
            Some(CriNames {
                namespace: Some("n".into()),
                pod: Some("p".into()),
                container: Some("c".into()),
                sandbox: false,
            })
        );
        assert_eq!(cri_names(&BTreeMap::new()), None);
    }
}
