//! libcriu (`criu_local_*` of `criu_sys::ffi`) dumps a real process with the pinned CRIU.
//! Needs root and the pinned CRIU: when either is missing this test FAILS (it never skips).
//!
//! Run: `cargo test -p criu-sys --test libcriu`

use std::ffi::CString;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criu_sys::ffi;

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < end,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(')')
            .map(|(_, t)| !t.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// The test tree (`tests/programs/tree.c`), killed on drop, also when the test fails.
struct Tree {
    dir: tempfile::TempDir,
    exe: PathBuf,
    pids: Vec<i32>,
}

impl Tree {
    fn start() -> Tree {
        let src = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/programs/tree.c"
        ));
        let bin_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libcriu-programs");
        fs::create_dir_all(&bin_dir).unwrap();
        let exe = bin_dir.join("tree");
        let tmp = bin_dir.join(format!("tree.{}", std::process::id()));
        let st = Command::new("cc")
            .args(["-O2", "-pthread", "-static", "-o"])
            .arg(&tmp)
            .arg(src)
            .status()
            .expect("run cc (gcc must be installed)");
        assert!(st.success(), "cc failed on {}", src.display());
        fs::rename(&tmp, &exe).unwrap();

        let dir = tempfile::Builder::new()
            .prefix("libcriu-tree-")
            .tempdir()
            .unwrap();
        let st = Command::new(&exe)
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        let pids_file = dir.path().join("pids");
        wait_until("the tree to start", Duration::from_secs(10), || {
            pids_file.exists()
        });
        let pids = fs::read_to_string(&pids_file)
            .unwrap()
            .split_whitespace()
            .map(|p| p.parse().unwrap())
            .collect();
        Tree { dir, exe, pids }
    }

    fn counter(&self) -> u64 {
        fs::read_to_string(self.dir.path().join("counter"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        for &p in &self.pids {
            // Only our binary (pids can be reused).
            if fs::read_link(format!("/proc/{p}/exe"))
                .map(|e| e == self.exe)
                .unwrap_or(false)
            {
                // SAFETY: kill has no memory preconditions.
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn libcriu_dumps_a_running_tree() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root");
    let criu = PathBuf::from(criu_sys::CRIU_PREFIX).join("sbin/criu");
    assert!(
        criu.is_file(),
        "the pinned CRIU is missing at {}: run `vendor/criu.sh` as root",
        criu.display()
    );

    let tree = Tree::start();
    wait_until("the counter to run", Duration::from_secs(10), || {
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
    for want in ["inventory.img", "pstree.img", "stats-dump"] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    for pid in &tree.pids {
        assert!(
            names.contains(&format!("core-{pid}.img")),
            "core-{pid}.img missing from {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.starts_with("pages-")),
        "no pages image in {names:?}"
    );

    // leave_running: the tree still runs.
    let at_dump = tree.counter();
    wait_until(
        "the counter to advance after the dump",
        Duration::from_secs(10),
        || tree.counter() > at_dump + 2,
    );
    assert!(
        tree.pids.iter().all(|&p| running(p)),
        "every process of the tree runs on"
    );
}
