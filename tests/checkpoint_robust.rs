//! reel's robustness promises (README, "Guarantees"), end to end through the real `reel`
//! binary, real CRIU, real cgroups and real runc containers:
//!
//! * either freezer (`--freezer v1|v2`) is used as asked, recorded, and the container runs on;
//!   a container frozen beforehand is dumped and stays frozen;
//! * one reel per container: a second, concurrent one waits or refuses naming the holder;
//! * SIGKILL or SIGINT of reel while the container is frozen: it runs again on its own, no
//!   archive appears, no CRIU or watchdog is left, the next run removes the leftovers;
//! * `--timeout`: reel gives up, thaws and says so;
//! * bad input is refused with a clear message before anything is frozen or written.
//!
//! Needs root; never skips. Every container, process, mount and freeze is undone, also when a
//! test fails. Run: `cargo test --test checkpoint_robust -- --test-threads=1`

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kit::cgroups::{thaw_guard, Cgroups, FreezeWatch, ThawOnDrop};
use kit::reel::{
    self, assert_runs, counter_bundle, run_counter, Mount, Running, TestStore, COUNTER,
};
use kit::{bins, proc, Oci};
use reel_testkit as kit;

/// Memory of the workload killed mid-dump: enough that CRIU holds it for a while.
const HOG_MIB: u32 = 512;

fn setup() -> TestStore {
    kit::require_root();
    bins::reel_bin();
    TestStore::new()
}

fn create_args<'a>(c: &'a kit::Container, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["create", "checkpoint", c.id.as_str(), "-n", "runc"];
    v.extend_from_slice(extra);
    v
}

/// The cgroup directory of the freezer `kind` ("v1" or "v2").
fn freezer_dir(cg: &Cgroups, kind: &str) -> PathBuf {
    match kind {
        "v1" => cg.v1().to_path_buf(),
        "v2" => cg.v2.clone(),
        other => panic!("freezer {other}"),
    }
}

/// The freezer `kind` of `cg` is frozen.
fn frozen_by(cg: &Cgroups, kind: &str) -> bool {
    match kind {
        "v1" => cg.v1_state().as_deref() == Some("FROZEN"),
        _ => cg.v2_frozen(),
    }
}

// ---------------------------------------------------------------------------------------------
// Freezers
// ---------------------------------------------------------------------------------------------

/// `--freezer KIND` succeeds, the archive proves which freezer froze the container (the
/// manifest's dump options, and CRIU's own log of the `freeze_cgroup` it was given), and the
/// container runs on.
fn forced_freezer(kind: &str) {
    let store = setup();
    let c = run_counter(Oci::Runc, counter_bundle(&format!("freezer-{kind}")));
    let (cg, _thaw) = thaw_guard(c.pid());
    let dir = freezer_dir(&cg, kind);

    let watch = FreezeWatch::start(&cg);
    let out = store.run(&create_args(&c, &["-q", "--freezer", kind]));
    let seen = watch.finish();
    out.ok();
    let id = out.created_id();
    eprintln!("--freezer {kind}: {:.1?}, {seen:?}", out.elapsed);
    let archive = store.archive(&id);
    let m = reel::manifest(&archive);
    let opts = &m["dump_options"];
    assert_eq!(opts["freezer"], kind, "{opts:#}");
    assert_eq!(opts["freeze_cgroup"], dir.to_str().unwrap(), "{opts:#}");
    assert_eq!(opts["leave_running"], true, "{opts:#}");
    let log = String::from_utf8_lossy(&reel::archive_member(&archive, "dump.log")).into_owned();
    let detected = format!("Detected cgroup {} freezer", kind.to_uppercase());
    let freezing = format!("freezing cgroup {}:", dir.display());
    assert!(log.contains(&detected), "dump.log lacks {detected:?}");
    assert!(log.contains(&freezing), "dump.log lacks {freezing:?}");
    // The other freezer was left alone. (The watch sees a v2 freeze through cgroup.events:
    // the control for `a_store_too_small_is_refused_before_freezing`.)
    if kind == "v2" {
        assert!(
            seen.events_changes > 0,
            "the v2 freeze went unseen: {seen:?}"
        );
        assert_eq!(
            seen.v1_frozen_samples, 0,
            "the v1 freezer was used: {seen:?}"
        );
    } else {
        assert!(
            seen.v1_frozen_samples > 0,
            "the v1 freeze went unseen: {seen:?}"
        );
        assert_eq!(seen.events_changes, 0, "the v2 freezer was used: {seen:?}");
    }
    assert_eq!(store.archives(), vec![id.clone()]);
    assert_eq!(store.sidecars(), vec![id]);
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    assert_runs(&c, &cg);
}

#[test]
fn freezer_v1_is_used_when_asked() {
    forced_freezer("v1");
}

#[test]
fn freezer_v2_is_used_when_asked() {
    forced_freezer("v2");
}

/// Without `--freezer`, a container that has a v1 freezer cgroup (runc on this hybrid host) is
/// frozen with it, as runc would.
#[test]
fn freezer_auto_prefers_the_containers_v1_freezer() {
    let store = setup();
    let c = run_counter(Oci::Runc, counter_bundle("freezer-auto"));
    let (cg, _thaw) = thaw_guard(c.pid());
    let out = store.run(&create_args(&c, &["-q"]));
    out.ok();
    let m = reel::manifest(&store.archive(&out.created_id()));
    assert_eq!(m["dump_options"]["freezer"], "v1", "{m:#}");
    assert_eq!(
        m["dump_options"]["freeze_cgroup"],
        cg.v1().to_str().unwrap()
    );
    assert_runs(&c, &cg);
}

/// A container frozen before reel came (by the freezer reel then uses) is dumped and left
/// frozen; the test thaws it and it runs on.
fn already_frozen(kind: &str) {
    let store = setup();
    let c = run_counter(Oci::Runc, counter_bundle(&format!("prefrozen-{kind}")));
    let (cg, _thaw) = thaw_guard(c.pid());
    match kind {
        "v1" => cg.freeze_v1(),
        _ => cg.freeze_v2(),
    }
    let before = c.counter(COUNTER).expect("the counter");

    let out = store.run(&create_args(&c, &["--freezer", kind, "-o", "json"]));
    out.ok();
    let v = out.json();
    assert_eq!(v["left_frozen"], true, "{out}");
    let id = v["id"].as_str().unwrap().to_string();
    assert!(
        frozen_by(&cg, kind),
        "reel thawed a container it had not frozen"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(frozen_by(&cg, kind), "thawed a moment after reel");
    assert_eq!(
        c.counter(COUNTER),
        Some(before),
        "the frozen container counted"
    );
    assert_eq!(store.archives(), vec![id.clone()]);
    let m = reel::manifest(&store.archive(&id));
    assert_eq!(m["dump_options"]["freezer"], kind);

    cg.thaw_all();
    assert_runs(&c, &cg);
}

#[test]
fn already_frozen_v1_is_dumped_and_left_frozen() {
    already_frozen("v1");
}

#[test]
fn already_frozen_v2_is_dumped_and_left_frozen() {
    already_frozen("v2");
}

// ---------------------------------------------------------------------------------------------
// One reel per container
// ---------------------------------------------------------------------------------------------

/// Two `create checkpoint` of one container at once: the first succeeds; the second either
/// waited for the lock and succeeded, or refused naming the holder. The container runs on and
/// the store holds exactly the archives that were reported.
#[test]
fn concurrent_checkpoints_of_one_container() {
    let store = setup();
    // Big enough that the first holds the lock (dump + archive) for seconds.
    let c = reel::run_hog("concurrent", 128);
    let (cg, _thaw) = thaw_guard(c.pid());
    let args = create_args(&c, &[]);

    let mut first = Running::spawn(store.cmd(&args).stdin(Stdio::null()));
    // The first holds the lock once it has frozen the container.
    let start = Instant::now();
    while !(cg.any_frozen() || cg.any_traced()) {
        assert!(
            !first.finished(),
            "the first reel ended before it froze the container"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no freeze seen");
        std::thread::sleep(Duration::from_micros(500));
    }
    let second = Running::spawn(store.cmd(&args).stdin(Stdio::null()));
    let first_pid = first.pid();
    let one = first.wait(reel::REEL_TIMEOUT);
    let two = second.wait(reel::REEL_TIMEOUT);
    eprintln!(
        "first: {} in {:.1?}; second: {} in {:.1?}",
        reel::describe_status(one.status),
        one.elapsed,
        reel::describe_status(two.status),
        two.elapsed
    );
    one.ok();
    let mut created = vec![one.created_id()];
    if two.status.success() {
        // It waited for the first.
        created.push(two.created_id());
    } else {
        two.code_is(1)
            .stderr_has(&["locked by another reel", &format!("pid {first_pid}")]);
        assert!(two.stdout.is_empty(), "{two}");
    }
    created.sort();
    assert_eq!(store.archives(), created);
    assert_eq!(store.sidecars(), created);
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    assert_runs(&c, &cg);
}

/// The lock held by someone else for longer than reel waits (5 s): reel refuses, naming the
/// holder's pid (the first line of the lock file, as a reel holder writes it), without freezing
/// the container or writing anything.
#[test]
fn a_held_lock_is_refused_naming_the_holder() {
    let store = setup();
    let c = run_counter(Oci::Runc, counter_bundle("held-lock"));
    let (cg, _thaw) = thaw_guard(c.pid());
    let dir = std::path::Path::new("/run/reel/locks");
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join(format!("{}.lock", c.id));
    // `flock` holds the lock while its child shell writes its pid there and sleeps; both in
    // a process group of their own, killed together.
    let mut holder = Running::spawn(
        Command::new("flock")
            .arg(&file)
            .args(["sh", "-c", "echo $$ > \"$0\"; exec sleep 120"])
            .arg(&file)
            .process_group(0)
            .stdin(Stdio::null()),
    );
    let holder_group = reel::KillGroupOnDrop(holder.pid());
    let pid = kit::wait_for(Duration::from_secs(10), "the lock holder", || {
        std::fs::read_to_string(&file)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
    });
    assert!(!holder.finished());

    let watch = FreezeWatch::start(&cg);
    let out = store.run(&create_args(&c, &[]));
    let seen = watch.finish();
    out.code_is(1)
        .stderr_has(&["locked by another reel", &format!("pid {pid}"), &c.id]);
    assert!(
        out.elapsed >= Duration::from_secs(5),
        "it did not wait: {out}"
    );
    assert_eq!(seen.frozen_samples, 0, "{seen:?}");
    assert_eq!(seen.events_changes, 0, "{seen:?}");
    assert!(store.archives().is_empty());
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    drop(holder_group);
    holder.wait(Duration::from_secs(10));
    // Released: the next one goes ahead.
    store.run(&create_args(&c, &["-q"])).ok();
    assert_eq!(store.archives().len(), 1);
    assert_runs(&c, &cg);
    let _ = std::fs::remove_file(&file);
}

// ---------------------------------------------------------------------------------------------
// Killed while frozen
// ---------------------------------------------------------------------------------------------

/// When to interrupt reel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    /// The first time the cgroup reads frozen: reel froze it, CRIU has not seized (and thawed)
    /// it yet.
    CgroupFrozen,
    /// CRIU holds the tasks (their TracerPid is CRIU's), the longest stretch of the freeze.
    /// CRIU thawed the cgroup once it had seized them and freezes it again before it lets
    /// them go, because it found it frozen.
    CriuHolds,
}

/// Starts `create checkpoint` of a container holding [`HOG_MIB`] MiB and sends `sig` to reel
/// at `moment` (found by polling the freezer files and TracerPid). Then: reel is gone, the
/// container runs again on its own, no archive appears, no CRIU or watchdog is left (within a
/// bound), and the next reel run removes the leftovers.
fn interrupted_while_frozen(sig: i32, freezer: &str, moment: Moment) {
    let store = setup();
    let c = reel::run_hog(&format!("sig{sig}-{freezer}"), HOG_MIB);
    let (cg, _thaw) = thaw_guard(c.pid());
    let init = c.pid();
    let dir = freezer_dir(&cg, freezer);

    let mut run = Running::spawn(
        store
            .cmd(&create_args(&c, &["--freezer", freezer]))
            .stdin(Stdio::null()),
    );
    // A v2 freeze is waited for with poll(2) on cgroup.events, which wakes this process as it
    // comes; v1 has no notification and is polled without a pause.
    let mut events = cg.events_waiter();
    let start = Instant::now();
    let mut frozen_seen = None;
    let (criu, watchdog) = loop {
        assert!(
            !run.finished(),
            "reel ended before the moment ({moment:?}) came (cgroup frozen first seen at \
             {frozen_seen:?}): {}",
            run.stderr_so_far()
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no freeze seen");
        let frozen = frozen_by(&cg, freezer);
        if frozen && frozen_seen.is_none() {
            frozen_seen = Some(start.elapsed());
        }
        let now = match moment {
            Moment::CgroupFrozen => frozen,
            Moment::CriuHolds => proc::tracer_of(init).is_some(),
        };
        if now {
            // Who is there to clean up after: CRIU (if started yet) and the watchdog (started
            // before the freeze).
            let kids = proc::children_of(run.pid());
            let criu = kids.iter().find(|p| p.comm == "criu").map(|p| p.pid);
            let wd = kids
                .iter()
                .find(|p| p.args.iter().any(|a| a == "reel-freeze-watchdog"))
                .map(|p| p.pid);
            match (moment, criu, wd) {
                (Moment::CgroupFrozen, _, Some(wd)) => break (criu, wd),
                (Moment::CriuHolds, Some(_), Some(wd)) => break (criu, wd),
                _ => {}
            }
        }
        match (moment, freezer) {
            (Moment::CgroupFrozen, "v2") => {
                events.wait(Duration::from_millis(1));
            }
            (Moment::CgroupFrozen, _) => {}
            (Moment::CriuHolds, _) => std::thread::sleep(Duration::from_micros(500)),
        }
    };
    let held = (cg.v1_state(), cg.v2_frozen(), proc::tracer_of(init));
    run.signal(sig);
    let killed_at = Instant::now();
    let out = run.wait(Duration::from_secs(60));
    eprintln!(
        "signal {sig} {:.1?} after the start (cgroup frozen first seen at {frozen_seen:?}; \
         v1 {:?}, v2 frozen {}, tracer {:?} at the signal): {}",
        killed_at - start,
        held.0,
        held.1,
        held.2,
        reel::describe_status(out.status)
    );
    assert!(!out.status.success(), "{out}");
    if sig == libc::SIGKILL {
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&out.status),
            Some(sig),
            "{out}"
        );
    }
    assert!(out.stdout.is_empty(), "{out}");

    // Thawed (and not frozen again), CRIU and the watchdog gone, within a bound.
    let bound = Duration::from_secs(60);
    let criu_group = |pgid: Option<i32>| pgid.map(proc::group_members).unwrap_or_default();
    let settled = loop {
        let criu_left = criu_group(criu);
        let wd_left = proc::watchdogs_for(&dir);
        if !cg.any_frozen() && !cg.any_traced() && criu_left.is_empty() && wd_left.is_empty() {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < bound,
            "{bound:?} after the signal: v1 {:?}, v2 frozen {}, traced {}, CRIU {criu_left:?}, \
             watchdog {wd_left:?}",
            cg.v1_state(),
            cg.v2_frozen(),
            cg.any_traced()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("settled {settled:.1?} after the signal (CRIU {criu:?}, watchdog {watchdog})");
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(100));
        assert!(!cg.any_frozen(), "frozen again after it settled");
    }
    assert_runs(&c, &cg);
    assert!(criu_group(criu).is_empty());

    // No archive; what is left belongs to the dead run, and the next run removes it.
    assert!(store.archives().is_empty(), "{:?}", store.snapshot());
    assert!(store.sidecars().is_empty(), "{:?}", store.snapshot());
    let left = store.leftovers();
    let mark = format!("-{}", out_pid(&left));
    assert!(!left.is_empty(), "the killed run left nothing to clean up?");
    for name in &left {
        assert!(name.ends_with(&mark), "{name} is not the killed run's");
        let id = name
            .trim_start_matches('.')
            .split(".tar.partial-")
            .next()
            .unwrap()
            .split(".stage-")
            .next()
            .unwrap();
        assert!(!store.archive(id).exists(), "{id}.tar exists");
        assert!(
            !store.root().join(format!("{id}.tar.sha256")).exists(),
            "{id}.tar.sha256 exists"
        );
    }
    let next = store.run(&["list", "checkpoint", "-A"]);
    next.ok();
    assert!(
        store.leftovers().is_empty(),
        "the next run left {:?}",
        store.leftovers()
    );
    assert!(store.archives().is_empty());
}

/// The pid suffix shared by the leftovers (`.<id>.tar.partial-<pid>`, `.<id>.stage-<pid>`).
fn out_pid(left: &[String]) -> String {
    left.first()
        .and_then(|n| n.rsplit('-').next())
        .unwrap_or_default()
        .to_string()
}

#[test]
fn sigkill_when_the_v1_cgroup_is_frozen() {
    interrupted_while_frozen(libc::SIGKILL, "v1", Moment::CgroupFrozen);
}

#[test]
fn sigkill_when_the_v2_cgroup_is_frozen() {
    interrupted_while_frozen(libc::SIGKILL, "v2", Moment::CgroupFrozen);
}

#[test]
fn sigkill_while_criu_holds_the_container_v1() {
    interrupted_while_frozen(libc::SIGKILL, "v1", Moment::CriuHolds);
}

#[test]
fn sigkill_while_criu_holds_the_container_v2() {
    interrupted_while_frozen(libc::SIGKILL, "v2", Moment::CriuHolds);
}

#[test]
fn sigint_when_the_v1_cgroup_is_frozen() {
    interrupted_while_frozen(libc::SIGINT, "v1", Moment::CgroupFrozen);
}

#[test]
fn sigint_when_the_v2_cgroup_is_frozen() {
    interrupted_while_frozen(libc::SIGINT, "v2", Moment::CgroupFrozen);
}

#[test]
fn sigint_while_criu_holds_the_container_v1() {
    interrupted_while_frozen(libc::SIGINT, "v1", Moment::CriuHolds);
}

#[test]
fn sigint_while_criu_holds_the_container_v2() {
    interrupted_while_frozen(libc::SIGINT, "v2", Moment::CriuHolds);
}

// ---------------------------------------------------------------------------------------------
// --timeout
// ---------------------------------------------------------------------------------------------

/// A timeout shorter than any dump: reel gives up, thaws, says so, exits 1; the container runs
/// and nothing is stored.
#[test]
fn a_tiny_timeout_gives_up_and_thaws() {
    let store = setup();
    let c = run_counter(Oci::Runc, counter_bundle("timeout"));
    let (cg, _thaw) = thaw_guard(c.pid());
    for freezer in ["v1", "v2"] {
        let out = store.run(&create_args(
            &c,
            &["--timeout", "1ms", "--freezer", freezer],
        ));
        eprintln!("--timeout 1ms --freezer {freezer}: {out}");
        out.code_is(1)
            .stderr_has(&["gave up", "timeout", "thawed", "runs on"]);
        assert!(out.stdout.is_empty(), "{out}");
        assert!(store.archives().is_empty(), "{:?}", store.snapshot());
        assert!(store.sidecars().is_empty(), "{:?}", store.snapshot());
        assert!(store.leftovers().is_empty(), "{:?}", store.snapshot());
        assert_runs(&c, &cg);
    }
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// A store holding one checkpoint of `c`, and its contents: bad input must leave it as it is.
fn store_with_one(
    c: &kit::Container,
) -> (
    TestStore,
    std::collections::BTreeMap<String, (u64, i128, bool)>,
) {
    let store = setup();
    store.run(&create_args(c, &["-q"])).ok();
    let snap = store.snapshot();
    assert_eq!(store.archives().len(), 1);
    (store, snap)
}

/// Asserts a refusal: exit 1, an `error:` on stderr holding `parts`, nothing on stdout, the
/// store unchanged, the container running.
#[track_caller]
fn refused(
    out: &reel::Out,
    parts: &[&str],
    store: &TestStore,
    snap: &std::collections::BTreeMap<String, (u64, i128, bool)>,
) {
    out.code_is(1).stderr_has(parts);
    assert!(out.stderr.contains("error: "), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert_eq!(&store.snapshot(), snap, "the store changed: {out}");
}

#[test]
fn unknown_namespace_pod_and_container_are_refused() {
    let c = run_counter(Oci::Runc, counter_bundle("bad-names"));
    let (cg, _thaw) = thaw_guard(c.pid());
    let (store, snap) = store_with_one(&c);

    let ns = kit::unique_name("no-such-ns");
    let out = store.run(&["create", "checkpoint", "web", "-n", &ns]);
    refused(
        &out,
        &["no namespace", &ns, "namespaces:", "runc"],
        &store,
        &snap,
    );

    let out = store.run(&["create", "checkpoint", "no-such-pod", "-n", "runc"]);
    refused(
        &out,
        &["no pod \"no-such-pod\"", "pods there:", &c.id],
        &store,
        &snap,
    );

    let out = store.run(&[
        "create",
        "checkpoint",
        &c.id,
        "no-such-container",
        "-n",
        "runc",
    ]);
    refused(&out, &["no container", &c.id], &store, &snap);

    // The default namespace is `default`: a container of namespace runc is not found there.
    let out = store.run(&["create", "checkpoint", &c.id]);
    out.code_is(1).stderr_has(&["default"]);
    assert_eq!(store.snapshot(), snap);
    assert_runs(&c, &cg);
}

#[test]
fn an_ambiguous_container_is_refused_listing_the_names() {
    let ns = kit::unique_name("ns-amb");
    let pod = kit::unique_name("pod-amb");
    let a = run_counter(
        Oci::Runc,
        counter_bundle("amb-a").containerd_pod(&ns, &pod, "alpha"),
    );
    let b = run_counter(
        Oci::Runc,
        counter_bundle("amb-b").containerd_pod(&ns, &pod, "beta"),
    );
    let _thaw_a = ThawOnDrop(Cgroups::of(a.pid()));
    let _thaw_b = ThawOnDrop(Cgroups::of(b.pid()));
    let store = setup();
    let out = store.run(&["create", "checkpoint", &pod, "-n", &ns]);
    refused(
        &out,
        &["several containers", "alpha, beta"],
        &store,
        &Default::default(),
    );
    out.stderr_has(&["hint:"]);
    // Naming one works.
    store
        .run(&["-q", "create", "checkpoint", &pod, "beta", "-n", &ns])
        .ok();
    assert_eq!(store.archives().len(), 1);
}

#[test]
fn an_exited_container_is_refused() {
    let live = run_counter(Oci::Runc, counter_bundle("exited-other"));
    let _thaw = ThawOnDrop(Cgroups::of(live.pid()));
    let (store, snap) = store_with_one(&live);
    let dead = run_counter(Oci::Runc, counter_bundle("exited"));
    dead.kill();
    let out = store.run(&["create", "checkpoint", &dead.id, "-n", "runc"]);
    refused(&out, &["exited", &dead.id], &store, &snap);
}

#[test]
fn running_without_root_is_refused() {
    let c = run_counter(Oci::Runc, counter_bundle("nobody"));
    let (cg, _thaw) = thaw_guard(c.pid());
    let (store, snap) = store_with_one(&c);
    // A copy of the binary nobody can run, whatever the target directory's modes.
    let dir = tempfile::Builder::new()
        .prefix("reel-nobody.")
        .tempdir_in(kit::test_dir())
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("reel");
    std::fs::copy(bins::reel_bin(), &bin).unwrap();
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&bin)
        .arg("--root")
        .arg(store.root())
        .args(["create", "checkpoint", &c.id, "-n", "runc"])
        .env_remove("REEL_STORE")
        .env_remove("REEL_CRIU");
    let out = reel::run_bounded(&mut cmd, reel::REEL_TIMEOUT);
    refused(&out, &["needs root"], &store, &snap);
    assert_runs(&c, &cg);
}

#[test]
fn missing_criu_is_refused() {
    let c = run_counter(Oci::Runc, counter_bundle("nocriu"));
    let (cg, _thaw) = thaw_guard(c.pid());
    let (store, snap) = store_with_one(&c);
    let mut args = vec!["--criu", "/nonexistent"];
    args.extend(create_args(&c, &[]));
    let out = store.run(&args);
    refused(&out, &["criu", "/nonexistent"], &store, &snap);
    let mut cmd = store.cmd(&create_args(&c, &[]));
    cmd.env("REEL_CRIU", "/nonexistent/criu");
    let out = reel::run_bounded(&mut cmd, reel::REEL_TIMEOUT);
    refused(&out, &["criu", "/nonexistent/criu"], &store, &snap);
    assert_runs(&c, &cg);
}

#[test]
fn a_read_only_store_is_refused() {
    let c = run_counter(Oci::Runc, counter_bundle("rostore"));
    let (cg, _thaw) = thaw_guard(c.pid());
    let store = setup();
    // Root ignores file modes: only a read-only mount stops it.
    let _ro = Mount::tmpfs(&store.root(), "ro,size=1m,mode=0700");
    let out = store.run(&create_args(&c, &[]));
    refused(
        &out,
        &["not writable", "read-only"],
        &store,
        &Default::default(),
    );
    out.stderr_has(&["hint:", "--root"]);
    assert_runs(&c, &cg);
}

/// A store smaller than the container's memory: refused before anything is frozen. Proof:
/// cgroup2's `cgroup.events` (pollable, so no freeze is too short to see) never changes and
/// no sample finds either freezer frozen, with the v2 freezer and with the default (v1) one.
/// Control: the same watch does see the freeze of a checkpoint that goes ahead.
#[test]
fn a_store_too_small_is_refused_before_freezing() {
    let store = setup();
    let c = reel::run_hog("smallstore", 16);
    let (cg, _thaw) = thaw_guard(c.pid());
    let memory = reel::workload(&reel::workloads(&store, &["-n", "runc"]), &c.id)["memory_bytes"]
        .as_u64()
        .unwrap_or(0);
    let small = 4u64 << 20;
    assert!(memory > small, "the container holds only {memory} bytes");
    let _tmpfs = Mount::tmpfs(&store.root(), "size=4m,mode=0700");

    for freezer in ["v2", "auto"] {
        let watch = FreezeWatch::start(&cg);
        let counter_before = c.counter(COUNTER).unwrap();
        let out = store.run(&create_args(&c, &["--freezer", freezer]));
        let seen = watch.finish();
        eprintln!("--freezer {freezer}: {seen:?}");
        refused(
            &out,
            &["not enough space", store.root().to_str().unwrap()],
            &store,
            &Default::default(),
        );
        out.stderr_has(&["hint:"]);
        assert!(seen.samples > 10, "the watch did not run: {seen:?}");
        assert_eq!(seen.frozen_samples, 0, "frozen: {seen:?}");
        assert_eq!(seen.events_changes, 0, "cgroup.events changed: {seen:?}");
        assert!(c.counter(COUNTER).unwrap() > counter_before);
    }
    assert_runs(&c, &cg);

    // The control: a store with room, same container, same watch.
    let roomy = TestStore::new();
    let watch = FreezeWatch::start(&cg);
    let out = roomy.run(&create_args(&c, &["-q", "--freezer", "v2"]));
    let seen = watch.finish();
    out.ok();
    assert!(
        seen.events_changes > 0,
        "the watch missed a real freeze: {seen:?}"
    );
    assert_runs(&c, &cg);
}

/// `--freezer v1` for a container without a v1 freezer cgroup fails clearly and changes
/// nothing (the container is left running).
#[test]
fn a_missing_v1_freezer_is_refused() {
    let store = setup();
    // runc always gives a container a v1 freezer cgroup on this host: move the process to the
    // root v1 freezer cgroup instead (its v2 cgroup is untouched).
    let c = run_counter(Oci::Runc, counter_bundle("nov1"));
    let (cg, _thaw) = thaw_guard(c.pid());
    let freezer_mount = cg
        .v1()
        .ancestors()
        .find(|p| p.join("cgroup.sane_behavior").exists())
        .expect("the v1 freezer hierarchy's root")
        .to_path_buf();
    std::fs::write(freezer_mount.join("cgroup.procs"), c.pid().to_string()).unwrap();
    let moved = Cgroups::of(c.pid());
    assert!(
        moved.v1.is_none(),
        "still in a v1 freezer cgroup: {moved:?}"
    );
    let out = store.run(&create_args(&c, &["--freezer", "v1"]));
    out.code_is(1).stderr_has(&["v1", "freez"]);
    assert!(store.archives().is_empty());
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    assert_runs(&c, &moved);
    // Put it back so runc can delete it cleanly.
    std::fs::write(cg.v1().join("cgroup.procs"), c.pid().to_string()).unwrap();
}
