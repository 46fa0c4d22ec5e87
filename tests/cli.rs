//! The `reel` command line end to end: what `get workloads` finds, `get capabilities`,
//! `--version`, `--help`, output formats, quiet and piped output, the store verbs (`list`,
//! `delete`) and their usage errors. Real containers (runc, crun, containerd), real CRIU; the
//! binary is built from this workspace. Needs root; never skips.
//!
//! Run: `cargo test --test cli -- --test-threads=1`

use std::time::{Duration, Instant};

use kit::cgroups::Cgroups;
use kit::reel::{self, counter_bundle, run_counter, workload, workloads, TestStore};
use kit::{bins, CriRole, Oci};
use reel_testkit as kit;
use serde_json::Value;

fn setup() -> TestStore {
    kit::require_root();
    bins::reel_bin();
    TestStore::new()
}

/// `get workloads`: a runc container annotated as a containerd pod's, a crun container
/// annotated as a CRI-O pod's, a containerd (`ctr run`) container with the CRI annotations, an
/// unannotated runc container (namespace `runc`, its name as pod and container), and one in
/// namespace `default`; by namespace, pod and container, with `-A`, `-n`, the default
/// namespace, and the JSON, YAML and table formats.
#[test]
fn get_workloads_finds_every_runtime_by_namespace_pod_and_container() {
    let store = setup();
    let ns_ctd = kit::unique_name("ns-ctd");
    let ns_crio = kit::unique_name("ns-crio");
    let (pod_a, pod_b, pod_c, pod_e) = (
        kit::unique_name("pod-a"),
        kit::unique_name("pod-b"),
        kit::unique_name("pod-c"),
        kit::unique_name("pod-e"),
    );
    let a = run_counter(
        Oci::Runc,
        counter_bundle("wl-runc-ctd").containerd_pod(&ns_ctd, &pod_a, "app"),
    );
    let b = run_counter(
        Oci::Crun,
        counter_bundle("wl-crun-crio").crio_pod(&ns_crio, &pod_b, "web"),
    );
    let c = kit::run_containerd(
        "wl-ctr",
        CriRole::Container {
            namespace: ns_ctd.clone(),
            pod: pod_c.clone(),
            name: "worker".into(),
        },
        &[],
    );
    let d = run_counter(Oci::Runc, counter_bundle("wl-runc-bare"));
    let e = run_counter(
        Oci::Runc,
        counter_bundle("wl-default").containerd_pod("default", &pod_e, "main"),
    );

    let all = workloads(&store, &["-A"]);
    let expect = |list: &[Value], id: &str, ns: &str, pod: &str, name: &str| {
        let w = workload(list, id);
        assert_eq!(w["namespace"], ns, "{w:#}");
        assert_eq!(w["pod"], pod, "{w:#}");
        assert_eq!(w["name"], name, "{w:#}");
        assert_eq!(w["state"], "running", "{w:#}");
        assert!(w["pid"].as_i64().unwrap_or(0) > 1, "{w:#}");
    };
    expect(&all, &a.id, &ns_ctd, &pod_a, "app");
    expect(&all, &b.id, &ns_crio, &pod_b, "web");
    expect(&all, &c.id, &ns_ctd, &pod_c, "worker");
    expect(&all, &d.id, "runc", &d.id, &d.id);
    expect(&all, &e.id, "default", &pod_e, "main");
    assert_eq!(workload(&all, &d.id)["runtime"], "runc");
    assert_eq!(workload(&all, &b.id)["runtime"], "crun");
    assert_eq!(workload(&all, &c.id)["runtime"], "containerd");
    assert_eq!(workload(&all, &c.id)["pid"], c.pid());

    // -n: exactly that namespace.
    let ctd = workloads(&store, &["-n", &ns_ctd]);
    let mut ids: Vec<&str> = ctd.iter().map(|w| w["id"].as_str().unwrap()).collect();
    ids.sort();
    let mut want = vec![a.id.as_str(), c.id.as_str()];
    want.sort();
    assert_eq!(ids, want, "{ctd:#?}");
    let crio = workloads(&store, &["-n", &ns_crio]);
    assert_eq!(crio.len(), 1, "{crio:#?}");
    expect(&crio, &b.id, &ns_crio, &pod_b, "web");
    let runc = workloads(&store, &["-n", "runc"]);
    assert!(runc.iter().all(|w| w["namespace"] == "runc"), "{runc:#?}");
    workload(&runc, &d.id);
    assert!(workloads(&store, &["-n", &kit::unique_name("nothing-here")]).is_empty());

    // No -n: namespace `default`, only.
    let default = workloads(&store, &[]);
    assert!(
        default.iter().all(|w| w["namespace"] == "default"),
        "{default:#?}"
    );
    expect(&default, &e.id, "default", &pod_e, "main");
    assert!(default.iter().all(|w| w["id"] != a.id.as_str()));

    // YAML: a list of mappings with the same fields.
    let yaml = store.run(&["get", "workloads", "-A", "-o", "yaml"]);
    yaml.ok();
    assert!(yaml.stdout.starts_with("- "), "not a YAML list: {yaml}");
    for (id, ns, pod) in [
        (&a.id, &ns_ctd, &pod_a),
        (&b.id, &ns_crio, &pod_b),
        (&c.id, &ns_ctd, &pod_c),
    ] {
        assert!(yaml.stdout.contains(&format!("id: {id}\n")), "{id}: {yaml}");
        assert!(
            yaml.stdout.contains(&format!("namespace: {ns}\n")),
            "{ns}: {yaml}"
        );
        assert!(
            yaml.stdout.contains(&format!("pod: {pod}\n")),
            "{pod}: {yaml}"
        );
    }
    assert!(!yaml.stdout.trim_start().starts_with('['), "JSON, not YAML");

    // The table: a header, then one row per container with namespace, pod and container.
    let table = store.run(&["get", "workloads", "-A"]);
    table.ok();
    let header = table.stdout.lines().next().unwrap_or_default();
    for col in ["NAMESPACE", "POD", "CONTAINER", "RUNTIME", "STATE"] {
        assert!(header.contains(col), "header {header:?}");
    }
    for (ns, pod, name) in [
        (ns_ctd.as_str(), pod_a.as_str(), "app"),
        (ns_crio.as_str(), pod_b.as_str(), "web"),
        ("runc", d.id.as_str(), d.id.as_str()),
    ] {
        assert!(
            table.stdout.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[0] == ns && f[1] == pod && f[2] == name
            }),
            "no row {ns} {pod} {name}: {table}"
        );
    }
    let one_ns = store.run(&["get", "workloads", "-n", &ns_crio]);
    one_ns.ok();
    assert!(!one_ns.stdout.contains("NAMESPACE"), "{one_ns}");
    assert!(one_ns.stdout.contains(&pod_b), "{one_ns}");
}

/// `get capabilities`: exit 0 on this host, `checkpoint_possible: true` in JSON; with CRIU
/// missing (`REEL_CRIU` or `--criu`) it fails naming CRIU.
#[test]
fn get_capabilities_reports_criu() {
    let store = setup();
    let table = store.run(&["get", "capabilities"]);
    table.ok();
    assert!(table.stdout.contains("criu"), "{table}");
    let json = store.run(&["get", "capabilities", "-o", "json"]);
    json.ok();
    let v = json.json();
    assert_eq!(v["checkpoint_possible"], true, "{json}");
    let yaml = store.run(&["get", "caps", "-o", "yaml"]);
    yaml.ok();
    assert!(yaml.stdout.contains("checkpoint_possible: true"), "{yaml}");

    let mut cmd = store.cmd(&["get", "capabilities"]);
    cmd.env("REEL_CRIU", "/nonexistent");
    let out = reel::run_bounded(&mut cmd, reel::REEL_TIMEOUT);
    out.code_is(1).stderr_has(&["criu"]);
    assert!(out.stdout.contains("/nonexistent"), "{out}");

    let out = store.run(&[
        "--criu",
        "/nonexistent",
        "get",
        "capabilities",
        "-o",
        "json",
    ]);
    out.code_is(1).stderr_has(&["criu"]);
    let v = out.json();
    assert_eq!(v["checkpoint_possible"], false, "{out}");
    let criu = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "criu")
        .unwrap_or_else(|| panic!("no criu item: {out}"));
    assert_eq!(criu["status"], "missing", "{out}");
}

/// `--version`: reel's version and the CRIU it will use (the version that binary reports).
#[test]
fn version_shows_reel_and_criu() {
    let store = setup();
    let out = store.run(&["--version"]);
    out.ok();
    assert!(
        out.stdout
            .lines()
            .next()
            .is_some_and(|l| l.starts_with(&format!("reel {} ", env!("CARGO_PKG_VERSION")))),
        "{out}"
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("criu "))
        .unwrap_or_else(|| panic!("no `criu <version> at <path>` line: {out}"));
    let mut f = line.split_whitespace();
    let (version, path) = (f.nth(1).unwrap(), f.nth(1).unwrap());
    let real = kit::run(std::process::Command::new(path).arg("--version"));
    let real = String::from_utf8_lossy(&real.stdout);
    assert!(
        real.contains(&format!("Version: {version}")),
        "reel says CRIU {version}, {path} says {real}"
    );
    // The short flag too.
    assert_eq!(store.run(&["-V"]).ok().stdout, out.stdout);
}

/// `--help` names the verbs; no verb at all is a usage error.
#[test]
fn help_lists_the_verbs() {
    let store = setup();
    let out = store.run(&["--help"]);
    out.ok();
    for verb in ["get", "create", "list", "delete"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{verb} "))),
            "no verb {verb}: {out}"
        );
    }
    store.run(&[]).code_is(2);
    store.run(&["frobnicate"]).code_is(2);
}

/// Quiet and piped output: stdout carries the result only (`Checkpoint created: <id>`), with
/// or without `-q`; progress goes to stderr, and `-q` silences it.
#[test]
fn stdout_is_only_the_result() {
    let store = setup();
    let c = run_counter(Oci::Runc, counter_bundle("quiet"));
    let args = ["create", "checkpoint", c.id.as_str(), "-n", "runc"];

    let out = store.run(&args);
    out.ok();
    let id = out.created_id();
    assert_eq!(out.stdout, format!("Checkpoint created: {id}\n"), "{out}");
    assert!(out.stderr.contains("Checkpointing"), "no progress: {out}");

    let mut quiet = vec!["-q"];
    quiet.extend_from_slice(&args);
    let out = store.run(&quiet);
    out.ok();
    let id2 = out.created_id();
    assert_eq!(out.stdout, format!("Checkpoint created: {id2}\n"), "{out}");
    assert!(
        !out.stderr.contains("Checkpointing"),
        "-q printed progress: {out}"
    );
    assert!(
        !out.stderr.contains(store.root().to_str().unwrap()),
        "-q printed details: {out}"
    );

    // -o json: stdout is exactly one JSON document.
    let mut json = args.to_vec();
    json.extend_from_slice(&["-o", "json"]);
    let out = store.run(&json);
    out.ok();
    let v = out.json();
    assert_eq!(v["pod"], c.id.as_str(), "{out}");
    assert_eq!(v["namespace"], "runc", "{out}");
    let id3 = v["id"].as_str().unwrap().to_string();

    let mut all = vec![id, id2, id3];
    all.sort();
    assert_eq!(store.archives(), all);
    assert_eq!(store.sidecars(), all);
    reel::assert_runs(&c, &Cgroups::of(c.pid()));
}

/// `list checkpoint` and `delete checkpoint` by id, `--older-than`, `--filter` and `-n`; the
/// mistakes a delete refuses (no selector, a bad age, no `-y` without a terminal) change
/// nothing.
#[test]
fn list_and_delete_checkpoints() {
    let store = setup();
    let ns = kit::unique_name("ns-del");
    let pod = kit::unique_name("pod-del");
    let x = run_counter(Oci::Runc, counter_bundle("del-bare"));
    let y = run_counter(
        Oci::Runc,
        counter_bundle("del-pod").containerd_pod(&ns, &pod, "app"),
    );
    let create = |pod: &str, ns: &str| -> String {
        let out = store.run(&["-q", "create", "checkpoint", pod, "-n", ns]);
        out.ok();
        out.created_id()
    };
    let x1 = create(&x.id, "runc");
    let x1_at = Instant::now();
    let y1 = create(&pod, &ns);
    assert!(x1.starts_with(&format!("checkpoint-{}-", x.id)), "{x1}");
    assert!(y1.starts_with(&format!("checkpoint-{pod}-")), "{y1}");

    // list: -A, -n, the default namespace, one id; JSON and table.
    let ids = |out: &reel::Out| -> Vec<String> {
        let mut v: Vec<String> = out
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let mut both = vec![x1.clone(), y1.clone()];
    both.sort();
    assert_eq!(
        ids(&store.run(&["list", "checkpoint", "-A", "-o", "json"])),
        both
    );
    let in_ns = store.run(&["list", "checkpoint", "-n", &ns, "-o", "json"]);
    assert_eq!(ids(&in_ns), vec![y1.clone()]);
    let row = &in_ns.json()[0];
    assert_eq!(row["pod"], pod.as_str());
    assert_eq!(row["container"], "app");
    assert!(ids(&store.run(&["list", "checkpoint", "-o", "json"])).is_empty());
    assert_eq!(
        ids(&store.run(&["list", "checkpoint", &x1, "-o", "json"])),
        vec![x1.clone()]
    );
    let table = store.run(&["list", "checkpoint", "-A"]);
    table.ok();
    assert!(
        table.stdout.contains(&x1) && table.stdout.contains(&y1),
        "{table}"
    );
    store
        .run(&["list", "checkpoint", "checkpoint-none-20000101-000000"])
        .code_is(1)
        .stderr_has(&["no checkpoint"]);

    // Refusals: nothing changes.
    let before = store.snapshot();
    store
        .run(&["delete", "checkpoint"])
        .code_is(2)
        .stderr_has(&["nothing selected"]);
    store
        .run(&["delete", "checkpoint", "-y"])
        .code_is(2)
        .stderr_has(&["nothing selected"]);
    store
        .run(&["delete", "checkpoint", "--older-than", "7x", "-y"])
        .code_is(2)
        .stderr_has(&["7x"]);
    store
        .run(&["delete", "checkpoint", "--older-than", "-1d", "-y"])
        .code_is(2);
    // No -y and stdin is not a terminal (the runner gives /dev/null): refuse, do not guess.
    store
        .run(&["delete", "checkpoint", &x1])
        .code_is(2)
        .stderr_has(&["-y"]);
    store
        .run(&["delete", "checkpoint", "--all"])
        .code_is(2)
        .stderr_has(&["-y"]);
    assert_eq!(
        store.snapshot(),
        before,
        "a refused delete changed the store"
    );

    // -n: only that namespace.
    let out = store.run(&["delete", "checkpoint", "-n", &ns, "-y"]);
    out.ok();
    assert_eq!(out.stdout, format!("Checkpoint deleted: {y1}\n"), "{out}");
    assert_eq!(store.archives(), vec![x1.clone()]);
    assert_eq!(store.sidecars(), vec![x1.clone()]);

    // --filter: ids matching a glob.
    let y2 = create(&pod, &ns);
    let x2 = create(&x.id, "runc");
    let out = store.run(&[
        "delete",
        "checkpoint",
        "--filter",
        &format!("checkpoint-{pod}-*"),
        "-y",
    ]);
    out.ok();
    assert_eq!(out.stdout, format!("Checkpoint deleted: {y2}\n"), "{out}");
    let mut xs = vec![x1.clone(), x2.clone()];
    xs.sort();
    assert_eq!(store.archives(), xs);

    // --older-than: nothing is an hour old; then only what is older than a few seconds.
    let out = store.run(&["delete", "checkpoint", "--older-than", "1h", "-y"]);
    out.ok();
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(store.archives(), xs);
    let age = Duration::from_secs(8);
    if let Some(left) = age.checked_sub(x1_at.elapsed()) {
        std::thread::sleep(left);
    }
    let x3 = create(&x.id, "runc");
    let out = store.run(&["delete", "checkpoint", "--older-than", "6s", "-y"]);
    out.ok();
    let deleted: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.strip_prefix("Checkpoint deleted: ").unwrap_or(l))
        .collect();
    assert!(deleted.contains(&x1.as_str()), "{out}");
    assert!(!deleted.contains(&x3.as_str()), "{out}");
    assert!(store.archives().contains(&x3), "{:?}", store.archives());

    // By id, with -y.
    for id in store.archives() {
        let out = store.run(&["delete", "checkpoint", &id, "-y"]);
        out.ok();
        assert_eq!(out.stdout, format!("Checkpoint deleted: {id}\n"), "{out}");
    }
    assert!(store.archives().is_empty());
    assert!(store.sidecars().is_empty());
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    store
        .run(&["delete", "checkpoint", &x1, "-y"])
        .code_is(1)
        .stderr_has(&[&x1]);

    reel::assert_runs(&x, &Cgroups::of(x.pid()));
    reel::assert_runs(&y, &Cgroups::of(y.pid()));
}

/// `--timeout` values that are not durations are usage errors (exit 2), before anything is
/// looked at.
#[test]
fn bogus_timeouts_are_usage_errors() {
    let store = setup();
    for bad in ["abc", "0s", "0ms", "-1s", "10x", "1.5s", "", "ms", "s5"] {
        let flag = format!("--timeout={bad}");
        let out = store.run(&["create", "checkpoint", "no-such-pod", "-n", "runc", &flag]);
        out.code_is(2).stderr_has(&["--timeout"]);
    }
    store
        .run(&["create", "checkpoint", "p", "--timeout"])
        .code_is(2);
    store
        .run(&["create", "checkpoint", "p", "--freezer", "v3"])
        .code_is(2);
    assert!(store.snapshot().is_empty());
}
