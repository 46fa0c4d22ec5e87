//! `reel inspect checkpoint` (issue #12) on real dumps: the `evidence` workload in a
//! pod-annotated runc container, checkpointed by reel, then every fact it holds asserted
//! through `reel inspect ... -o json` on the store's `.tar`, its `.tar.zst` export and the
//! unpacked directory. Bad inputs each get the error they must produce.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kit::podnet::PodNet;
use kit::restore::{self, Reel};
use kit::{BundleBuilder, Oci, OverlayRoot, RootfsMode};
use reel_testkit as kit;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);
const SECRET: &str = "INSP_MARKER_SECRET=hunter2-7f3a9c";
// The texts evidence.c writes.
const DELETED_TEXT: &str = "evidence: contents of a deleted file\n";
const MEMFD_TEXT: &str = "evidence: contents of a memfd, never on disk\n";
const PIPE_TEXT: &str = "evidence: unread pipe data\n";
const CLIENT_TEXT: &str = "evidence: client to server, unread\n";
const SERVER_TEXT: &str = "evidence: server to client, longer and unread\n";

/// The pids evidence reports once everything is set: main, client, jail, shell.
fn wait_ready(status: &Path) -> [u32; 4] {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Ok(t) = fs::read_to_string(status) {
            let f: Vec<u32> = t
                .split_whitespace()
                .skip(1)
                .filter_map(|w| w.parse().ok())
                .collect();
            if t.starts_with("ready") && f.len() == 4 {
                return [f[0], f[1], f[2], f[3]];
            }
        }
        assert!(Instant::now() < deadline, "evidence never got ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn inspect(reel: &Reel, target: &str, extra: &[&str]) -> Output {
    let mut args = vec!["inspect", "checkpoint", target];
    args.extend(extra);
    reel.run(&args)
}

fn inspect_json(reel: &Reel, target: &str, extra: &[&str]) -> Value {
    let mut args = extra.to_vec();
    args.extend(["-o", "json"]);
    let started = Instant::now();
    let out = inspect(reel, target, &args);
    assert!(
        out.status.success(),
        "reel inspect checkpoint {target} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "inspect {target} {extra:?}: {:.3}s",
        started.elapsed().as_secs_f64()
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn rows<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no list {key}: {v:#}"))
}

fn find<'a>(v: &'a Value, key: &str, pred: impl Fn(&Value) -> bool) -> &'a Value {
    rows(v, key)
        .iter()
        .find(|r| pred(r))
        .unwrap_or_else(|| panic!("no matching row in {key}: {:#}", v[key]))
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn sha256(b: &[u8]) -> String {
    kit::sha256_hex(b)
}

/// Every fact of the workload, from one `inspect --all -o json`.
fn assert_facts(v: &Value, ns: &str, pod: &str, pids: [u32; 4], with_manifest: bool) {
    let [main, cli, jail, sh] = pids;
    for key in [
        "checkpoint",
        "processes",
        "threads",
        "files",
        "sockets",
        "mounts",
        "namespaces",
        "timers",
        "rootfs",
        "findings",
    ] {
        assert!(v[key].is_array(), "top-level {key} is not a list: {v:#}");
    }
    let cp = &v["checkpoint"][0];
    if with_manifest {
        assert_eq!(cp["pod"], pod, "{cp:#}");
        assert_eq!(cp["namespace"], ns, "{cp:#}");
        assert_eq!(cp["container"], "app", "{cp:#}");
        assert_eq!(cp["verdict"], "verified", "{cp:#}");
        assert!(cp["frozen_ms"].as_f64().unwrap() > 0.0, "{cp:#}");
        assert!(!cp["node"].as_str().unwrap().is_empty());
    }

    // Processes, their argv, environment and credentials.
    let p = find(v, "processes", |p| p["pid"] == main);
    assert_eq!(p["comm"], "evidence", "{p:#}");
    assert_eq!(
        strs(&p["argv"]),
        vec!["/bin/evidence", "/status/status"],
        "{p:#}"
    );
    assert!(strs(&p["env"]).iter().any(|e| e == SECRET), "{p:#}");
    assert_eq!(p["threads"], 3, "{p:#}");
    assert_eq!((p["uid"].as_u64(), p["gid"].as_u64()), (Some(0), Some(0)));
    assert_eq!(p["state"], "alive");
    assert_eq!(p["exe"], "/bin/evidence", "{p:#}");
    let c = find(v, "processes", |p| p["pid"] == cli);
    assert_eq!(c["comm"], "evidence-cli");
    assert_eq!(c["ppid"], main);
    let j = find(v, "processes", |p| p["pid"] == jail);
    assert_eq!(j["comm"], "evidence-jail");
    assert_eq!(strs(&j["cap_eff"]), vec!["net_bind_service"], "{j:#}");
    assert_eq!(strs(&j["cap_prm"]), vec!["net_bind_service"], "{j:#}");
    assert!(strs(&p["cap_eff"]).len() > 1, "{p:#}");
    assert_eq!(j["no_new_privs"], true, "{j:#}");
    assert_eq!(j["seccomp"], "filter", "{j:#}");
    assert_eq!(j["uid"], 0);
    let s = find(v, "processes", |p| p["pid"] == sh);
    assert_eq!(s["comm"], "sh");
    assert_eq!(
        strs(&s["argv"]),
        vec!["sh", "-c", "sleep 100000; :"],
        "{s:#}"
    );
    let sleep = find(v, "processes", |p| p["ppid"] == sh);
    assert_eq!(sleep["comm"], "sleep");
    assert!(rows(v, "processes").len() >= 5);

    // Threads: the blocker in pause(2) with SIGUSR1 blocked and pending.
    let b = find(v, "threads", |t| t["comm"] == "blocker");
    assert_eq!(b["pid"], main);
    assert_eq!(b["syscall"], "pause", "{b:#}");
    assert!(
        strs(&b["blocked"]).contains(&"SIGUSR1".to_string()),
        "{b:#}"
    );
    assert!(
        strs(&b["pending"]).contains(&"SIGUSR1".to_string()),
        "{b:#}"
    );
    assert!(b["ip"].as_str().unwrap().starts_with("0x"));
    let z = find(v, "threads", |t| t["comm"] == "sleeper");
    let zs = z["syscall"].as_str().unwrap_or_default();
    assert!(zs == "nanosleep" || zs == "clock_nanosleep", "{z:#}");
    assert_eq!(
        rows(v, "threads")
            .iter()
            .filter(|t| t["pid"] == main)
            .count(),
        3
    );

    // Files: the deleted file and the memfd with names and sizes, the pipe's unread bytes.
    let d = find(v, "files", |f| f["path"] == "/tmp/unlinked.txt");
    assert_eq!(d["pid"], main);
    assert_eq!(d["deleted"], true, "{d:#}");
    assert_eq!(d["type"], "reg");
    assert_eq!(d["size"], DELETED_TEXT.len(), "{d:#}");
    let m = find(v, "files", |f| f["type"] == "memfd");
    assert_eq!(m["memfd_name"], "insp-memfd", "{m:#}");
    assert_eq!(m["path"], "memfd:insp-memfd", "{m:#}");
    assert_eq!(m["size"], MEMFD_TEXT.len(), "{m:#}");
    let pipes: Vec<&Value> = rows(v, "files")
        .iter()
        .filter(|f| f["type"] == "pipe" && f["pid"] == main)
        .collect();
    assert!(
        pipes.iter().any(|f| f["queued"] == PIPE_TEXT.len()),
        "{pipes:#?}"
    );

    // Sockets: the listener, both ends of the connection with their unread bytes, the pair.
    let l = find(v, "sockets", |s| s["state"] == "LISTEN");
    assert_eq!(
        (l["pid"].as_u64(), l["family"].as_str()),
        (Some(main.into()), Some("inet"))
    );
    assert_eq!(l["local"], "127.0.0.1:7201");
    assert_eq!(l["type"], "stream");
    let server = find(v, "sockets", |s| {
        s["state"] == "ESTABLISHED" && s["local"] == "127.0.0.1:7201"
    });
    assert_eq!(server["pid"], main);
    assert_eq!(server["recv_queue"], CLIENT_TEXT.len(), "{server:#}");
    let client = find(v, "sockets", |s| {
        s["state"] == "ESTABLISHED" && s["remote"] == "127.0.0.1:7201"
    });
    assert_eq!(client["pid"], cli);
    assert_eq!(client["recv_queue"], SERVER_TEXT.len(), "{client:#}");
    assert_eq!(server["remote"], client["local"]);
    let unix: Vec<&Value> = rows(v, "sockets")
        .iter()
        .filter(|s| s["family"] == "unix" && s["pid"] == main)
        .collect();
    assert!(
        unix.iter().any(|s| {
            // The children inherited both ends: every holder of the peer is listed.
            let peer = strs(&s["peer"]);
            let fd = s["fd"].as_u64().unwrap();
            peer.iter()
                .any(|p| p == &format!("{main}/{}", fd + 1) || p == &format!("{main}/{}", fd - 1))
                && peer.iter().any(|p| p.starts_with(&format!("{cli}/")))
        }),
        "no socketpair with its peer: {unix:#?}"
    );

    // Mounts, namespaces, timers.
    assert!(rows(v, "mounts")
        .iter()
        .any(|m| m["target"] == "/proc" && m["fstype"] == "proc"));
    assert!(rows(v, "mounts").iter().any(|m| m["target"] == "/"));
    let uts = find(v, "namespaces", |n| n["kind"] == "uts");
    assert_eq!(uts["hostname"], "insp-evidence", "{uts:#}");
    assert!(rows(v, "namespaces")
        .iter()
        .any(|n| n["kind"] == "ipc" && n["shm_segments"] == 0));
    let pt = find(v, "timers", |t| t["kind"] == "posix");
    assert_eq!(pt["pid"], main);
    assert_eq!(pt["clock"], "monotonic");
    assert_eq!(pt["signal"], "SIGUSR2");
    assert_eq!(pt["interval_s"], 500.0);
    let next = pt["next_s"].as_f64().unwrap();
    assert!(next > 900.0 && next <= 1000.0, "{pt:#}");
    let tf = find(v, "timers", |t| t["kind"] == "timerfd");
    assert_eq!(tf["interval_s"], 100.0);
    let next = tf["next_s"].as_f64().unwrap();
    assert!(next > 1900.0 && next <= 2000.0, "{tf:#}");

    // The rootfs diff.
    let conf = find(v, "rootfs", |r| r["path"] == "/etc/evidence.conf");
    assert_eq!(conf["type"], "file");
    // Told apart by the base layers the manifest records (still on this host); without a
    // manifest nothing says where the base is.
    // (The runc container changed /etc/group of its base; the Podman one did not.)
    if with_manifest {
        assert_eq!(conf["status"], "added", "{conf:#}");
        let group = find(v, "rootfs", |r| r["path"] == "/etc/group");
        assert_eq!(group["status"], "changed", "{group:#}");
    } else {
        assert_eq!(conf["status"], "added-or-changed", "{conf:#}");
    }
    assert_eq!(conf["sha256"], sha256(b"written by evidence\n"), "{conf:#}");
    assert_eq!(conf["size"], 20);
    let suid = find(v, "rootfs", |r| r["path"] == "/tmp/suid-tool");
    assert_eq!(suid["setuid"], true, "{suid:#}");
    assert_eq!(suid["mode"], "4755", "{suid:#}");
    let gone = find(v, "rootfs", |r| r["path"] == "/bin/counter");
    assert_eq!(gone["status"], "deleted");

    // Findings.
    let kinds = |k: &str| -> Vec<String> {
        rows(v, "findings")
            .iter()
            .filter(|f| f["kind"] == k)
            .map(|f| f["what"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert!(
        kinds("shell-or-downloader").contains(&"sh".to_string()),
        "{:#}",
        v["findings"]
    );
    assert!(kinds("deleted-file-open").contains(&"/tmp/unlinked.txt".to_string()));
    assert!(kinds("memfd-open").contains(&"memfd:insp-memfd".to_string()));
    assert!(kinds("sensitive-path-changed").contains(&"/etc/evidence.conf".to_string()));
    assert!(kinds("setuid-file-changed").contains(&"/tmp/suid-tool".to_string()));
    assert!(
        kinds("deleted-executable-mapped").contains(&"/tmp/dropper".to_string()),
        "{:#}",
        v["findings"]
    );
    let drop = find(v, "processes", |p| p["comm"] == "evidence-drop");
    assert_eq!(drop["exe"], "/tmp/dropper", "{drop:#}");
    assert_eq!(strs(&drop["argv"]), vec!["dropper", "--dropped"]);
}

#[test]
fn inspect_reports_every_fact_from_the_store_the_export_and_a_directory() {
    kit::require_root();
    let t0 = Instant::now();
    let evidence = kit::programs::program("evidence");
    let net = PodNet::new("insp");
    let root = OverlayRoot::new("insp-root.");
    fs::copy(&evidence, root.merged().join("bin/evidence")).unwrap();
    // A file of the base layer the container changed (copied up into its writable layer).
    let group = root.merged().join("etc/group");
    let mut changed = fs::read(&group).unwrap();
    changed.extend_from_slice(b"intruder:x:0:\n");
    fs::write(&group, changed).unwrap();
    let status_dir = tempfile::Builder::new()
        .prefix("insp-status.")
        .tempdir_in(kit::test_dir())
        .unwrap();
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("insp");
    let mut bundle = BundleBuilder::new(&pod)
        .containerd_pod(&ns, &pod, "app")
        .rootfs(RootfsMode::Path(root.merged()))
        .hostname("insp-evidence")
        .env(SECRET)
        .bind(status_dir.path(), "/status", false)
        .args(&restore::detached_stdio(&[
            "/bin/evidence",
            "/status/status",
        ]))
        .build();
    bundle.join_netns(&net.path());
    let container = kit::run_oci(Oci::Runc, None, bundle);
    let pids = wait_ready(&status_dir.path().join("status"));
    let reel = Reel::new("insp");
    let created = reel.create_ok(&ns, &pod, None, &[]);
    let id = created["id"].as_str().unwrap().to_string();
    let stored = PathBuf::from(created["path"].as_str().unwrap());
    drop(container);
    // REEL_INSPECT_KEEP=DIR keeps a copy of the real archive (fuzz/seed.sh seeds the fuzz
    // corpus from it).
    if let Some(keep) = std::env::var_os("REEL_INSPECT_KEEP") {
        fs::copy(&stored, Path::new(&keep).join("evidence.tar")).unwrap();
    }

    // The store's .tar, by id.
    let v = inspect_json(&reel, &id, &["--all"]);
    assert_facts(&v, &ns, &pod, pids, true);
    assert_eq!(v["checkpoint"][0]["layout"], "tar");
    let sha_before = sha256(&fs::read(&stored).unwrap());

    // The same through the summary and the views, as tables.
    let out = inspect(&reel, &id, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    eprintln!("{summary}");
    for part in [
        &pod,
        "evidence-jail",
        "127.0.0.1:7201",
        "/tmp/unlinked.txt",
        "verified",
    ] {
        assert!(
            summary.contains(part),
            "the summary lacks {part}:\n{summary}"
        );
    }
    let out = inspect(&reel, &id, &["--threads", "--creds", "--sockets"]);
    assert!(out.status.success());
    let t = String::from_utf8_lossy(&out.stdout);
    eprintln!("{t}");
    assert!(
        t.contains("pause") && t.contains("net_bind_service") && t.contains("LISTEN"),
        "{t}"
    );

    // --pid: one process and its threads.
    let one = inspect_json(&reel, &id, &["--pid", &pids[0].to_string()]);
    assert_eq!(rows(&one, "processes").len(), 1);
    assert_eq!(rows(&one, "threads").len(), 3);
    assert!(rows(&one, "files").iter().all(|f| f["pid"] == pids[0]));
    let out = inspect(&reel, &id, &["--pid", "999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("process 999999"));

    // The .tar.zst export, read frame by frame.
    let zst = reel.export_ok(&id, &format!("{id}.tar.zst"), &[]);
    let scratch = reel.scratch("exports");
    let v = inspect_json(&reel, zst.to_str().unwrap(), &["--all"]);
    assert_facts(&v, &ns, &pod, pids, true);
    assert_eq!(v["checkpoint"][0]["layout"], "tar-zst-seekable");

    // The unpacked directory.
    let dir = scratch.join("unpacked");
    fs::create_dir(&dir).unwrap();
    tar::Archive::new(fs::File::open(&stored).unwrap())
        .unpack(&dir)
        .unwrap();
    let v = inspect_json(&reel, dir.to_str().unwrap(), &["--all"]);
    assert_facts(&v, &ns, &pod, pids, true);
    assert_eq!(v["checkpoint"][0]["layout"], "directory");

    // Without the manifest (as Podman and CRI-O write them): unverified, and the same facts.
    fs::remove_file(dir.join("reel-manifest.json")).unwrap();
    let out = inspect(&reel, dir.to_str().unwrap(), &["--all", "-o", "json"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no reel manifest"));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["checkpoint"][0]["verdict"], "unverified");
    assert_eq!(v["checkpoint"][0]["pod"], pod.as_str(), "from spec.dump");
    assert_facts(&v, &ns, &pod, pids, false);

    // A member changed after the checkpoint: inspect stops naming it, --no-verify goes on.
    let tampered = scratch.join("tampered");
    fs::create_dir(&tampered).unwrap();
    tar::Archive::new(fs::File::open(&stored).unwrap())
        .unpack(&tampered)
        .unwrap();
    let core = tampered.join(format!("checkpoint/core-{}.img", pids[1]));
    let mut bytes = fs::read(&core).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    fs::write(&core, &bytes).unwrap();
    let out = inspect(&reel, tampered.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("checkpoint/core-{}.img", pids[1]))
            && err.contains("does not match the manifest"),
        "{err}"
    );
    let out = inspect(
        &reel,
        tampered.to_str().unwrap(),
        &["--no-verify", "-o", "json"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert!(err.contains("DO NOT MATCH"), "{err}");
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["checkpoint"][0]["verdict"], "MISMATCH");
    } else {
        // The flipped byte broke the image itself: the error names it.
        assert!(err.contains(&format!("core-{}.img", pids[1])), "{err}");
    }

    // Nothing was written into the archive.
    assert_eq!(sha256(&fs::read(&stored).unwrap()), sha_before);
    let out = reel.run(&["verify", "checkpoint", &id]);
    assert!(out.status.success());
    eprintln!("inspect on real dumps: {:.1}s", t0.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// Bad inputs
// ---------------------------------------------------------------------------------------------

fn tar_with(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, ty, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*ty);
        h.set_mode(0o600);
        h.set_size(if *ty == tar::EntryType::Regular {
            data.len() as u64
        } else {
            0
        });
        let n = name.as_bytes();
        h.as_old_mut().name[..n.len()].copy_from_slice(n);
        if *ty == tar::EntryType::Symlink {
            h.set_link_name("/etc/shadow").unwrap();
        }
        h.set_cksum();
        let d: &[u8] = if *ty == tar::EntryType::Regular {
            data
        } else {
            &[]
        };
        b.append(&h, d).unwrap();
    }
    b.into_inner().unwrap()
}

/// A pstree image with one entry: pid 1.
fn pstree() -> Vec<u8> {
    use criu_sys::proto::PstreeEntry;
    use reel_core::criu::image::{ImageKind, ImageWriter};
    let mut w = ImageWriter::new(Vec::new(), ImageKind::Pstree, "pstree.img").unwrap();
    w.write_entry(&PstreeEntry {
        pid: 1,
        ppid: 0,
        pgid: 1,
        sid: 1,
        threads: vec![1],
    })
    .unwrap();
    w.finish().unwrap()
}

/// `reel inspect checkpoint PATH` fails with exit code 1 and every part in its message.
fn refused(reel: &Reel, path: &Path, parts: &[&str]) {
    let out = inspect(reel, path.to_str().unwrap(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: {err}", path.display());
    assert!(!err.contains("panicked"), "{err}");
    for p in parts {
        assert!(
            err.contains(p),
            "{}: the error lacks {p:?}: {err}",
            path.display()
        );
    }
}

#[test]
fn bad_inputs_get_errors_naming_what_is_wrong() {
    let reel = Reel::new("insp-bad");
    let dir = reel.scratch("bad");
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        fs::write(&p, bytes).unwrap();
        p
    };
    let good = tar_with(&[
        ("checkpoint/", tar::EntryType::Directory, b""),
        ("checkpoint/pstree.img", tar::EntryType::Regular, &pstree()),
        (
            "checkpoint/pages-1.img",
            tar::EntryType::Regular,
            &[7u8; 8192],
        ),
    ]);

    // Truncated in the middle of a member: named.
    refused(
        &reel,
        &write("cut.tar", &good[..2048]),
        &["truncated", "checkpoint/pages-1.img"],
    );
    // A corrupted image: named, with the offset.
    let mut bad_image = pstree();
    bad_image.truncate(bad_image.len() - 3);
    let p = write(
        "corrupt.tar",
        &tar_with(&[
            ("checkpoint/", tar::EntryType::Directory, b""),
            ("checkpoint/pstree.img", tar::EntryType::Regular, &bad_image),
        ]),
    );
    refused(&reel, &p, &["checkpoint/pstree.img", "truncated at offset"]);
    // A member `../x`.
    let p = write(
        "dotdot.tar",
        &tar_with(&[
            ("checkpoint/pstree.img", tar::EntryType::Regular, &pstree()),
            ("../x", tar::EntryType::Regular, b"evil"),
        ]),
    );
    refused(&reel, &p, &["\"../x\"", "`..`"]);
    // A symlink member.
    let p = write(
        "symlink.tar",
        &tar_with(&[
            ("checkpoint/pstree.img", tar::EntryType::Regular, &pstree()),
            ("checkpoint/core-1.img", tar::EntryType::Symlink, b""),
        ]),
    );
    refused(&reel, &p, &["checkpoint/core-1.img", "symbolic link"]);
    // An empty file.
    refused(
        &reel,
        &write("empty.tar", b""),
        &["empty", "not a checkpoint archive"],
    );
    // A directory without checkpoint/.
    let d = dir.join("nockpt");
    fs::create_dir(&d).unwrap();
    fs::write(d.join("config.dump"), b"{}").unwrap();
    refused(&reel, &d, &["no checkpoint/"]);
    // Not an id in the store either.
    let out = inspect(&reel, "checkpoint-nope-20261201-000000", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("neither"));
    // Nothing was written next to the inputs.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "corrupt.tar",
            "cut.tar",
            "dotdot.tar",
            "empty.tar",
            "nockpt",
            "symlink.tar"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Another tool's archive
// ---------------------------------------------------------------------------------------------

/// Removes a Podman container when dropped.
struct PodmanContainer(String);

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.0])
            .output();
    }
}

/// The same workload checkpointed by `podman container checkpoint --export` (a single-frame
/// zstd tar, no reel manifest): inspected unverified, with the same facts.
#[test]
fn inspect_reads_a_podman_export_unverified() {
    kit::require_root();
    let image = kit::podman_image();
    let status_dir = tempfile::Builder::new()
        .prefix("insp-pm-status.")
        .tempdir_in(kit::test_dir())
        .unwrap();
    let name = kit::unique_name("insp-pm");
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
        "--hostname",
        "insp-evidence",
        "-e",
        SECRET,
        "-v",
        &format!("{}:/status", status_dir.path().display()),
        image,
        "/bin/evidence",
        "/status/status",
    ]));
    assert!(out.status.success());
    let _guard = PodmanContainer(name.clone());
    let pids = wait_ready(&status_dir.path().join("status"));
    let reel = Reel::new("insp-pm");
    let export = reel.scratch("podman").join("podman.tar.zst");
    let out = Command::new("podman")
        .args(["container", "checkpoint", "--tcp-established", "--export"])
        .arg(&export)
        .arg(&name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman container checkpoint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = inspect(&reel, export.to_str().unwrap(), &["--all", "-o", "json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no reel manifest"), "{err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let cp = &v["checkpoint"][0];
    assert_eq!(cp["verdict"], "unverified", "{cp:#}");
    assert_eq!(cp["manifest"], false);
    assert!(cp["layout"] == "tar-zst" || cp["layout"] == "tar", "{cp:#}");
    eprintln!(
        "podman's export: layout {}, {} bytes",
        cp["layout"],
        fs::metadata(&export).unwrap().len()
    );
    assert_facts(&v, "", "", pids, false);
}
