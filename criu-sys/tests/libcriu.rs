//! libcriu (`criu_local_*` of `criu_sys::ffi`) dumps a real process with the pinned CRIU.
//! Needs root and the pinned CRIU: when either is missing this test FAILS (it never skips).
//!
//! Run: `cargo test -p criu-sys --test libcriu`

use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use criu_sys::ffi;
use reel_testkit::programs::{assert_dump_images, Daemon};
use reel_testkit::{proc, require_root, wait_until};

#[test]
fn libcriu_dumps_a_running_tree() {
    require_root();
    let criu = PathBuf::from(criu_sys::CRIU_PREFIX).join("sbin/criu");
    assert!(
        criu.is_file(),
        "the pinned CRIU is missing at {}: run `vendor/criu.sh` as root",
        criu.display()
    );

    let tree = Daemon::start("tree", "pids");
    wait_until(Duration::from_secs(10), "the counter to run", || {
        tree.counter() >= 5
    });
    let images = tempfile::Builder::new()
        .prefix("libcriu-images-")
        .tempdir()
        .unwrap();
    let dir = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(images.path())
        .unwrap();
    let service = CString::new(criu.to_str().unwrap()).unwrap();

    let mut opts: *mut ffi::criu_opts = std::ptr::null_mut();
    // SAFETY: libcriu's documented sequence: init the opts, set them, dump, free. Every
    // pointer passed is valid for the call (the CStrings and `dir` outlive it); libcriu
    // copies the strings. Nothing else in this test process uses libcriu concurrently.
    let ret = unsafe {
        assert_eq!(
            ffi::criu_local_init_opts(&mut opts),
            0,
            "criu_local_init_opts"
        );
        assert!(!opts.is_null());
        assert_eq!(
            ffi::criu_local_set_service_binary(opts, service.as_ptr()),
            0
        );
        ffi::criu_local_set_pid(opts, tree.pids[0]);
        ffi::criu_local_set_images_dir_fd(opts, dir.as_raw_fd());
        ffi::criu_local_set_leave_running(opts, true);
        assert_eq!(ffi::criu_local_set_log_file(opts, c"dump.log".as_ptr()), 0);
        ffi::criu_local_set_log_level(opts, 4);
        let ret = ffi::criu_local_dump(opts);
        ffi::criu_local_free_opts(opts);
        ret
    };
    let log = fs::read_to_string(images.path().join("dump.log")).unwrap_or_default();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
    assert_eq!(
        ret, 0,
        "criu_local_dump returned {ret}; log errors: {errors:#?}"
    );

    let names: Vec<String> = fs::read_dir(images.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_dump_images(
        &names,
        &["inventory.img", "pstree.img", "stats-dump"],
        &tree.pids,
    );

    // leave_running: the tree still runs.
    let at_dump = tree.counter();
    wait_until(
        Duration::from_secs(10),
        "the counter to advance after the dump",
        || tree.counter() > at_dump + 2,
    );
    assert!(
        tree.pids.iter().all(|&p| proc::is_running(p)),
        "every process of the tree runs on"
    );
}
