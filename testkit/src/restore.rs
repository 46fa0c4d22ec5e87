//! Checkpoints read back and brought back to life: a private store to run reel with (the JSON
//! answer of `create checkpoint`), a checkpoint archive read back in full, and restoring a
//! checkpoint's images with `runc restore` into a new container that is always removed.

use std::fs;
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bins::reel_bin;
use crate::reel::TestStore;
use crate::{copy_tree, sha256_hex, test_dir, wait_for};

// ---------------------------------------------------------------------------------------------
// A store to run reel with
// ---------------------------------------------------------------------------------------------

/// A private checkpoint store (a [`TestStore`]) and a way to run reel against it that returns
/// reel's raw output, for tests that check reel's JSON answers byte for byte.
#[derive(Debug)]
pub struct Reel {
    /// The store directory given to `--root` (reel creates it).
    pub store: PathBuf,
    base: TestStore,
}

impl Reel {
    pub fn new(prefix: &str) -> Reel {
        // Found now, not in the middle of a timed step.
        reel_bin();
        let base = TestStore::named(prefix);
        Reel {
            store: base.root(),
            base,
        }
    }

    /// A scratch directory next to the store, removed with it.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let p = self.base.base().join(name);
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&p)
            .unwrap();
        p
    }

    /// `reel export checkpoint --id ID --dest <scratch "exports">/FILE EXTRA...`, which must
    /// succeed; returns the export's path.
    pub fn export_ok(&self, id: &str, file: &str, extra: &[&str]) -> PathBuf {
        let dest = self.scratch("exports").join(file);
        let mut args = vec!["export", "checkpoint", "--id", id, "--dest"];
        let d = dest.to_string_lossy().into_owned();
        args.push(&d);
        args.extend(extra);
        crate::assert_success(
            &self.run(&args),
            &format!("reel export checkpoint --id {id}"),
        );
        dest
    }

    /// Runs `reel --root <store> ARGS` (see [`TestStore::cmd`]), whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.base.cmd(args);
        cmd.stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
    }

    /// `reel create checkpoint POD [CONTAINER] -n NS EXTRA... -o json`, whatever its status.
    pub fn create(&self, ns: &str, pod: &str, container: Option<&str>, extra: &[&str]) -> Output {
        let mut args = vec!["create", "checkpoint", pod];
        args.extend(container);
        args.extend(["-n", ns, "-o", "json"]);
        args.extend(extra);
        self.run(&args)
    }

    /// [`Reel::create`] that must succeed; returns reel's JSON answer.
    pub fn create_ok(&self, ns: &str, pod: &str, container: Option<&str>, extra: &[&str]) -> Value {
        let started = Instant::now();
        let out = self.create(ns, pod, container, extra);
        crate::assert_success(
            &out,
            &format!("reel create checkpoint {ns}/{pod}/{container:?}"),
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "reel's -o json answer is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        eprintln!(
            "checkpoint {} of {ns}/{pod}: {} bytes, frozen {} ms, reel ran {:.2}s",
            v["id"],
            v["size"],
            v["frozen_ms"],
            started.elapsed().as_secs_f64()
        );
        v
    }

    /// The names in the store directory, sorted (empty when reel never created it).
    pub fn store_entries(&self) -> Vec<String> {
        self.base.snapshot().into_keys().collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Container processes
// ---------------------------------------------------------------------------------------------

/// Process args running `args` (words without spaces or shell characters) with stdin, stdout
/// and stderr on the container's own `/dev/null`.
///
/// [`crate::containers::run_oci`] starts runc/crun containers with their stdio on files of the host.
/// CRIU cannot dump an fd on a file outside the container's mounts ("Can't lookup mount=N for
/// fd=1 path=<host log>"), and `runc checkpoint` fails on such a container exactly the same
/// way, so checkpointed runc/crun test containers redirect their stdio first (containerd gives
/// its containers pipes, which CRIU dumps and runc restore reconnects).
pub fn detached_stdio(args: &[&str]) -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        format!("exec </dev/null >/dev/null 2>&1; exec {}", args.join(" ")),
    ]
}

/// The first line of a file as a number (the counter's and the sentinel's format).
pub fn read_counter(path: &Path) -> Option<u64> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Waits until the counter in `path` passes `above`; returns the value seen.
pub fn wait_counter_above(path: &Path, above: u64, timeout: Duration) -> u64 {
    wait_for(
        timeout,
        &format!("the counter in {} to pass {above}", path.display()),
        || read_counter(path).filter(|v| *v > above),
    )
}

/// `/proc/<pid>/root/<path>`.
pub fn in_root(pid: i32, path: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/root")).join(path.trim_start_matches('/'))
}

// ---------------------------------------------------------------------------------------------
// Archives
// ---------------------------------------------------------------------------------------------

/// One tar member, with its content.
#[derive(Debug, Clone)]
pub struct Member {
    pub name: String,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub data: Vec<u8>,
}

impl Member {
    pub fn sha256(&self) -> String {
        sha256_hex(&self.data)
    }
}

/// A checkpoint archive read back in full, in archive order.
#[derive(Debug)]
pub struct Archive {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub members: Vec<Member>,
}

impl Archive {
    pub fn read(path: &Path) -> Archive {
        let bytes = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let mut members = Vec::new();
        let mut ar = tar::Archive::new(&bytes[..]);
        for e in ar.entries().expect("a tar archive") {
            let mut e = e.expect("a tar entry");
            let name = e.path().unwrap().to_string_lossy().into_owned();
            // The tar crate drops a directory's trailing slash; keep the name as stored.
            let name = if e.header().entry_type().is_dir() && !name.ends_with('/') {
                format!("{name}/")
            } else {
                name
            };
            let kind = e.header().entry_type();
            let mode = e.header().mode().unwrap();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            members.push(Member {
                name,
                kind,
                mode,
                data,
            });
        }
        Archive {
            path: path.to_path_buf(),
            bytes,
            members,
        }
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "{} has no member {name}; members: {:?}",
                    self.path.display(),
                    self.names()
                )
            })
    }

    pub fn has(&self, name: &str) -> bool {
        self.members.iter().any(|m| m.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.members.iter().map(|m| m.name.as_str()).collect()
    }

    pub fn json(&self, name: &str) -> Value {
        serde_json::from_slice(&self.member(name).data)
            .unwrap_or_else(|e| panic!("member {name} is not JSON: {e}"))
    }

    /// Writes `checkpoint/*` into `<dir>/checkpoint` (mode 0700) and returns that directory.
    pub fn unpack_images(&self, dir: &Path) -> PathBuf {
        let images = dir.join("checkpoint");
        fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&images)
            .unwrap();
        for m in &self.members {
            let Some(file) = m.name.strip_prefix("checkpoint/") else {
                continue;
            };
            if file.is_empty() {
                continue;
            }
            assert!(
                !file.contains('/') && file != ".." && m.kind.is_file(),
                "unexpected image member {}",
                m.name
            );
            fs::write(images.join(file), &m.data).unwrap();
            fs::set_permissions(images.join(file), fs::Permissions::from_mode(0o600)).unwrap();
        }
        images
    }

    /// The entries of `rootfs-diff.tar`: (path, content).
    pub fn rootfs_diff(&self) -> Vec<(String, Vec<u8>)> {
        let data = &self.member("rootfs-diff.tar").data;
        let mut out = Vec::new();
        let mut ar = tar::Archive::new(&data[..]);
        for e in ar.entries().expect("rootfs-diff.tar is a tar") {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            out.push((name, content));
        }
        out
    }
}

/// Writes a counter file of exactly `size` bytes holding 0 (`00…0\n`): CRIU restores an open
/// file only when its size is the one at dump time, and a restored counter overwrites the
/// zeros with its own value, which proves it was the restored process that wrote it.
pub fn write_zero_counter(path: &Path, size: u64) {
    assert!(size >= 2, "a counter file of {size} bytes");
    let mut s = "0".repeat(size as usize - 1);
    s.push('\n');
    fs::write(path, s).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Restoring with runc
// ---------------------------------------------------------------------------------------------

/// A copy of the bundle directory `src` (its `config.json` and, when it lives there, its
/// rootfs) for container `id`, under the test dir; `linux.cgroupsPath` becomes
/// `/reel-test/<id>`. Returns the owning temp dir and the bundle path.
pub fn copy_bundle(src: &Path, id: &str) -> (tempfile::TempDir, PathBuf) {
    let base = test_dir().join("bundles");
    fs::create_dir_all(&base).unwrap();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{id}."))
        .tempdir_in(&base)
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = dir.path().join("bundle");
    copy_tree(src, &bundle);
    let config = bundle.join("config.json");
    let mut spec: Value = serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
    spec["linux"]["cgroupsPath"] = Value::from(format!("/reel-test/{id}"));
    fs::write(&config, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    (dir, bundle)
}

/// A container restored by `runc restore`: deleted (killed first) when dropped, then its
/// bundle and work directory are removed. On a panic the work dir (restore.log) is kept.
#[derive(Debug)]
pub struct Restored {
    pub id: String,
    pub bundle: PathBuf,
    /// runc's output and CRIU's `restore.log`.
    pub work: PathBuf,
    dirs: Vec<tempfile::TempDir>,
}

impl Restored {
    /// The restored init's host pid.
    pub fn pid(&self) -> i32 {
        let s = runc_state(&self.id).unwrap_or_else(|| panic!("{}: no runc state", self.id));
        assert!(
            s.0 == "running",
            "restored container {} is {}: {}",
            self.id,
            s.0,
            self.diagnostics()
        );
        s.1
    }

    /// runc's output and the errors of CRIU's restore log, for assertion messages.
    pub fn diagnostics(&self) -> String {
        let runc = fs::read_to_string(self.work.join("runc.log")).unwrap_or_default();
        let log = fs::read_to_string(self.work.join("restore.log")).unwrap_or_default();
        let errors: Vec<&str> = log.lines().filter(|l| l.contains("Error")).collect();
        format!(
            "runc: {}\nrestore.log errors:\n{}",
            runc.trim(),
            errors.join("\n")
        )
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        let _ = Command::new("runc")
            .args(["delete", "-f", &self.id])
            .stdin(Stdio::null())
            .output();
        if runc_state(&self.id).is_some() {
            std::thread::sleep(Duration::from_millis(200));
            let out = Command::new("runc")
                .args(["delete", "-f", &self.id])
                .stdin(Stdio::null())
                .output();
            if runc_state(&self.id).is_some() {
                eprintln!(
                    "warning: could not delete restored container {}: {out:?}",
                    self.id
                );
            }
        }
        if std::thread::panicking() {
            for d in self.dirs.drain(..) {
                eprintln!("restore files kept in {}", d.keep().display());
            }
        }
    }
}

/// (status, pid) from `runc state`.
pub fn runc_state(id: &str) -> Option<(String, i32)> {
    let out = Command::new("runc")
        .args(["state", id])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((
        v["status"].as_str()?.to_string(),
        v["pid"].as_i64().unwrap_or(0) as i32,
    ))
}

/// `runc restore -d` of `images` into container `id` from the bundle copy `bundle` (see
/// [`copy_bundle`], whose temp dir `bundle_dir` the result owns). Panics with runc's output
/// and CRIU's errors when the restore fails; the container is removed in every case.
pub fn runc_restore(
    images: &Path,
    bundle_dir: tempfile::TempDir,
    bundle: &Path,
    id: &str,
) -> Restored {
    runc_restore_with(images, bundle_dir, bundle, id, &[])
}

/// [`runc_restore`] with more flags for `runc restore` (`--tcp-established`, ...).
pub fn runc_restore_with(
    images: &Path,
    bundle_dir: tempfile::TempDir,
    bundle: &Path,
    id: &str,
    flags: &[&str],
) -> Restored {
    let work_dir = tempfile::Builder::new()
        .prefix(&format!("{id}.work."))
        .tempdir_in(test_dir())
        .unwrap();
    let work = work_dir.path().to_path_buf();
    let restored = Restored {
        id: id.to_string(),
        bundle: bundle.to_path_buf(),
        work: work.clone(),
        dirs: vec![bundle_dir, work_dir],
    };
    let log = fs::File::create(work.join("runc.log")).unwrap();
    let started = Instant::now();
    let status = Command::new("runc")
        .arg("restore")
        .arg("--image-path")
        .arg(images)
        .arg("--work-path")
        .arg(&work)
        .arg("--bundle")
        .arg(bundle)
        .args(flags)
        .arg("-d")
        .arg(id)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .status()
        .expect("run runc restore");
    assert!(
        status.success(),
        "runc restore of {} into {id} failed ({status}):\n{}",
        images.display(),
        restored.diagnostics()
    );
    wait_for(
        Duration::from_secs(20),
        &format!("restored container {id} to run"),
        || runc_state(id).filter(|s| s.0 == "running"),
    );
    eprintln!(
        "runc restored {id} in {:.2}s",
        started.elapsed().as_secs_f64()
    );
    restored
}

/// `/proc/<pid>/fd/<n>` of the fd through which `pid` holds the deleted file `path` (as seen
/// inside its container), if it does.
pub fn open_deleted(pid: i32, path: &str) -> Option<PathBuf> {
    let want = format!("{path} (deleted)");
    fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| fs::read_link(p).is_ok_and(|t| t.to_string_lossy() == want))
}
