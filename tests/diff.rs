//! `reel diff checkpoint A B` (issue #14) on two real checkpoints of a container that changed
//! in known ways between them (tests/programs/changer.c): a process started, one ended, a file
//! unlinked while open, a socket connected, a page made executable, pages written, a thread
//! started, a timer armed, a signal blocked.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use kit::restore::{self, Reel};
use kit::{BundleBuilder, Oci};
use reel_testkit as kit;
use serde_json::Value;

fn wait_for(status: &Path, prefix: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = fs::read_to_string(status) {
            if let Some(rest) = t.strip_prefix(prefix) {
                return rest.trim().parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "changer never wrote {prefix:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn diff(reel: &Reel, a: &str, b: &str, extra: &[&str]) -> (Output, f64) {
    let mut args = vec!["diff", "checkpoint", a, b];
    args.extend(extra);
    let t = Instant::now();
    let out = reel.run(&args);
    (out, t.elapsed().as_secs_f64())
}

#[test]
fn diff_reports_exactly_the_changes_made_between_two_checkpoints() {
    kit::require_root();
    let t0 = Instant::now();
    let _ = kit::programs::program("changer");
    let status = tempfile::Builder::new()
        .prefix("diff-status.")
        .tempdir_in(kit::test_dir())
        .unwrap();
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("diff");
    let bundle = BundleBuilder::new(&pod)
        .containerd_pod(&ns, &pod, "app")
        .bind(status.path(), "/status", false)
        .args(&restore::detached_stdio(&[
            "/bin/changer",
            "/status/status",
            "/status/go",
        ]))
        .build();
    let container = kit::run_oci(Oci::Runc, None, bundle);
    let status_file = status.path().join("status");
    let old = wait_for(&status_file, "ready ");
    let reel = Reel::new("diff");
    let a = reel.create_ok(&ns, &pod, None, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    fs::write(status.path().join("go"), b"").unwrap();
    let new = wait_for(&status_file, "changed ");
    let b = reel.create_ok(&ns, &pod, None, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(container);

    // A against B: the changes made, and exit 3.
    let (out, secs) = diff(&reel, &a, &b, &["-o", "json"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "reel diff A B: {err}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let changes = v["changes"].as_array().unwrap();
    eprintln!("reel diff A B: {} records in {secs:.2}s", changes.len());
    for c in changes {
        eprintln!("  {c}");
    }
    let has = |kind: &str, pred: &dyn Fn(&Value) -> bool| {
        changes.iter().any(|c| c["kind"] == kind && pred(c))
    };
    assert!(
        has("process-ended", &|c| c["pid"] == old
            && c["what"] == "changer-old"),
        "no process-ended for changer-old ({old})"
    );
    assert!(
        has("process-started", &|c| c["pid"] == new
            && c["what"] == "changer-new"),
        "no process-started for changer-new ({new})"
    );
    let main = changes
        .iter()
        .find(|c| c["kind"] == "socket-opened")
        .expect("no socket-opened")["pid"]
        .clone();
    assert!(
        has("socket-opened", &|c| c["after"].as_str().is_some_and(|s| s
            .starts_with("unix dgram")
            && s.contains(" peer=1/"))),
        "the connected socket does not name its peer"
    );
    assert!(
        has("file-changed", &|c| c["pid"] == main
            && c["before"]
                .as_str()
                .is_some_and(|s| s.ends_with("/tmp/doomed.txt"))
            && c["after"].as_str().is_some_and(
                |s| s.ends_with("/tmp/doomed.txt (deleted)")
            )),
        "no file-changed for the unlinked file"
    );
    assert!(
        has("vma-protection-changed", &|c| c["pid"] == main
            && c["before"] == "rw-"
            && c["after"] == "r-x"),
        "no vma-protection-changed rw- -> r-x"
    );
    assert!(
        has("thread-added", &|c| c["pid"] == main
            && c["after"]
                .as_str()
                .is_some_and(|s| s.starts_with("changer-tick "))),
        "no thread-added for changer-tick"
    );
    assert!(
        has("thread-changed", &|c| c["pid"] == main
            && c["what"] == format!("tid {main}")
            && c["after"]
                .as_str()
                .is_some_and(|s| s.contains("SIGUSR1"))
            && c["before"]
                .as_str()
                .is_some_and(|s| !s.contains("SIGUSR1"))),
        "no thread-changed for the main thread's blocked SIGUSR1"
    );
    assert!(
        has("timer-added", &|c| c["pid"] == main
            && c["after"]
                .as_str()
                .is_some_and(|s| s.contains("monotonic")
                    && s.contains("SIGUSR2")
                    && s.contains("interval_s=300"))),
        "no timer-added for the POSIX timer"
    );
    let pages = changes
        .iter()
        .find(|c| c["kind"] == "pages-differ" && c["pid"] == main)
        .expect("no pages-differ for the main process");
    let n: usize = pages["what"].as_str().unwrap().parse().unwrap();
    assert!(n >= 16, "only {n} pages differ; the buffer alone is 16");
    // Nothing else: every record is one of the changes made (the rootfs diff may show the
    // unlinked file, the socket).
    let kinds: BTreeSet<&str> = changes
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    let allowed: BTreeSet<&str> = [
        "process-ended",
        "process-started",
        "socket-opened",
        // The bound socket now has a peer.
        "socket-changed",
        "file-changed",
        "thread-added",
        "thread-changed",
        "timer-added",
        // The new thread's stack and its guard page.
        "vma-added",
        "vma-protection-changed",
        "pages-differ",
        "rootfs-entry-removed",
        "rootfs-entry-added",
        "rootfs-entry-changed",
    ]
    .into();
    assert!(kinds.is_subset(&allowed), "unexpected kinds: {kinds:?}");

    // --pages lists each differing page of the main process, as many as counted.
    let (out, secs) = diff(&reel, &a, &b, &["-o", "json", "--pages"]);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "page-differs" && c["pid"] == main)
        .count();
    assert_eq!(
        listed, n,
        "--pages lists {listed} pages, the count says {n}"
    );
    eprintln!("reel diff --pages: {listed} pages of pid {main} in {secs:.2}s");

    // The table.
    let (out, _) = diff(&reel, &a, &b, &[]);
    assert_eq!(out.status.code(), Some(3));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("KIND"), "{table}");
    assert!(table.contains("changer-new"), "{table}");

    // A against itself: nothing, exit 0.
    let (out, _) = diff(&reel, &a, &a, &["-o", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["changes"].as_array().unwrap().len(), 0, "{v:#}");
    let (out, _) = diff(&reel, &a, &a, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "no differences\n");

    // A missing checkpoint: exit 1, named.
    let (out, _) = diff(&reel, &a, "diff-no-such-checkpoint", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("diff-no-such-checkpoint"), "{err}");
    // Bad usage: exit 2.
    let (out, _) = diff(&reel, &a, &b, &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    eprintln!("diff test: {:.1}s", t0.elapsed().as_secs_f64());
}
