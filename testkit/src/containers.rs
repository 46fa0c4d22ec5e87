//! Containers for the tests: the busybox rootfs, OCI bundles, containers run by runc, crun or
//! containerd (and the test image in Podman), and a guard that always removes them.
//!
//! ```ignore
//! let bundle = BundleBuilder::new("mytest").args(&["/bin/counter"]).build();
//! let c = run_oci(Oci::Runc, None, bundle);
//! c.wait_counter_advances("/tmp/counter", std::time::Duration::from_secs(10));
//! // `c` is deleted when it goes out of scope, also when the test panics.
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::programs::{program, programs, programs_dir};
use crate::{
    copy_tree, hash_files, publish, repo_root, require_root, run, run_quiet, test_dir, unique_name,
    wait_for,
};

/// The containerd namespace CRI uses, and so the tests.
pub const K8S_NS: &str = "k8s.io";

// ---------------------------------------------------------------------------------------------
// The rootfs
// ---------------------------------------------------------------------------------------------

/// A read-only template rootfs: `tests/fixtures/rootfs.sh` plus the test programs in `/bin`
/// (`/bin/counter`, `/bin/services`, ...).
/// Never write into it; bundles copy it ([`RootfsMode::Copy`]).
pub fn rootfs_template() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = repo_root().join("tests/fixtures/rootfs.sh");
        let mut inputs = vec![script.clone(), PathBuf::from("/bin/busybox")];
        inputs.extend(programs().iter().map(|p| programs_dir().join(p)));
        let dir = test_dir().join(format!("rootfs-{}", hash_files(&inputs)));
        if dir.join("bin/busybox").is_file() && dir.join(".complete").is_file() {
            return dir;
        }
        let tmp = test_dir().join(format!("rootfs-tmp-{}", unique_name("build")));
        run(Command::new("sh").arg(&script).arg(&tmp));
        for p in programs() {
            fs::copy(program(&p), tmp.join("bin").join(&p)).unwrap();
        }
        fs::write(tmp.join(".complete"), b"").unwrap();
        publish(&tmp, &dir);
        dir
    })
}

// ---------------------------------------------------------------------------------------------
// Host set-up the runtimes need
// ---------------------------------------------------------------------------------------------

/// crun refuses to run on a hybrid cgroup host while the cgroup2 hierarchy has controllers
/// ("cgroups in hybrid mode not supported, drop all controllers from cgroupv2"). A hybrid host
/// set up by hand leaves the controllers no v1 hierarchy took (here: `hugetlb`) on cgroup2;
/// this mounts each of them as its own v1 hierarchy under `/sys/fs/cgroup/<name>`, as systemd's
/// hybrid mode does. Idempotent; a no-op on pure v1 or pure v2 hosts.
pub fn ensure_crun_cgroups() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let controllers = Path::new("/sys/fs/cgroup/unified/cgroup.controllers");
        let Ok(list) = fs::read_to_string(controllers) else {
            return; // not hybrid
        };
        for c in list.split_whitespace() {
            let dir = PathBuf::from("/sys/fs/cgroup").join(c);
            let _ = fs::create_dir_all(&dir);
            // Another test may have mounted it meanwhile: check again before mounting.
            let still = fs::read_to_string(controllers).unwrap_or_default();
            if !still.split_whitespace().any(|x| x == c) {
                continue;
            }
            let out = run_quiet(
                Command::new("mount")
                    .args(["-t", "cgroup", "-o", c, "cgroup"])
                    .arg(&dir),
            );
            let still = fs::read_to_string(controllers).unwrap_or_default();
            assert!(
                !still.split_whitespace().any(|x| x == c),
                "crun needs the cgroup2 hierarchy of this hybrid host to have no controllers, \
                 and mounting {c} as a v1 hierarchy at {} failed: {}",
                dir.display(),
                out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default()
            );
        }
    });
}

/// Starts containerd (`scripts/containerd.sh start`) unless it answers, and imports the test
/// image (busybox + the test programs) into namespace `k8s.io` (`scripts/containerd.sh
/// import-image`, which verifies it: complete, unpacked, a container can be created from it).
/// Returns the image name.
pub fn ensure_containerd() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        require_root();
        let script = repo_root().join("scripts/containerd.sh");
        run(Command::new(&script).arg("start"));
        let out = run(Command::new(&script)
            .arg("import-image")
            .env("REEL_TEST_PROGRAMS_DIR", programs_dir()));
        let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(
            !name.is_empty(),
            "scripts/containerd.sh import-image printed no image name"
        );
        name
    })
}

/// The test image in Podman's store, `localhost/reel-test:<hash of the rootfs template>`: the
/// rootfs template imported once per content (`podman import`). Returns its name.
pub fn podman_image() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        require_root();
        let template = rootfs_template();
        let tag = format!(
            "localhost/reel-test:{}",
            template
                .file_name()
                .unwrap()
                .to_string_lossy()
                .trim_start_matches("rootfs-")
        );
        let exists = || {
            Command::new("podman")
                .args(["image", "exists", &tag])
                .stdin(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("cannot run podman ({e}): scripts/setup.sh installs it"))
                .success()
        };
        if exists() {
            remove_stale_podman_images(&tag);
            return tag;
        }
        let tar = test_dir().join(format!("{}.tar", unique_name("podman-image")));
        run(Command::new("tar")
            .arg("-C")
            .arg(template)
            .arg("-cf")
            .arg(&tar)
            .arg("."));
        let out = run_quiet(Command::new("podman").arg("import").arg(&tar).arg(&tag));
        let _ = fs::remove_file(&tar);
        // A parallel import of the same tag may win the race: fine if the image exists now.
        assert!(
            exists(),
            "podman import of {} as {tag} failed: {}",
            template.display(),
            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default()
        );
        remove_stale_podman_images(&tag);
        tag
    })
}

/// Removes the test images of earlier rootfs templates (one per change of the test
/// programs, which otherwise pile up in Podman's store); an image a container still uses
/// stays (no `--force`).
fn remove_stale_podman_images(current: &str) {
    let Some(out) = run_quiet(Command::new("podman").args([
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}}",
        "--filter",
        "reference=localhost/reel-test",
    ])) else {
        return;
    };
    for old in String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|t| t.starts_with("localhost/reel-test:") && *t != current)
    {
        let _ = run_quiet(Command::new("podman").args(["rmi", old]));
    }
}

// ---------------------------------------------------------------------------------------------
// OCI bundles
// ---------------------------------------------------------------------------------------------

/// How a bundle gets its rootfs.
#[derive(Debug, Clone)]
pub enum RootfsMode {
    /// A private copy of [`rootfs_template`] in `<bundle>/rootfs` (the default).
    Copy,
    /// This directory as is (`root.path` absolute); the caller owns it.
    Path(PathBuf),
}

/// A bind mount of a host path into the container.
#[derive(Debug, Clone)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// Builds an OCI bundle: `config.json` from `runc spec`, edited.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    name: String,
    args: Vec<String>,
    env: Vec<String>,
    annotations: BTreeMap<String, String>,
    mounts: Vec<BindMount>,
    masked: Vec<String>,
    hostname: Option<String>,
    cgroups_path: Option<String>,
    rootfs: RootfsMode,
    readonly_root: bool,
    host_network: bool,
    edits: Vec<fn(&mut Value)>,
}

impl BundleBuilder {
    /// A bundle whose container id will be `unique_name(prefix)`; runs `/bin/counter` unless
    /// told otherwise.
    pub fn new(prefix: &str) -> Self {
        let name = unique_name(prefix);
        BundleBuilder {
            cgroups_path: Some(format!("/reel-test/{name}")),
            name,
            args: vec!["/bin/counter".into(), "/tmp/counter".into()],
            env: Vec::new(),
            annotations: BTreeMap::new(),
            mounts: Vec::new(),
            masked: Vec::new(),
            hostname: None,
            rootfs: RootfsMode::Copy,
            readonly_root: false,
            host_network: false,
            edits: Vec::new(),
        }
    }

    /// The container's process arguments.
    pub fn args<S: AsRef<str>>(mut self, args: &[S]) -> Self {
        self.args = args.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// Adds an environment variable (`KEY=value`).
    pub fn env(mut self, kv: &str) -> Self {
        self.env.push(kv.to_string());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// The annotations containerd's CRI plugin gives a container of pod `ns/pod`.
    pub fn containerd_pod(self, ns: &str, pod: &str, container: &str) -> Self {
        self.annotation("io.kubernetes.cri.container-type", "container")
            .annotation("io.kubernetes.cri.sandbox-namespace", ns)
            .annotation("io.kubernetes.cri.sandbox-name", pod)
            .annotation("io.kubernetes.cri.container-name", container)
            .annotation(
                "io.kubernetes.cri.sandbox-id",
                &format!("sandbox-{ns}-{pod}"),
            )
    }

    /// The annotations containerd's CRI plugin gives the sandbox (pause) of pod `ns/pod`.
    pub fn containerd_sandbox(self, ns: &str, pod: &str) -> Self {
        self.annotation("io.kubernetes.cri.container-type", "sandbox")
            .annotation("io.kubernetes.cri.sandbox-namespace", ns)
            .annotation("io.kubernetes.cri.sandbox-name", pod)
    }

    /// The annotations CRI-O gives a container of pod `ns/pod`.
    pub fn crio_pod(self, ns: &str, pod: &str, container: &str) -> Self {
        self.annotation("io.container.manager", "cri-o")
            .annotation("io.kubernetes.cri-o.ContainerType", "container")
            .annotation("io.kubernetes.pod.namespace", ns)
            .annotation("io.kubernetes.pod.name", pod)
            .annotation("io.kubernetes.container.name", container)
            .annotation(
                "io.kubernetes.cri-o.Metadata",
                &json!({ "name": container }).to_string(),
            )
    }

    /// The annotations CRI-O gives the sandbox (infra container) of pod `ns/pod`.
    pub fn crio_sandbox(self, ns: &str, pod: &str) -> Self {
        self.annotation("io.container.manager", "cri-o")
            .annotation("io.kubernetes.cri-o.ContainerType", "sandbox")
            .annotation("io.kubernetes.pod.namespace", ns)
            .annotation("io.kubernetes.pod.name", pod)
    }

    /// Bind-mounts `source` at `destination` (read-write unless `read_only`).
    pub fn bind(mut self, source: &Path, destination: &str, read_only: bool) -> Self {
        self.mounts.push(BindMount {
            source: source.to_path_buf(),
            destination: destination.to_string(),
            read_only,
        });
        self
    }

    /// Adds a masked path (`linux.maskedPaths`).
    pub fn masked(mut self, path: &str) -> Self {
        self.masked.push(path.to_string());
        self
    }

    pub fn hostname(mut self, h: &str) -> Self {
        self.hostname = Some(h.to_string());
        self
    }

    /// `linux.cgroupsPath` (default `/reel-test/<id>`); `None` leaves the runtime's default.
    pub fn cgroups_path(mut self, p: Option<&str>) -> Self {
        self.cgroups_path = p.map(str::to_string);
        self
    }

    pub fn rootfs(mut self, mode: RootfsMode) -> Self {
        self.rootfs = mode;
        self
    }

    /// `root.readonly` (default false: the programs write into `/tmp`).
    pub fn readonly_root(mut self, ro: bool) -> Self {
        self.readonly_root = ro;
        self
    }

    /// Share the host's network namespace instead of a private one (with only `lo`).
    pub fn host_network(mut self, yes: bool) -> Self {
        self.host_network = yes;
        self
    }

    /// Any other edit of `config.json`, applied last.
    pub fn edit(mut self, f: fn(&mut Value)) -> Self {
        self.edits.push(f);
        self
    }

    /// Creates the bundle in a fresh directory under [`test_dir`]`/bundles`, removed when
    /// the [`Bundle`] is dropped.
    pub fn build(self) -> Bundle {
        let base = test_dir().join("bundles");
        fs::create_dir_all(&base).unwrap();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}.", self.name))
            .tempdir_in(&base)
            .expect("create the bundle dir");
        // Runtimes want to traverse the bundle.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().to_path_buf();
        self.write(path, Some(dir))
    }

    /// Creates the bundle in `dir` (created if missing, must not hold a `config.json`); the
    /// caller owns `dir` and removes it.
    pub fn build_in(self, dir: &Path) -> Bundle {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        self.write(dir.to_path_buf(), None)
    }

    fn write(self, path: PathBuf, tmp: Option<tempfile::TempDir>) -> Bundle {
        run(Command::new("runc").arg("spec").arg("--bundle").arg(&path));
        let config_path = path.join("config.json");
        let mut spec: Value =
            serde_json::from_slice(&fs::read(&config_path).unwrap()).expect("runc spec output");

        let root_path = match &self.rootfs {
            RootfsMode::Copy => {
                copy_tree(rootfs_template(), &path.join("rootfs"));
                Value::from("rootfs")
            }
            RootfsMode::Path(p) => Value::from(p.to_string_lossy().into_owned()),
        };
        spec["root"] = json!({ "path": root_path, "readonly": self.readonly_root });
        let process = &mut spec["process"];
        process["terminal"] = Value::Bool(false);
        process["args"] = json!(self.args);
        if let Some(env) = process["env"].as_array_mut() {
            env.extend(self.env.iter().map(|e| Value::from(e.as_str())));
        }
        spec["hostname"] = Value::from(self.hostname.clone().unwrap_or_else(|| self.name.clone()));
        if !self.annotations.is_empty() {
            spec["annotations"] = json!(self.annotations);
        }
        for m in &self.mounts {
            let mut options = vec!["rbind", "rprivate"];
            options.push(if m.read_only { "ro" } else { "rw" });
            spec["mounts"].as_array_mut().unwrap().push(json!({
                "destination": m.destination,
                "type": "bind",
                "source": m.source,
                "options": options,
            }));
        }
        let linux = &mut spec["linux"];
        if let Some(p) = &self.cgroups_path {
            linux["cgroupsPath"] = Value::from(p.as_str());
        }
        if let Some(masked) = linux["maskedPaths"].as_array_mut() {
            masked.extend(self.masked.iter().map(|m| Value::from(m.as_str())));
        }
        if self.host_network {
            if let Some(ns) = linux["namespaces"].as_array_mut() {
                ns.retain(|n| n["type"] != "network");
            }
        }
        for f in &self.edits {
            f(&mut spec);
        }
        fs::write(&config_path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        Bundle {
            id: self.name,
            path,
            tmp,
            spec,
        }
    }
}

/// An OCI bundle on disk; removed when dropped (after its container, see [`Container`]).
#[derive(Debug)]
pub struct Bundle {
    /// The container id this bundle was made for.
    pub id: String,
    path: PathBuf,
    tmp: Option<tempfile::TempDir>,
    /// The `config.json` written.
    pub spec: Value,
}

impl Bundle {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    /// The rootfs on the host (absolute).
    pub fn rootfs(&self) -> PathBuf {
        let p = PathBuf::from(self.spec["root"]["path"].as_str().unwrap());
        if p.is_absolute() {
            p
        } else {
            self.path().join(p)
        }
    }

    /// Makes the container join the network namespace at `path`, as a pod's containers join
    /// their sandbox's: `config.json` is rewritten with that path for its network namespace.
    pub fn join_netns(&mut self, path: &Path) {
        for n in self.spec["linux"]["namespaces"]
            .as_array_mut()
            .expect("linux.namespaces")
        {
            if n["type"] == "network" {
                n["path"] = Value::from(path.to_string_lossy().into_owned());
            }
        }
        fs::write(
            self.config_path(),
            serde_json::to_vec_pretty(&self.spec).unwrap(),
        )
        .unwrap();
    }

    /// Keeps the directory on disk after the test (for debugging); returns its path.
    pub fn keep(mut self) -> PathBuf {
        if let Some(t) = self.tmp.take() {
            let _ = t.keep();
        }
        self.path.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Containers
// ---------------------------------------------------------------------------------------------

/// The low-level OCI runtimes the tests drive directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oci {
    Runc,
    Crun,
}

impl Oci {
    pub fn binary(self) -> &'static str {
        match self {
            Oci::Runc => "runc",
            Oci::Crun => "crun",
        }
    }

    /// The runtime's default state root (`/run/runc`, `/run/crun`).
    pub fn default_root(self) -> PathBuf {
        PathBuf::from(match self {
            Oci::Runc => "/run/runc",
            Oci::Crun => "/run/crun",
        })
    }
}

/// Who runs a [`Container`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Engine {
    /// runc or crun, with this state root.
    Oci { runtime: Oci, root: PathBuf },
    /// containerd, through `ctr`, in this namespace.
    Containerd { namespace: String },
}

/// A container's state as its runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeState {
    /// `created`, `running`, `paused`, `stopped` (lowercase, as runc says).
    pub status: String,
    /// The init's host PID (0 when stopped).
    pub pid: i32,
}

/// A running container that is killed and deleted when dropped, also on panic.
#[derive(Debug)]
pub struct Container {
    pub id: String,
    pub engine: Engine,
    /// The bundle (runc/crun containers); removed after the container.
    pub bundle: Option<Bundle>,
    /// The container's stdout and stderr on the host.
    pub stdout: PathBuf,
    pub stderr: PathBuf,
    logs: Option<tempfile::TempDir>,
    deleted: bool,
}

fn logs_dir(id: &str) -> tempfile::TempDir {
    let base = test_dir().join("logs");
    fs::create_dir_all(&base).unwrap();
    tempfile::Builder::new()
        .prefix(&format!("{id}."))
        .tempdir_in(&base)
        .unwrap()
}

/// Creates and starts `bundle` with runc or crun (`create` + `start`, detached, stdio to
/// files), with state root `root` (default: the runtime's default root). Waits until running.
pub fn run_oci(runtime: Oci, root: Option<&Path>, bundle: Bundle) -> Container {
    let c = create_oci(runtime, root, bundle);
    c.start();
    c
}

/// `create` only: the container is left in state `created` (see [`Container::start`]).
pub fn create_oci(runtime: Oci, root: Option<&Path>, bundle: Bundle) -> Container {
    require_root();
    if runtime == Oci::Crun {
        ensure_crun_cgroups();
    }
    let root = root
        .map(Path::to_path_buf)
        .unwrap_or_else(|| runtime.default_root());
    let id = bundle.id.clone();
    let logs = logs_dir(&id);
    let stdout = logs.path().join("stdout.log");
    let stderr = logs.path().join("stderr.log");
    let mut c = Container {
        id: id.clone(),
        engine: Engine::Oci {
            runtime,
            root: root.clone(),
        },
        bundle: None,
        stdout: stdout.clone(),
        stderr: stderr.clone(),
        logs: Some(logs),
        deleted: false,
    };
    let out_file = fs::File::create(&stdout).unwrap();
    let err_file = fs::File::create(&stderr).unwrap();
    let status = Command::new(runtime.binary())
        .arg("--root")
        .arg(&root)
        .args(["create", "--bundle"])
        .arg(bundle.path())
        .arg(&id)
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(err_file)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", runtime.binary()));
    c.bundle = Some(bundle);
    assert!(
        status.success(),
        "{} create {id} failed ({status}): {}",
        runtime.binary(),
        fs::read_to_string(&stderr).unwrap_or_default()
    );
    c.wait_status("created", Duration::from_secs(20));
    c
}

/// How [`run_containerd`] annotates a container.
#[derive(Debug, Clone)]
pub enum CriRole {
    /// A workload container of pod `namespace/pod`, named `name`.
    Container {
        namespace: String,
        pod: String,
        name: String,
    },
    /// The sandbox (pause) of pod `namespace/pod`.
    Sandbox { namespace: String, pod: String },
    /// No CRI annotations: a container no pod owns.
    None,
}

/// Runs a container from the test image through containerd (`ctr -n k8s.io run -d`), with
/// the CRI annotations of `role` (and `io.kubernetes.cri.image-name`), stdout/stderr to a
/// file. `args` default to `/bin/counter /tmp/counter`.
pub fn run_containerd(prefix: &str, role: CriRole, args: &[&str]) -> Container {
    run_containerd_with(prefix, role, args, &[])
}

/// [`run_containerd`] with extra `ctr run` flags (e.g. `--mount`, `--annotation k=v`).
pub fn run_containerd_with(
    prefix: &str,
    role: CriRole,
    args: &[&str],
    extra: &[&str],
) -> Container {
    require_root();
    let image = ensure_containerd();
    let id = unique_name(prefix);
    let logs = logs_dir(&id);
    let stdout = logs.path().join("stdout.log");
    let stderr = stdout.clone(); // the shim writes both streams to the log URI
    let mut annotations: Vec<(String, String)> = Vec::new();
    match &role {
        CriRole::Container {
            namespace,
            pod,
            name,
        } => {
            annotations.push((
                "io.kubernetes.cri.container-type".into(),
                "container".into(),
            ));
            annotations.push((
                "io.kubernetes.cri.sandbox-namespace".into(),
                namespace.clone(),
            ));
            annotations.push(("io.kubernetes.cri.sandbox-name".into(), pod.clone()));
            annotations.push(("io.kubernetes.cri.container-name".into(), name.clone()));
            annotations.push(("io.kubernetes.cri.image-name".into(), image.to_string()));
        }
        CriRole::Sandbox { namespace, pod } => {
            annotations.push(("io.kubernetes.cri.container-type".into(), "sandbox".into()));
            annotations.push((
                "io.kubernetes.cri.sandbox-namespace".into(),
                namespace.clone(),
            ));
            annotations.push(("io.kubernetes.cri.sandbox-name".into(), pod.clone()));
        }
        CriRole::None => {}
    }
    let mut cmd = Command::new("ctr");
    cmd.args(["-n", K8S_NS, "run", "-d"]);
    cmd.arg(format!("--log-uri=file://{}", stdout.display()));
    for (k, v) in &annotations {
        cmd.arg("--annotation").arg(format!("{k}={v}"));
    }
    cmd.args(extra);
    cmd.arg(image).arg(&id);
    let default_args = ["/bin/counter", "/tmp/counter"];
    cmd.args(if args.is_empty() {
        &default_args[..]
    } else {
        args
    });
    let c = Container {
        id: id.clone(),
        engine: Engine::Containerd {
            namespace: K8S_NS.to_string(),
        },
        bundle: None,
        stdout,
        stderr,
        logs: Some(logs),
        deleted: false,
    };
    run(&mut cmd);
    c.wait_status("running", Duration::from_secs(20));
    c
}

impl Container {
    /// The runtime's view: status and init pid (`runc state` / `crun state` / `ctr task ls`).
    pub fn state(&self) -> Option<RuntimeState> {
        match &self.engine {
            Engine::Oci { runtime, root } => {
                let out = run_quiet(
                    Command::new(runtime.binary())
                        .arg("--root")
                        .arg(root)
                        .arg("state")
                        .arg(&self.id),
                )?;
                if !out.status.success() {
                    return None;
                }
                let v: Value = serde_json::from_slice(&out.stdout).ok()?;
                Some(RuntimeState {
                    status: v["status"].as_str()?.to_string(),
                    pid: v["pid"].as_i64().unwrap_or(0) as i32,
                })
            }
            Engine::Containerd { namespace } => {
                let out = run_quiet(Command::new("ctr").args(["-n", namespace, "task", "ls"]))?;
                let text = String::from_utf8_lossy(&out.stdout);
                text.lines().skip(1).find_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() >= 3 && f[0] == self.id).then(|| RuntimeState {
                        status: f[2].to_ascii_lowercase(),
                        pid: f[1].parse().unwrap_or(0),
                    })
                })
            }
        }
    }

    fn oci_cmd(&self, args: &[&str]) -> Option<Output> {
        match &self.engine {
            Engine::Oci { runtime, root } => run_quiet(
                Command::new(runtime.binary())
                    .arg("--root")
                    .arg(root)
                    .args(args)
                    .arg(&self.id),
            ),
            Engine::Containerd { namespace } => run_quiet(
                Command::new("ctr")
                    .args(["-n", namespace, "task"])
                    .args(args)
                    .arg(&self.id),
            ),
        }
    }

    fn oci_must(&self, args: &[&str]) {
        let out = self.oci_cmd(args).expect("run the runtime");
        assert!(
            out.status.success(),
            "{} {args:?} failed: {}",
            self.id,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts a created runc/crun container and waits until it runs.
    pub fn start(&self) {
        self.oci_must(&["start"]);
        self.wait_status("running", Duration::from_secs(20));
    }

    /// Freezes the container (`runc pause`, `ctr task pause`).
    pub fn pause(&self) {
        self.oci_must(&["pause"]);
        self.wait_status("paused", Duration::from_secs(20));
    }

    /// Thaws it (`runc resume`, `ctr task resume`).
    pub fn resume(&self) {
        self.oci_must(&["resume"]);
        self.wait_status("running", Duration::from_secs(20));
    }

    /// Kills its init with SIGKILL and waits until the runtime says `stopped`.
    pub fn kill(&self) {
        match &self.engine {
            // runc/crun: `kill <id> <signal>`.
            Engine::Oci { runtime, root } => {
                run(Command::new(runtime.binary())
                    .arg("--root")
                    .arg(root)
                    .arg("kill")
                    .arg(&self.id)
                    .arg("KILL"));
            }
            Engine::Containerd { .. } => self.oci_must(&["kill", "-s", "SIGKILL"]),
        }
        self.wait_status("stopped", Duration::from_secs(20));
    }

    /// The init's host PID (panics when the container has none).
    pub fn pid(&self) -> i32 {
        let s = self
            .state()
            .unwrap_or_else(|| panic!("{}: no state", self.id));
        assert!(s.pid > 0, "{}: no init pid (status {})", self.id, s.status);
        s.pid
    }

    /// Waits until the runtime reports `status`.
    pub fn wait_status(&self, status: &str, timeout: Duration) {
        let what = format!("container {} to be {status}", self.id);
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.state();
            if s.as_ref().is_some_and(|s| s.status == status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} (now {s:?}); stderr: {}",
                self.stderr_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A file inside the container, seen from the host through `/proc/<pid>/root`.
    pub fn host_path(&self, path_in_container: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.pid()))
            .join(path_in_container.trim_start_matches('/'))
    }

    /// Reads a file inside the container (through `/proc/<pid>/root`).
    pub fn read_file(&self, path_in_container: &str) -> Option<String> {
        fs::read_to_string(self.host_path(path_in_container)).ok()
    }

    /// The counter written by `/bin/counter` (first line of `path`), if readable yet.
    pub fn counter(&self, path_in_container: &str) -> Option<u64> {
        self.read_file(path_in_container)?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits until the counter in `path` exists and then grows; returns the last value seen.
    pub fn wait_counter_advances(&self, path_in_container: &str, timeout: Duration) -> u64 {
        let first = wait_for(
            timeout,
            &format!("{}: counter {path_in_container}", self.id),
            || self.counter(path_in_container),
        );
        wait_for(
            timeout,
            &format!("{}: counter to pass {first}", self.id),
            || self.counter(path_in_container).filter(|v| *v > first),
        )
    }

    pub fn stderr_text(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Kills and deletes the container now (also done on drop). Idempotent.
    pub fn delete(&mut self) {
        if self.deleted {
            return;
        }
        self.deleted = true;
        match &self.engine {
            Engine::Oci { runtime, root } => {
                let _ = run_quiet(
                    Command::new(runtime.binary())
                        .arg("--root")
                        .arg(root)
                        .args(["delete", "-f"])
                        .arg(&self.id),
                );
                if root.join(&self.id).exists() {
                    // Killed but the runtime would not delete it: try once more, then report.
                    std::thread::sleep(Duration::from_millis(200));
                    let out = run_quiet(
                        Command::new(runtime.binary())
                            .arg("--root")
                            .arg(root)
                            .args(["delete", "-f"])
                            .arg(&self.id),
                    );
                    if root.join(&self.id).exists() {
                        eprintln!(
                            "warning: could not delete {} container {}: {:?}",
                            runtime.binary(),
                            self.id,
                            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                        );
                    }
                }
            }
            Engine::Containerd { namespace } => {
                let ctr = |args: &[&str]| {
                    run_quiet(Command::new("ctr").args(["-n", namespace]).args(args))
                };
                let _ = ctr(&["task", "kill", "-a", "-s", "SIGKILL", &self.id]);
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline
                    && self.state().is_some_and(|s| s.status != "stopped")
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = ctr(&["task", "rm", "-f", &self.id]);
                let out = ctr(&["container", "rm", &self.id]);
                if out.as_ref().is_some_and(|o| !o.status.success()) {
                    let err = String::from_utf8_lossy(&out.unwrap().stderr).into_owned();
                    if !err.contains("not found") {
                        eprintln!(
                            "warning: could not remove containerd container {}: {err}",
                            self.id
                        );
                    }
                }
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.delete();
        // The bundle and the logs go after the container (drop order of the fields).
        if std::thread::panicking() {
            if let Some(logs) = &self.logs {
                eprintln!(
                    "container {} logs kept in {}",
                    self.id,
                    logs.path().display()
                );
            }
            if let Some(l) = self.logs.take() {
                let _ = l.keep();
            }
        }
    }
}

/// An overlay rootfs as container runtimes give containers: the test rootfs as its lower layer,
/// a private upper dir (where the container's writes land) under [`test_dir`]; unmounted when
/// dropped.
pub struct OverlayRoot {
    dir: tempfile::TempDir,
}

impl OverlayRoot {
    /// Mounts a new one; its directory's name starts with `prefix`.
    pub fn new(prefix: &str) -> OverlayRoot {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir_in(test_dir())
            .unwrap();
        for d in ["upper", "work", "merged"] {
            fs::create_dir(dir.path().join(d)).unwrap();
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            rootfs_template().display(),
            dir.path().join("upper").display(),
            dir.path().join("work").display()
        );
        run(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(dir.path().join("merged")));
        OverlayRoot { dir }
    }

    /// The mounted root (the bundle's rootfs).
    pub fn merged(&self) -> PathBuf {
        self.dir.path().join("merged")
    }

    /// The upper dir: what the container wrote.
    pub fn upper(&self) -> PathBuf {
        self.dir.path().join("upper")
    }
}

impl Drop for OverlayRoot {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.merged()).status();
    }
}
