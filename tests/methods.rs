//! End to end: the checkpoint methods (issue #11), through the real `reel` binary, as root.
//!
//! * `containerd`: REAL containerd 1.6 (`scripts/containerd.sh`), a pod-annotated container
//!   started with `ctr`; the archive verifies, runc restores it, the workload runs on, and
//!   containerd's content store gains nothing; SIGKILL of reel while containerd holds the task
//!   paused leaves it running.
//! * `crio`: a STAND-IN CRI runtime (`tests/standins/cri.rs`, following CRI-O's and the CRI
//!   `api.proto`'s answers) that checkpoints a real runc container; and the REAL containerd
//!   1.6 CRI socket's `Unimplemented`.
//! * `k8s-api`: a STAND-IN API server and kubelet (`tests/standins/kube-api.py`, following
//!   kubelet `server.go` and the API server's `Status` answers) over HTTPS with a test CA,
//!   bearer tokens, and a kubeconfig written here.
//! * `auto`: direct for a local container, k8s-api for a pod only in the cluster, and an
//!   explanation when neither works.
//!
//! Run them one at a time: `cargo test --test methods -- --test-threads=1`.

#[path = "standins/cri.rs"]
mod cri_standin;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kit::{reel, restore, CriRole, Oci};
use reel::{run_bounded, Out, TestStore};
use reel_testkit as kit;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(120);

fn reel_env(store: &TestStore, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = store.cmd(args);
    cmd.env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("NODE_NAME");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(&mut cmd, TIMEOUT)
}

fn verify_ok(store: &TestStore, what: &str) -> Value {
    let out = store.run(&["verify", "checkpoint", what, "-o", "json"]);
    out.ok();
    out.json()
}

/// (content blobs, images) of containerd's k8s.io namespace.
fn content_store() -> (Vec<String>, Vec<String>) {
    let ls = |args: &[&str]| -> Vec<String> {
        let out = kit::run(Command::new("ctr").args(["-n", kit::K8S_NS]).args(args));
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    (ls(&["content", "ls", "-q"]), ls(&["images", "ls", "-q"]))
}

fn task_status(id: &str) -> Option<String> {
    let out = Command::new("ctr")
        .args(["-n", kit::K8S_NS, "task", "ls"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 3 && f[0] == id).then(|| f[2].to_string())
    })
}

// ---------------------------------------------------------------------------------------------
// containerd (real)
// ---------------------------------------------------------------------------------------------

/// A container of a new pod (unique namespace and pod names) run by containerd with `ctr`.
fn containerd_pod(prefix: &str, name: &str, args: &[&str]) -> (String, String, kit::Container) {
    kit::require_root();
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("pod");
    let role = CriRole::Container {
        namespace: ns.clone(),
        pod: pod.clone(),
        name: name.into(),
    };
    let c = kit::run_containerd(prefix, role, args);
    (ns, pod, c)
}

#[test]
fn containerd_method_checkpoints_through_containerd_and_runc_restores_it() {
    let store = TestStore::new();
    let (ns, pod, c) = containerd_pod("m-ctrd", "app", &[]);
    let pid = c.pid();
    let counter = restore::in_root(pid, "/tmp/counter");
    restore::wait_counter_above(&counter, 20, Duration::from_secs(30));
    fs::write(restore::in_root(pid, "/tmp/added.txt"), b"written before\n").unwrap();
    let before = content_store();

    let out = reel_env(
        &store,
        &[
            "create",
            "checkpoint",
            &pod,
            "-n",
            &ns,
            "--method",
            "containerd",
            "-o",
            "json",
        ],
        &[],
    );
    out.ok();
    let created = out.json();
    assert_eq!(created["method"], "containerd", "{created}");
    assert!(
        created["runtime_version"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{created}"
    );
    assert_eq!(created["container_id"], c.id.as_str());
    assert_eq!(task_status(&c.id).as_deref(), Some("RUNNING"));
    let seen = restore::read_counter(&counter).unwrap();
    restore::wait_counter_above(&counter, seen, Duration::from_secs(30));

    let id = created["id"].as_str().unwrap().to_string();
    let report = verify_ok(&store, &id);
    assert!(
        report.to_string().contains("\"ok\":true") || report["ok"] == true,
        "{report}"
    );
    let archive = restore::Archive::read(&store.archive(&id));
    let manifest = archive.json("reel-manifest.json");
    assert_eq!(manifest["method"]["name"], "containerd", "{manifest}");
    assert_eq!(manifest["method"]["runtime"], "containerd");
    assert_eq!(
        manifest["criu_version"], "4.2.1",
        "CRIU's version from dump.log"
    );
    assert_eq!(manifest["rootfs_diff"]["kind"], "overlay-upper");
    assert!(
        archive
            .rootfs_diff()
            .iter()
            .any(|(n, d)| n.ends_with("tmp/added.txt") && d == b"written before\n"),
        "the rootfs diff lacks /tmp/added.txt"
    );
    for m in [
        "checkpoint/inventory.img",
        "checkpoint/descriptors.json",
        "stats-dump",
        "dump.log",
    ] {
        assert!(archive.has(m), "no {m}: {:?}", archive.names());
    }
    // `list` shows the method.
    let list = store.run(&["list", "checkpoint", "-A", "-o", "json"]);
    list.ok();
    assert_eq!(list.json()[0]["method"], "containerd");
    let table = store.run(&["list", "checkpoint", "-A"]);
    assert!(
        table.stdout.contains("METHOD") && table.stdout.contains("containerd"),
        "{table}"
    );

    // export with the same method: a file that verifies.
    let dest = store.base().join("out");
    fs::create_dir_all(&dest).unwrap();
    let out = reel_env(
        &store,
        &[
            "export",
            "checkpoint",
            &pod,
            "-n",
            &ns,
            "--method",
            "containerd",
            "--dest",
            dest.to_str().unwrap(),
            "-o",
            "json",
        ],
        &[],
    );
    out.ok();
    let exported = out.json();
    assert_eq!(exported["method"], "containerd");
    verify_ok(&store, exported["destination"].as_str().unwrap());
    assert_eq!(task_status(&c.id).as_deref(), Some("RUNNING"));

    // Nothing was left in containerd's content store (image_path keeps it out).
    assert_eq!(
        content_store(),
        before,
        "containerd's content store changed"
    );

    // runc restores the images into a new container, and the counter resumes.
    let dumped = archive.json("config.dump");
    assert_eq!(dumped["id"], c.id.as_str());
    let work = store.base().join("restore");
    let images = archive.unpack_images(&work);
    let dumped_at = reel_e2e::dumped_size(&images, "/tmp/counter");
    let bundle_src = PathBuf::from(format!(
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/{}",
        c.id
    ));
    let rid = kit::unique_name("m-ctrd-restored");
    let (dir, bundle) = restore::copy_bundle(&bundle_src, &rid);
    restore::write_zero_counter(&bundle.join("rootfs/tmp/counter"), dumped_at);
    let restored = restore::runc_restore(&images, dir, &bundle, &rid);
    let rcounter = restore::in_root(restored.pid(), "/tmp/counter");
    let v = restore::wait_counter_above(&rcounter, 20, Duration::from_secs(30));
    eprintln!("restored counter at {v}");
}

#[test]
fn containerd_pause_is_undone_when_reel_is_killed() {
    let store = TestStore::new();
    // 768 MiB to dump: CRIU works for seconds while containerd holds the task paused.
    let (ns, pod, c) = containerd_pod("m-kill", "hog", &["/bin/memhog", "768", "/tmp"]);
    let pid = c.pid();
    kit::wait_for(Duration::from_secs(60), "memhog ready", || {
        restore::in_root(pid, "/tmp/memhog.ready")
            .exists()
            .then_some(())
    });
    let cg = kit::cgroups::Cgroups::of(pid);
    let mut cmd = store.cmd(&[
        "create",
        "checkpoint",
        &pod,
        "-n",
        &ns,
        "--method",
        "containerd",
    ]);
    let mut running = reel::Running::spawn(&mut cmd);
    kit::wait_for(
        Duration::from_secs(30),
        "containerd to pause the task",
        || (task_status(&c.id).as_deref() == Some("PAUSED")).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!running.finished(), "reel ended before it could be killed");
    running.signal(libc::SIGKILL);
    let out = running.wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), None, "reel was killed: {out}");
    // The watchdog resumed it (through containerd, then the cgroup), and it stays running
    // after the CRIU that was dumping lets go.
    kit::wait_for(Duration::from_secs(60), "the task to run again", || {
        (task_status(&c.id).as_deref() == Some("RUNNING") && !cg.any_frozen() && !cg.any_traced())
            .then_some(())
    });
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(3) {
        assert!(!cg.any_frozen(), "frozen again after the watchdog");
        assert_eq!(task_status(&c.id).as_deref(), Some("RUNNING"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(store.archives().is_empty(), "a killed run left an archive");
}

// ---------------------------------------------------------------------------------------------
// Flags per method
// ---------------------------------------------------------------------------------------------

#[test]
fn methods_refuse_dump_flags_they_cannot_honour() {
    kit::require_root();
    let store = TestStore::new();
    for (method, flag) in [
        ("containerd", "--link-remap"),
        ("containerd", "--freezer=v2"),
        ("crio", "--tcp-established=false"),
        ("k8s-api", "--file-locks=false"),
        ("k8s-api", "--ext-unix-sk"),
    ] {
        let out = reel_env(
            &store,
            &[
                "create",
                "checkpoint",
                "nopod",
                "-n",
                "nons",
                "--method",
                method,
                flag,
            ],
            &[],
        );
        out.code_is(2);
        let name = flag.split('=').next().unwrap();
        out.stderr_has(&[name, &format!("--method {method}")]);
    }
    // direct honours all of them (it fails later, on the unknown pod, not on the flags).
    let out = reel_env(
        &store,
        &[
            "create",
            "checkpoint",
            "nopod",
            "-n",
            "nons",
            "--method",
            "direct",
            "--link-remap",
        ],
        &[],
    );
    out.code_is(1);
}

// ---------------------------------------------------------------------------------------------
// crio (stand-in, and the real containerd CRI socket)
// ---------------------------------------------------------------------------------------------

fn runc_counter(prefix: &str) -> kit::Container {
    reel::run_counter(Oci::Runc, reel::counter_bundle(prefix))
}

fn bundle_of(c: &kit::Container) -> PathBuf {
    c.bundle
        .as_ref()
        .expect("a runc bundle")
        .path()
        .to_path_buf()
}

#[test]
fn crio_method_imports_the_runtimes_archive_as_received() {
    kit::require_root();
    let store = TestStore::new();
    let cri = cri_standin::CriStandIn::start();
    let c = runc_counter("m-crio");
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("pod");
    cri.add(cri_standin::Entry {
        id: format!("cri-{}", c.id),
        namespace: ns.clone(),
        pod: pod.clone(),
        name: "app".into(),
        runc_id: c.id.clone(),
        bundle: bundle_of(&c),
    });
    let sock = cri.socket.to_str().unwrap().to_string();
    let crio = |pod: &str, extra: &[&str]| -> Out {
        let mut args = vec!["create", "checkpoint", pod, "-n", &ns];
        args.extend(["--method", "crio", "--cri-socket", &sock]);
        args.extend(extra);
        reel_env(&store, &args, &[])
    };
    let out = crio(&pod, &["--timeout", "30s", "-o", "json"]);
    out.ok();
    let created = out.json();
    assert_eq!(created["method"], "crio");
    assert_eq!(created["runtime"], "cri-o");
    assert_eq!(created["runtime_version"], "1.33.0-standin");
    assert_eq!(created["container_id"], c.id.as_str(), "config.dump's id");
    let id = created["id"].as_str().unwrap().to_string();
    // The runtime wrote to <staging dir>/<id>.tar, and reel removed its stage afterwards.
    let locations = cri.locations();
    assert_eq!(locations.len(), 1);
    assert!(
        locations[0].ends_with(&format!("{id}.tar")),
        "{locations:?}"
    );
    assert!(
        !Path::new(&locations[0]).exists(),
        "the runtime's archive was left behind"
    );
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    c.wait_counter_advances(reel::COUNTER, reel::RUNS_TIMEOUT);

    verify_ok(&store, &id);
    let archive = restore::Archive::read(&store.archive(&id));
    let manifest = archive.json("reel-manifest.json");
    assert_eq!(manifest["method"]["name"], "crio", "{manifest}");
    assert_eq!(manifest["method"]["runtime"], "cri-o");
    assert_eq!(manifest["method"]["runtime_version"], "1.33.0-standin");
    assert_eq!(manifest["rootfs_diff"]["kind"], "from-runtime");
    assert_eq!(manifest["criu_version"], "4.2.1");
    // Every member as the runtime wrote it: same bytes, reel's order (images first).
    let handed = restore::Archive::read(&cri_standin::handed_over(&bundle_of(&c)));
    assert_eq!(
        manifest["method"]["received_sha256"],
        kit::sha256_hex(&handed.bytes).as_str()
    );
    assert_eq!(archive.members[0].name, "checkpoint/");
    for m in handed.members.iter().filter(|m| m.kind.is_file()) {
        assert_eq!(archive.member(&m.name).data, m.data, "{} differs", m.name);
        let entry = manifest["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == m.name.as_str())
            .unwrap_or_else(|| panic!("{} not in the manifest", m.name));
        assert_eq!(entry["sha256"], m.sha256().as_str());
    }
    assert_eq!(
        archive.member("spec.dump").data,
        fs::read(bundle_of(&c).join("config.json")).unwrap()
    );

    // The runtime's refusals, each with its hint.
    for (mode, want) in [
        (
            cri_standin::Mode::Unimplemented,
            [
                "does not implement CheckpointContainer",
                "--method containerd",
            ],
        ),
        (
            cri_standin::Mode::CriuOff,
            ["checkpoint/restore support", "enable_criu_support"],
        ),
        (
            cri_standin::Mode::NotFound,
            ["knows no container", "could not find container"],
        ),
    ] {
        cri.set_mode(mode);
        let out = crio(&pod, &[]);
        out.code_is(1);
        out.stderr_has(&want);
    }
    let out = crio("nopod", &[]);
    out.code_is(1);
    out.stderr_has(&["cri-o knows no container of pod", "nopod"]);
    assert_eq!(
        store.archives(),
        vec![id],
        "a refused checkpoint left an archive"
    );
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
}

#[test]
fn containerd_16_cri_socket_answers_unimplemented() {
    kit::require_root();
    kit::ensure_containerd();
    let sock = Path::new("/run/containerd/containerd.sock");
    // The real CRI plugin of containerd 1.6, asked by reel's own client.
    let client = reel_core::rpc::cri::Client::connect(sock).expect("containerd's CRI socket");
    let v = client.version().expect("CRI Version");
    assert_eq!(v.runtime_name, "containerd", "{v:?}");
    let err = client
        .checkpoint(
            "reel-no-such-container",
            Path::new("/tmp/reel-never-written.tar"),
            Duration::from_secs(5),
        )
        .expect_err("containerd 1.6 cannot checkpoint through the CRI");
    assert_eq!(err.code(), Some(tonic::Code::Unimplemented), "{err}");
    assert!(!Path::new("/tmp/reel-never-written.tar").exists());
    // And reel says so, with what to do instead.
    let store = TestStore::new();
    let out = store.run(&[
        "get",
        "capabilities",
        "-o",
        "json",
        "--cri-socket",
        sock.to_str().unwrap(),
    ]);
    let caps: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    let crio = caps["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "crio")
        .unwrap_or_else(|| panic!("no crio method: {caps}"))
        .clone();
    assert_eq!(crio["status"], "missing", "{crio}");
    let detail = crio["detail"].as_str().unwrap();
    assert!(
        detail.contains("containerd") && detail.contains("not implemented"),
        "{crio}"
    );
    assert!(
        crio["hint"]
            .as_str()
            .unwrap()
            .contains("--method containerd"),
        "{crio}"
    );
    let ctrd = caps["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "containerd")
        .unwrap()
        .clone();
    assert_eq!(ctrd["status"], "ok", "{ctrd}");
}

// ---------------------------------------------------------------------------------------------
// k8s-api (stand-in)
// ---------------------------------------------------------------------------------------------

/// The stand-in API server + kubelet (see `tests/standins/kube-api.py`), its certificates and
/// a kubeconfig for it. The server process is killed when dropped.
struct KubeStandIn {
    dir: tempfile::TempDir,
    child: Child,
    port: u16,
    pods: serde_json::Map<String, Value>,
}

const TOKEN: &str = "reel-test-token";

impl KubeStandIn {
    fn start() -> KubeStandIn {
        let dir = tempfile::Builder::new()
            .prefix("reel-kube-standin.")
            .tempdir_in(kit::test_dir())
            .unwrap();
        let d = dir.path();
        // A test CA and a leaf for 127.0.0.1 it signs (rustls refuses a self-signed CA as a
        // server certificate).
        let sh = format!(
            "set -e; cd {d}
            openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj '/CN=reel test CA' \
              -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
              -keyout ca.key -out ca.pem
            openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key -out server.csr
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext
            openssl x509 -req -days 1 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
              -extfile ext -out server.pem",
            d = d.display()
        );
        kit::run(Command::new("sh").arg("-c").arg(sh));
        let mut s = KubeStandIn {
            dir,
            child: Command::new("true").spawn().unwrap(),
            port: 0,
            pods: serde_json::Map::new(),
        };
        s.configure("ok", &[]);
        let script = kit::repo_root().join("tests/standins/kube-api.py");
        let d = s.dir.path();
        s.child = Command::new("python3")
            .arg(&script)
            .arg(d.join("config.json"))
            .arg(d.join("server.pem"))
            .arg(d.join("server.key"))
            .arg(d.join("port"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("server.log")).unwrap())
            .spawn()
            .expect("python3");
        s.port = kit::wait_for(Duration::from_secs(20), "the stand-in's port", || {
            fs::read_to_string(d.join("port")).ok()?.trim().parse().ok()
        });
        s.write_kubeconfig("kubeconfig", TOKEN);
        s.write_kubeconfig("kubeconfig-bad", "wrong-token");
        s
    }

    fn write_kubeconfig(&self, name: &str, token: &str) {
        let d = self.dir.path();
        let cfg = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: standin\n  cluster:\n    server: https://127.0.0.1:{}\n    certificate-authority: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: standin\n    user: u\n    namespace: default\ncurrent-context: c\n",
            self.port,
            d.join("ca.pem").display()
        );
        fs::write(d.join(name), cfg).unwrap();
    }

    fn kubeconfig(&self) -> String {
        self.dir.path().join("kubeconfig").display().to_string()
    }

    fn kubelet_dir(&self) -> PathBuf {
        self.dir.path().join("kubelet")
    }

    fn add_pod(&mut self, ns: &str, pod: &str, node: &str, c: &kit::Container) {
        self.pods.insert(
            format!("{ns}/{pod}"),
            json!({"node": node, "containers": ["app"], "runc_id": c.id,
                   "bundle": bundle_of(c)}),
        );
    }

    fn configure(&self, mode: &str, extra: &[(&str, Value)]) {
        let mut cfg = json!({
            "token": TOKEN,
            "mode": mode,
            "kubelet_dir": self.kubelet_dir(),
            "archive_script": kit::repo_root().join("tests/standins/crio-archive.sh"),
            "pods": self.pods,
        });
        for (k, v) in extra {
            cfg[*k] = v.clone();
        }
        let p = self.dir.path().join("config.json");
        fs::write(p.with_extension("tmp"), cfg.to_string()).unwrap();
        fs::rename(p.with_extension("tmp"), p).unwrap();
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for KubeStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("kube stand-in log:\n{}", self.log());
        }
    }
}

fn kubelet_archives(k: &KubeStandIn) -> Vec<String> {
    fs::read_dir(k.kubelet_dir().join("checkpoints"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn k8s_api_method_through_the_api_server_and_the_kubelet() {
    kit::require_root();
    let store = TestStore::new();
    let c = runc_counter("m-k8s");
    let mut k = KubeStandIn::start();
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("pod");
    let far = kit::unique_name("far");
    k.add_pod(&ns, &pod, "node-here", &c);
    k.add_pod(&ns, &far, "node-far", &c);
    k.configure("ok", &[]);
    let kc = k.kubeconfig();
    let env = [("KUBECONFIG", kc.as_str())];
    let here = |args: &[&str]| -> Out {
        let mut a = vec!["create", "checkpoint"];
        a.extend_from_slice(args);
        a.extend(["--method", "k8s-api", "--node-name", "node-here"]);
        reel_env(&store, &a, &env)
    };

    // `get capabilities`: the cluster, its version, and what this identity may do.
    let caps = reel_env(&store, &["get", "capabilities", "-o", "json"], &env);
    let caps: Value = serde_json::from_str(&caps.stdout).unwrap_or_else(|e| panic!("{e}: {caps}"));
    let k8s = caps["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "k8s-api")
        .unwrap()
        .clone();
    assert_eq!(k8s["status"], "ok", "{k8s}");
    let detail = k8s["detail"].as_str().unwrap();
    assert!(
        detail.contains("v1.33.0-standin") && detail.contains("create nodes/proxy: yes"),
        "{k8s}"
    );
    k.configure("ok", &[("denied", json!(["nodes/proxy"]))]);
    let caps = reel_env(&store, &["get", "capabilities", "-o", "json"], &env);
    assert!(caps.stdout.contains("create nodes/proxy: no"), "{caps}");
    k.configure("ok", &[]);

    // `get workloads` lists the cluster's pods, and whether this host can take them directly.
    let wl = reel_env(&store, &["get", "workloads", "-n", &ns, "-o", "json"], &env);
    wl.ok();
    let rows = wl.json();
    let names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pod"].as_str().unwrap())
        .collect();
    let mut want = vec![pod.as_str(), far.as_str()];
    want.sort();
    assert_eq!(names, want, "{rows}");
    let first = &rows[0];
    assert_eq!(first["containers"], json!(["app"]));
    assert_eq!(first["phase"], "Running");
    assert_eq!(
        first["direct"], false,
        "the pods are not on this host: {rows}"
    );

    // 200 on this node: imported, the kubelet's copy removed.
    let out = here(&[&pod, "-n", &ns, "--timeout", "30s", "-o", "json"]);
    out.ok();
    let created = out.json();
    assert_eq!(created["method"], "k8s-api");
    assert_eq!(
        created["runtime_version"], "v1.33.0-standin",
        "the kubelet's version"
    );
    let id = created["id"].as_str().unwrap().to_string();
    assert!(
        kubelet_archives(&k).is_empty(),
        "kubelet copy left: {:?}",
        kubelet_archives(&k)
    );
    verify_ok(&store, &id);
    let archive = restore::Archive::read(&store.archive(&id));
    let manifest = archive.json("reel-manifest.json");
    assert_eq!(manifest["method"]["name"], "k8s-api", "{manifest}");
    assert_eq!(manifest["method"]["runtime"], "kubelet");
    let received = manifest["method"]["received"].as_str().unwrap();
    assert!(
        received.starts_with(
            &k.kubelet_dir()
                .join("checkpoints/checkpoint-")
                .display()
                .to_string()
        ),
        "{received}"
    );
    assert!(received.contains(&format!("{pod}_{ns}-app-")), "{received}");
    assert_eq!(manifest["container"]["pod"], pod.as_str());
    c.wait_counter_advances(reel::COUNTER, reel::RUNS_TIMEOUT);

    // Elsewhere: the node is not this host; create records where the archive is.
    let out = here(&[&far, "-n", &ns]);
    out.ok();
    assert!(out.stdout.contains("node-far"), "{out}");
    let on_far = kubelet_archives(&k);
    assert_eq!(on_far.len(), 1, "the kubelet's archive stays on its node");
    assert!(out.stdout.contains(&on_far[0]), "{out}");
    let list = store.run(&["list", "checkpoint", "-A", "-o", "json"]);
    let rows = list.json();
    let remote = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node"] == "node-far")
        .unwrap_or_else(|| panic!("no remote row: {rows}"))
        .clone();
    assert_eq!(remote["method"], "k8s-api");
    let rid = remote["id"].as_str().unwrap();
    let out = store.run(&["export", "checkpoint", "--id", rid, "--dest", "-"]);
    out.code_is(1);
    out.stderr_has(&["node-far", "needs reel on node-far"]);
    let out = reel_env(
        &store,
        &[
            "export",
            "checkpoint",
            &far,
            "-n",
            &ns,
            "--method",
            "k8s-api",
            "--node-name",
            "node-here",
            "--dest",
            store.base().to_str().unwrap(),
        ],
        &env,
    );
    out.code_is(1);
    out.stderr_has(&["node node-far", "exporting it needs reel on node-far"]);
    fs::remove_dir_all(k.kubelet_dir()).unwrap();

    // The refusals, as the API server and the kubelet word them.
    let cases: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "403-proxy",
            vec![],
            vec!["403", "nodes/proxy", "--verb=create --resource=nodes/proxy"],
        ),
        (
            "403-kubelet",
            vec![],
            vec![
                "kube-apiserver-kubelet-client",
                "nodes/checkpoint",
                "clusterrolebinding",
                "system:kubelet-api-admin",
            ],
        ),
        (
            "404-gate",
            vec![],
            vec!["404 page not found", "ContainerCheckpoint", "feature-gates"],
        ),
        (
            "404-container",
            vec![],
            vec!["container app does not exist", "404"],
        ),
        (
            "500-unimplemented",
            vec![],
            vec![
                "500",
                "method CheckpointContainer not implemented",
                "--method containerd",
            ],
        ),
        (
            "500-criu-off",
            vec![],
            vec![
                "checkpoint/restore support not available",
                "enable_criu_support",
            ],
        ),
        ("401", vec![], vec!["401", "Unauthorized"]),
    ];
    for (mode, _, want) in &cases {
        k.configure(mode, &[]);
        let out = here(&[&pod, "-n", &ns]);
        out.code_is(1);
        out.stderr_has(want);
    }
    // Unknown pod (the API server's 404) and container (the pod's spec), named.
    k.configure("ok", &[]);
    let out = here(&["nopod", "-n", &ns]);
    out.code_is(1);
    out.stderr_has(&["no pod nopod", &pod]);
    let out = here(&[&pod, "other", "-n", &ns]);
    out.code_is(1);
    out.stderr_has(&["has no container other", "app"]);
    // Wrong credentials in the kubeconfig.
    let bad = k.dir.path().join("kubeconfig-bad").display().to_string();
    let out = reel_env(
        &store,
        &[
            "create",
            "checkpoint",
            &pod,
            "-n",
            &ns,
            "--method",
            "k8s-api",
            "--node-name",
            "node-here",
        ],
        &[("KUBECONFIG", &bad)],
    );
    out.code_is(1);
    out.stderr_has(&["401"]);
    // The kubelet directly: its 403 is about the caller's own identity.
    k.configure("403-kubelet", &[]);
    let kubelet_url = format!("https://127.0.0.1:{}", k.port);
    let out = here(&[&pod, "-n", &ns, "--kubelet", &kubelet_url]);
    out.code_is(1);
    out.stderr_has(&["standin-user", "your own identity", "nodes/checkpoint"]);
    // A kubelet that does not answer in time.
    k.configure("sleep", &[("sleep", json!(30))]);
    let t0 = Instant::now();
    let out = here(&[&pod, "-n", &ns, "--timeout", "1s"]);
    out.code_is(1);
    out.stderr_has(&["did not answer within", "--timeout"]);
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());

    assert_eq!(
        store.archives(),
        vec![id],
        "a refused checkpoint left an archive"
    );
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
}

// ---------------------------------------------------------------------------------------------
// auto
// ---------------------------------------------------------------------------------------------

#[test]
fn auto_picks_direct_here_k8s_api_for_the_cluster_and_explains_otherwise() {
    kit::require_root();
    let store = TestStore::new();
    let empty_home = tempfile::tempdir().unwrap();
    let home = empty_home.path().to_str().unwrap();

    // A container on this host: direct, even with a cluster configured.
    let ns = kit::unique_name("ns");
    let local_pod = kit::unique_name("local");
    let c = reel::run_counter(
        Oci::Runc,
        reel::counter_bundle("m-auto").containerd_pod(&ns, &local_pod, "app"),
    );
    let mut k = KubeStandIn::start();
    let cluster_pod = kit::unique_name("cluster");
    k.add_pod(&ns, &cluster_pod, "node-here", &c);
    k.configure("ok", &[]);
    let kc = k.kubeconfig();
    let env = [
        ("KUBECONFIG", kc.as_str()),
        ("HOME", home),
        ("NODE_NAME", "node-here"),
    ];

    let out = reel_env(
        &store,
        &["create", "checkpoint", &local_pod, "-n", &ns, "-o", "json"],
        &env,
    );
    out.ok();
    let created = out.json();
    assert_eq!(created["method"], "direct", "{created}");
    let m = reel::manifest(&store.archive(created["id"].as_str().unwrap()));
    assert_eq!(m["method"]["name"], "direct");
    assert!(
        kubelet_archives(&k).is_empty(),
        "auto asked the kubelet for a local container"
    );

    // A pod only the cluster knows: k8s-api.
    let out = reel_env(
        &store,
        &[
            "create",
            "checkpoint",
            &cluster_pod,
            "-n",
            &ns,
            "-o",
            "json",
        ],
        &env,
    );
    out.ok();
    assert_eq!(out.json()["method"], "k8s-api", "{out}");

    // Neither: not here, and no cluster configured.
    let out = reel_env(
        &store,
        &["create", "checkpoint", &cluster_pod, "-n", &ns],
        &[("HOME", home)],
    );
    out.code_is(1);
    out.stderr_has(&[
        "no checkpoint method can reach",
        "direct:",
        "k8s-api:",
        "kubeconfig",
    ]);
}
