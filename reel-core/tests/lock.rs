//! Tests of `reel_core::lock`: flock-based per-container locks.
//!
//! `cargo test -p reel-core --test lock -- --test-threads=1`
//!
//! Most tests use a temporary lock directory; one uses the default `/run/reel/locks` and
//! needs root. The cross-process tests use `reel-core/examples/lock_hold.rs`, built before the
//! tests (`scripts/test.sh`, or `cargo build -p reel-core --example lock_hold`).

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use reel_core::lock::{LockError, Locker, DEFAULT_LOCK_DIR};
use reel_testkit::{bins, require_root};

/// `lock_hold` holding a lock; killed and reaped on drop.
struct Holder {
    child: Child,
    _stdout: BufReader<ChildStdout>,
}

impl Holder {
    fn start(dir: &Path, id: &str) -> Self {
        let mut child = Command::new(bins::core_example("lock_hold"))
            .arg(dir)
            .arg(id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lock_hold");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(
            line.trim(),
            format!("locked {}", child.id()),
            "lock_hold said {line:?}"
        );
        Holder {
            child,
            _stdout: stdout,
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn busy_holder(err: &LockError) -> Option<i32> {
    match err {
        LockError::Busy { holder, .. } => *holder,
        other => panic!("expected Busy, got {other:?}"),
    }
}

#[test]
fn second_locker_is_refused_with_the_holders_pid_then_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let locker = Locker::new(dir.path());
    let first = locker.try_lock("ctr-1").unwrap();
    assert_eq!(first.id(), "ctr-1");
    assert_eq!(first.path(), dir.path().join("ctr-1.lock"));
    let me = std::process::id() as i32;
    assert_eq!(locker.holder("ctr-1").unwrap(), Some(me));

    // flock locks are per open file description: a second open in this process conflicts too.
    let err = locker.try_lock("ctr-1").unwrap_err();
    assert_eq!(busy_holder(&err), Some(me));
    let msg = err.to_string();
    assert!(
        msg.contains("ctr-1") && msg.contains(&format!("pid {me}")),
        "{msg}"
    );

    // Another id is independent.
    let other = locker.try_lock("ctr-2").unwrap();

    drop(first);
    let again = locker.try_lock("ctr-1").unwrap();
    drop((again, other));
}

#[test]
fn waiting_times_out_or_succeeds_when_released() {
    let dir = tempfile::tempdir().unwrap();
    let locker = Locker::new(dir.path());
    let first = locker.try_lock("c").unwrap();

    let start = Instant::now();
    let err = locker.lock("c", Duration::from_millis(300)).unwrap_err();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    match &err {
        LockError::Busy { id, waited, .. } => {
            assert_eq!(id, "c");
            assert!(*waited >= Duration::from_millis(300));
        }
        other => panic!("{other:?}"),
    }

    // Released while the second waits.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(first);
    });
    let start = Instant::now();
    let second = locker.lock("c", Duration::from_secs(10)).unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    releaser.join().unwrap();
    drop(second);
}

#[test]
fn another_process_holds_it_until_killed() {
    let dir = tempfile::tempdir().unwrap();
    let locker = Locker::new(dir.path());
    let holder = Holder::start(dir.path(), "web");
    assert_eq!(locker.holder("web").unwrap(), Some(holder.pid()));

    let err = locker.try_lock("web").unwrap_err();
    assert_eq!(busy_holder(&err), Some(holder.pid()));
    assert!(
        err.to_string().contains(&format!("pid {}", holder.pid())),
        "{err}"
    );

    // SIGKILL: the kernel releases the flock; the waiter gets it.
    let mut holder = holder;
    // SAFETY: plain kill(2).
    assert_eq!(unsafe { libc::kill(holder.pid(), libc::SIGKILL) }, 0);
    let status = holder.child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    let lock = locker.lock("web", Duration::from_secs(5)).unwrap();
    assert_eq!(
        locker.holder("web").unwrap(),
        Some(std::process::id() as i32)
    );
    drop(lock);
}

#[test]
fn waiting_for_another_process_that_releases() {
    let dir = tempfile::tempdir().unwrap();
    let locker = Locker::new(dir.path());
    let mut holder = Holder::start(dir.path(), "db");
    let err = locker.lock("db", Duration::from_millis(200)).unwrap_err();
    assert_eq!(busy_holder(&err), Some(holder.pid()));
    // Closing its stdin makes it release and exit.
    drop(holder.child.stdin.take());
    let lock = locker.lock("db", Duration::from_secs(10)).unwrap();
    assert!(holder.child.wait().unwrap().success());
    drop(lock);
}

#[test]
fn invalid_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let locker = Locker::new(dir.path());
    for id in ["", "a/b", "..", "../etc/passwd", "x..y", "."] {
        let err = locker.try_lock(id).unwrap_err();
        assert!(
            matches!(err, LockError::InvalidId { .. }),
            "{id:?}: {err:?}"
        );
        assert!(err.to_string().contains("invalid container id"), "{err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn lock_directory_is_created_0700() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("run/reel/locks");
    let locker = Locker::new(&nested);
    let lock = locker.try_lock("c").unwrap();
    let mode = std::fs::metadata(&nested).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert!(nested.join("c.lock").is_file());
    drop(lock);

    // A file where the directory should be.
    let file = dir.path().join("plain");
    std::fs::write(&file, "").unwrap();
    let err = Locker::new(&file).try_lock("c").unwrap_err();
    assert!(matches!(err, LockError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(file.to_str().unwrap()), "{err}");
}

#[test]
fn default_directory_as_root() {
    require_root();
    // Remove the directories afterwards if this test made them (and they are empty).
    let created: Vec<&Path> = [
        Path::new(DEFAULT_LOCK_DIR),
        Path::new(DEFAULT_LOCK_DIR).parent().unwrap(),
    ]
    .into_iter()
    .filter(|d| !d.exists())
    .collect();
    struct RmDirs<'a>(Vec<&'a Path>);
    impl Drop for RmDirs<'_> {
        fn drop(&mut self) {
            for d in &self.0 {
                let _ = std::fs::remove_dir(d);
            }
        }
    }
    let _cleanup = RmDirs(created);

    let locker = Locker::default();
    assert_eq!(locker.dir(), Path::new(DEFAULT_LOCK_DIR));
    let id = format!("reel-test-{}", std::process::id());
    let lock = locker.try_lock(&id).unwrap();
    let path = lock.path().to_path_buf();
    assert_eq!(path, Path::new(DEFAULT_LOCK_DIR).join(format!("{id}.lock")));
    let mode = std::fs::metadata(DEFAULT_LOCK_DIR)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    assert!(locker.try_lock(&id).is_err());
    drop(lock);
    std::fs::remove_file(path).unwrap();
    std::fs::remove_dir(DEFAULT_LOCK_DIR).ok();
}
