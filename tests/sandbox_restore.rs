//! `reel restore checkpoint` (issue #15): a live copy of a checkpointed container in a sealed
//! sandbox, every "sealed" property asserted from outside, with real runc containers, real
//! CRIU, a pod-style network namespace with a veth pair and peers on the host.

use std::collections::BTreeSet;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kit::podnet::PodNet;
use kit::restore::{self, Reel};
use kit::{BundleBuilder, Oci, OverlayRoot, RootfsMode};
use reel_testkit as kit;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);
const GHOST_BYTES: usize = 1 << 20;
const MEMFD_BYTES: usize = 64 << 10;
const PORT: u16 = 7201;

fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 131 + 7) % 251) as u8)
        .collect()
}

fn sha256_file(p: &Path) -> String {
    kit::sha256_hex(&fs::read(p).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A temp dir under the test dir.
fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(kit::test_dir())
        .unwrap()
}

/// A unix stream listener on the host that echoes and counts the connections it accepts.
struct HostListener {
    path: PathBuf,
    accepted: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl HostListener {
    fn start() -> HostListener {
        let dir = scratch("reel-sb-sock.");
        let path = dir.path().join("sock");
        let l = UnixListener::bind(&path).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                count.fetch_add(1, Ordering::SeqCst);
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        HostListener {
            path,
            accepted,
            _dir: dir,
        }
    }
}

/// A process on the host, killed when dropped.
struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes a sandbox whatever happens to the test.
struct SandboxGuard {
    reel: PathBuf,
    name: String,
}

impl Drop for SandboxGuard {
    fn drop(&mut self) {
        let _ = Command::new(&self.reel)
            .args(["delete", "sandbox", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

fn conns_rounds(path: &Path) -> Option<u64> {
    let t = fs::read_to_string(path).ok()?;
    let line = t.lines().next()?;
    assert!(!line.starts_with("fail"), "{}: {line}", path.display());
    line.split_whitespace().nth(1)?.parse().ok()
}

fn wait_rounds(path: &Path, above: u64) -> u64 {
    kit::wait_for(
        TIMEOUT,
        &format!("{} past round {above}", path.display()),
        || conns_rounds(path).filter(|r| *r > above),
    )
}

/// `reel restore checkpoint ARCHIVE --name NAME EXTRA -o json`, which must succeed.
fn restore_ok(reel: &Reel, archive: &Path, name: &str, extra: &[&str]) -> (Value, SandboxGuard) {
    let guard = SandboxGuard {
        reel: kit::bins::reel_bin().to_path_buf(),
        name: name.into(),
    };
    let started = Instant::now();
    let mut all = extra.to_vec();
    all.extend(["-o", "json"]);
    let out = restore_cmd(reel, archive, name, &all);
    assert!(
        out.status.success(),
        "reel restore failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "sandbox {name} running in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    (serde_json::from_slice(&out.stdout).unwrap(), guard)
}

/// `reel restore checkpoint ARCHIVE --name NAME EXTRA`, whatever its status.
fn restore_cmd(reel: &Reel, archive: &Path, name: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "restore",
        "checkpoint",
        archive.to_str().unwrap(),
        "--name",
        name,
    ];
    args.extend(extra);
    reel.run(&args)
}

/// `reel ARGS -o json`, which must succeed; its JSON answer.
fn run_json(reel: &Reel, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = reel.run(&all);
    assert!(
        out.status.success(),
        "reel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn ns(pid: i32, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn ip_n(netns: &str, args: &[&str]) -> String {
    let out = kit::run(Command::new("ip").args(["-n", netns]).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The restored process whose command contains `what`.
fn process(info: &Value, what: &str) -> i32 {
    info["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["command"].as_str().unwrap().contains(what))
        .unwrap_or_else(|| panic!("no restored process runs {what}: {info:#}"))["pid"]
        .as_i64()
        .unwrap() as i32
}

/// The content of the deleted file `target` (as `readlink` shows it) `pid` holds open.
fn open_deleted(pid: i32, target: &str) -> Vec<u8> {
    let fd = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| fs::read_link(p).is_ok_and(|t| t.to_string_lossy() == target))
        .unwrap_or_else(|| panic!("process {pid} has no {target} open"));
    fs::read(fd).unwrap()
}

/// Nothing of sandbox `name` is left on the host.
#[track_caller]
fn assert_nothing_left(name: &str) {
    for p in [
        PathBuf::from("/run/reel/sandboxes").join(name),
        PathBuf::from("/var/lib/reel/sandboxes").join(name),
        PathBuf::from("/dev/shm/reel-sandboxes").join(name),
        PathBuf::from("/run/netns").join(format!("reel-{name}")),
        PathBuf::from("/sys/fs/cgroup/memory/reel-sandboxes").join(name),
        PathBuf::from("/sys/fs/cgroup/unified/reel-sandboxes").join(name),
    ] {
        assert!(!p.exists(), "{} is left behind", p.display());
    }
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("/var/lib/reel/sandboxes/{name}/")),
        "a mount of {name} is left"
    );
}

// ---------------------------------------------------------------------------------------------
// The pod scene
// ---------------------------------------------------------------------------------------------

/// A pod-annotated runc container on an overlay rootfs in a pod-style network namespace,
/// whose workload counts in its rootfs and in a mounted volume, serves TCP on the pod IP to a
/// client on the host, holds a unix stream connection to a listener on the host, a deleted
/// file and a memfd.
struct Scene {
    net: PodNet,
    listener: HostListener,
    volume: tempfile::TempDir,
    client_status: tempfile::TempDir,
    ns: String,
    pod: String,
    container: Option<kit::Container>,
    _client: Option<Proc>,
    root: OverlayRoot,
}

impl Scene {
    fn start(prefix: &str) -> Scene {
        kit::require_root();
        let conns = kit::programs::program("conns");
        let net = PodNet::new(prefix);
        let listener = HostListener::start();
        let volume = scratch("reel-sb-vol.");
        let client_status = scratch("reel-sb-client.");
        let root = OverlayRoot::new("reel-sb-root.");
        let ns = kit::unique_name("ns");
        let pod = kit::unique_name(prefix);
        let sock = listener.path.to_string_lossy().into_owned();
        let sock_dir = listener.path.parent().unwrap().to_path_buf();
        let script = format!(
            "exec </dev/null >/dev/null 2>&1; \
             /bin/conns serve-tcp {pod_ip} {PORT} & \
             /bin/conns client -s /data/status -i 100 -u {sock} -g /tmp/evidence:{GHOST_BYTES} -m evidence:{MEMFD_BYTES} & \
             /bin/counter /data/counter 50 & \
             exec /bin/counter /tmp/counter 50",
            pod_ip = net.pod_ip
        );
        let mut bundle = BundleBuilder::new(&pod)
            .containerd_pod(&ns, &pod, "app")
            .rootfs(RootfsMode::Path(root.merged()))
            .bind(volume.path(), "/data", false)
            .bind(&sock_dir, &sock_dir.to_string_lossy(), false)
            .args(&["/bin/sh", "-c", &script])
            .build();
        bundle.join_netns(&net.path());
        let container = kit::run_oci(Oci::Runc, None, bundle);
        container.wait_counter_advances("/tmp/counter", TIMEOUT);
        wait_rounds(&volume.path().join("status"), 3);
        // The original's TCP peer, on the host side of the veth pair.
        let client = Command::new(&conns)
            .args(["client", "-s"])
            .arg(client_status.path().join("status"))
            .args(["-t", &format!("{}:{PORT}", net.pod_ip)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let scene = Scene {
            net,
            listener,
            volume,
            ns,
            pod,
            container: Some(container),
            _client: Some(Proc(client)),
            client_status,
            root,
        };
        wait_rounds(&scene.client(), 5);
        scene
    }

    fn client(&self) -> PathBuf {
        self.client_status.path().join("status")
    }

    fn original(&self) -> &kit::Container {
        self.container.as_ref().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_restored_sandbox_is_sealed_and_runs_on_from_the_checkpoint() {
    let scene = Scene::start("sb-pod");
    let reel = Reel::new("sb-pod");
    let created = reel.create_ok(&scene.ns, &scene.pod, None, &[]);
    let archive = PathBuf::from(created["path"].as_str().unwrap());
    let sha_before = sha256_file(&archive);
    let checkpointed: u64 = {
        let a = restore::Archive::read(&archive);
        let diff = a.rootfs_diff();
        let (_, c) = diff
            .iter()
            .find(|(p, _)| p == "tmp/counter")
            .expect("the rootfs diff holds tmp/counter");
        String::from_utf8_lossy(c)
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let manifest = restore::Archive::read(&archive).json("reel-manifest.json");
    assert_eq!(manifest["rootfs_layers"]["kind"], "overlay", "{manifest:#}");
    assert_eq!(
        manifest["rootfs_layers"]["lower_dirs"][0],
        kit::rootfs_template().to_string_lossy().as_ref()
    );

    let name = kit::unique_name("sb");
    let (info, _guard) = restore_ok(&reel, &archive, &name, &[]);
    let root = info["root_pid"].as_i64().unwrap() as i32;
    let original = scene.original().pid();
    assert_eq!(info["state"], "running", "{info:#}");
    assert_eq!(info["processes"][0]["checkpointed_pid"], 1, "{info:#}");

    // Its own namespaces: not the host's, not the original's.
    let me = std::process::id() as i32;
    for kind in ["net", "mnt", "pid", "ipc", "uts"] {
        let mine = ns(root, kind);
        assert_ne!(mine, ns(me, kind), "{kind} is the host's");
        assert_ne!(mine, ns(original, kind), "{kind} is the original's");
    }

    // No privileges beyond the original's: capabilities, seccomp, no_new_privs as dumped.
    let privileges = |pid: i32| -> Vec<String> {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .filter(|l| {
                [
                    "CapInh",
                    "CapPrm",
                    "CapEff",
                    "CapBnd",
                    "CapAmb",
                    "NoNewPrivs",
                    "Seccomp:",
                ]
                .iter()
                .any(|k| l.starts_with(k))
            })
            .map(str::to_string)
            .collect()
    };
    assert_eq!(privileges(root), privileges(original));
    assert_eq!(
        fs::read_to_string(format!("/proc/{root}/cgroup"))
            .unwrap()
            .lines()
            .filter(|l| !l.ends_with(&format!("/reel-sandboxes/{name}")))
            .collect::<Vec<_>>(),
        Vec::<&str>::new(),
        "the sandbox is outside its own cgroup"
    );

    // Its own network: lo and a device holding the pod IP, a default route into it, no
    // veth and no uplink; the server listens on the pod IP in there.
    let netns = format!("reel-{name}");
    let links = ip_n(&netns, &["-o", "link"]);
    let names: BTreeSet<&str> = links
        .lines()
        .filter_map(|l| {
            l.split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap())
        })
        .collect();
    assert_eq!(names, BTreeSet::from(["lo", "reel0"]), "{links}");
    assert!(
        !links.contains("veth") && !links.contains("master"),
        "{links}"
    );
    assert!(ip_n(&netns, &["addr"]).contains(&scene.net.pod_ip));
    let routes = ip_n(&netns, &["route"]);
    assert!(routes.contains("default dev reel0"), "{routes}");
    assert!(!routes.contains(" via "), "a route out: {routes}");
    let ss = kit::run(
        Command::new("nsenter")
            .arg(format!("--net=/proc/{root}/ns/net"))
            .args(["ss", "-ltn"]),
    );
    let listening = String::from_utf8_lossy(&ss.stdout);
    assert!(
        listening.contains(&format!("{}:{PORT}", scene.net.pod_ip)),
        "the restored server does not listen on the pod IP; listeners: {listening}; \
         the children of the sandbox's first process: {}",
        fs::read_to_string(format!("/proc/{root}/task/{root}/children")).unwrap_or_default()
    );

    // It runs on from the checkpointed count, behind the original.
    let in_sandbox = |p: &str| restore::read_counter(&restore::in_root(root, p));
    let first = kit::wait_for(TIMEOUT, "the sandbox's counter", || {
        in_sandbox("/tmp/counter")
    });
    assert!(
        first >= checkpointed,
        "{first} < checkpointed {checkpointed}"
    );
    let original_now = scene.original().counter("/tmp/counter").unwrap();
    assert!(
        first < original_now,
        "the sandbox ({first}) is not behind the original ({original_now})"
    );
    restore::wait_counter_above(&restore::in_root(root, "/tmp/counter"), first, TIMEOUT);

    // Writes land only in the sandbox's upper dir and volume copy.
    let upper = PathBuf::from(info["upper_dir"].as_str().unwrap());
    assert!(upper.starts_with("/var/lib/reel/sandboxes"), "{upper:?}");
    let sandbox_upper = restore::read_counter(&upper.join("tmp/counter")).unwrap();
    assert!(sandbox_upper >= checkpointed);
    scene.original().pause();
    let host_volume = fs::read(scene.volume.path().join("counter")).unwrap();
    let host_upper = fs::read(scene.root.upper().join("tmp/counter")).unwrap();
    let v = in_sandbox("/data/counter").unwrap();
    restore::wait_counter_above(&restore::in_root(root, "/data/counter"), v, TIMEOUT);
    restore::wait_counter_above(&upper.join("tmp/counter"), sandbox_upper, TIMEOUT);
    assert_eq!(
        fs::read(scene.volume.path().join("counter")).unwrap(),
        host_volume,
        "the sandbox wrote into the original's volume"
    );
    assert_eq!(
        fs::read(scene.root.upper().join("tmp/counter")).unwrap(),
        host_upper,
        "the sandbox wrote into the original's rootfs"
    );
    scene.original().resume();

    // The deleted file and the memfd came back, byte for byte.
    let client = process(&info, "conns client");
    assert_eq!(
        open_deleted(client, "/tmp/evidence (deleted)"),
        pattern(GHOST_BYTES)
    );
    assert_eq!(
        open_deleted(client, "/memfd:evidence (deleted)"),
        pattern(MEMFD_BYTES)
    );

    // The outside unix peer: a socketpair of the sandbox's, never the host's listener.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        scene.listener.accepted.load(Ordering::SeqCst),
        1,
        "the host-side listener got a connection from the sandbox"
    );
    let data = PathBuf::from(format!("/var/lib/reel/sandboxes/{name}"));
    let logged = kit::wait_for(TIMEOUT, "the sandbox's unix peer log", || {
        fs::read_dir(&data)
            .ok()?
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("unix-"))
            .and_then(|e| fs::read_to_string(e.path()).ok())
            .filter(|t| !t.is_empty())
    });
    assert!(logged.starts_with("0 "), "{logged:?}");

    // The original never noticed: its counters, its TCP peer and its unix peer go on.
    let r = wait_rounds(&scene.client(), 0);
    wait_rounds(&scene.client(), r + 20);
    let r = wait_rounds(&scene.volume.path().join("status"), 0);
    wait_rounds(&scene.volume.path().join("status"), r + 10);
    scene
        .original()
        .wait_counter_advances("/tmp/counter", TIMEOUT);

    // A second restore is an independent sandbox.
    let name2 = kit::unique_name("sb");
    let (info2, _guard2) = restore_ok(&reel, &archive, &name2, &[]);
    let root2 = info2["root_pid"].as_i64().unwrap() as i32;
    assert_ne!(root, root2);
    for kind in ["net", "mnt", "pid"] {
        assert_ne!(ns(root, kind), ns(root2, kind));
    }
    restore::wait_counter_above(
        &restore::in_root(root2, "/tmp/counter"),
        checkpointed,
        TIMEOUT,
    );

    // list, stop (exit recorded), delete (nothing left).
    let list = run_json(&reel, &["list", "sandbox"]);
    let listed: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        listed.contains(&name.as_str()) && listed.contains(&name2.as_str()),
        "{list:#}"
    );
    let stopped = run_json(&reel, &["stop", "sandbox", &name2]);
    assert_eq!(stopped["state"], "stopped", "{stopped:#}");
    assert_eq!(stopped["exit"]["signal"], 9, "{stopped:#}");
    assert!(!Path::new(&format!("/proc/{root2}")).exists());
    in_sandbox("/tmp/counter").expect("the first sandbox still runs");
    for n in [&name, &name2] {
        let out = reel.run(&["delete", "sandbox", n]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_nothing_left(n);
    }
    assert!(!Path::new(&format!("/proc/{root}")).exists());

    // The evidence is untouched; the original runs.
    assert_eq!(sha256_file(&archive), sha_before, "the archive changed");
    scene
        .original()
        .wait_counter_advances("/tmp/counter", TIMEOUT);
    wait_rounds(&scene.client(), 0);
}

#[test]
fn refusals_and_failures_leave_nothing_behind() {
    let scene = Scene::start("sb-fail");
    let reel = Reel::new("sb-fail");
    let created = reel.create_ok(&scene.ns, &scene.pod, None, &[]);
    let archive = PathBuf::from(created["path"].as_str().unwrap());

    // --network none refuses a checkpoint whose sockets need the pod IP, before anything runs.
    let name = kit::unique_name("sb");
    let out = restore_cmd(&reel, &archive, &name, &["--network", "none"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&scene.net.pod_ip) && err.contains("--network"),
        "{err}"
    );
    assert_nothing_left(&name);

    // A rootfs base CRIU cannot restore on: CRIU's own lines, nothing left.
    let empty = tempfile::tempdir_in(kit::test_dir()).unwrap();
    let name = kit::unique_name("sb");
    let out = restore_cmd(
        &reel,
        &archive,
        &name,
        &["--rootfs-base", empty.path().to_str().unwrap()],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("CRIU said") && err.contains("hint:"), "{err}");
    assert_nothing_left(&name);

    // A --volume for a mount the checkpoint does not have is bad input.
    let name = kit::unique_name("sb");
    let volume = format!("/nope={}", empty.path().display());
    let out = restore_cmd(&reel, &archive, &name, &["--volume", &volume]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_left(&name);

    // Evidence tampered with after the checkpoint (one byte of the largest memory pages image,
    // which is copied while the sandbox is being set up): refused, CRIU never ran, nothing left.
    let tampered = scratch("reel-sb-tampered.");
    let copy = tampered.path().join("tampered.tar");
    fs::copy(&archive, &copy).unwrap();
    let (offset, size) = {
        let f = fs::File::open(&copy).unwrap();
        let mut ar = tar::Archive::new(f);
        ar.entries_with_seek()
            .unwrap()
            .map(Result::unwrap)
            .filter(|e| String::from_utf8_lossy(&e.path_bytes()).starts_with("checkpoint/pages-"))
            .map(|e| (e.raw_file_position(), e.size()))
            .max_by_key(|(_, size)| *size)
            .expect("the archive holds a pages image")
    };
    {
        use std::os::unix::fs::FileExt;
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&copy)
            .unwrap();
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, offset + size / 2).unwrap();
        f.write_all_at(&[b[0] ^ 0x5a], offset + size / 2).unwrap();
    }
    let name = kit::unique_name("sb");
    let out = restore_cmd(&reel, &copy, &name, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("does not match the manifest") && err.contains("pages-"),
        "{err}"
    );
    assert!(
        !err.contains("CRIU said"),
        "CRIU ran on tampered images: {err}"
    );
    assert_nothing_left(&name);

    // reel killed in the middle of a restore: the monitor removes everything.
    let name = kit::unique_name("sb");
    let mut child = Command::new(kit::bins::reel_bin())
        .args(["--root"])
        .arg(&reel.store)
        .args([
            "restore",
            "checkpoint",
            archive.to_str().unwrap(),
            "--name",
            &name,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let state = PathBuf::from("/run/reel/sandboxes").join(&name);
    kit::wait_for(TIMEOUT, "the restore to start", || {
        state.exists().then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    // The monitor removes what it made; if reel died before it started one, the next sandbox
    // command removes the claim.
    let end = Instant::now() + TIMEOUT;
    while state.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    if state.exists() {
        assert!(reel.run(&["list", "sandbox"]).status.success());
    }
    assert_nothing_left(&name);

    // None of that touched the original.
    scene
        .original()
        .wait_counter_advances("/tmp/counter", TIMEOUT);
    let r = wait_rounds(&scene.client(), 0);
    wait_rounds(&scene.client(), r + 5);
    assert_eq!(scene.listener.accepted.load(Ordering::SeqCst), 1);
}

/// `--paused`: every restored process is stopped (state T) until `reel resume sandbox`; and
/// an export as `.tar.zst` restores as well. A plain runc container with its own network
/// namespace (which CRIU recreates and reel fills and names).
#[test]
fn paused_until_resumed_and_zstd_exports_restore() {
    kit::require_root();
    let reel = Reel::new("sb-paused");
    let ns_name = kit::unique_name("ns");
    let pod = kit::unique_name("sb-paused");
    let bundle = BundleBuilder::new(&pod)
        .containerd_pod(&ns_name, &pod, "app")
        .args(&restore::detached_stdio(&[
            "/bin/counter",
            "/tmp/counter",
            "20",
        ]))
        .build();
    let c = kit::run_oci(Oci::Runc, None, bundle);
    c.wait_counter_advances("/tmp/counter", TIMEOUT);
    let created = reel.create_ok(&ns_name, &pod, None, &[]);
    let archive = PathBuf::from(created["path"].as_str().unwrap());

    let name = kit::unique_name("sb");
    let (info, _guard) = restore_ok(&reel, &archive, &name, &["--paused"]);
    assert_eq!(info["state"], "paused", "{info:#}");
    let root = info["root_pid"].as_i64().unwrap() as i32;
    let stat_state = |pid: i32| {
        let s = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        s[s.rfind(')').unwrap() + 2..].chars().next().unwrap()
    };
    for p in info["processes"].as_array().unwrap() {
        assert_eq!(stat_state(p["pid"].as_i64().unwrap() as i32), 'T', "{p}");
    }
    let counter = restore::in_root(root, "/tmp/counter");
    let v = restore::read_counter(&counter).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        restore::read_counter(&counter),
        Some(v),
        "a paused sandbox counted"
    );
    // Its network namespace is named and sealed too.
    let links = ip_n(&format!("reel-{name}"), &["-o", "link"]);
    assert!(
        links.contains("lo") && links.contains("reel0") && !links.contains("veth"),
        "{links}"
    );

    assert_eq!(
        run_json(&reel, &["resume", "sandbox", &name])["state"],
        "running"
    );
    restore::wait_counter_above(&counter, v, TIMEOUT);
    assert_ne!(stat_state(root), 'T');

    // The same checkpoint exported as .tar.zst.
    let id = created["id"].as_str().unwrap();
    let dest = reel.export_ok(id, "copy.tar.zst", &["--compress", "fast"]);
    let name2 = kit::unique_name("sb");
    let (info2, _guard2) = restore_ok(&reel, &dest, &name2, &[]);
    let root2 = info2["root_pid"].as_i64().unwrap() as i32;
    restore::wait_counter_above(&restore::in_root(root2, "/tmp/counter"), 0, TIMEOUT);
    for n in [&name, &name2] {
        assert!(reel.run(&["delete", "sandbox", n]).status.success());
        assert_nothing_left(n);
    }
    c.wait_counter_advances("/tmp/counter", TIMEOUT);
}
