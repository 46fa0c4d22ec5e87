//! `reel extract checkpoint` (issue #14): the bytes of deleted-but-open files taken out of a
//! real checkpoint of a real runc container (a small ghost file and a large one CRIU stores in
//! chunks), and the rootfs diff unpacked safely from crafted hostile diffs (plain tar with
//! `deleted.files`, and gzip with `.wh.` whiteouts).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use kit::restore::{self, Reel};
use kit::{BundleBuilder, Oci};
use reel_testkit as kit;
use serde_json::Value;

const SMALL: usize = 100_000;
const LARGE: usize = 24 << 20;

/// Byte `i` of the known contents of conns' deleted files and memfds.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 131 + 7) % 251) as u8)
        .collect()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_ok(o: &Output) -> Value {
    assert!(o.status.success(), "reel failed: {}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// The fd number through which host process `pid` holds `link` (a `/proc/PID/fd` link text).
fn fd_of(pid: i32, link: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .find(|e| fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy() == link));
        if let Some(e) = found {
            return e.file_name().to_string_lossy().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "process {pid} holds no {link}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A pod-annotated runc container whose init holds two deleted files and a memfd.
struct Scene {
    reel: Reel,
    archive: PathBuf,
    id: String,
    small_fd: u32,
    large_fd: u32,
    memfd_fd: u32,
    _container: kit::Container,
    _status: tempfile::TempDir,
}

fn scene(prefix: &str) -> Scene {
    kit::require_root();
    let conns = kit::programs::program("conns");
    let status = tempfile::Builder::new()
        .prefix("reel-status.")
        .tempdir_in(kit::test_dir())
        .unwrap();
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name(prefix);
    let small = format!("/tmp/small:{SMALL}");
    let large = format!("/tmp/large:{LARGE}");
    let memfd = format!("evidence:{SMALL}");
    let bundle = BundleBuilder::new(&pod)
        .containerd_pod(&ns, &pod, "app")
        .bind(status.path(), "/status", false)
        .args(&restore::detached_stdio(&[
            "/bin/conns",
            "client",
            "-s",
            "/status/status",
            "-g",
            &small,
            "-g",
            &large,
            "-m",
            &memfd,
        ]))
        .build();
    let _ = conns;
    let container = kit::run_oci(Oci::Runc, None, bundle);
    let status_file = status.path().join("status");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs::read_to_string(&status_file).is_ok_and(|s| s.starts_with("ok ")) {
        let now = fs::read_to_string(&status_file).unwrap_or_default();
        assert!(!now.starts_with("fail"), "the workload failed: {now}");
        assert!(Instant::now() < deadline, "the workload never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = container.pid();
    let small_fd = fd_of(pid, "/tmp/small (deleted)");
    let large_fd = fd_of(pid, "/tmp/large (deleted)");
    let memfd_fd = fd_of(pid, "/memfd:evidence (deleted)");
    let reel = Reel::new(prefix);
    let created = reel.create_ok(&ns, &pod, None, &[]);
    Scene {
        archive: PathBuf::from(created["path"].as_str().unwrap()),
        id: created["id"].as_str().unwrap().to_string(),
        reel,
        small_fd,
        large_fd,
        memfd_fd,
        _container: container,
        _status: status,
    }
}

#[test]
fn deleted_files_come_out_byte_for_byte() {
    let t0 = Instant::now();
    let s = scene("extr-file");
    let out = s.reel.scratch("out");
    let archive = s.archive.to_string_lossy().into_owned();

    // By id, from the store's .tar: the small ghost file, kept whole.
    let small = out.join("small");
    let started = Instant::now();
    let v = json_ok(&s.reel.run(&[
        "extract",
        "checkpoint",
        &s.id,
        "--file",
        &format!("1:{}", s.small_fd),
        "--to",
        &small.to_string_lossy(),
        "-o",
        "json",
    ]));
    eprintln!("small ghost extracted in {:?}: {v}", started.elapsed());
    assert_eq!(fs::read(&small).unwrap(), pattern(SMALL));
    assert_eq!(v["path"], "/tmp/small");
    assert_eq!(v["kind"], "deleted_file");
    assert_eq!(v["bytes"], SMALL as u64);
    assert_eq!(fs::metadata(&small).unwrap().mode() & 0o777, 0o600);

    // By path: the large one, which CRIU writes in chunks.
    let large = out.join("large");
    let started = Instant::now();
    let v = json_ok(&s.reel.run(&[
        "extract",
        "checkpoint",
        &archive,
        "--file",
        &format!("1:{}", s.large_fd),
        "--to",
        &large.to_string_lossy(),
        "-o",
        "json",
    ]));
    eprintln!("large ghost extracted in {:?}: {v}", started.elapsed());
    assert!(
        fs::read(&large).unwrap() == pattern(LARGE),
        "large ghost differs"
    );
    assert_eq!(v["bytes"], LARGE as u64);

    // The output exists: refused, and left as it was.
    let o = s.reel.run(&[
        "extract",
        "checkpoint",
        &archive,
        "--file",
        &format!("1:{}", s.small_fd),
        "--to",
        &large.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{}",
        text(&o)
    );
    assert!(
        fs::read(&large).unwrap() == pattern(LARGE),
        "the existing file was touched"
    );

    // The memfd: its shared-memory pages, exactly.
    let mem = out.join("memfd");
    let v = json_ok(&s.reel.run(&[
        "extract",
        "checkpoint",
        &archive,
        "--file",
        &format!("1:{}", s.memfd_fd),
        "--to",
        &mem.to_string_lossy(),
        "-o",
        "json",
    ]));
    eprintln!("memfd extracted: {v}");
    assert_eq!(v["kind"], "memfd");
    assert_eq!(v["path"], "memfd:evidence");
    assert!(
        fs::read(&mem).unwrap() == pattern(SMALL),
        "memfd contents differ"
    );

    // The same from the checkpoint exported as .tar.zst (reached through its seek table).
    let exported = s.reel.scratch("exported");
    let zst = s.reel.export_ok(&s.id, "cp.tar.zst", &[]);
    for (fd, name, want) in [
        (s.large_fd, "large.zst", pattern(LARGE)),
        (s.memfd_fd, "memfd.zst", pattern(SMALL)),
    ] {
        let to = out.join(name);
        let started = Instant::now();
        json_ok(&s.reel.run(&[
            "extract",
            "checkpoint",
            &zst.to_string_lossy(),
            "--file",
            &format!("1:{fd}"),
            "--to",
            &to.to_string_lossy(),
            "-o",
            "json",
        ]));
        eprintln!("{name} extracted from .tar.zst in {:?}", started.elapsed());
        assert!(fs::read(&to).unwrap() == want, "{name} differs");
    }

    // The real checkpoint's rootfs diff unpacks (whatever it holds), from the .tar and the
    // .tar.zst alike.
    for (i, from) in [archive.clone(), zst.to_string_lossy().into_owned()]
        .iter()
        .enumerate()
    {
        let dest = out.join(format!("rootfs-{i}"));
        let v = json_ok(&s.reel.run(&[
            "extract",
            "checkpoint",
            from,
            "--rootfs",
            &dest.to_string_lossy(),
            "-o",
            "json",
        ]));
        assert_eq!(v["refused"], 0, "{v}");
        assert!(dest.is_dir());
    }

    // Evidence hygiene: a ghost image changed after the checkpoint (one byte of its contents)
    // is refused by name, nothing written; --no-verify goes on, loudly.
    let tampered = exported.join("tampered.tar");
    flip_near_end(&s.archive, "checkpoint/ghost-file-1.img", &tampered);
    let to = out.join("tampered");
    let o = s.reel.run(&[
        "extract",
        "checkpoint",
        &tampered.to_string_lossy(),
        "--file",
        &format!("1:{}", s.small_fd),
        "--to",
        &to.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("checkpoint/ghost-file-1.img"),
        "{}",
        text(&o)
    );
    assert!(!to.exists(), "a tampered member left {}", to.display());
    let o = s.reel.run(&[
        "extract",
        "checkpoint",
        &tampered.to_string_lossy(),
        "--file",
        &format!("1:{}", s.small_fd),
        "--to",
        &to.to_string_lossy(),
        "--no-verify",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--no-verify"),
        "{}",
        text(&o)
    );
    assert!(
        fs::read(&to).unwrap() != pattern(SMALL),
        "the flipped byte is not in the output"
    );

    // The same for the rootfs diff: checked before anything is unpacked.
    let tampered_diff = exported.join("tampered-diff.tar");
    flip_near_end(&s.archive, "rootfs-diff.tar", &tampered_diff);
    let dest = out.join("tampered-rootfs");
    let o = s.reel.run(&[
        "extract",
        "checkpoint",
        &tampered_diff.to_string_lossy(),
        "--rootfs",
        &dest.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("rootfs-diff.tar"),
        "{}",
        text(&o)
    );
    assert!(
        fs::read_dir(&dest).map_or(true, |mut d| d.next().is_none()),
        "a tampered diff was unpacked into {}",
        dest.display()
    );

    // A descriptor that is no deleted file, one that does not exist, a bad PID:FD.
    let o = s.reel.run(&[
        "extract",
        "checkpoint",
        &archive,
        "--file",
        "1:0",
        "--to",
        &out.join("stdin").to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!out.join("stdin").exists());
    let o = s.reel.run(&[
        "extract",
        "checkpoint",
        &archive,
        "--file",
        "1:999",
        "--to",
        &out.join("none").to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no descriptor 999"),
        "{}",
        text(&o)
    );
    let o = s.reel.run(&[
        "extract",
        "checkpoint",
        &archive,
        "--file",
        "one",
        "--to",
        &out.join("x").to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    eprintln!("test took {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// The rootfs diff
// ---------------------------------------------------------------------------------------------

/// A copy of `archive` at `to` with one byte flipped 10 bytes before the end of `member`.
fn flip_near_end(archive: &Path, member: &str, to: &Path) {
    fs::copy(archive, to).unwrap();
    let at = {
        let mut ar = tar::Archive::new(fs::File::open(to).unwrap());
        let e = ar
            .entries_with_seek()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path_bytes().as_ref() == member.as_bytes())
            .unwrap_or_else(|| panic!("no {member} in {}", archive.display()));
        e.raw_file_position() + e.size() - 10
    };
    let mut bytes = fs::read(to).unwrap();
    bytes[at as usize] ^= 0xff;
    fs::write(to, &bytes).unwrap();
}

fn header(path: &str, ty: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    // Raw bytes: `set_path` refuses `..` and absolute names; a hostile diff does not.
    let name = &mut h.as_gnu_mut().unwrap().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_cksum();
    h
}

fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32, data: &[u8]) {
    b.append(
        &header(path, tar::EntryType::Regular, mode, data.len() as u64),
        data,
    )
    .unwrap();
}

fn link(b: &mut tar::Builder<Vec<u8>>, path: &str, ty: tar::EntryType, target: &str) {
    let mut h = header(path, ty, 0o777, 0);
    let l = &mut h.as_gnu_mut().unwrap().linkname;
    l[..target.len()].copy_from_slice(target.as_bytes());
    h.set_cksum();
    b.append(&h, &[][..]).unwrap();
}

/// A diff with everything a compromised container could put there.
fn hostile_diff(whiteouts: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    file(&mut b, "etc/motd", 0o644, b"hello\n");
    file(&mut b, "../outside", 0o644, b"escaped\n");
    file(&mut b, "tmp/../../outside2", 0o644, b"escaped\n");
    file(&mut b, "/abs-outside", 0o644, b"escaped\n");
    link(&mut b, "etc-link", tar::EntryType::Symlink, "/etc");
    file(
        &mut b,
        "etc-link/shadow-planted",
        0o600,
        b"through the link\n",
    );
    link(&mut b, "up", tar::EntryType::Symlink, "../../../../");
    file(&mut b, "up/outside3", 0o644, b"escaped\n");
    link(&mut b, "hard-out", tar::EntryType::Link, "/etc/passwd");
    link(&mut b, "hard-in", tar::EntryType::Link, "etc/motd");
    file(&mut b, "usr/bin/suid-shell", 0o4755, b"\x7fELF");
    file(&mut b, "usr/bin/sgid-tool", 0o2755, b"\x7fELF");
    let mut dev = header("dev/evil-sda", tar::EntryType::Block, 0o666, 0);
    dev.set_device_major(8).unwrap();
    dev.set_device_minor(0).unwrap();
    dev.set_cksum();
    b.append(&dev, &[][..]).unwrap();
    let mut mem = header("dev/evil-mem", tar::EntryType::Char, 0o666, 0);
    mem.set_device_major(1).unwrap();
    mem.set_device_minor(1).unwrap();
    mem.set_cksum();
    b.append(&mem, &[][..]).unwrap();
    b.append(&header("run/fifo", tar::EntryType::Fifo, 0o600, 0), &[][..])
        .unwrap();
    if whiteouts {
        file(&mut b, "etc/.wh.removed.conf", 0o600, b"");
        file(&mut b, "var/cache/.wh..wh..opq", 0o600, b"");
    }
    b.into_inner().unwrap()
}

/// A checkpoint directory holding only `rootfs-diff.tar` (and `deleted.files`).
fn crafted_checkpoint(dir: &Path, diff: &[u8], deleted: Option<&str>) -> PathBuf {
    let cp = dir.join("crafted");
    fs::create_dir_all(cp.join("checkpoint")).unwrap();
    fs::write(cp.join("rootfs-diff.tar"), diff).unwrap();
    if let Some(d) = deleted {
        fs::write(cp.join("deleted.files"), d).unwrap();
    }
    cp
}

fn entry<'a>(report: &'a Value, path: &str) -> &'a Value {
    report["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == path)
        .unwrap_or_else(|| panic!("no entry {path} in {report:#}"))
}

/// Every path under `dir` (not following links) and what it is.
fn walk(dir: &Path, out: &mut Vec<(PathBuf, fs::Metadata)>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let m = fs::symlink_metadata(e.path()).unwrap();
        if m.is_dir() {
            walk(&e.path(), out);
        }
        out.push((e.path(), m));
    }
}

fn check_hostile(report: &Value, top: &Path, dest: &Path) {
    for p in [
        "../outside",
        "tmp/../../outside2",
        "/abs-outside",
        "etc-link/shadow-planted",
        "up/outside3",
        "hard-out",
        "dev/evil-sda",
        "dev/evil-mem",
        "run/fifo",
    ] {
        let e = entry(report, p);
        assert_eq!(e["outcome"], "refused", "{p}: {e}");
        assert!(
            !e["notes"].as_array().unwrap().is_empty(),
            "{p} has no reason: {e}"
        );
    }
    for p in ["outside", "outside2", "abs-outside", "outside3"] {
        assert!(!top.join(p).exists(), "{p} left the directory");
    }
    assert!(!Path::new("/abs-outside").exists());
    assert!(!Path::new("/etc/shadow-planted").exists());
    assert_eq!(fs::read(dest.join("etc/motd")).unwrap(), b"hello\n");
    assert_eq!(
        fs::metadata(dest.join("hard-in")).unwrap().ino(),
        fs::metadata(dest.join("etc/motd")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(dest.join("etc-link")).unwrap(),
        Path::new("/etc"),
        "the symlink is kept as it was"
    );
    let e = entry(report, "etc-link");
    assert!(e["notes"].to_string().contains("absolute"), "{e}");
    for (p, bit) in [
        ("usr/bin/suid-shell", "setuid"),
        ("usr/bin/sgid-tool", "setgid"),
    ] {
        let e = entry(report, p);
        assert_eq!(e["outcome"], "written", "{e}");
        assert!(e["notes"].to_string().contains(bit), "{e}");
        assert_eq!(fs::metadata(dest.join(p)).unwrap().mode() & 0o7777, 0o755);
    }
    // Nothing special anywhere in the directory.
    let mut all = Vec::new();
    walk(dest, &mut all);
    for (p, m) in &all {
        let ft = m.file_type();
        assert!(
            ft.is_file() || ft.is_dir() || ft.is_symlink(),
            "{} is neither a file, a directory nor a symlink",
            p.display()
        );
        assert_eq!(
            m.mode() & 0o6000,
            0,
            "{} keeps a setuid/setgid bit",
            p.display()
        );
    }
    assert_eq!(
        fs::metadata(dest).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn a_hostile_plain_diff_stays_inside_and_is_reported() {
    let reel = Reel::new("extr-rootfs");
    let top = reel.scratch("plain");
    let cp = crafted_checkpoint(
        &top,
        &hostile_diff(false),
        Some(r#"["/etc/removed.conf","/var/log/auth.log"]"#),
    );
    let dest = top.join("out");
    let started = Instant::now();
    let report = json_ok(&reel.run(&[
        "extract",
        "checkpoint",
        &cp.to_string_lossy(),
        "--rootfs",
        &dest.to_string_lossy(),
        "-o",
        "json",
    ]));
    eprintln!("plain diff unpacked in {:?}", started.elapsed());
    assert_eq!(report["flavour"], "plain_tar");
    check_hostile(&report, &top, &dest);
    for p in ["/etc/removed.conf", "/var/log/auth.log"] {
        let e = entry(&report, p);
        assert_eq!(e["outcome"], "reported");
        assert_eq!(e["kind"], "deleted");
    }

    // The table says the same.
    let dest2 = top.join("out-table");
    let o = reel.run(&[
        "extract",
        "checkpoint",
        &cp.to_string_lossy(),
        "--rootfs",
        &dest2.to_string_lossy(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        out.contains("refused") && out.contains("setuid bit stripped"),
        "{out}"
    );

    // Into a directory that is not empty: refused, nothing written.
    let o = reel.run(&[
        "extract",
        "checkpoint",
        &cp.to_string_lossy(),
        "--rootfs",
        &dest.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not empty"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_hostile_gzip_diff_with_whiteouts_stays_inside_and_is_reported() {
    let reel = Reel::new("extr-gzip");
    let top = reel.scratch("gzip");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&hostile_diff(true)).unwrap();
    let cp = crafted_checkpoint(&top, &gz.finish().unwrap(), None);
    let dest = top.join("out");
    let report = json_ok(&reel.run(&[
        "extract",
        "checkpoint",
        &cp.to_string_lossy(),
        "--rootfs",
        &dest.to_string_lossy(),
        "-o",
        "json",
    ]));
    assert_eq!(report["flavour"], "gzip_tar");
    check_hostile(&report, &top, &dest);
    let e = entry(&report, "/etc/removed.conf");
    assert_eq!(
        (e["kind"].as_str(), e["outcome"].as_str()),
        (Some("deleted"), Some("reported"))
    );
    let e = entry(&report, "/var/cache");
    assert_eq!(
        (e["kind"].as_str(), e["outcome"].as_str()),
        (Some("opaque"), Some("reported"))
    );
    assert!(!dest.join("etc/.wh.removed.conf").exists());
    assert!(!dest.join("var/cache/.wh..wh..opq").exists());
}

// ---------------------------------------------------------------------------------------------
// The ELF core
// ---------------------------------------------------------------------------------------------

const MARKER: &str = "reel-core-marker: the heap string gdb must print";

/// The instruction pointer CRIU recorded for thread `tid` (its `core-<tid>.img`).
fn criu_ip(archive: &restore::Archive, tid: u32) -> u64 {
    use reel_core::criu::image::ImageReader;
    let name = format!("checkpoint/core-{tid}.img");
    let m = archive.member(&name);
    let mut r = ImageReader::from_bytes(&m.data, name.clone()).unwrap();
    let core: criu_sys::proto::CoreEntry = r.next_entry().unwrap().unwrap().decode().unwrap();
    core.thread_info.unwrap().gpregs.ip
}

/// gdb's output for each thread of `thread apply all <cmd>`: (LWP, text).
fn per_thread(out: &str) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = Vec::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("Thread ") {
            if let Some(i) = rest.find("(LWP ") {
                let lwp: String = rest[i + 5..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                v.push((lwp.parse().unwrap(), String::new()));
                continue;
            }
        }
        if let Some(last) = v.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    v
}

#[test]
fn an_elf_core_opens_in_gdb_with_threads_registers_and_memory() {
    kit::require_root();
    let stuck = kit::programs::program("stuck");
    let status = tempfile::Builder::new()
        .prefix("reel-status.")
        .tempdir_in(kit::test_dir())
        .unwrap();
    let ns = kit::unique_name("ns");
    let pod = kit::unique_name("extr-core");
    let bundle = BundleBuilder::new(&pod)
        .containerd_pod(&ns, &pod, "app")
        .bind(status.path(), "/status", false)
        .args(&restore::detached_stdio(&["/bin/stuck", "/status/status"]))
        .build();
    let _container = kit::run_oci(Oci::Runc, None, bundle);
    let status_file = status.path().join("status");
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        if let Ok(s) = fs::read_to_string(&status_file) {
            if s.starts_with("ready ") {
                break s;
            }
        }
        assert!(Instant::now() < deadline, "stuck never got ready");
        std::thread::sleep(Duration::from_millis(50));
    };
    let f: Vec<&str> = line.split_whitespace().collect();
    let (marker_addr, blocked_tid): (&str, u32) = (f[1], f[2].parse().unwrap());
    let (shared_addr, memfd_addr) = (f[3], f[4]);
    let reel = Reel::new("extr-core");
    let created = reel.create_ok(&ns, &pod, None, &[]);
    let archive_path = PathBuf::from(created["path"].as_str().unwrap());
    let out = reel.scratch("core");
    let core = out.join("core");
    let started = Instant::now();
    let v = json_ok(&reel.run(&[
        "extract",
        "checkpoint",
        &archive_path.to_string_lossy(),
        "--pid",
        "1",
        "--core",
        &core.to_string_lossy(),
        "-o",
        "json",
    ]));
    eprintln!("core written in {:?}: {v:#}", started.elapsed());
    assert_eq!(fs::metadata(&core).unwrap().mode() & 0o777, 0o600);
    assert_eq!(v["threads"].as_array().unwrap().len(), 2, "{v}");
    // Never over an existing file.
    let before = fs::metadata(&core).unwrap().len();
    let o = reel.run(&[
        "extract",
        "checkpoint",
        &archive_path.to_string_lossy(),
        "--pid",
        "1",
        "--core",
        &core.to_string_lossy(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("already exists"),
        "{}",
        text(&o)
    );
    assert_eq!(fs::metadata(&core).unwrap().len(), before);

    let gdb = kit::run(
        std::process::Command::new("gdb")
            .args(["-batch", "-nx"])
            .arg(&stuck)
            .arg(&core)
            .args([
                "-ex",
                "thread apply all bt",
                "-ex",
                "thread apply all info registers rip",
                "-ex",
                "x/s *(char **)&reel_heap_marker",
                "-ex",
                &format!("x/s {marker_addr}"),
                "-ex",
                &format!("x/s {shared_addr}"),
                "-ex",
                &format!("x/s {memfd_addr}"),
            ]),
    );
    let text = String::from_utf8_lossy(&gdb.stdout).into_owned();
    let errors = String::from_utf8_lossy(&gdb.stderr).into_owned();
    eprintln!("gdb:\n{text}\n{errors}");
    // The core is well-formed for gdb: register sets of the sizes it expects, the vdso
    // readable. (The NT_FILE paths are the container's, not found on the host: said, harmless.)
    for bad in [
        "Unexpected size",
        "Failed to read",
        "not a core dump",
        "is truncated",
    ] {
        assert!(!errors.contains(bad), "gdb: {errors}");
    }
    let threads = per_thread(&text);
    let blocked = threads
        .iter()
        .find(|(lwp, t)| *lwp == blocked_tid && t.contains("#0"))
        .unwrap_or_else(|| panic!("no backtrace of thread {blocked_tid} in:\n{text}"));
    assert!(blocked.1.contains("reel_blocked_in_read"), "{}", blocked.1);
    let main = threads
        .iter()
        .find(|(lwp, t)| *lwp == 1 && t.contains("#0"))
        .unwrap_or_else(|| panic!("no backtrace of thread 1 in:\n{text}"));
    assert!(main.1.contains("reel_main_waits"), "{}", main.1);
    let archive = restore::Archive::read(&archive_path);
    for tid in [1, blocked_tid] {
        let want = format!("{:#x}", criu_ip(&archive, tid));
        let regs = threads
            .iter()
            .find(|(lwp, t)| *lwp == tid && t.contains("rip"))
            .unwrap_or_else(|| panic!("no rip of thread {tid} in:\n{text}"));
        let rip = regs
            .1
            .lines()
            .find(|l| l.starts_with("rip"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap();
        assert_eq!(rip, want, "thread {tid}: gdb's rip is not CRIU's ip");
    }
    assert_eq!(
        text.matches(MARKER).count(),
        2,
        "x/s did not print the heap marker twice:\n{text}"
    );
    // Shared memory comes from the shared-memory pagemaps: an anonymous MAP_SHARED region and a
    // mapped memfd.
    for m in [
        "reel-core-marker: the shared string gdb must print",
        "reel-core-marker: the memfd string gdb must print",
    ] {
        assert!(text.contains(m), "x/s did not print {m:?}:\n{text}");
    }
}

fn hexnum(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()
}

/// The start of a region report's `region`.
fn region_start(v: &Value) -> u64 {
    hexnum(v["region"].as_str().unwrap().split('-').next().unwrap())
}

/// `reel extract checkpoint --pid N --region 0xADDR --to FILE` on a real checkpoint of
/// markers.c: shared anonymous memory and a memfd (pages from CRIU's shared-memory images,
/// never-written pages zeros), the heap, and the patched text page of its own executable (the
/// dumped page as written; the unmodified pages left out, or read from a root directory
/// holding the executable); an existing FILE refused unless --force.
#[test]
fn a_region_comes_out_with_its_holes_said() {
    kit::require_root();
    let markers = kit::programs::program("markers");
    let w = kit::programs::run_markers("region");
    let m = w.addresses.clone();
    let reel = Reel::new("region");
    let id = reel.create_ok(&w.ns, &w.pod, None, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(w);
    let pid = m["pid"].to_string();
    let out = reel.scratch("regions");
    let region = |addr: u64, to: &Path, extra: &[&str]| -> Output {
        let a = format!("{addr:#x}");
        let mut args = vec![
            "extract",
            "checkpoint",
            &id,
            "--pid",
            &pid,
            "--region",
            &a,
            "--to",
            to.to_str().unwrap(),
        ];
        args.extend(extra);
        reel.run(&args)
    };
    let ok = |addr: u64, to: &Path, extra: &[&str]| -> Value {
        let mut e = vec!["-o", "json"];
        e.extend(extra);
        let v = json_ok(&region(addr, to, &e));
        eprintln!("region {addr:#x}: {v}");
        v
    };

    // Shared anonymous memory: three pages, the second written.
    let to = out.join("shared");
    let v = ok(m["shared"], &to, &[]);
    let data = fs::read(&to).unwrap();
    assert_eq!(data.len(), 3 * 4096);
    assert_eq!(v["bytes"], 3 * 4096);
    assert_eq!(v["dumped"], 4096, "{v}");
    assert_eq!(v["zero_filled"], 2 * 4096, "{v}");
    assert_eq!(v["left_out"], 0, "{v}");
    assert_eq!(&data[4096 + 100..4096 + 118], b"SHARED-MARKER-7c2a");
    assert!(data[..4096].iter().all(|&b| b == 0) && data[8192..].iter().all(|&b| b == 0));
    assert_eq!(
        fs::metadata(&to).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let sha = kit::sha256_hex(&data);
    assert_eq!(v["sha256"], sha);

    // An existing FILE is refused (exit 1, untouched), replaced with --force.
    fs::write(&to, b"earlier").unwrap();
    let o = region(m["shared"], &to, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("already exists"), "{}", text(&o));
    assert_eq!(fs::read(&to).unwrap(), b"earlier");
    ok(m["shared"], &to, &["--force"]);
    assert_eq!(fs::read(&to).unwrap(), data);

    // A memfd mapping: two pages, the first written.
    let to = out.join("memfd");
    let v = ok(m["memfd"], &to, &[]);
    assert_eq!(v["path"], "memfd:markers-memfd");
    assert_eq!(v["perms"], "rw-s");
    let data = fs::read(&to).unwrap();
    let at = (m["memfd"] - region_start(&v)) as usize;
    assert_eq!(&data[at..at + 17], b"MEMFD-MARKER-3b9e");

    // The heap: the secret at its offset.
    let to = out.join("heap");
    let v = ok(m["heap"], &to, &[]);
    assert_eq!(v["path"], "[heap]");
    let start = region_start(&v);
    let data = fs::read(&to).unwrap();
    let at = (m["heap"] - start) as usize;
    assert_eq!(&data[at..at + 20], b"REEL-SECRET-5f1d9c3e");
    assert_eq!(v["left_out"], 0, "{v}");

    // Its own code: the patched page as written (int3), a VMA of its own since mprotect.
    let to = out.join("patched");
    let v = ok(m["text"], &to, &[]);
    assert_eq!(v["path"], "/bin/markers");
    let data = fs::read(&to).unwrap();
    assert_eq!(data[(m["text"] - region_start(&v)) as usize], 0xcc);
    // The code after it: its unmodified pages are the executable's, left out as holes.
    let code = m["text"] + 4096;
    let to = out.join("text");
    let v = ok(code, &to, &[]);
    assert_eq!(v["path"], "/bin/markers");
    assert!(v["perms"].as_str().unwrap().contains('x'), "{v}");
    let start = region_start(&v);
    assert!(v["left_out"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(v["from_rootfs"], 0);
    assert_eq!(
        fs::metadata(&to).unwrap().len(),
        v["bytes"].as_u64().unwrap()
    );
    assert!(
        v["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["source"] == "left-out" && r["note"].as_str().unwrap().contains("--rootfs")),
        "{v}"
    );
    // The table says it too.
    let to2 = out.join("text-table");
    let o = region(code, &to2, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("left-out") && text(&o).contains("left out as holes"),
        "{}",
        text(&o)
    );

    // With a root holding the executable: the unmodified pages are the file's bytes.
    let root = out.join("root");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy(&markers, root.join("bin/markers")).unwrap();
    let exe = fs::read(&markers).unwrap();
    let to = out.join("text-rootfs");
    let v = ok(code, &to, &["--rootfs", root.to_str().unwrap()]);
    let data = fs::read(&to).unwrap();
    assert!(v["from_rootfs"].as_u64().unwrap() > 0, "{v}");
    let pgoff = v["file_offset"].as_u64().unwrap();
    let mut checked = 0;
    for r in v["ranges"].as_array().unwrap() {
        let (s, e) = r["range"].as_str().unwrap().split_once('-').unwrap();
        let (s, e) = (hexnum(s) - start, hexnum(e) - start);
        if r["source"] == "rootfs" {
            let (s, e) = (s as usize, e as usize);
            let f = pgoff as usize + s;
            let n = (e - s).min(exe.len().saturating_sub(f));
            assert_eq!(&data[s..s + n], &exe[f..f + n], "{r}");
            checked += n;
        }
    }
    assert!(checked > 0);
    // A root without it: said, left out.
    let empty = out.join("empty-root");
    fs::create_dir_all(&empty).unwrap();
    let v = ok(
        code,
        &out.join("text-empty"),
        &["--rootfs", empty.to_str().unwrap()],
    );
    assert_eq!(v["from_rootfs"], 0);
    assert!(
        v["ranges"].to_string().contains("not read from the root"),
        "{v}"
    );

    // Bad input.
    let o = region(0x10, &out.join("none"), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no region holding 0x10"), "{}", text(&o));
    let o = reel.run(&[
        "extract",
        "checkpoint",
        &id,
        "--pid",
        &pid,
        "--region",
        "zz",
        "--to",
        out.join("x").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = reel.run(&[
        "extract",
        "checkpoint",
        &id,
        "--pid",
        "999999",
        "--region",
        "0x1000",
        "--to",
        out.join("y").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!out.join("none").exists() && !out.join("y").exists());
}
