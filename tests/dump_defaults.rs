//! What a plain `reel create checkpoint` keeps of the evidence containers hold (issue #10):
//! established TCP connections (in the pod's network namespace and to the host), a
//! deleted-but-open file, a unix stream connection to a listener on the host; the limits
//! and refusals around them; the bare boolean flags. Real containers, real CRIU, real
//! sockets.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kit::podnet::{Peer, PodNet};
use kit::restore::{self, Reel};
use kit::{BundleBuilder, Oci};
use reel_testkit as kit;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);
const GHOST_BYTES: usize = 8 << 20;

/// Byte `i` of the known contents of the workload's deleted files (as conns.c writes them).
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 131 + 7) % 251) as u8)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The workload
// ---------------------------------------------------------------------------------------------

/// One line of conns' status file.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Status {
    Ok { rounds: u64, echoes: u64 },
    Fail(String),
}

fn read_status(path: &Path) -> Option<Status> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.trim().to_string();
    let f: Vec<&str> = line.split_whitespace().collect();
    match f.as_slice() {
        ["ok", rounds, "conns", _, "echoes", echoes] => Some(Status::Ok {
            rounds: rounds.parse().ok()?,
            echoes: echoes.parse().ok()?,
        }),
        ["fail", ..] => Some(Status::Fail(line)),
        _ => None,
    }
}

/// Waits until the workload passed `rounds` rounds; any failure fails the test.
fn wait_rounds(path: &Path, rounds: u64) -> u64 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match read_status(path) {
            Some(Status::Ok { rounds: r, .. }) if r > rounds => return r,
            Some(Status::Fail(line)) => panic!("the workload reports a failure: {line}"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {} to pass round {rounds} (now {:?})",
            path.display(),
            read_status(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything the workload talks to, and the container itself.
struct Scene {
    net: PodNet,
    _peers: Vec<Peer>,
    sock_dir: tempfile::TempDir,
    status_dir: tempfile::TempDir,
    ns: String,
    pod: String,
    container: Option<kit::Container>,
    bundle_dir: PathBuf,
}

impl Scene {
    /// A pod-annotated runc container in a pod's network namespace, whose client holds an
    /// established TCP connection to a peer in the same pod, one to a peer on the host side
    /// of the veth pair, a unix stream connection to a listener on the host, and a deleted
    /// file of `ghost_bytes` bytes.
    fn start(prefix: &str, ghost_bytes: usize) -> Scene {
        kit::require_root();
        let conns = kit::programs::program("conns");
        let net = PodNet::new(prefix);
        let sock_dir = tempfile::Builder::new()
            .prefix("reel-sock.")
            .tempdir_in(kit::test_dir())
            .unwrap();
        let status_dir = tempfile::Builder::new()
            .prefix("reel-status.")
            .tempdir_in(kit::test_dir())
            .unwrap();
        let host_sock = sock_dir.path().join("sock");
        let peers = vec![
            net.spawn(&conns, &["serve-tcp", "127.0.0.1", "7101"]),
            Peer::on_host(&conns, &["serve-tcp", &net.host_ip, "7102"]),
            Peer::on_host(&conns, &["serve-unix", &host_sock.to_string_lossy()]),
        ];
        let ns = kit::unique_name("ns");
        let pod = kit::unique_name(prefix);
        let tcp_host = format!("{}:7102", net.host_ip);
        let ghost = format!("/tmp/evidence:{ghost_bytes}");
        let mut bundle = BundleBuilder::new(&pod)
            .containerd_pod(&ns, &pod, "app")
            .bind(status_dir.path(), "/status", false)
            // At the same path as on the host (as /var/run/docker.sock is usually mounted): CRIU
            // reconnects an external unix socket by its peer's name, as the host names it.
            .bind(sock_dir.path(), &sock_dir.path().to_string_lossy(), false)
            .args(&restore::detached_stdio(&[
                "/bin/conns",
                "client",
                "-s",
                "/status/status",
                "-t",
                "127.0.0.1:7101",
                "-t",
                &tcp_host,
                "-u",
                &host_sock.to_string_lossy(),
                "-g",
                &ghost,
            ]))
            .build();
        bundle.join_netns(&net.path());
        let bundle_dir = bundle.path().to_path_buf();
        let container = kit::run_oci(Oci::Runc, None, bundle);
        let scene = Scene {
            net,
            _peers: peers,
            sock_dir,
            status_dir,
            ns,
            pod,
            container: Some(container),
            bundle_dir,
        };
        wait_rounds(&scene.status(), 5);
        scene
    }

    fn status(&self) -> PathBuf {
        self.status_dir.path().join("status")
    }
}

/// `iptables-save` of the host: CRIU must lock only the container's namespace.
fn host_rules() -> String {
    let out = kit::run(&mut Command::new("iptables-save"));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a ghost file image of the archive holds exactly `want` (its contents put together
/// from the image, whole or in chunks, with reel's image reader).
fn ghost_contents_found(archive: &restore::Archive, want: &[u8]) -> bool {
    use criu_sys::proto::GhostChunkEntry;
    use reel_core::criu::image::{ImageReader, MessageType};
    archive
        .members
        .iter()
        .filter(|m| m.name.starts_with("checkpoint/ghost-file-"))
        .any(|m| {
            let mut image = ImageReader::from_bytes(&m.data, m.name.clone()).unwrap();
            let mut file = vec![0u8; want.len()];
            let mut filled = 0usize;
            while let Some(mut e) = image.next_entry().unwrap() {
                let at = match e.message_type() {
                    MessageType::GhostChunkEntry => e.decode::<GhostChunkEntry>().unwrap().off,
                    _ => 0,
                };
                let data = e.read_payload(1 << 30).unwrap();
                let at = at as usize;
                if at + data.len() > file.len() {
                    return false;
                }
                file[at..at + data.len()].copy_from_slice(&data);
                filled += data.len();
            }
            filled == want.len() && file == want
        })
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_plain_checkpoint_keeps_connections_deleted_files_and_outside_sockets() {
    let t0 = Instant::now();
    let scene = Scene::start("dd-keep", GHOST_BYTES);
    let reel = Reel::new("dd-keep");
    let rules_before = host_rules();

    // A plain create: no flag at all.
    let before = wait_rounds(&scene.status(), 0);
    let created = reel.create_ok(&scene.ns, &scene.pod, None, &[]);
    // During and after: every connection kept exchanging, without a reset.
    wait_rounds(&scene.status(), before + 20);
    assert_eq!(
        host_rules(),
        rules_before,
        "CRIU touched the host's iptables"
    );

    let archive = restore::Archive::read(Path::new(created["path"].as_str().unwrap()));
    let tcp_images: Vec<&str> = archive
        .names()
        .into_iter()
        .filter(|n| n.starts_with("checkpoint/tcp-stream-"))
        .collect();
    assert_eq!(
        tcp_images.len(),
        2,
        "one TCP queue image per established connection: {:?}",
        archive.names()
    );
    assert!(
        ghost_contents_found(&archive, &pattern(GHOST_BYTES)),
        "the archive does not hold the deleted file's {GHOST_BYTES} bytes: {:?}",
        archive.names()
    );
    let manifest = archive.json("reel-manifest.json");
    let opts = &manifest["dump_options"];
    assert_eq!(opts["tcp_established"], true, "{opts}");
    assert_eq!(opts["tcp_connections"], 2, "{opts}");
    assert_eq!(opts["ghost_limit"], 64 << 20, "{opts}");
    assert_eq!(opts["page_size"], 4096, "{opts}");
    assert_eq!(
        manifest["schema_version"],
        reel_core::archive::MANIFEST_SCHEMA_VERSION
    );
    let deleted = opts["deleted_files"].as_array().unwrap();
    assert!(
        deleted
            .iter()
            .any(|d| d["path"] == "/tmp/evidence" && d["size"] == GHOST_BYTES as u64),
        "{opts}"
    );
    let ext = opts["external_unix_sockets"].as_array().unwrap();
    assert_eq!(ext.len(), 1, "{opts}");
    let host_sock = scene.sock_dir.path().join("sock");
    assert_eq!(
        ext[0]["peer_name"],
        Value::from(host_sock.to_string_lossy().into_owned()),
        "{opts}"
    );
    assert_eq!(ext[0]["kind"], "stream");
    let inode = ext[0]["inode"].as_u64().unwrap();
    assert!(
        opts["external"]
            .as_array()
            .unwrap()
            .contains(&Value::from(format!("unix[{inode}]"))),
        "{opts}"
    );
    eprintln!(
        "a plain checkpoint kept everything in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn runc_restores_the_images_with_tcp_established_and_ext_unix_sk() {
    let mut scene = Scene::start("dd-restore", GHOST_BYTES);
    let reel = Reel::new("dd-restore");
    // Paused, the connections' state stays exactly as dumped (reel dumps a paused container
    // and leaves it paused), so the restored copy can take them over.
    scene.container.as_ref().unwrap().pause();
    let created = reel.create_ok(&scene.ns, &scene.pod, None, &[]);
    assert_eq!(created["left_frozen"], true);
    let archive = restore::Archive::read(Path::new(created["path"].as_str().unwrap()));
    let images = archive.unpack_images(&reel.scratch("unpacked"));

    // The original goes without its peers noticing: its FINs and RSTs never leave the pod.
    scene.net.block();
    let mut original = scene.container.take().unwrap();
    original.delete();
    scene.net.destroy_connections_to(&[7101, 7102]);
    let rounds = match read_status(&scene.status()) {
        Some(Status::Ok { rounds, .. }) => rounds,
        other => panic!("status before the restore: {other:?}"),
    };

    let id = kit::unique_name("dd-restored");
    let (bundle_dir, bundle) = restore::copy_bundle(&scene.bundle_dir, &id);
    drop(original);
    let restored = restore::runc_restore_with(
        &images,
        bundle_dir,
        &bundle,
        &id,
        &["--tcp-established", "--ext-unix-sk"],
    );
    scene.net.unblock();
    // The copy goes on from the checkpoint: its TCP connections continue with the peers, its
    // unix socket reconnects to the host's listener, the deleted file is still open.
    wait_rounds(&scene.status(), rounds + 20);
    let pid = restored.pid();
    let ghost = restore::open_deleted(pid, "/tmp/evidence")
        .unwrap_or_else(|| panic!("the restored process has no deleted /tmp/evidence open"));
    assert_eq!(fs::read(&ghost).unwrap(), pattern(GHOST_BYTES));
}

#[test]
fn a_deleted_file_over_the_limit_is_refused_before_the_freeze_and_kept_when_raised() {
    let scene = Scene::start("dd-ghost", 100 << 20);
    let reel = Reel::new("dd-ghost");
    let out = reel.create(&scene.ns, &scene.pod, None, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        "/tmp/evidence",
        &(100u64 << 20).to_string(),
        "--ghost-limit",
        "not frozen",
    ] {
        assert!(
            stderr.contains(part),
            "the refusal lacks {part:?}: {stderr}"
        );
    }
    assert!(reel.store_entries().iter().all(|e| !e.ends_with(".tar")));
    let r = wait_rounds(&scene.status(), 0);
    wait_rounds(&scene.status(), r + 5);

    let created = reel.create_ok(&scene.ns, &scene.pod, None, &["--ghost-limit", "128M"]);
    let archive = restore::Archive::read(Path::new(created["path"].as_str().unwrap()));
    assert!(ghost_contents_found(&archive, &pattern(100 << 20)));
    let opts = &archive.json("reel-manifest.json")["dump_options"];
    assert_eq!(opts["ghost_limit"], 128u64 << 20, "{opts}");
}

#[test]
fn tcp_established_false_keeps_the_refusal_and_its_hint() {
    let scene = Scene::start("dd-notcp", 4096);
    let reel = Reel::new("dd-notcp");
    let out = reel.create(&scene.ns, &scene.pod, None, &["--tcp-established=false"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--tcp-established"), "{stderr}");
    assert_eq!(
        stderr.matches("hint:").count(),
        1,
        "one hint, printed once: {stderr}"
    );
    let r = wait_rounds(&scene.status(), 0);
    wait_rounds(&scene.status(), r + 5);
}

/// `reel create checkpoint --file-locks web`: a bare boolean never takes the next argument.
#[test]
fn bare_boolean_flags_never_swallow_the_next_argument() {
    kit::require_root();
    let reel = Reel::new("dd-bare");
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("dd-bare");
    let bundle = BundleBuilder::new(&pod)
        .containerd_pod(&ns, &pod, "app")
        .args(&restore::detached_stdio(&["/bin/counter", "/tmp/counter"]))
        .build();
    let c = kit::run_oci(Oci::Runc, None, bundle);
    c.wait_counter_advances("/tmp/counter", TIMEOUT);
    for flags in [
        &["--file-locks"][..],
        &["--tcp-established"],
        &["--ext-unix-sk", "--shell-job=false"],
        &["--file-locks=false", "--tcp-established=true"],
        &["--link-remap=false", "--ghost-limit", "0"],
    ] {
        // The flags go before the pod: a bare flag must not take it as its value.
        let mut args = vec!["create", "checkpoint"];
        args.extend(flags);
        args.extend([pod.as_str(), "-n", &ns, "-o", "json"]);
        let out = reel.run(&args);
        assert!(
            out.status.success(),
            "reel {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let manifest = restore::Archive::read(Path::new(v["path"].as_str().unwrap()))
            .json("reel-manifest.json");
        let opts = &manifest["dump_options"];
        let want = |flag: &str, default: bool| {
            flags
                .iter()
                .find_map(|f| {
                    f.strip_prefix(&format!("--{flag}"))
                        .map(|rest| rest != "=false")
                })
                .unwrap_or(default)
        };
        assert_eq!(opts["file_locks"], want("file-locks", true), "{args:?}");
        assert_eq!(
            opts["tcp_established"],
            want("tcp-established", true),
            "{args:?}"
        );
        assert_eq!(opts["ext_unix_sk"], want("ext-unix-sk", false), "{args:?}");
        assert_eq!(opts["shell_job"], want("shell-job", false), "{args:?}");
    }
    for bad in [&["--file-locks=maybe"][..], &["--ghost-limit", "lots"]] {
        let mut args = vec!["create", "checkpoint"];
        args.extend(bad);
        args.extend([pod.as_str(), "-n", &ns]);
        let out = reel.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "reel {args:?} is bad usage: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// CRIU needs CAP_SYS_RESOURCE to dump a process of another uid or gid. Where reel has it,
/// such a container is dumped; where it lacks it (this machine's root), the container is
/// refused before it is frozen, naming the process, its user and the capability.
#[test]
fn another_users_process_needs_cap_sys_resource() {
    kit::require_root();
    let reel = Reel::new("dd-user");
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("dd-user");
    let bundle = BundleBuilder::new(&pod)
        .containerd_pod(&ns, &pod, "app")
        .args(&restore::detached_stdio(&["/bin/counter", "/tmp/counter"]))
        .edit(|spec| {
            spec["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        })
        .build();
    let c = kit::run_oci(Oci::Runc, None, bundle);
    c.wait_counter_advances("/tmp/counter", TIMEOUT);
    let has_cap = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap();
    let out = reel.create(&ns, &pod, None, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if has_cap {
        assert!(out.status.success(), "{stderr}");
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for part in [
        "uid 1000",
        "CAP_SYS_RESOURCE",
        "not frozen",
        &c.pid().to_string(),
    ] {
        assert!(
            stderr.contains(part),
            "the refusal lacks {part:?}: {stderr}"
        );
    }
    assert_eq!(c.state().map(|s| s.status).as_deref(), Some("running"));
    c.wait_counter_advances("/tmp/counter", TIMEOUT);
    let caps_out = reel.run(&["get", "capabilities", "-o", "json"]);
    let report: Value = serde_json::from_slice(&caps_out.stdout).unwrap();
    let item = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "CAP_SYS_RESOURCE")
        .expect("get capabilities reports CAP_SYS_RESOURCE");
    assert_eq!(item["status"], "warning", "{item}");
}
