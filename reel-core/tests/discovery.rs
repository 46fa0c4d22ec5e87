//! Container discovery against real containers: runc, crun, containerd (started if needed),
//! Podman, and a CRI-O layout (CRI-O itself is not installed: its storage directories are laid
//! out as CRI-O does around a real runc container).
//!
//! The runc and crun tests use their own state roots, so other containers on the host do not
//! disturb them; containerd and Podman run with their default paths and discovery reads the
//! defaults. Every test needs root and fails (never skips) without it. Every container is
//! removed at the end, also on failure (the `kit::Container` guard).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kit::{BundleBuilder, CriRole, Oci, RootfsMode};
use reel_core::discovery::{
    discover, Blocker, Container, Discovery, DiscoveryConfig, DiscoveryError, OciRuntimeKind,
    PidCheck, Roots, Runtime, State,
};
use reel_testkit as kit;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A scratch directory with private runc and crun roots.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new(name: &str) -> Self {
        let base = kit::test_dir().join("discovery");
        fs::create_dir_all(&base).unwrap();
        Scratch {
            dir: tempfile::Builder::new()
                .prefix(&format!("{}.", kit::unique_name(name)))
                .tempdir_in(base)
                .unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn runc_root(&self) -> PathBuf {
        self.path().join("runc")
    }

    fn crun_root(&self) -> PathBuf {
        self.path().join("crun")
    }

    /// Discovery of only this scratch's runc and crun roots.
    fn config(&self) -> DiscoveryConfig {
        DiscoveryConfig {
            roots: Roots {
                runc: vec![self.runc_root()],
                crun: vec![self.crun_root()],
                ..Roots::none()
            },
            ..Default::default()
        }
    }
}

/// An overlay mount, unmounted when dropped (declare it before the containers using it).
struct Overlay {
    merged: PathBuf,
    upper: PathBuf,
}

impl Overlay {
    fn new(dir: &Path) -> Self {
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).unwrap();
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            kit::rootfs_template().display(),
            upper.display(),
            work.display()
        );
        kit::run(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o", &opts])
                .arg(&merged),
        );
        Overlay { merged, upper }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.merged).status();
    }
}

fn by_id<'a>(d: &'a Discovery, id: &str) -> &'a Container {
    let matches: Vec<&Container> = d.containers.iter().filter(|c| c.id == id).collect();
    assert_eq!(
        matches.len(),
        1,
        "container {id} listed {} times in {:#?}",
        matches.len(),
        d.containers
            .iter()
            .map(|c| (&c.id, &c.namespace, &c.pod, &c.name))
            .collect::<Vec<_>>()
    );
    matches[0]
}

fn assert_absent(d: &Discovery, id: &str) {
    assert!(
        !d.containers.iter().any(|c| c.id == id),
        "container {id} should not be listed"
    );
}

/// The checks every running container passes: pid as the runtime says, verified, cgroups
/// that hold the pid, memory, rootfs, spec.
fn check_running(c: &Container, rt: &kit::Container) {
    let pid = rt.pid();
    assert_eq!(c.state, State::Running, "{c:#?}");
    assert_eq!(c.pid, Some(pid), "{c:#?}");
    assert!(c.pid_start_time.is_some());
    assert!(c.pid_check.is_some(), "pid not verified: {c:#?}");
    assert!(c.checkpointable, "{c:#?}");
    assert!(c.blockers.is_empty());
    let freezer = c.cgroups.freezer_dir().expect("a freezer cgroup");
    let procs = fs::read_to_string(freezer.join("cgroup.procs")).unwrap();
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "pid {pid} not in {}",
        freezer.display()
    );
    assert!(
        c.memory_bytes.is_some_and(|m| m > 0),
        "no memory figure: {c:#?}"
    );
    assert!(
        c.rootfs.is_absolute() && c.rootfs.join("bin/counter").exists(),
        "{c:#?}"
    );
    assert!(c.spec_path.is_file(), "{c:#?}");
    assert!(c.created.is_some());
}

#[test]
fn runc_and_crun_pods_sandboxes_and_plain_containers() {
    kit::require_root();
    let s = Scratch::new("disc-oci");
    let (runc_root, crun_root) = (Some(s.runc_root()), Some(s.crun_root()));
    let ns = kit::unique_name("team");
    let web = kit::unique_name("web");
    let db = kit::unique_name("db");

    // A containerd-style pod with two containers and its sandbox, all runc.
    let web_sandbox = kit::run_oci(
        Oci::Runc,
        runc_root.as_deref(),
        BundleBuilder::new("web-pause")
            .containerd_sandbox(&ns, &web)
            .build(),
    );
    let app = kit::run_oci(
        Oci::Runc,
        runc_root.as_deref(),
        BundleBuilder::new("web-app")
            .containerd_pod(&ns, &web, "app")
            .annotation("io.kubernetes.cri.image-name", "example.com/app:1")
            .build(),
    );
    let sidecar = kit::run_oci(
        Oci::Runc,
        runc_root.as_deref(),
        BundleBuilder::new("web-sidecar")
            .containerd_pod(&ns, &web, "sidecar")
            .build(),
    );
    // A CRI-O-style pod, crun, with its sandbox.
    let db_sandbox = kit::run_oci(
        Oci::Crun,
        crun_root.as_deref(),
        BundleBuilder::new("db-infra")
            .crio_sandbox(&ns, &db)
            .build(),
    );
    let pg = kit::run_oci(
        Oci::Crun,
        crun_root.as_deref(),
        BundleBuilder::new("db-pg").crio_pod(&ns, &db, "pg").build(),
    );
    // No pod.
    let plain_runc = kit::run_oci(
        Oci::Runc,
        runc_root.as_deref(),
        BundleBuilder::new("plain-runc").build(),
    );
    let plain_crun = kit::run_oci(
        Oci::Crun,
        crun_root.as_deref(),
        BundleBuilder::new("plain-crun").build(),
    );

    let d = discover(&s.config()).expect("discover");
    assert!(d.problems.is_empty(), "problems: {:?}", d.problems);
    assert_absent(&d, &web_sandbox.id);
    assert_absent(&d, &db_sandbox.id);
    assert_eq!(d.containers.len(), 5, "{:#?}", d.containers);

    let c = by_id(&d, &app.id);
    assert_eq!(
        (c.namespace.as_str(), c.pod.as_str(), c.name.as_str()),
        (ns.as_str(), web.as_str(), "app")
    );
    assert_eq!(c.runtime, Runtime::Runc);
    assert_eq!(c.image.as_deref(), Some("example.com/app:1"));
    let oci = c.oci_runtime.as_ref().unwrap();
    assert_eq!(oci.kind, OciRuntimeKind::Runc);
    assert_eq!(oci.root, s.runc_root());
    assert!(
        oci.binary.is_absolute() && oci.binary.ends_with("runc"),
        "{oci:?}"
    );
    assert_eq!(c.pid_check, Some(PidCheck::StartTime));
    assert_eq!(c.bundle, app.bundle.as_ref().unwrap().path());
    assert_eq!(c.rootfs, app.bundle.as_ref().unwrap().rootfs());
    assert_eq!(
        c.upper_dir, None,
        "a plain directory rootfs has no upper dir"
    );
    assert_eq!(
        c.cgroups.freezer.as_deref(),
        Some(Path::new(&format!(
            "/sys/fs/cgroup/freezer/reel-test/{}",
            app.id
        )))
    );
    assert!(c.cgroups.unified.is_some(), "{:?}", c.cgroups);
    assert!(c.cgroups.memory.is_some(), "{:?}", c.cgroups);
    check_running(c, &app);

    let c = by_id(&d, &sidecar.id);
    assert_eq!((c.pod.as_str(), c.name.as_str()), (web.as_str(), "sidecar"));
    check_running(c, &sidecar);

    let c = by_id(&d, &pg.id);
    assert_eq!(
        (c.namespace.as_str(), c.pod.as_str(), c.name.as_str()),
        (ns.as_str(), db.as_str(), "pg")
    );
    assert_eq!(c.runtime, Runtime::Crun);
    let oci = c.oci_runtime.as_ref().unwrap();
    assert_eq!(
        (oci.kind, oci.root.as_path()),
        (OciRuntimeKind::Crun, s.crun_root().as_path())
    );
    assert_eq!(c.pid_check, Some(PidCheck::StartTime));
    check_running(c, &pg);

    let c = by_id(&d, &plain_runc.id);
    assert_eq!(
        (c.namespace.as_str(), c.pod.as_str(), c.name.as_str()),
        ("runc", plain_runc.id.as_str(), plain_runc.id.as_str())
    );
    check_running(c, &plain_runc);
    let c = by_id(&d, &plain_crun.id);
    assert_eq!(
        (c.namespace.as_str(), c.pod.as_str(), c.name.as_str()),
        ("crun", plain_crun.id.as_str(), plain_crun.id.as_str())
    );
    check_running(c, &plain_crun);

    // Lookup.
    assert_eq!(d.find(&ns, &web, Some("app")).unwrap().id, app.id);
    assert_eq!(d.find(&ns, &db, None).unwrap().id, pg.id);
    assert_eq!(
        d.find("runc", &plain_runc.id, None).unwrap().id,
        plain_runc.id
    );
    match d.find(&ns, &web, None) {
        Err(e @ DiscoveryError::AmbiguousContainer { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("app") && msg.contains("sidecar"), "{msg}");
        }
        other => panic!("want an ambiguous-container error, got {other:?}"),
    }
    match d.find("no-such-ns", "x", None) {
        Err(e @ DiscoveryError::UnknownNamespace { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains(&ns) && msg.contains("runc") && msg.contains("crun"),
                "{msg}"
            );
        }
        other => panic!("want an unknown-namespace error, got {other:?}"),
    }
    match d.find(&ns, "no-such-pod", None) {
        Err(e @ DiscoveryError::UnknownPod { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&web) && msg.contains(&db), "{msg}");
        }
        other => panic!("want an unknown-pod error, got {other:?}"),
    }
    assert!(matches!(
        d.find(&ns, &web, Some("nope")),
        Err(DiscoveryError::UnknownContainer { .. })
    ));

    // Sandboxes on request, flagged and not checkpointable.
    let all = discover(&DiscoveryConfig {
        include_sandboxes: true,
        ..s.config()
    })
    .unwrap();
    for (sb, pod) in [(&web_sandbox, &web), (&db_sandbox, &db)] {
        let c = by_id(&all, &sb.id);
        assert!(c.sandbox, "{c:#?}");
        assert_eq!(
            (c.namespace.as_str(), c.pod.as_str()),
            (ns.as_str(), pod.as_str())
        );
        assert!(!c.checkpointable && c.blockers.contains(&Blocker::Sandbox));
    }
    // ...but never found as a workload.
    assert_eq!(all.find(&ns, &db, None).unwrap().id, pg.id);

    // JSON output.
    let json = serde_json::to_value(&d).unwrap();
    assert!(json["containers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == app.id.as_str() && c["runtime"] == "runc" && c["state"] == "running"));
}

#[test]
fn states_created_paused_exited() {
    kit::require_root();
    let s = Scratch::new("disc-states");
    let root = Some(s.runc_root());
    let created = kit::create_oci(
        Oci::Runc,
        root.as_deref(),
        BundleBuilder::new("created").build(),
    );
    let paused = kit::run_oci(
        Oci::Runc,
        root.as_deref(),
        BundleBuilder::new("paused").build(),
    );
    let exited = kit::run_oci(
        Oci::Runc,
        root.as_deref(),
        BundleBuilder::new("exited")
            .containerd_pod("gone", "gone-pod", "app")
            .build(),
    );
    let crun_paused = kit::run_oci(
        Oci::Crun,
        Some(s.crun_root()).as_deref(),
        BundleBuilder::new("crun-paused").build(),
    );
    paused.pause();
    crun_paused.pause();
    let exited_pid = exited.pid();
    exited.kill();

    let d = discover(&s.config()).unwrap();
    assert!(d.problems.is_empty(), "{:?}", d.problems);

    let c = by_id(&d, &created.id);
    assert_eq!(c.state, State::Created);
    assert_eq!(c.pid, Some(created.pid()));
    assert!(c.blockers.contains(&Blocker::NotRunning {
        state: State::Created
    }));

    for p in [&paused, &crun_paused] {
        let c = by_id(&d, &p.id);
        assert_eq!(c.state, State::Paused, "{c:#?}");
        assert!(
            c.checkpointable,
            "a paused container can be checkpointed: {c:#?}"
        );
    }

    let c = by_id(&d, &exited.id);
    assert_eq!(c.state, State::Stopped);
    assert_eq!(c.pid, None, "pid {exited_pid} is gone");
    assert!(!c.checkpointable);
    assert!(c.blockers.contains(&Blocker::NotRunning {
        state: State::Stopped
    }));
    match d.find("gone", "gone-pod", None) {
        Err(e @ DiscoveryError::Exited { .. }) => assert!(e.to_string().contains("exited")),
        other => panic!("want an exited error, got {other:?}"),
    }

    paused.resume();
    let d = discover(&s.config()).unwrap();
    assert_eq!(by_id(&d, &paused.id).state, State::Running);
}

#[test]
fn overlay_rootfs_upper_dir_and_devices() {
    kit::require_root();
    let s = Scratch::new("disc-overlay");
    let overlay = Overlay::new(&s.path().join("ovl"));
    let root = Some(s.runc_root());
    let ovl = kit::run_oci(
        Oci::Runc,
        root.as_deref(),
        BundleBuilder::new("ovl")
            .rootfs(RootfsMode::Path(overlay.merged.clone()))
            .build(),
    );
    // A GPU-like device node declared in the spec (runc creates the node; nothing opens it).
    let gpu = kit::run_oci(
        Oci::Runc,
        root.as_deref(),
        BundleBuilder::new("gpu")
            .edit(|spec| {
                spec["linux"]["devices"] = serde_json::json!([{
                    "path": "/dev/nvidia0", "type": "c", "major": 195, "minor": 0,
                    "fileMode": 438, "uid": 0, "gid": 0
                }]);
            })
            .build(),
    );

    let d = discover(&s.config()).unwrap();
    let c = by_id(&d, &ovl.id);
    assert_eq!(c.upper_dir.as_deref(), Some(overlay.upper.as_path()));
    assert_eq!(c.rootfs, overlay.merged);
    check_running(c, &ovl);
    // The counter the container writes lands in the upper dir.
    ovl.wait_counter_advances("/tmp/counter", TIMEOUT);
    assert!(overlay.upper.join("tmp/counter").is_file());

    let c = by_id(&d, &gpu.id);
    assert_eq!(c.state, State::Running);
    assert!(!c.checkpointable);
    assert_eq!(
        c.blockers,
        vec![Blocker::Device {
            path: "/dev/nvidia0".into()
        }]
    );
    drop((ovl, gpu));
}

#[test]
fn broken_state_is_a_problem_not_a_failure() {
    kit::require_root();
    let s = Scratch::new("disc-broken");
    let good = kit::run_oci(
        Oci::Runc,
        Some(s.runc_root()).as_deref(),
        BundleBuilder::new("good").build(),
    );
    let broken = s.runc_root().join("broken");
    fs::create_dir_all(&broken).unwrap();
    fs::write(broken.join("state.json"), b"{ not json").unwrap();
    let crun_broken = s.crun_root().join("half");
    fs::create_dir_all(&crun_broken).unwrap();
    fs::write(crun_broken.join("status"), br#"{"pid": "x"}"#).unwrap();

    let d = discover(&s.config()).expect("one broken entry must not fail the listing");
    by_id(&d, &good.id);
    assert_eq!(d.problems.len(), 2, "{:?}", d.problems);
    assert!(d
        .problems
        .iter()
        .any(|p| p.path == broken.join("state.json")
            && matches!(p.error, DiscoveryError::Json { .. })));
    assert!(d
        .problems
        .iter()
        .any(|p| p.path == crun_broken.join("status")));
    let json = serde_json::to_value(&d).unwrap();
    assert!(json["problems"][0]["error"]
        .as_str()
        .unwrap()
        .contains("cannot parse"));

    // Missing roots are simply empty.
    let d = discover(&DiscoveryConfig {
        roots: Roots {
            runc: vec![s.path().join("nope")],
            ..Roots::none()
        },
        ..Default::default()
    })
    .unwrap();
    assert!(d.containers.is_empty() && d.problems.is_empty());
}

#[test]
fn containerd_pod_sandbox_and_plain() {
    kit::require_root();
    let ns = kit::unique_name("ctrd-ns");
    let pod = kit::unique_name("ctrd-pod");
    let sandbox = kit::run_containerd(
        "ctrd-pause",
        CriRole::Sandbox {
            namespace: ns.clone(),
            pod: pod.clone(),
        },
        &["/bin/sleep", "100000"],
    );
    let app = kit::run_containerd(
        "ctrd-app",
        CriRole::Container {
            namespace: ns.clone(),
            pod: pod.clone(),
            name: "app".into(),
        },
        &[],
    );
    let worker = kit::run_containerd(
        "ctrd-worker",
        CriRole::Container {
            namespace: ns.clone(),
            pod: pod.clone(),
            name: "worker".into(),
        },
        &[],
    );
    let plain = kit::run_containerd("ctrd-plain", CriRole::None, &[]);

    let d = discover(&DiscoveryConfig::default()).unwrap();
    let image = kit::ensure_containerd();
    assert_absent(&d, &sandbox.id);
    for (rt, name) in [(&app, "app"), (&worker, "worker")] {
        // One entry, though both the task bundle and runc's state describe it.
        let c = by_id(&d, &rt.id);
        assert_eq!(
            (c.namespace.as_str(), c.pod.as_str(), c.name.as_str()),
            (ns.as_str(), pod.as_str(), name)
        );
        assert_eq!(c.runtime, Runtime::Containerd);
        assert_eq!(c.runtime_namespace.as_deref(), Some("k8s.io"));
        let oci = c.oci_runtime.as_ref().unwrap();
        assert_eq!(oci.kind, OciRuntimeKind::Runc);
        assert_eq!(oci.root, Path::new("/run/containerd/runc/k8s.io"));
        assert!(oci.state_found);
        assert_eq!(
            c.bundle,
            Path::new("/run/containerd/io.containerd.runtime.v2.task/k8s.io").join(&rt.id)
        );
        assert_eq!(c.rootfs, c.bundle.join("rootfs"));
        assert_eq!(c.image.as_deref(), Some(image));
        let upper = c.upper_dir.as_ref().expect("the snapshot is an overlay");
        assert!(
            upper.starts_with(
                "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots"
            ),
            "{upper:?}"
        );
        assert_eq!(c.pid_check, Some(PidCheck::StartTime));
        assert_eq!(
            c.cgroups.freezer.as_deref(),
            Some(Path::new(&format!(
                "/sys/fs/cgroup/freezer/k8s.io/{}",
                rt.id
            )))
        );
        check_running(c, rt);
        // The writable layer gets the counter.
        rt.wait_counter_advances("/tmp/counter", TIMEOUT);
        assert!(upper.join("tmp/counter").is_file());
    }
    let c = by_id(&d, &plain.id);
    assert_eq!(
        (c.namespace.as_str(), c.pod.as_str(), c.name.as_str()),
        ("containerd", plain.id.as_str(), plain.id.as_str())
    );
    assert_eq!(c.image, None);
    check_running(c, &plain);
    assert_eq!(d.find(&ns, &pod, Some("worker")).unwrap().id, worker.id);
    assert!(matches!(
        d.find(&ns, &pod, None),
        Err(DiscoveryError::AmbiguousContainer { .. })
    ));

    let all = discover(&DiscoveryConfig {
        include_sandboxes: true,
        ..Default::default()
    })
    .unwrap();
    let c = by_id(&all, &sandbox.id);
    assert!(c.sandbox && c.blockers.contains(&Blocker::Sandbox));
    assert_eq!(c.pod, pod);

    // Without runc's state (another runc root), the task bundle alone still gives the pid,
    // checked against the age of init.pid.
    let tasks_only = discover(&DiscoveryConfig {
        roots: Roots {
            containerd_tasks: Roots::default().containerd_tasks,
            ..Roots::none()
        },
        ..Default::default()
    })
    .unwrap();
    let c = by_id(&tasks_only, &app.id);
    assert_eq!(c.pid, Some(app.pid()));
    assert_eq!(c.pid_check, Some(PidCheck::PidFileAge));
    assert_eq!(c.state, State::Running);
    assert!(!c.oci_runtime.as_ref().unwrap().state_found);

    // An exited task is listed as stopped.
    worker.kill();
    let d = discover(&DiscoveryConfig::default()).unwrap();
    let c = by_id(&d, &worker.id);
    assert_eq!(c.state, State::Stopped);
    assert!(matches!(
        d.find(&ns, &pod, Some("worker")),
        Err(DiscoveryError::Exited { .. })
    ));
}

#[test]
fn podman_container() {
    kit::require_root();
    // The test image: the template rootfs imported once per content.
    let tag = kit::podman_image().to_string();
    let name = kit::unique_name("podman");
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = Command::new("podman")
                .args(["rm", "-f", "-t", "0", &self.0])
                .output();
        }
    }
    let _guard = Rm(name.clone());
    let out = kit::run(Command::new("podman").args([
        "run",
        "-d",
        "--name",
        &name,
        "--runtime",
        "runc",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
        "--network",
        "none",
        &tag,
        "/bin/counter",
        "/tmp/counter",
    ]));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let pid: i32 = kit::wait_for(TIMEOUT, "podman container pid", || {
        let o = Command::new("podman")
            .args(["inspect", "-f", "{{.State.Pid}}", &name])
            .output()
            .ok()?;
        String::from_utf8_lossy(&o.stdout)
            .trim()
            .parse()
            .ok()
            .filter(|p| *p > 0)
    });

    let d = discover(&DiscoveryConfig::default()).unwrap();
    let c = by_id(&d, &id);
    assert_eq!(c.runtime, Runtime::Podman);
    assert_eq!(
        (c.namespace.as_str(), c.pod.as_str(), c.name.as_str()),
        ("podman", name.as_str(), name.as_str())
    );
    assert_eq!(c.image.as_deref(), Some(tag.as_str()));
    assert_eq!(c.pid, Some(pid));
    assert_eq!(c.state, State::Running);
    assert_eq!(c.pid_check, Some(PidCheck::StartTime));
    assert_eq!(c.oci_runtime.as_ref().unwrap().root, Path::new("/run/runc"));
    assert!(
        c.bundle.starts_with("/var/lib/containers/storage"),
        "{:?}",
        c.bundle
    );
    assert!(
        c.upper_dir.as_ref().is_some_and(|u| u.ends_with("diff")),
        "{:?}",
        c.upper_dir
    );
    assert!(c.checkpointable && c.memory_bytes.is_some());
    assert_eq!(d.find("podman", &name, None).unwrap().id, id);
}

#[test]
fn crio_layout() {
    kit::require_root();
    let s = Scratch::new("disc-crio");
    let run_root = s.path().join("run-storage");
    let graph_root = s.path().join("lib-storage");
    let ns = kit::unique_name("crio-ns");
    let pod = kit::unique_name("crio-pod");

    // CRI-O's bundle is <runroot>/overlay-containers/<id>/userdata, run here by runc.
    let builder = BundleBuilder::new("crio-app")
        .crio_pod(&ns, &pod, "app")
        .annotation("io.kubernetes.cri-o.ImageName", "quay.io/example/app:2");
    let id = kit::unique_name("crio-app");
    let userdata = run_root
        .join("overlay-containers")
        .join(&id)
        .join("userdata");
    let graph_userdata = graph_root
        .join("overlay-containers")
        .join(&id)
        .join("userdata");
    fs::create_dir_all(&graph_userdata).unwrap();
    let mut bundle = builder.build_in(&userdata);
    bundle.id = id.clone();
    let app = kit::run_oci(Oci::Runc, Some(s.runc_root()).as_deref(), bundle);
    let pid = app.pid();
    fs::write(userdata.join("pidfile"), pid.to_string()).unwrap();
    fs::copy(
        userdata.join("config.json"),
        graph_userdata.join("config.json"),
    )
    .unwrap();
    let ctime = {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(format!("/proc/{pid}")).unwrap().ctime()
    };
    fs::write(
        graph_userdata.join("state.json"),
        serde_json::json!({
            "ociVersion": "1.0.2", "id": id, "status": "running", "pid": pid,
            "bundle": userdata, "created": "2024-05-01T10:00:00Z",
            "initPid": pid, "initStartTime": ctime
        })
        .to_string(),
    )
    .unwrap();
    // A CRI-O sandbox next to it (not running: only its spec), and a storage-only entry.
    let sb_dir = run_root.join("overlay-containers/sandbox0/userdata");
    fs::create_dir_all(&sb_dir).unwrap();
    let sb_spec = BundleBuilder::new("x")
        .crio_sandbox(&ns, &pod)
        .rootfs(RootfsMode::Path("/nonexistent".into()))
        .build();
    fs::copy(sb_spec.config_path(), sb_dir.join("config.json")).unwrap();
    fs::create_dir_all(run_root.join("overlay-containers/layeronly/userdata")).unwrap();

    let cfg = DiscoveryConfig {
        roots: Roots {
            runc: vec![s.runc_root()],
            storage_run: vec![run_root.clone()],
            storage: vec![graph_root.clone()],
            ..Roots::none()
        },
        ..Default::default()
    };
    let d = discover(&cfg).unwrap();
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    assert_eq!(d.containers.len(), 1, "{:#?}", d.containers);
    let c = by_id(&d, &id);
    assert_eq!(c.runtime, Runtime::CriO);
    assert_eq!(
        (c.namespace.as_str(), c.pod.as_str(), c.name.as_str()),
        (ns.as_str(), pod.as_str(), "app")
    );
    assert_eq!(c.bundle, userdata);
    assert_eq!(c.image.as_deref(), Some("quay.io/example/app:2"));
    assert_eq!(c.oci_runtime.as_ref().unwrap().root, s.runc_root());
    assert_eq!(c.pid_check, Some(PidCheck::StartTime));
    check_running(c, &app);

    // Without runc's root: the pidfile and CRI-O's recorded start (ctime of /proc/<pid>).
    let d = discover(&DiscoveryConfig {
        roots: Roots {
            runc: Vec::new(),
            ..cfg.roots.clone()
        },
        ..Default::default()
    })
    .unwrap();
    let c = by_id(&d, &id);
    assert_eq!(c.pid, Some(pid));
    assert_eq!(c.pid_check, Some(PidCheck::ProcCtime));
    assert_eq!(c.state, State::Running);
    assert_eq!(
        c.created.map(|t| t.to_rfc3339()),
        Some("2024-05-01T10:00:00+00:00".into())
    );

    let with_sb = discover(&DiscoveryConfig {
        include_sandboxes: true,
        ..cfg.clone()
    })
    .unwrap();
    let sb = by_id(&with_sb, "sandbox0");
    assert!(sb.sandbox && sb.state == State::Stopped && sb.runtime == Runtime::CriO);

    drop(app);
    let _ = fs::remove_dir_all(s.path());
}
