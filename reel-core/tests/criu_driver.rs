//! The CRIU driver against the real, pinned CRIU. Needs root and CRIU >= 4.2: when either is
//! missing these tests FAIL (they never skip).
//!
//! Run: `cargo test -p reel-core --test criu_driver -- --test-threads=1`
//!
//! The workloads are `tests/programs/tree.c` and `tests/programs/netserver.c`, built by the
//! test kit. They daemonize (setsid, stdio on /dev/null), so CRIU sees no descriptor shared
//! with the test harness. Every tree is killed by a guard, also when a test fails.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prost::Message;
use reel_core::criu::image::{AnyMessage, ImageError, ImageKind, ImageReader, MessageType};
use reel_core::criu::{Criu, CriuError, ExitInfo, NotifyKind, Options, Request};
use reel_testkit::programs::{assert_dump_images, Daemon};
use reel_testkit::{proc, require_root, wait_until};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The tests of this file look at this process's CRIU children, so they run one at a time
/// even without `--test-threads=1`.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn criu() -> Criu {
    require_root();
    match Criu::locate() {
        Ok(c) => c,
        Err(e) => panic!("the CRIU driver tests need the pinned CRIU: {e}"),
    }
}

/// Processes named `criu` whose parent is this test process (live or zombie).
fn criu_children() -> Vec<(i32, char)> {
    let me = std::process::id() as i32;
    proc::processes()
        .into_iter()
        .filter(|p| p.ppid == me && p.comm == "criu")
        .map(|p| (p.pid, p.state))
        .collect()
}

fn assert_no_criu_left() {
    let left = criu_children();
    assert!(
        left.is_empty(),
        "CRIU processes left behind (pid, state): {left:?}"
    );
}

/// A daemonized test workload (`tree` or `netserver`), killed when dropped.
struct Workload(Daemon);

impl std::ops::Deref for Workload {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        &self.0
    }
}

impl Workload {
    /// Starts `tree` and waits until it runs (its three pids are known).
    fn tree() -> Workload {
        Workload::start("tree", "pids")
    }

    /// Starts `netserver` and waits until it listens.
    fn netserver() -> Workload {
        Workload::start("netserver", "port")
    }

    /// Starts `queues` and waits until its queues are filled.
    fn queues() -> Workload {
        Workload::start("queues", "pid")
    }

    fn start(name: &str, ready: &str) -> Workload {
        let mut d = Daemon::start(name, ready);
        if name == "netserver" {
            d.pids.truncate(1); // "PID PORT"
        }
        let w = Workload(d);
        wait_until(Duration::from_secs(5), "the workload to run", || {
            w.all_running()
        });
        w
    }

    fn root(&self) -> i32 {
        self.pids[0]
    }

    fn received(&self) -> (u64, u64) {
        let t = fs::read_to_string(self.path("received")).unwrap();
        let v: Vec<u64> = t.split_whitespace().map(|s| s.parse().unwrap()).collect();
        (v[0], v[1])
    }

    fn port(&self) -> u16 {
        let t = fs::read_to_string(self.path("port")).unwrap();
        t.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    fn wait_counter_at_least(&self, n: u64) {
        wait_until(Duration::from_secs(20), &format!("counter >= {n}"), || {
            self.counter() >= n
        });
    }

    /// Waits until every pid of the tree is gone (reaped), so that a restore can take them.
    fn wait_gone(&self) {
        wait_until(
            Duration::from_secs(60),
            "the dumped tree's pids to be free",
            || self.pids.iter().all(|&p| proc::state_of(p).is_none()),
        );
    }
}

/// An images dir (`<stage>/checkpoint`, 0700) and its work dir (`<stage>`).
struct Stage {
    dir: tempfile::TempDir,
}

impl Stage {
    fn new() -> Stage {
        let dir = tempfile::Builder::new()
            .prefix("reel-criu-stage-")
            .tempdir()
            .unwrap();
        let images = dir.path().join("checkpoint");
        fs::create_dir(&images).unwrap();
        fs::set_permissions(&images, fs::Permissions::from_mode(0o700)).unwrap();
        Stage { dir }
    }

    fn work(&self) -> &Path {
        self.dir.path()
    }

    fn images(&self) -> PathBuf {
        self.dir.path().join("checkpoint")
    }

    fn dump_opts(&self, pid: i32) -> Options {
        Options::new()
            .pid(pid)
            .images_dir(self.images())
            .work_dir(self.work())
            .log_file("dump.log")
    }

    fn restore_opts(&self) -> Options {
        Options::new()
            .images_dir(self.images())
            .work_dir(self.work())
            .log_file("restore.log")
    }

    fn image_names(&self) -> Vec<String> {
        names(&self.images())
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn show(e: &CriuError) -> String {
    format!("{e}\n{e:?}")
}

/// Decodes `stats-dump` with the image reader, independently of the driver's statistics.
fn decode_stats_by_hand(path: &Path) -> criu_sys::proto::StatsEntry {
    let mut image = ImageReader::open(path).unwrap();
    assert_eq!(image.kind(), ImageKind::Stats);
    let entries = image.read_entries().unwrap();
    assert_eq!(entries.len(), 1, "one stats entry");
    entries.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------------------------
// 1. Dump a running tree and leave it running
// ---------------------------------------------------------------------------------------------

#[test]
fn dump_leave_running_keeps_the_tree_running() {
    let _serial = serial();
    let criu = criu();
    let tree = Workload::tree();
    tree.wait_counter_at_least(5);
    let stage = Stage::new();

    let mut seen = Vec::new();
    let stats = criu
        .dump_with(&stage.dump_opts(tree.root()).leave_running(true), |n| {
            seen.push(n.kind().clone());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("dump failed: {}", show(&e)));
    let pre = seen.iter().position(|k| *k == NotifyKind::PreDump);
    let post = seen.iter().position(|k| *k == NotifyKind::PostDump);
    assert!(
        pre.is_some() && post.is_some() && pre < post,
        "notifications: {seen:?}"
    );
    let frozen = stats.frozen_time.expect("frozen time");
    let written = stats.pages_written.expect("pages written");
    assert!(frozen > Duration::ZERO, "{stats:?}");
    assert!(written > 0, "{stats:?}");
    assert!(
        stats.pages_scanned.expect("pages scanned") >= written,
        "{stats:?}"
    );
    assert!(
        stats.freezing_time.is_some()
            && stats.memdump_time.is_some()
            && stats.memwrite_time.is_some()
    );

    // The tree runs on.
    let at_dump = tree.counter();
    let (a, b) = tree.received();
    wait_until(
        Duration::from_secs(10),
        "the counter to advance after the dump",
        || tree.counter() > at_dump + 3,
    );
    wait_until(
        Duration::from_secs(10),
        "both children to report after the dump",
        || {
            let (a2, b2) = tree.received();
            a2 > a && b2 > b
        },
    );
    assert!(tree.all_running());

    // The images are there.
    let imgs = stage.image_names();
    assert_dump_images(
        &imgs,
        &["inventory.img", "pstree.img", "files.img"],
        &tree.pids,
    );
    assert!(stage.work().join("dump.log").is_file());

    // stats-dump decodes with the generated types and says what the driver returned.
    let entry = decode_stats_by_hand(&stage.work().join("stats-dump"));
    let d = entry.dump.as_ref().expect("a dump entry");
    assert!(d.frozen_time > 0 && d.pages_written > 0);
    assert_eq!(u64::from(d.frozen_time), frozen.as_micros() as u64);
    assert_eq!(d.pages_written, written);
    assert_no_criu_left();
}

// ---------------------------------------------------------------------------------------------
// 2. Dump (the tree dies), restore, and the tree goes on where it stopped
// ---------------------------------------------------------------------------------------------

fn zero_files(tree: &Workload) {
    // Same sizes (CRIU checks the size of open files on restore), but zeroes: whatever is
    // read after the restore was written by the restored tree, from its memory.
    fs::write(tree.path("counter"), format!("{:020}\n", 0)).unwrap();
    fs::write(tree.path("received"), format!("{:020} {:020}\n", 0, 0)).unwrap();
}

#[test]
fn dump_then_restore_resumes_the_tree() {
    let _serial = serial();
    let criu = criu();
    let tree = Workload::tree();
    tree.wait_counter_at_least(20);
    let stage = Stage::new();

    criu.dump(&stage.dump_opts(tree.root()))
        .unwrap_or_else(|e| panic!("dump failed: {}", show(&e)));
    // Without leave_running the tree is killed.
    wait_until(Duration::from_secs(10), "the dumped tree to die", || {
        !tree.pids.iter().any(|&p| proc::is_running(p))
    });
    let at_dump = tree.counter();
    let (a, b) = tree.received();
    assert!(
        at_dump >= 20 && a > 0 && b > 0,
        "counter {at_dump}, received {a} {b}"
    );
    zero_files(&tree);
    tree.wait_gone();

    let mut seen = Vec::new();
    let pid = criu
        .restore_with(&stage.restore_opts(), |n| {
            seen.push((n.kind().clone(), n.pid()));
            Ok(())
        })
        .unwrap_or_else(|e| panic!("restore failed: {}", show(&e)));
    assert_eq!(pid, tree.root(), "the restored root keeps its pid");
    assert_eq!(
        seen.first().map(|s| &s.0),
        Some(&NotifyKind::PreRestore),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(NotifyKind::PostRestore, Some(pid))),
        "post-restore carries the root pid: {seen:?}"
    );
    wait_until(
        Duration::from_secs(10),
        "the restored counter to advance",
        || tree.counter() > at_dump,
    );
    let resumed = tree.counter();
    assert!(
        resumed > at_dump && resumed < at_dump + 100,
        "the counter must resume from {at_dump} (memory), not restart: it is {resumed}"
    );
    // The pipe between the children and the root still works.
    wait_until(
        Duration::from_secs(10),
        "both children to report over the pipe after the restore",
        || {
            let (a2, b2) = tree.received();
            a2 > a && b2 > b
        },
    );
    let (a2, b2) = tree.received();
    assert!(
        a2 < a + 100 && b2 < b + 100,
        "children resumed their own counts: {a}->{a2}, {b}->{b2}"
    );
    assert!(tree.all_running(), "all three processes are back");
    assert!(stage.work().join("restore.log").is_file());
    assert_no_criu_left();
}

// ---------------------------------------------------------------------------------------------
// 3. A listening TCP socket and a unix socketpair survive dump and restore
// ---------------------------------------------------------------------------------------------

fn ask(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"hi\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn tcp_listener_and_socketpair_restore() {
    let _serial = serial();
    let criu = criu();
    let srv = Workload::netserver();
    let port = srv.port();
    assert_eq!(ask(port), "hello 1 via socketpair\n");
    assert_eq!(ask(port), "hello 2 via socketpair\n");
    let stage = Stage::new();

    criu.dump(&stage.dump_opts(srv.root()))
        .unwrap_or_else(|e| panic!("dump failed: {}", show(&e)));
    srv.wait_gone();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nobody listens after the dump"
    );

    let pid = criu
        .restore(&stage.restore_opts())
        .unwrap_or_else(|e| panic!("restore failed: {}", show(&e)));
    assert_eq!(pid, srv.root());
    assert_eq!(
        ask(port),
        "hello 3 via socketpair\n",
        "the restored server answers and keeps its count"
    );
    assert_no_criu_left();
}

// ---------------------------------------------------------------------------------------------
// 4. VERSION, CHECK, FEATURE_CHECK, and PRE_DUMP without memory tracking
// ---------------------------------------------------------------------------------------------

#[test]
fn version_check_features_and_pre_dump() {
    let _serial = serial();
    let criu = criu();
    let v = criu
        .version()
        .unwrap_or_else(|e| panic!("VERSION failed: {}", show(&e)));
    assert!(v.at_least(4, 2), "CRIU {v} is older than 4.2");
    assert_eq!(&v, criu.known_version());
    assert!(
        v.to_string().starts_with(criu_sys::CRIU_VERSION),
        "{v} vs {}",
        criu_sys::CRIU_VERSION
    );

    criu.check()
        .unwrap_or_else(|e| panic!("CHECK failed: {}", show(&e)));

    let f = criu
        .feature_check()
        .unwrap_or_else(|e| panic!("FEATURE_CHECK failed: {}", show(&e)));
    assert!(
        !f.mem_track,
        "this kernel has no soft-dirty bits, so mem_track must be false: {f:?}"
    );

    let tree = Workload::tree();
    let stage = Stage::new();
    let err = criu
        .pre_dump(&stage.dump_opts(tree.root()).log_file("pre-dump.log"))
        .expect_err("PRE_DUMP cannot work without memory tracking");
    eprintln!("PRE_DUMP error: {err}");
    let text = err.to_string();
    match &err {
        CriuError::RequestFailed { request, hint, .. } => {
            assert_eq!(*request, Request::PreDump);
            assert!(hint.is_some(), "{}", show(&err));
        }
        other => panic!("expected RequestFailed, got {}", show(other)),
    }
    assert!(text.contains("memory tracking is unsupported"), "{text}");
    assert!(text.contains("PRE_DUMP"), "{text}");
    assert!(
        tree.all_running(),
        "a failed pre-dump leaves the tree running"
    );
    assert_no_criu_left();
}

// ---------------------------------------------------------------------------------------------
// 5. Pages through a page server started by the driver
// ---------------------------------------------------------------------------------------------

#[test]
fn dump_through_page_server_and_restore() {
    let _serial = serial();
    let criu = criu();
    let tree = Workload::tree();
    tree.wait_counter_at_least(20);
    let a = Stage::new(); // everything but the pages
    let b = Stage::new(); // the pages, written by the page server

    let ps = criu
        .page_server(
            &Options::new()
                .images_dir(b.images())
                .work_dir(b.work())
                .page_server("127.0.0.1", 0)
                .call_timeout(Duration::from_secs(30)),
        )
        .unwrap_or_else(|e| panic!("page server failed: {}", show(&e)));
    assert!(ps.port() > 0 && ps.pid() > 0, "{ps:?}");
    let ps_pid = ps.pid();

    let stats = criu
        .dump(&a.dump_opts(tree.root()).page_server("127.0.0.1", ps.port()))
        .unwrap_or_else(|e| panic!("dump through the page server failed: {}", show(&e)));
    assert!(stats.pages_written.is_some_and(|n| n > 0), "{stats:?}");
    let status = ps
        .wait(Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("page server: {}", show(&e)));
    assert_eq!(
        status,
        ExitInfo::Exited(0),
        "the page server exits cleanly after the dump"
    );
    assert_eq!(proc::state_of(ps_pid), None, "the page server is reaped");

    let in_a = a.image_names();
    let in_b = b.image_names();
    assert!(
        !in_a.iter().any(|n| n.starts_with("pages-")),
        "pages went to A: {in_a:?}"
    );
    assert!(
        in_b.iter().any(|n| n.starts_with("pages-")),
        "no pages in B: {in_b:?}"
    );
    assert!(
        in_b.iter().any(|n| n.starts_with("pagemap-")),
        "no pagemap in B: {in_b:?}"
    );

    // Merge B into A, then restore from A.
    for n in &in_b {
        if n.ends_with(".img") && !in_a.contains(n) {
            fs::copy(b.images().join(n), a.images().join(n)).unwrap();
        }
    }
    wait_until(Duration::from_secs(10), "the dumped tree to die", || {
        !tree.pids.iter().any(|&p| proc::is_running(p))
    });
    let at_dump = tree.counter();
    zero_files(&tree);
    tree.wait_gone();
    let pid = criu
        .restore(&a.restore_opts())
        .unwrap_or_else(|e| panic!("restore failed: {}", show(&e)));
    assert_eq!(pid, tree.root());
    wait_until(
        Duration::from_secs(10),
        "the restored counter to advance",
        || tree.counter() > at_dump,
    );
    assert!(tree.counter() < at_dump + 100);
    assert!(tree.all_running());
    assert_no_criu_left();
}

#[test]
fn dropping_a_page_server_kills_and_reaps_it() {
    let _serial = serial();
    let criu = criu();
    let b = Stage::new();
    let ps = criu
        .page_server(
            &Options::new()
                .images_dir(b.images())
                .page_server("127.0.0.1", 0),
        )
        .unwrap_or_else(|e| panic!("page server failed: {}", show(&e)));
    let pid = ps.pid();
    assert!(proc::is_running(pid));
    assert_eq!(
        criu_children().len(),
        1,
        "one criu swrk holds the page server"
    );
    drop(ps);
    assert_eq!(
        proc::state_of(pid),
        None,
        "the page server is gone and reaped"
    );
    assert_no_criu_left();

    let ps = criu
        .page_server(
            &Options::new()
                .images_dir(b.images())
                .page_server("127.0.0.1", 0),
        )
        .unwrap_or_else(|e| panic!("page server failed: {}", show(&e)));
    let pid = ps.pid();
    let status = ps.stop().unwrap_or_else(|e| panic!("stop: {}", show(&e)));
    assert_eq!(status, ExitInfo::Signaled(libc::SIGKILL));
    assert_eq!(proc::state_of(pid), None);
    assert_no_criu_left();
}

// ---------------------------------------------------------------------------------------------
// 6. Bad input gives typed errors
// ---------------------------------------------------------------------------------------------

#[test]
fn dump_of_a_missing_pid_fails_typed() {
    let _serial = serial();
    let criu = criu();
    let stage = Stage::new();
    // A pid that is not in use (pid_max here is small, so look for a free one).
    let pid = (2000..32000)
        .rev()
        .find(|p| proc::state_of(*p).is_none())
        .unwrap();
    let err = criu
        .dump(&stage.dump_opts(pid))
        .expect_err("dumping a missing pid must fail");
    eprintln!("missing pid error: {err}");
    match &err {
        CriuError::RequestFailed {
            request: Request::Dump,
            cr_errmsg,
            log,
            ..
        } => {
            assert!(cr_errmsg.is_some() || !log.is_empty(), "{}", show(&err));
        }
        other => panic!("expected RequestFailed, got {}", show(other)),
    }
    assert!(
        !err.log().is_empty(),
        "the error carries CRIU's log lines: {}",
        show(&err)
    );
    assert_no_criu_left();
}

/// A directory made read-only with a read-only bind mount of itself (root ignores modes);
/// unmounted on drop.
struct ReadOnlyDir {
    path: PathBuf,
}

impl ReadOnlyDir {
    fn new(path: PathBuf) -> ReadOnlyDir {
        use nix::mount::{mount, MsFlags};
        mount(
            Some(&path),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .expect("bind mount");
        let g = ReadOnlyDir { path };
        mount(
            None::<&str>,
            &g.path,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .expect("remount read-only");
        g
    }
}

impl Drop for ReadOnlyDir {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.path, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn dump_into_a_read_only_dir_fails_typed() {
    let _serial = serial();
    let criu = criu();
    let tree = Workload::tree();
    let stage = Stage::new();
    let ro = ReadOnlyDir::new(stage.images());
    assert!(
        fs::write(ro.path.join("probe"), b"x").is_err(),
        "the dir must be read-only even for root"
    );
    // The work dir (log) stays writable, so the log explains.
    let err = criu
        .dump(&stage.dump_opts(tree.root()).leave_running(true))
        .expect_err("dumping into a read-only dir must fail");
    eprintln!("read-only dir error: {err}");
    match &err {
        CriuError::RequestFailed {
            request: Request::Dump,
            ..
        } => {}
        other => panic!("expected RequestFailed, got {}", show(other)),
    }
    let text = err.to_string();
    assert!(text.contains("Read-only file system"), "{}", show(&err));
    drop(ro);
    let before = tree.counter();
    wait_until(
        Duration::from_secs(10),
        "the tree to run on after the failed dump",
        || tree.counter() > before,
    );
    assert!(tree.all_running());
    assert_no_criu_left();
}

#[test]
fn missing_and_not_executable_binaries_fail_typed() {
    let _serial = serial();
    require_root();
    let err = Criu::with_binary("/nonexistent/reel/criu").expect_err("a missing binary");
    assert!(
        matches!(err, CriuError::BinaryNotFound { .. }),
        "{}",
        show(&err)
    );
    assert!(
        err.to_string().contains("vendor/criu.sh"),
        "the error says how to fix it: {err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("criu");
    fs::write(&f, "#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let err = Criu::with_binary(&f).expect_err("a file that is not executable");
    assert!(
        matches!(err, CriuError::NotExecutable { .. }),
        "{}",
        show(&err)
    );
}

/// A fake CRIU 3.17 that speaks just enough of the RPC protocol: it reads the request (one
/// datagram) from fd 3 and writes a prepared VERSION answer (one datagram). The driver checks
/// versions with the VERSION request, as it speaks RPC anyway; `criu --version` is not used.
#[test]
fn too_old_criu_fails_typed() {
    let _serial = serial();
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut resp = criu_sys::proto::CriuResp {
        success: true,
        version: Some(criu_sys::proto::CriuVersion {
            major_number: 3,
            minor_number: 17,
            ..Default::default()
        }),
        ..Default::default()
    };
    resp.set_type(criu_sys::proto::CriuReqType::Version);
    let answer = dir.path().join("version-answer.bin");
    fs::write(&answer, resp.encode_to_vec()).unwrap();
    let fake = dir.path().join("criu");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$1\" = swrk ] || {{ echo 'Version: 3.17'; exit 0; }}\n\
             dd bs=65536 count=1 <&3 >/dev/null 2>&1\ncat '{}' >&3\n",
            answer.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();

    let err = Criu::with_binary(&fake).expect_err("CRIU 3.17 is too old");
    eprintln!("too old error: {err}");
    match &err {
        CriuError::VersionTooOld {
            found, required, ..
        } => {
            assert_eq!(found, "3.17");
            assert_eq!(*required, (4, 2));
        }
        other => panic!("expected VersionTooOld, got {}", show(other)),
    }
    assert!(
        err.to_string().contains("vendor/criu.sh"),
        "the error says how to fix it: {err}"
    );
    assert_no_criu_left();
}

/// The pid of this process's `criu` child (the swrk of the call in flight).
fn the_criu_child() -> i32 {
    let c = criu_children();
    assert_eq!(c.len(), 1, "exactly one CRIU child expected: {c:?}");
    c[0].0
}

#[test]
fn criu_killed_in_post_dump_is_reported_and_reaped() {
    let _serial = serial();
    let criu = criu();
    let tree = Workload::tree();
    let stage = Stage::new();
    let mut killed = None;
    let mut seen = Vec::new();
    let err = criu
        .dump_with(&stage.dump_opts(tree.root()).leave_running(true), |n| {
            seen.push(n.kind().clone());
            if *n.kind() == NotifyKind::PostDump {
                let pid = the_criu_child();
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                killed = Some(pid);
            }
            Ok(())
        })
        .expect_err("a dump whose CRIU is killed must fail");
    eprintln!("killed CRIU error: {err}");
    let pid = killed.expect("the post-dump notification came");
    assert!(
        seen.contains(&NotifyKind::PreDump),
        "notifications: {seen:?}"
    );
    match &err {
        CriuError::Died {
            request: Request::Dump,
            status,
            ..
        } => {
            assert_eq!(*status, ExitInfo::Signaled(libc::SIGKILL), "{}", show(&err))
        }
        other => panic!("expected Died, got {}", show(other)),
    }
    assert!(err.to_string().contains("CRIU died"), "{err}");
    assert_eq!(proc::state_of(pid), None, "CRIU is reaped, no zombie");
    assert_no_criu_left();
    let before = tree.counter();
    wait_until(Duration::from_secs(10), "the tree to run on", || {
        tree.counter() > before + 2
    });
    assert!(tree.all_running());
}

#[test]
fn failing_or_panicking_notification_fails_the_dump() {
    let _serial = serial();
    let criu = criu();
    let tree = Workload::tree();
    let stage = Stage::new();

    let err = criu
        .dump_with(
            &stage.dump_opts(tree.root()).leave_running(true),
            |n| match n.kind() {
                NotifyKind::PostDump => Err("refusing the dump".to_string()),
                _ => Ok(()),
            },
        )
        .expect_err("a failed post-dump must fail the dump");
    match &err {
        CriuError::NotifyFailed {
            request: Request::Dump,
            script,
            message,
            ..
        } => {
            assert_eq!(script, "post-dump");
            assert_eq!(message, "refusing the dump");
        }
        other => panic!("expected NotifyFailed, got {}", show(other)),
    }
    assert_no_criu_left();
    let before = tree.counter();
    wait_until(Duration::from_secs(10), "the tree to run on", || {
        tree.counter() > before
    });

    let err = criu
        .dump_with(&stage.dump_opts(tree.root()).leave_running(true), |n| {
            if *n.kind() == NotifyKind::PreDump {
                panic!("callback bug");
            }
            Ok(())
        })
        .expect_err("a panicking callback must fail the dump");
    match &err {
        CriuError::NotifyFailed {
            script, message, ..
        } => {
            assert_eq!(script, "pre-dump");
            assert!(
                message.contains("panicked") && message.contains("callback bug"),
                "{message}"
            );
        }
        other => panic!("expected NotifyFailed, got {}", show(other)),
    }
    assert_no_criu_left();
    let before = tree.counter();
    wait_until(Duration::from_secs(10), "the tree to run on", || {
        tree.counter() > before
    });
    assert!(tree.all_running());
}

#[test]
fn call_timeout_kills_and_reaps_criu() {
    let _serial = serial();
    let criu = criu();
    let tree = Workload::tree();
    let stage = Stage::new();
    let mut criu_pid = 0;
    let started = Instant::now();
    let err = criu
        .dump_with(
            &stage
                .dump_opts(tree.root())
                .leave_running(true)
                .call_timeout(Duration::from_secs(1)),
            |n| {
                if *n.kind() == NotifyKind::PreDump {
                    criu_pid = the_criu_child();
                    std::thread::sleep(Duration::from_millis(1500));
                }
                Ok(())
            },
        )
        .expect_err("the call must time out");
    eprintln!("timeout error: {err}");
    match &err {
        CriuError::Timeout {
            request: Request::Dump,
            after,
            ..
        } => assert_eq!(*after, Duration::from_secs(1)),
        other => panic!("expected Timeout, got {}", show(other)),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(criu_pid > 0);
    assert_eq!(proc::state_of(criu_pid), None, "CRIU is killed and reaped");
    assert_no_criu_left();
    let before = tree.counter();
    wait_until(Duration::from_secs(10), "the tree to run on", || {
        tree.counter() > before
    });
    assert!(tree.all_running());
}

// ---------------------------------------------------------------------------------------------
// 7. Every image of real dumps reads with criu::image, by its magic
// ---------------------------------------------------------------------------------------------

/// An image of a dump as the reader saw it: each entry decoded, with its payload.
struct ReadImage {
    name: String,
    kind: ImageKind,
    entries: Vec<(AnyMessage, Vec<u8>)>,
}

/// Reads every file of the images dir and the work dir's `stats-dump` with the image reader,
/// decoding every entry into its message type and reading every payload. Fails on any file
/// whose kind the reader does not know, by name or by magic (a CRIU newer than the pin).
fn read_every_image(stage: &Stage) -> Vec<ReadImage> {
    let mut paths: Vec<PathBuf> = stage
        .image_names()
        .iter()
        .map(|n| stage.images().join(n))
        .collect();
    paths.push(stage.work().join("stats-dump"));
    let mut out = Vec::new();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let kind = ImageKind::from_file_name(&name)
            .unwrap_or_else(|| panic!("{name}: an image the reader does not know"));
        let mut entries = Vec::new();
        if kind.is_raw() {
            let e = ImageReader::open(&path).expect_err("a raw image has no entries");
            assert!(matches!(e, ImageError::Raw { .. }), "{name}: {e}");
        } else {
            let mut image = ImageReader::open(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(image.kind(), kind, "{name}: its magic and its name agree");
            while let Some(mut e) = image.next_entry().unwrap_or_else(|e| panic!("{e}")) {
                let message = e.decode_any().unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(message.message_type(), e.message_type());
                let payload = e.read_payload(64 << 20).unwrap_or_else(|e| panic!("{e}"));
                entries.push((message, payload));
            }
            let size = fs::metadata(&path).unwrap().len();
            assert_eq!(image.offset(), size, "{name}: read to its end");
            assert!(!entries.is_empty(), "{name}: no entries");
        }
        out.push(ReadImage {
            name,
            kind,
            entries,
        });
    }
    out
}

fn of_kind(images: &[ReadImage], kind: ImageKind) -> Vec<&ReadImage> {
    images.iter().filter(|i| i.kind == kind).collect()
}

fn payloads(images: &[ReadImage], kind: ImageKind) -> Vec<Vec<u8>> {
    of_kind(images, kind)
        .iter()
        .flat_map(|i| i.entries.iter().map(|(_, p)| p.clone()))
        .filter(|p| !p.is_empty())
        .collect()
}

#[test]
fn every_image_of_real_dumps_reads_by_its_magic() {
    let _serial = serial();
    let criu = criu();

    // A process tree: tasks, memory, pipes, timers.
    let tree = Workload::tree();
    tree.wait_counter_at_least(5);
    let stage = Stage::new();
    criu.dump(&stage.dump_opts(tree.root()).leave_running(true))
        .unwrap_or_else(|e| panic!("dump failed: {}", show(&e)));
    let images = read_every_image(&stage);
    for kind in [
        ImageKind::Inventory,
        ImageKind::Stats,
        ImageKind::Pstree,
        ImageKind::Core,
        ImageKind::Ids,
        ImageKind::Mm,
        ImageKind::Fs,
        ImageKind::Pagemap,
        ImageKind::Pages,
        ImageKind::Files,
        ImageKind::Fdinfo,
    ] {
        assert!(
            !of_kind(&images, kind).is_empty(),
            "no {kind} image in {:?}",
            stage.image_names()
        );
    }
    assert_eq!(
        of_kind(&images, ImageKind::Core).len(),
        3,
        "one core per task"
    );
    let pstree = &of_kind(&images, ImageKind::Pstree)[0].entries;
    assert_eq!(pstree.len(), 3, "three tasks in pstree.img");
    for pagemap in of_kind(&images, ImageKind::Pagemap) {
        let types: Vec<MessageType> = pagemap
            .entries
            .iter()
            .map(|(m, _)| m.message_type())
            .collect();
        assert_eq!(types[0], MessageType::PagemapHead, "{}", pagemap.name);
        assert!(
            types.len() > 1 && types[1..].iter().all(|t| *t == MessageType::PagemapEntry),
            "{}: {types:?}",
            pagemap.name
        );
    }
    let timerfds = of_kind(&images, ImageKind::Files)[0]
        .entries
        .iter()
        .filter(|(m, _)| matches!(m, AnyMessage::FileEntry(f) if f.tfd.is_some()))
        .count();
    assert_eq!(timerfds, 1, "the root's timerfd is in files.img");

    // Descriptors holding data CRIU keeps after their entries.
    let q = Workload::queues();
    let stage = Stage::new();
    criu.dump(
        &stage
            .dump_opts(q.root())
            .leave_running(true)
            .tcp_established(true),
    )
    .unwrap_or_else(|e| panic!("dump failed: {}", show(&e)));
    let images = read_every_image(&stage);
    assert_eq!(
        payloads(&images, ImageKind::PipesData),
        vec![b"pipe payload".to_vec()]
    );
    assert_eq!(
        payloads(&images, ImageKind::SkQueues),
        vec![b"queued datagram".to_vec()]
    );
    assert_eq!(
        payloads(&images, ImageKind::GhostFile),
        vec![b"deleted but open".to_vec()]
    );
    let mut tcp = payloads(&images, ImageKind::TcpStream);
    tcp.sort();
    assert_eq!(
        tcp,
        vec![b"to the client".to_vec(), b"to the server".to_vec()],
        "each end's in queue"
    );
    assert!(q.all_running(), "the workload runs on");
    assert_no_criu_left();
}
