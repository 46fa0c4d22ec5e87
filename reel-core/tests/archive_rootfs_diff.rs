//! The rootfs diff from overlay upper dirs. These tests need root (overlayfs mounts,
//! `mknod`, `trusted.*` xattrs) and fail loudly without it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use reel_core::archive::{
    stage_rootfs_diff, write_rootfs_diff, ArchiveError, RootfsDiffInfo, RootfsSource,
};
use reel_testkit::require_root;

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = CString::new(path.as_os_str().as_bytes()).expect("path");
    let n = CString::new(name).expect("name");
    // SAFETY: valid C strings and a buffer of value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name} on {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// Unmounts on drop so a failing test does not leave a mount behind.
struct Overlay {
    merged: PathBuf,
    upper: PathBuf,
}

impl Overlay {
    /// Makes lower/upper/work/merged under `root`, lets `fill_lower` populate the lower layer,
    /// and mounts the overlay on merged.
    fn mount(root: &Path, fill_lower: impl FnOnce(&Path)) -> Overlay {
        let lower = root.join("lower");
        let upper = root.join("upper");
        let work = root.join("work");
        let merged = root.join("merged");
        for d in [&lower, &upper, &work, &merged] {
            fs::create_dir_all(d).expect("mkdir");
        }
        fill_lower(&lower);
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .expect("mount -t overlay");
        Overlay { merged, upper }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = umount2(&self.merged, MntFlags::MNT_DETACH);
    }
}

struct Entry {
    kind: tar::EntryType,
    link: Option<String>,
    data: Vec<u8>,
    mode: u32,
    caps: Option<Vec<u8>>,
}

fn entries(tar_bytes: &[u8]) -> BTreeMap<String, Entry> {
    let mut ar = tar::Archive::new(Cursor::new(tar_bytes));
    let mut out = BTreeMap::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let name = String::from_utf8(e.path_bytes().to_vec()).expect("utf8");
        let mut caps = None;
        if let Some(exts) = e.pax_extensions().expect("pax") {
            for ext in exts {
                let ext = ext.expect("pax ext");
                if ext.key() == Ok("SCHILY.xattr.security.capability") {
                    caps = Some(ext.value_bytes().to_vec());
                }
            }
        }
        let link = e
            .link_name_bytes()
            .map(|l| String::from_utf8(l.to_vec()).expect("utf8"));
        let kind = e.header().entry_type();
        let mode = e.header().mode().expect("mode");
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        out.insert(
            name,
            Entry {
                kind,
                link,
                data,
                mode,
                caps,
            },
        );
    }
    out
}

/// vfs_cap_data revision 2 with CAP_NET_RAW permitted and effective.
fn net_raw_caps() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes()); // VFS_CAP_REVISION_2 | EFFECTIVE
    v.extend_from_slice(&(1u32 << 13).to_le_bytes()); // permitted: CAP_NET_RAW
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

#[test]
fn diff_of_a_real_overlay_mount() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ov = Overlay::mount(tmp.path(), |lower| {
        fs::create_dir_all(lower.join("etc")).expect("mkdir");
        fs::create_dir_all(lower.join("olddir")).expect("mkdir");
        fs::write(lower.join("etc/modify"), "old").expect("write");
        fs::write(lower.join("etc/remove"), "bye").expect("write");
        fs::write(lower.join("etc/keep"), "same").expect("write");
        fs::write(lower.join("olddir/a"), "a").expect("write");
    });
    let m = &ov.merged;

    fs::write(m.join("etc/new"), "new file").expect("create");
    fs::write(m.join("etc/modify"), "changed").expect("modify");
    fs::remove_file(m.join("etc/remove")).expect("delete ⇒ whiteout");
    symlink("/etc/new", m.join("etc/link")).expect("symlink");
    fs::create_dir(m.join("newdir")).expect("mkdir");
    fs::write(m.join("newdir/hl1"), "linked").expect("write");
    fs::hard_link(m.join("newdir/hl1"), m.join("newdir/hl2")).expect("hardlink");
    fs::write(m.join("newdir/ping"), "binary").expect("write");
    fs::set_permissions(m.join("newdir/ping"), fs::Permissions::from_mode(0o4751)).expect("chmod");
    set_xattr(
        &m.join("newdir/ping"),
        "security.capability",
        &net_raw_caps(),
    );
    fs::remove_dir_all(m.join("olddir")).expect("rm -r");
    fs::create_dir(m.join("olddir")).expect("recreate ⇒ opaque");
    fs::write(m.join("olddir/c"), "c").expect("write");

    let upper = ov.upper.clone();
    let stage = tmp.path().join("stage");
    fs::create_dir(&stage).expect("mkdir");
    let diff = stage_rootfs_diff(&RootfsSource::OverlayUpper(upper.clone()), &stage).expect("diff");
    drop(ov);

    assert_eq!(diff.deleted, ["/etc/remove", "/olddir"]);
    let es = entries(&fs::read(&diff.diff_tar).expect("read"));
    let names: Vec<&str> = es.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "etc/link",
            "etc/modify",
            "etc/new",
            "newdir/hl1",
            "newdir/hl2",
            "newdir/ping",
            "olddir/c"
        ],
        "only changed non-directories, relative to /"
    );
    assert_eq!(es["etc/modify"].data, b"changed");
    assert_eq!(es["etc/new"].data, b"new file");
    assert_eq!(es["etc/new"].kind, tar::EntryType::Regular);
    assert_eq!(
        es["newdir/ping"].mode, 0o4751,
        "permission bits incl. setuid are kept"
    );
    assert_eq!(es["etc/link"].kind, tar::EntryType::Symlink);
    assert_eq!(es["etc/link"].link.as_deref(), Some("/etc/new"));
    assert_eq!(es["newdir/hl1"].data, b"linked");
    assert_eq!(es["newdir/hl2"].kind, tar::EntryType::Link);
    assert_eq!(es["newdir/hl2"].link.as_deref(), Some("newdir/hl1"));
    assert_eq!(
        es["newdir/ping"].caps.as_deref(),
        Some(net_raw_caps().as_slice())
    );
    assert_eq!(es["olddir/c"].data, b"c");
    match diff.info {
        RootfsDiffInfo::OverlayUpper {
            upper_dir,
            entries,
            deleted,
        } => {
            assert_eq!(upper_dir, upper);
            assert_eq!((entries, deleted), (7, 2));
        }
        other => panic!("expected overlay-upper, got {other:?}"),
    }
}

#[test]
fn synthetic_upper_dir_markers() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("var/opaque")).expect("mkdir");
    fs::create_dir_all(upper.join("var/xdir")).expect("mkdir");
    // Classic whiteout: a 0:0 character device.
    mknod(
        &upper.join("var/gone"),
        SFlag::S_IFCHR,
        Mode::empty(),
        makedev(0, 0),
    )
    .expect("mknod");
    // xwhiteout: a regular file marked with the whiteout attribute (user. namespace too).
    fs::write(upper.join("var/xgone"), "").expect("write");
    set_xattr(&upper.join("var/xgone"), "trusted.overlay.whiteout", b"");
    fs::write(upper.join("var/ugone"), "").expect("write");
    set_xattr(&upper.join("var/ugone"), "user.overlay.whiteout", b"");
    // Opaque dir ("y") vs a dir that merely holds xwhiteouts ("x", not opaque).
    set_xattr(&upper.join("var/opaque"), "trusted.overlay.opaque", b"y");
    set_xattr(&upper.join("var/xdir"), "trusted.overlay.opaque", b"x");
    fs::write(upper.join("var/opaque/kept"), "k").expect("write");
    // A real device node and a FIFO are archived.
    mknod(
        &upper.join("var/null"),
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .expect("mknod");
    nix::unistd::mkfifo(&upper.join("var/fifo"), Mode::from_bits_truncate(0o600)).expect("mkfifo");

    let mut out = Vec::new();
    let listing = write_rootfs_diff(&upper, &mut out).expect("diff");
    assert_eq!(
        listing.deleted,
        ["/var/gone", "/var/opaque", "/var/ugone", "/var/xgone"]
    );
    let es = entries(&out);
    let names: Vec<&str> = es.keys().map(String::as_str).collect();
    assert_eq!(names, ["var/fifo", "var/null", "var/opaque/kept"]);
    assert_eq!(es["var/null"].kind, tar::EntryType::Char);
    assert_eq!(es["var/fifo"].kind, tar::EntryType::Fifo);
    let mut ar = tar::Archive::new(Cursor::new(&out));
    for e in ar.entries().expect("entries") {
        let e = e.expect("entry");
        if e.path_bytes().as_ref() == b"var/null" {
            assert_eq!(e.header().device_major().expect("major"), Some(1));
            assert_eq!(e.header().device_minor().expect("minor"), Some(3));
        }
    }

    // Metacopy files have their data in a lower layer: refused, not archived wrong.
    fs::write(upper.join("var/meta"), "").expect("write");
    set_xattr(&upper.join("var/meta"), "trusted.overlay.metacopy", b"");
    assert!(matches!(
        write_rootfs_diff(&upper, Vec::new()),
        Err(ArchiveError::UnsupportedOverlay { .. })
    ));
}

#[test]
fn no_writable_layer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reason = "bare runc bundle on a plain directory has no writable layer";
    let diff = stage_rootfs_diff(
        &RootfsSource::None {
            reason: reason.to_owned(),
        },
        tmp.path(),
    )
    .expect("diff");
    assert!(diff.deleted.is_empty());
    assert_eq!(
        diff.info,
        RootfsDiffInfo::None {
            reason: reason.to_owned()
        }
    );
    assert_eq!(fs::read(&diff.diff_tar).expect("read"), vec![0u8; 1024]);
    let mode = fs::metadata(&diff.diff_tar)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the staged diff holds container files");
}
