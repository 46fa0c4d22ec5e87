//! End to end: reel's checkpoints are complete and restorable (issue #3).
//!
//! Real containers (runc, crun, containerd), real CRIU, the real `reel` binary, as root. Each
//! test checkpoints a running container with `reel create checkpoint`, checks the archive and
//! that the container runs on, and most restore the images with `runc restore` into a NEW
//! container and check the workload resumes where it was dumped. Every container is removed
//! at the end, also on failure (the guards of the test kit: `containers::Container` and
//! `restore::Restored`).
//!
//! Run them one at a time: `cargo test --test checkpoint_restore -- --test-threads=1`.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kit::restore::{self, Archive, Reel};
use kit::{BundleBuilder, Container, CriRole, Oci};
use reel_testkit as kit;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The counter must have counted this far before a checkpoint, so that a restored counter
/// that started again from 0 cannot pass for one that resumed.
const COUNTER_MIN: u64 = 50;

/// What a checkpoint must say about its container.
struct Expect<'a> {
    namespace: &'a str,
    pod: &'a str,
    container: &'a str,
    id: &'a str,
    /// The container's `config.json`, which `spec.dump` must equal byte for byte.
    spec: &'a [u8],
}

/// Checks a finished checkpoint: reel's answer, the store's files and modes, the sidecar, every
/// member of the archive and its digest in the manifest. Returns the archive.
fn check_checkpoint(reel: &Reel, created: &Value, want: &Expect) -> Archive {
    let id = created["id"].as_str().expect("id");
    let path = PathBuf::from(created["path"].as_str().expect("path"));
    assert_eq!(path, reel.store.join(format!("{id}.tar")));
    assert_eq!(created["namespace"], want.namespace);
    assert_eq!(created["pod"], want.pod);
    assert_eq!(created["container"], want.container);
    assert_eq!(created["container_id"], want.id);

    // The store and its files are root-only.
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&reel.store), 0o700, "store {}", reel.store.display());
    assert_eq!(mode(&path), 0o600, "{}", path.display());
    let sidecar = reel.store.join(format!("{id}.tar.sha256"));
    assert_eq!(mode(&sidecar), 0o600, "{}", sidecar.display());
    assert_eq!(
        reel.store_entries(),
        vec![format!("{id}.tar"), format!("{id}.tar.sha256")],
        "the store holds exactly the archive and its sidecar"
    );

    let archive = Archive::read(&path);
    let digest = kit::sha256_hex(&archive.bytes);
    assert_eq!(created["sha256"], digest.as_str());
    assert_eq!(created["size"], archive.bytes.len() as u64);
    assert_eq!(
        fs::read_to_string(&sidecar).unwrap(),
        format!("{digest}  {id}.tar\n"),
        "the sidecar is `sha256sum` output for the archive"
    );

    // Layout: `checkpoint/` (a directory entry, 0700) first, flat images, then the metadata.
    let first = &archive.members[0];
    assert_eq!(first.name, "checkpoint/", "members: {:?}", archive.names());
    assert!(first.kind.is_dir(), "checkpoint/ is a {:?}", first.kind);
    assert_eq!(first.mode & 0o7777, 0o700);
    let top: BTreeSet<&str> = [
        "config.dump",
        "spec.dump",
        "stats-dump",
        "dump.log",
        "rootfs-diff.tar",
        "deleted.files",
        "reel-manifest.json",
    ]
    .into();
    for m in &archive.members[1..] {
        match m.name.strip_prefix("checkpoint/") {
            Some(f) => assert!(
                !f.is_empty() && !f.contains('/') && m.kind.is_file(),
                "image member {} ({:?})",
                m.name,
                m.kind
            ),
            None => assert!(
                top.contains(m.name.as_str()),
                "unexpected member {}",
                m.name
            ),
        }
        assert!(m.kind.is_file(), "{} is a {:?}", m.name, m.kind);
        assert_eq!(m.mode & 0o7777, 0o600, "mode of {}", m.name);
    }
    for name in top.iter().copied() {
        assert!(
            archive.has(name),
            "no {name}; members {:?}",
            archive.names()
        );
    }
    for image in [
        "descriptors.json",
        "inventory.img",
        "pstree.img",
        "files.img",
        "core-1.img",
        "mm-1.img",
        "pagemap-1.img",
        "fs-1.img",
        "ids-1.img",
        "cgroup.img",
    ] {
        let name = format!("checkpoint/{image}");
        assert!(
            archive.has(&name),
            "no {name}; members {:?}",
            archive.names()
        );
        assert!(!archive.member(&name).data.is_empty(), "{name} is empty");
    }
    assert!(
        archive
            .names()
            .iter()
            .any(|n| n.starts_with("checkpoint/mountpoints-")),
        "no mountpoints image"
    );
    assert!(
        archive
            .names()
            .iter()
            .any(|n| n.starts_with("checkpoint/pages-")),
        "no pages image"
    );
    let descriptors = archive.json("checkpoint/descriptors.json");
    assert_eq!(
        descriptors.as_array().map(Vec::len),
        Some(3),
        "descriptors.json: {descriptors}"
    );

    // Metadata.
    let config = archive.json("config.dump");
    assert_eq!(config["id"], want.id, "config.dump: {config}");
    assert_eq!(config["name"], want.container, "config.dump: {config}");
    let cp_time = config["checkpointedTime"].as_str().unwrap_or("");
    assert!(
        cp_time.len() >= 20 && cp_time.contains('T') && !cp_time.starts_with("0001-"),
        "config.dump checkpointedTime {cp_time:?}"
    );
    assert_eq!(
        archive.member("spec.dump").data,
        want.spec,
        "spec.dump differs from the container's config.json"
    );
    assert!(
        archive.member("stats-dump").data.len() > 8,
        "stats-dump is too short"
    );
    let log = String::from_utf8_lossy(&archive.member("dump.log").data);
    assert!(
        log.contains("Dumping finished successfully"),
        "dump.log does not end a successful dump"
    );
    let _ = archive.rootfs_diff(); // a valid tar
    assert!(
        archive.json("deleted.files").is_array(),
        "deleted.files is not a JSON array"
    );

    // The manifest: every other member with its size and SHA-256, recomputed here.
    let manifest = archive.json("reel-manifest.json");
    assert_eq!(manifest["checkpoint_id"], id);
    assert_eq!(manifest["container"]["id"], want.id);
    assert_eq!(manifest["container"]["name"], want.container);
    assert_eq!(manifest["container"]["namespace"], want.namespace);
    assert_eq!(manifest["container"]["pod"], want.pod);
    let listed = manifest["members"].as_array().expect("manifest members");
    let others: Vec<_> = archive
        .members
        .iter()
        .filter(|m| m.name != "reel-manifest.json")
        .collect();
    assert_eq!(
        listed.len(),
        others.len(),
        "the manifest lists {} members, the archive has {} besides it",
        listed.len(),
        others.len()
    );
    for (entry, m) in listed.iter().zip(&others) {
        assert_eq!(entry["name"], m.name.as_str(), "manifest order");
        assert_eq!(entry["size"], m.data.len() as u64, "size of {}", m.name);
        assert_eq!(
            entry["sha256"],
            m.sha256().as_str(),
            "SHA-256 of {} differs from the manifest",
            m.name
        );
        assert_eq!(
            entry["blake3"],
            reel_core::archive::blake3_hex(&m.data).as_str(),
            "BLAKE3 of {} differs from the manifest",
            m.name
        );
    }

    // And reel agrees.
    let out = reel.run(&["verify", "checkpoint", id]);
    assert!(
        out.status.success(),
        "reel verify checkpoint {id}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    archive
}

/// Test 1: checkpoint a runc or crun container running the counter, check it runs on and the
/// archive is complete, then restore it with runc into a new container and check the counter
/// resumes from where it was dumped.
fn counter_checkpoint_and_restore(runtime: Oci, in_pod: bool) {
    kit::require_root();
    let t0 = Instant::now();
    let reel = Reel::new("cr");
    let name = kit::unique_name(&format!("cr-{}", runtime.binary()));
    let ns = kit::unique_name("ns");
    let mut builder =
        BundleBuilder::new(&name).args(&restore::detached_stdio(&["/bin/counter", "/tmp/counter"]));
    if in_pod {
        builder = builder.containerd_pod(&ns, &name, "counter");
    }
    let bundle = builder.build();
    let spec = fs::read(bundle.config_path()).unwrap();
    let bundle_dir = bundle.path().to_path_buf();
    let counter_on_host = bundle.rootfs().join("tmp/counter");
    let c = kit::run_oci(runtime, None, bundle);
    let (ns, pod, container) = if in_pod {
        (ns.as_str(), name.as_str(), "counter")
    } else {
        // A container no pod owns: namespace = its runtime, pod = container = its id.
        (runtime.binary(), c.id.as_str(), c.id.as_str())
    };

    let before = restore::wait_counter_above(&counter_on_host, COUNTER_MIN, TIMEOUT);
    let created = reel.create_ok(ns, pod, None, &[]);

    // It runs on.
    assert_eq!(c.state().map(|s| s.status).as_deref(), Some("running"));
    let after = restore::read_counter(&counter_on_host).unwrap();
    restore::wait_counter_above(&counter_on_host, after, TIMEOUT);

    let archive = check_checkpoint(
        &reel,
        &created,
        &Expect {
            namespace: ns,
            pod,
            container,
            id: &c.id,
            spec: &spec,
        },
    );
    // A bare bundle has no writable layer: the diff is empty, and says why.
    let manifest = archive.json("reel-manifest.json");
    assert_eq!(manifest["rootfs_diff"]["kind"], "none", "{manifest}");
    assert_eq!(
        manifest["container"]["runtime"],
        runtime.binary(),
        "{manifest}"
    );

    // Restore into a new container with runc, from a copy of the bundle made once the original
    // is stopped (its counter file is rewritten all the time).
    let images = archive.unpack_images(&reel.scratch("unpacked"));
    let size = reel_e2e::dumped_size(&images, "/tmp/counter");
    c.kill();
    let new_id = kit::unique_name(&format!("restored-{}", runtime.binary()));
    let (dir, new_bundle) = restore::copy_bundle(&bundle_dir, &new_id);
    let restored_counter = new_bundle.join("rootfs/tmp/counter");
    restore::write_zero_counter(&restored_counter, size);
    let r = restore::runc_restore(&images, dir, &new_bundle, &new_id);

    let first = restore::wait_counter_above(&restored_counter, 0, TIMEOUT);
    assert!(
        first >= before,
        "the restored counter starts at {first}, below {before} seen before the checkpoint: it \
         did not resume ({})",
        r.diagnostics()
    );
    restore::wait_counter_above(&restored_counter, first + 10, TIMEOUT);
    assert!(r.pid() > 0);
    eprintln!(
        "{} counter: dumped after {before}, restored at {first}; {:.1}s",
        runtime.binary(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn runc_pod_container_checkpoint_is_complete_and_restores() {
    counter_checkpoint_and_restore(Oci::Runc, true);
}

#[test]
fn crun_container_checkpoint_is_complete_and_restores_with_runc() {
    counter_checkpoint_and_restore(Oci::Crun, false);
}

// ---------------------------------------------------------------------------------------------
// Test 2: containerd, stopped
// ---------------------------------------------------------------------------------------------

/// Stops the containerd daemon (`scripts/containerd.sh stop`; the shims live on) and starts it
/// again when dropped, also on panic.
struct ContainerdStopped;

impl ContainerdStopped {
    fn new() -> ContainerdStopped {
        let script = kit::repo_root().join("scripts/containerd.sh");
        let out = Command::new(&script)
            .arg("stop")
            .stdin(Stdio::null())
            .output()
            .expect("run scripts/containerd.sh stop");
        let guard = ContainerdStopped;
        let status = Command::new(&script)
            .arg("status")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            !status.status.success(),
            "containerd still answers after `scripts/containerd.sh stop` (it was not started by \
             that script?): {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&status.stdout)
        );
        guard
    }
}

impl Drop for ContainerdStopped {
    fn drop(&mut self) {
        let script = kit::repo_root().join("scripts/containerd.sh");
        let out = Command::new(&script)
            .arg("start")
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            other => {
                let msg = format!("cannot restart containerd: {other:?}");
                if std::thread::panicking() {
                    eprintln!("{msg}");
                } else {
                    panic!("{msg}");
                }
            }
        }
    }
}

#[test]
fn containerd_container_checkpoints_without_containerd() {
    kit::require_root();
    let t0 = Instant::now();
    let reel = Reel::new("cr-ctr");
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("pod");
    let c = kit::run_containerd(
        "cr-ctr",
        CriRole::Container {
            namespace: ns.clone(),
            pod: pod.clone(),
            name: "app".into(),
        },
        &[],
    );
    let pid = c.pid();
    let counter = restore::in_root(pid, "/tmp/counter");
    restore::wait_counter_above(&counter, COUNTER_MIN, TIMEOUT);
    let spec_path = PathBuf::from(format!(
        "/run/containerd/io.containerd.runtime.v2.task/{}/{}/config.json",
        kit::K8S_NS,
        c.id
    ));
    let spec = fs::read(&spec_path).unwrap_or_else(|e| panic!("{}: {e}", spec_path.display()));

    // Change the writable layer: a new file, and a file of the image deleted.
    fs::create_dir_all(restore::in_root(pid, "/data")).unwrap();
    fs::write(
        restore::in_root(pid, "/data/new.txt"),
        b"written after start\n",
    )
    .unwrap();
    let hostname = restore::in_root(pid, "/etc/hostname");
    assert!(hostname.is_file(), "the image has /etc/hostname");
    fs::remove_file(&hostname).unwrap();

    let created = {
        // No runtime API: containerd is down (its shim keeps the container running) while reel
        // works, and started again right after.
        let _down = ContainerdStopped::new();
        let created = reel.create_ok(&ns, &pod, None, &[]);
        // Still running, still without containerd.
        let after = restore::read_counter(&counter).unwrap();
        restore::wait_counter_above(&counter, after, TIMEOUT);
        created
    };
    assert_eq!(c.state().map(|s| s.status).as_deref(), Some("running"));

    let archive = check_checkpoint(
        &reel,
        &created,
        &Expect {
            namespace: &ns,
            pod: &pod,
            container: "app",
            id: &c.id,
            spec: &spec,
        },
    );
    let diff = archive.rootfs_diff();
    let names: Vec<&str> = diff
        .iter()
        .map(|(n, _)| n.trim_start_matches("./").trim_start_matches('/'))
        .collect();
    let new = diff
        .iter()
        .find(|(n, _)| n.trim_start_matches("./").trim_start_matches('/') == "data/new.txt")
        .unwrap_or_else(|| panic!("data/new.txt not in rootfs-diff.tar: {names:?}"));
    assert_eq!(new.1, b"written after start\n");
    assert!(
        !names.contains(&"etc/hostname"),
        "a deleted file is in the diff"
    );
    let deleted = archive.json("deleted.files");
    assert!(
        deleted
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "/etc/hostname"),
        "/etc/hostname not in deleted.files: {deleted}"
    );
    let manifest = archive.json("reel-manifest.json");
    assert_eq!(
        manifest["rootfs_diff"]["kind"], "overlay-upper",
        "{manifest}"
    );
    eprintln!("containerd: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Test 3: a pod of two containers
// ---------------------------------------------------------------------------------------------

/// A network namespace made with `ip netns add`, deleted when dropped.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new(prefix: &str) -> NetNs {
        let name = kit::unique_name(prefix);
        kit::run(Command::new("ip").args(["netns", "add", &name]));
        kit::run(
            Command::new("ip").args(["netns", "exec", &name, "ip", "link", "set", "lo", "up"]),
        );
        NetNs { name }
    }

    fn path(&self) -> PathBuf {
        PathBuf::from("/var/run/netns").join(&self.name)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .stdin(Stdio::null())
            .output();
    }
}

#[test]
fn pod_with_two_containers_needs_a_container_name() {
    kit::require_root();
    let t0 = Instant::now();
    let reel = Reel::new("cr-pod");
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("pod");
    let netns = NetNs::new("cr-pod");
    let run = |container: &str| -> (Container, Vec<u8>) {
        let mut bundle = BundleBuilder::new(&format!("cr-{container}"))
            .containerd_pod(&ns, &pod, container)
            .args(&restore::detached_stdio(&["/bin/counter", "/tmp/counter"]))
            .build();
        bundle.join_netns(&netns.path());
        let spec = fs::read(bundle.config_path()).unwrap();
        (kit::run_oci(Oci::Runc, None, bundle), spec)
    };
    let (web, web_spec) = run("web");
    let (sidecar, _) = run("sidecar");
    web.wait_counter_advances("/tmp/counter", TIMEOUT);
    sidecar.wait_counter_advances("/tmp/counter", TIMEOUT);

    let out = reel.create(&ns, &pod, None, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "checkpointing a pod of two containers without naming one succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "reel must fail with its own error exit (1 or 2), not {}; stderr: {stderr}",
        out.status
    );
    for name in ["web", "sidecar"] {
        assert!(
            stderr.contains(name),
            "the error does not name container {name}: {stderr}"
        );
    }
    assert!(
        reel.store_entries().iter().all(|e| !e.ends_with(".tar")),
        "an archive appeared: {:?}",
        reel.store_entries()
    );

    let created = reel.create_ok(&ns, &pod, Some("web"), &[]);
    let archive = check_checkpoint(
        &reel,
        &created,
        &Expect {
            namespace: &ns,
            pod: &pod,
            container: "web",
            id: &web.id,
            spec: &web_spec,
        },
    );
    // The pod's network namespace is declared external, under runc's key.
    let ino = fs::metadata(netns.path()).unwrap().ino();
    let manifest = archive.json("reel-manifest.json");
    assert_eq!(
        manifest["dump_options"]["external"],
        serde_json::json!([format!("net[{ino}]:extRootNetNS")]),
        "{manifest}"
    );
    web.wait_counter_advances("/tmp/counter", TIMEOUT);
    sidecar.wait_counter_advances("/tmp/counter", TIMEOUT);
    eprintln!("pod: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Test 4: bind mounts and a masked file
// ---------------------------------------------------------------------------------------------

#[test]
fn bind_mounts_and_masked_file_checkpoint_and_restore() {
    kit::require_root();
    let t0 = Instant::now();
    let reel = Reel::new("cr-mounts");
    let ns = kit::unique_name("ns");
    let name = kit::unique_name("cr-mounts");
    let host = tempfile::Builder::new()
        .prefix(&format!("{name}.host."))
        .tempdir_in(kit::test_dir())
        .unwrap();
    let data = host.path().join("data");
    let logs = host.path().join("logs");
    fs::create_dir_all(&data).unwrap();
    fs::create_dir_all(&logs).unwrap();
    fs::write(logs.join("marker"), b"from the host\n").unwrap();

    // /srv is a symlink to /mnt in the image: runc mounts a destination under it at the
    // link's target (/mnt/logs), which is where CRIU finds the mount.
    let bundle = BundleBuilder::new(&name)
        .containerd_pod(&ns, &name, "app")
        .args(&restore::detached_stdio(&["/bin/counter", "/data/counter"]))
        .bind(&data, "/data", false)
        .bind(&logs, "/srv/logs", true)
        .masked("/etc/secret")
        .build();
    fs::write(bundle.rootfs().join("etc/secret"), b"do not show\n").unwrap();
    std::os::unix::fs::symlink("/mnt", bundle.rootfs().join("srv")).unwrap();
    let spec = fs::read(bundle.config_path()).unwrap();
    let bundle_dir = bundle.path().to_path_buf();
    let c = kit::run_oci(Oci::Runc, None, bundle);
    let counter = data.join("counter");
    let before = restore::wait_counter_above(&counter, COUNTER_MIN, TIMEOUT);
    let pid = c.pid();
    assert_eq!(
        fs::read(restore::in_root(pid, "/etc/secret")).unwrap(),
        b"",
        "/etc/secret is masked"
    );
    assert_eq!(
        fs::read(restore::in_root(pid, "/mnt/logs/marker")).unwrap(),
        b"from the host\n"
    );

    let created = reel.create_ok(&ns, &name, None, &[]);
    let after = restore::read_counter(&counter).unwrap();
    restore::wait_counter_above(&counter, after, TIMEOUT);
    let archive = check_checkpoint(
        &reel,
        &created,
        &Expect {
            namespace: &ns,
            pod: &name,
            container: "app",
            id: &c.id,
            spec: &spec,
        },
    );
    let manifest = archive.json("reel-manifest.json");
    let ext: Vec<&str> = manifest["dump_options"]["ext_mnt"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for want in [
        "/data:/data",
        "/mnt/logs:/mnt/logs",
        "/etc/secret:/dev/null",
    ] {
        assert!(ext.contains(&want), "ext_mnt lacks {want}: {ext:?}");
    }

    let images = archive.unpack_images(&reel.scratch("unpacked"));
    let size = reel_e2e::dumped_size(&images, "/data/counter");
    c.kill();
    let new_id = kit::unique_name("restored-mounts");
    let (dir, new_bundle) = restore::copy_bundle(&bundle_dir, &new_id);
    restore::write_zero_counter(&counter, size);
    let r = restore::runc_restore(&images, dir, &new_bundle, &new_id);
    let first = restore::wait_counter_above(&counter, 0, TIMEOUT);
    assert!(
        first >= before,
        "the restored counter starts at {first}, below {before}: it did not resume ({})",
        r.diagnostics()
    );
    restore::wait_counter_above(&counter, first + 10, TIMEOUT);
    // The restored container has the same mounts.
    let pid = r.pid();
    assert_eq!(
        fs::read(restore::in_root(pid, "/etc/secret")).unwrap(),
        b"",
        "/etc/secret is masked after the restore"
    );
    assert_eq!(
        fs::read(restore::in_root(pid, "/mnt/logs/marker")).unwrap(),
        b"from the host\n",
        "/srv/logs (/mnt/logs) is the host dir after the restore"
    );
    eprintln!(
        "mounts: dumped after {before}, restored at {first}; {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Tests 5 and 6: the services program
// ---------------------------------------------------------------------------------------------

/// One line of the services status file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Ok { rounds: u64, tcp: u64, pid: i32 },
    Fail(String),
}

fn read_status(path: &Path) -> Option<Status> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim().to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        ["ok", rounds, "tcp", tcp, "pid", pid] => Some(Status::Ok {
            rounds: rounds.parse().ok()?,
            tcp: tcp.parse().ok()?,
            pid: pid.parse().ok()?,
        }),
        ["fail", ..] => Some(Status::Fail(line)),
        _ => None,
    }
}

/// Waits until the status says `ok` with more than `rounds` rounds and more than `tcp` TCP
/// checks. Any `fail` seen meanwhile fails the test.
fn wait_status_ok(path: &Path, rounds: u64, tcp: u64, timeout: Duration) -> (u64, u64) {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    loop {
        match read_status(path) {
            Some(Status::Ok {
                rounds: r, tcp: t, ..
            }) if r > rounds && t > tcp => return (r, t),
            Some(Status::Fail(line)) => panic!("services reports a failure: {line}"),
            s => last = s.or(last),
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for services to pass {rounds} rounds and {tcp} TCP checks in {} \
             (last: {last:?})",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn services_bundle(name: &str, ns: &str, extra: &[&str]) -> kit::Bundle {
    let mut args = vec!["/bin/services", "-s", "/tmp/status"];
    args.extend(extra);
    BundleBuilder::new(name)
        .containerd_pod(ns, name, "services")
        .args(&restore::detached_stdio(&args))
        .build()
}

fn status_counts(path: &Path) -> (u64, u64) {
    match read_status(path) {
        Some(Status::Ok { rounds, tcp, .. }) => (rounds, tcp),
        other => panic!("services status {}: {other:?}", path.display()),
    }
}

#[test]
fn services_work_after_restore() {
    kit::require_root();
    let t0 = Instant::now();
    let reel = Reel::new("cr-services");
    let ns = kit::unique_name("ns");
    let name = kit::unique_name("cr-services");
    // In a pod's network namespace (by path, `lo` up), as under Kubernetes: the restored
    // container joins it again. (A private netns would come back empty from `runc restore`,
    // which restores with CRIU's empty_ns=net and never brings `lo` up: no TCP at all.)
    let netns = NetNs::new("cr-services");
    let mut bundle = services_bundle(&name, &ns, &[]);
    bundle.join_netns(&netns.path());
    let spec = fs::read(bundle.config_path()).unwrap();
    let bundle_dir = bundle.path().to_path_buf();
    let status = bundle.rootfs().join("tmp/status");
    let c = kit::run_oci(Oci::Runc, None, bundle);
    wait_status_ok(&status, 5, 0, TIMEOUT);
    let (rounds_before, tcp_before) = status_counts(&status);

    let created = reel.create_ok(&ns, &name, None, &[]);
    // The checkpoint froze it: it runs on, every check passing.
    let (rounds_after, _) = status_counts(&status);
    wait_status_ok(&status, rounds_after + 3, 0, TIMEOUT);
    let archive = check_checkpoint(
        &reel,
        &created,
        &Expect {
            namespace: &ns,
            pod: &name,
            container: "services",
            id: &c.id,
            spec: &spec,
        },
    );
    for image in ["memfd.img", "pstree.img", "pagemap-shmem"] {
        assert!(
            archive
                .names()
                .iter()
                .any(|n| n.starts_with(&format!("checkpoint/{image}"))),
            "no {image} image: {:?}",
            archive.names()
        );
    }

    // Restore into a new container in the same network namespace: the original goes first
    // (its listener holds the port there).
    let images = archive.unpack_images(&reel.scratch("unpacked"));
    c.kill();
    let new_id = kit::unique_name("restored-services");
    let (dir, new_bundle) = restore::copy_bundle(&bundle_dir, &new_id);
    let new_status = new_bundle.join("rootfs/tmp/status");
    // Only what the restored process writes counts.
    fs::remove_file(&new_status).unwrap();
    let restored_at = Instant::now();
    let r = restore::runc_restore(&images, dir, &new_bundle, &new_id);
    // Ask for a fresh TCP accept check too (it also runs by itself after a pause).
    let pid = r.pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .unwrap();

    // The counts go on from the dump (not from 0), every check passing: threads, the child
    // over the socketpair, the eventfd, the timerfd, the memfd and the shared file mapping,
    // and TCP accepts on the restored listening socket.
    let first = kit::wait_for(TIMEOUT, "the restored services' first status", || {
        read_status(&new_status)
    });
    let (r0, k0) = match first {
        Status::Ok { rounds, tcp, pid } => {
            assert!(
                rounds > rounds_before,
                "restored services writes round {rounds}; it had done {rounds_before} before \
                 the checkpoint: it did not resume"
            );
            assert_eq!(pid, 1, "the restored services is its container's init");
            (rounds, tcp)
        }
        Status::Fail(line) => panic!("restored services: {line} ({})", r.diagnostics()),
    };
    // The restored process now runs its loop for sure: ask again (a SIGUSR1 that lands while
    // runc is still finishing the restore can be missed), once a second until a check ran.
    let deadline = Instant::now() + TIMEOUT;
    let mut asked = Instant::now() - Duration::from_secs(1);
    let (rounds, tcp) = loop {
        if asked.elapsed() >= Duration::from_secs(1) {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGUSR1,
            )
            .unwrap();
            asked = Instant::now();
        }
        let last = read_status(&new_status);
        match &last {
            Some(Status::Ok { rounds, tcp, .. }) if *rounds > r0 + 10 && *tcp > k0 => {
                break (*rounds, *tcp)
            }
            Some(Status::Fail(line)) => panic!("restored services: {line}"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the restored services to pass {} rounds and {k0} TCP checks \
             (last: {last:?})",
            r0 + 10
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        tcp > tcp_before,
        "no TCP accept check after the restore ({tcp} <= {tcp_before})"
    );
    eprintln!(
        "services: {rounds_before} rounds/{tcp_before} tcp before the checkpoint, restored at \
         {r0}/{k0}, then {rounds}/{tcp} {:.1}s after the restore; total {:.1}s",
        restored_at.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn established_tcp_is_refused_with_tcp_established_false() {
    kit::require_root();
    let t0 = Instant::now();
    let reel = Reel::new("cr-tcp");
    let ns = kit::unique_name("ns");
    let name = kit::unique_name("cr-tcp");
    let bundle = services_bundle(&name, &ns, &["-e"]);
    let status = bundle.rootfs().join("tmp/status");
    let c = kit::run_oci(Oci::Runc, None, bundle);
    let (rounds, _) = wait_status_ok(&status, 5, 0, TIMEOUT);

    // Dumping established connections is the default (issue #10); turned off, the refusal
    // and its hint remain.
    let out = reel.create(&ns, &name, None, &["--tcp-established=false"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a container with an established TCP connection was checkpointed without \
         them: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "reel must fail with its own error exit (1 or 2), not {}; stderr: {stderr}",
        out.status
    );
    assert!(
        stderr.contains("--tcp-established"),
        "the error does not pass on CRIU's hint: {stderr}"
    );
    // Thawed and running, the connection still echoing; nothing in the store.
    assert_eq!(c.state().map(|s| s.status).as_deref(), Some("running"));
    let (rounds, tcp) = wait_status_ok(&status, rounds + 3, 0, TIMEOUT);
    assert_eq!(
        reel.store_entries(),
        Vec::<String>::new(),
        "a failed checkpoint left files in the store"
    );

    let created = reel.create_ok(&ns, &name, None, &["--tcp-established"]);
    assert!(created["path"]
        .as_str()
        .is_some_and(|p| Path::new(p).is_file()));
    assert_eq!(
        reel.store_entries().len(),
        2,
        "archive and sidecar: {:?}",
        reel.store_entries()
    );
    let archive = Archive::read(Path::new(created["path"].as_str().unwrap()));
    let manifest = archive.json("reel-manifest.json");
    assert_eq!(manifest["dump_options"]["tcp_established"], true);
    assert!(
        archive
            .names()
            .iter()
            .any(|n| n.starts_with("checkpoint/tcp-stream-")),
        "no tcp-stream image for the established connection: {:?}",
        archive.names()
    );
    wait_status_ok(&status, rounds + 3, tcp.saturating_sub(1), TIMEOUT);
    eprintln!("tcp: {:.1}s", t0.elapsed().as_secs_f64());
}
