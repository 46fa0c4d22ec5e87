use std::io::Write;

use super::*;
use crate::archive::{blake3_hex, sha256_hex, MemberDigest};
use crate::export::frames::{TarTracker, ZstdFrames};

fn entry(b: &mut tar::Builder<Vec<u8>>, name: &str, ty: tar::EntryType, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(if ty == tar::EntryType::Regular {
        data.len() as u64
    } else {
        0
    });
    h.set_mode(0o600);
    h.set_entry_type(ty);
    let bytes = name.as_bytes();
    h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
    if ty == tar::EntryType::Symlink {
        h.set_link_name("/etc/passwd").unwrap();
    }
    h.set_cksum();
    let d: &[u8] = if ty == tar::EntryType::Regular {
        data
    } else {
        &[]
    };
    b.append(&h, d).unwrap();
}

/// A manifest of `members`; with `blake3`, each member's BLAKE3 is recorded too (reel since
/// BLAKE3), else SHA-256 only (earlier archives).
fn manifest_for(members: &[(&str, &[u8])], blake3: bool) -> Vec<u8> {
    let m = serde_json::json!({
        "schema_version": 2,
        "reel_version": "0.1.0",
        "checkpoint_id": "checkpoint-t-20261201-000000",
        "created": "2026-12-01T00:00:00Z",
        "created_by": {"uid": 0, "user": "root"},
        "node": "n",
        "criu_version": "4.2.1",
        "container": {"name": "c", "id": "x", "runtime": "runc"},
        "rootfs_diff": {"kind": "none", "reason": "test"},
        "members": members.iter().map(|(n, d)| MemberDigest {
            name: n.to_string(),
            size: d.len() as u64,
            sha256: sha256_hex(d),
            blake3: blake3.then(|| blake3_hex(d)),
        }).collect::<Vec<_>>(),
    });
    serde_json::to_vec(&m).unwrap()
}

fn good_members() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("checkpoint/inventory.img", vec![1u8; 100]),
        (
            "checkpoint/pages-1.img",
            (0..20000u32).map(|i| (i % 241) as u8).collect(),
        ),
        ("config.dump", b"{}".to_vec()),
    ]
}

fn archive(members: &[(&str, Vec<u8>)], tamper: Option<&str>) -> Vec<u8> {
    archive_with(members, tamper, true)
}

fn archive_with(members: &[(&str, Vec<u8>)], tamper: Option<&str>, blake3: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "checkpoint/", tar::EntryType::Directory, b"");
    for (n, d) in members {
        let mut d = d.clone();
        if tamper == Some(*n) {
            d[0] ^= 1;
        }
        entry(&mut b, n, tar::EntryType::Regular, &d);
    }
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    entry(
        &mut b,
        MANIFEST_NAME,
        tar::EntryType::Regular,
        &manifest_for(&refs, blake3),
    );
    b.into_inner().unwrap()
}

fn file_with(bytes: &[u8], name: &str) -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    (d, p)
}

fn zst(tar: &[u8]) -> Vec<u8> {
    let mut z = TarTracker::new(ZstdFrames::new(Vec::new(), 3, 0).unwrap());
    z.write_all(tar).unwrap();
    z.into_inner().finish().unwrap()
}

fn check_reads(src: &CheckpointSource) {
    let members = good_members();
    assert_eq!(
        src.read("checkpoint/inventory.img", 1 << 20).unwrap(),
        members[0].1
    );
    assert_eq!(src.read("config.dump", 10).unwrap(), b"{}");
    assert_eq!(
        src.read_range("checkpoint/pages-1.img", 12345, 100)
            .unwrap(),
        members[1].1[12345..12445]
    );
    let v = src.verification();
    assert_eq!(v.verdict(), "verified");
    assert_eq!(v.verified.len(), 2);
    assert_eq!(v.read_in_part, vec!["checkpoint/pages-1.img"]);
    assert!(matches!(
        src.read("config.dump", 1),
        Err(InspectError::TooLarge { .. })
    ));
    assert!(matches!(
        src.read("checkpoint/nope.img", 1),
        Err(InspectError::MissingMember { .. })
    ));
}

#[test]
fn reads_tar_zst_and_directory() {
    let tar = archive(&good_members(), None);
    let (_d, p) = file_with(&tar, "a.tar");
    let src = CheckpointSource::open(&p, SourceOptions::default()).unwrap();
    assert_eq!(src.layout(), Layout::Tar);
    assert!(src.manifest().is_some());
    check_reads(&src);

    let (_d2, p2) = file_with(&zst(&tar), "a.tar.zst");
    let src = CheckpointSource::open(&p2, SourceOptions::default()).unwrap();
    assert_eq!(src.layout(), Layout::TarZstSeekable);
    check_reads(&src);

    let plain_zst = zstd::encode_all(tar.as_slice(), 3).unwrap();
    let (_d3, p3) = file_with(&plain_zst, "b.tar.zst");
    let src = CheckpointSource::open(&p3, SourceOptions::default()).unwrap();
    assert_eq!(src.layout(), Layout::TarZst);
    check_reads(&src);

    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(tar.as_slice())
        .unpack(dir.path())
        .unwrap();
    let src = CheckpointSource::open(dir.path(), SourceOptions::default()).unwrap();
    assert_eq!(src.layout(), Layout::Directory);
    check_reads(&src);
}

/// The digest a [`InspectError::DigestMismatch`] compared.
fn mismatch_algorithm(e: &InspectError) -> Option<&'static str> {
    match e {
        InspectError::DigestMismatch { algorithm, .. } => Some(algorithm),
        _ => None,
    }
}

#[test]
fn a_tampered_member_stops_unless_no_verify() {
    let tar = archive(&good_members(), Some("config.dump"));
    let (_d, p) = file_with(&tar, "a.tar");
    let src = CheckpointSource::open(&p, SourceOptions::default()).unwrap();
    let e = src.read("config.dump", 100).unwrap_err();
    assert_eq!(mismatch_algorithm(&e), Some("blake3"), "{e}");
    assert!(e.to_string().contains("config.dump"), "{e}");
    let src = CheckpointSource::open(&p, SourceOptions { verify: false }).unwrap();
    src.read("config.dump", 100).unwrap();
    assert_eq!(src.verification().mismatched, vec!["config.dump"]);
    assert_eq!(src.verification().verdict(), "MISMATCH");
}

#[test]
fn an_archive_without_blake3_digests_is_checked_with_sha256() {
    let tar = archive_with(&good_members(), None, false);
    let (_d, p) = file_with(&tar, "old.tar");
    let src = CheckpointSource::open(&p, SourceOptions::default()).unwrap();
    assert_eq!(src.digest_kind(), crate::archive::DigestKind::Sha256);
    check_reads(&src);
    assert!(src
        .verification()
        .verified
        .contains(&"config.dump".to_owned()));

    let tar = archive_with(&good_members(), Some("config.dump"), false);
    let (_d, p) = file_with(&tar, "old-tampered.tar");
    let src = CheckpointSource::open(&p, SourceOptions::default()).unwrap();
    let e = src.read("config.dump", 100).unwrap_err();
    assert_eq!(mismatch_algorithm(&e), Some("sha256"), "{e}");
}

#[test]
fn the_blake3_digest_is_the_one_checked_when_recorded() {
    // A manifest whose SHA-256 of config.dump is right and whose BLAKE3 is not.
    let members = good_members();
    let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (*n, d.as_slice())).collect();
    let mut m: serde_json::Value = serde_json::from_slice(&manifest_for(&refs, true)).unwrap();
    for e in m["members"].as_array_mut().unwrap() {
        if e["name"] == "config.dump" {
            e["blake3"] = blake3_hex(b"something else").into();
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    entry(&mut b, "checkpoint/", tar::EntryType::Directory, b"");
    for (n, d) in &members {
        entry(&mut b, n, tar::EntryType::Regular, d);
    }
    let json = serde_json::to_vec(&m).unwrap();
    entry(&mut b, MANIFEST_NAME, tar::EntryType::Regular, &json);
    let (_d, p) = file_with(&b.into_inner().unwrap(), "b3.tar");
    let src = CheckpointSource::open(&p, SourceOptions::default()).unwrap();
    assert_eq!(src.digest_kind(), crate::archive::DigestKind::Blake3);
    let e = src.read("config.dump", 100).unwrap_err();
    assert!(e.to_string().contains("expected blake3"), "{e}");
    // The other members check out.
    assert_eq!(
        src.read("checkpoint/inventory.img", 1000).unwrap().len(),
        100
    );
}

#[test]
fn no_manifest_is_unverified() {
    let mut b = tar::Builder::new(Vec::new());
    entry(
        &mut b,
        "checkpoint/inventory.img",
        tar::EntryType::Regular,
        b"abc",
    );
    let (_d, p) = file_with(&b.into_inner().unwrap(), "podman.tar");
    let src = CheckpointSource::open(&p, SourceOptions::default()).unwrap();
    assert!(src.manifest().is_none());
    assert_eq!(src.read("checkpoint/inventory.img", 10).unwrap(), b"abc");
    assert_eq!(src.verification().verdict(), "unverified");
}

#[test]
fn hostile_archives_are_refused_by_name() {
    let cases: Vec<(&str, tar::EntryType, &str)> = vec![
        ("../x", tar::EntryType::Regular, "`..`"),
        ("checkpoint/../../x", tar::EntryType::Regular, "`..`"),
        ("/etc/x", tar::EntryType::Regular, "absolute"),
        ("checkpoint/link", tar::EntryType::Symlink, "symbolic link"),
        ("checkpoint/dev", tar::EntryType::Char, "device"),
        ("checkpoint/fifo", tar::EntryType::Fifo, "FIFO"),
    ];
    for (name, ty, why) in cases {
        let mut b = tar::Builder::new(Vec::new());
        entry(
            &mut b,
            "checkpoint/inventory.img",
            tar::EntryType::Regular,
            b"abc",
        );
        entry(&mut b, name, ty, b"evil");
        let (_d, p) = file_with(&b.into_inner().unwrap(), "evil.tar");
        let e = CheckpointSource::open(&p, SourceOptions::default()).unwrap_err();
        let s = e.to_string();
        assert!(matches!(e, InspectError::UnsafeMember { .. }), "{s}");
        assert!(s.contains(name) && s.contains(why), "{name}: {s}");
    }
}

#[test]
fn truncated_empty_and_foreign_inputs() {
    let tar = archive(&good_members(), None);
    for cut in [100usize, 1000, 3000, tar.len() - 1024 - 700] {
        let (_d, p) = file_with(&tar[..cut], "cut.tar");
        let e = CheckpointSource::open(&p, SourceOptions::default()).unwrap_err();
        assert!(matches!(e, InspectError::Truncated { .. }), "{cut}: {e}");
    }
    let (_d, p) = file_with(&tar[..2048], "cut.tar");
    let e = CheckpointSource::open(&p, SourceOptions::default()).unwrap_err();
    assert!(e.to_string().contains("checkpoint/pages-1.img"), "{e}");

    let z = zst(&tar);
    let (_d, p) = file_with(&z[..z.len() / 2], "cut.tar.zst");
    assert!(CheckpointSource::open(&p, SourceOptions::default()).is_err());

    let (_d, p) = file_with(b"", "empty.tar");
    let e = CheckpointSource::open(&p, SourceOptions::default()).unwrap_err();
    assert!(matches!(e, InspectError::Empty { .. }), "{e}");

    let (_d, p) = file_with(&[7u8; 4096], "junk.tar");
    let e = CheckpointSource::open(&p, SourceOptions::default()).unwrap_err();
    assert!(matches!(e, InspectError::NotACheckpoint { .. }), "{e}");

    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("config.dump"), b"{}").unwrap();
    let e = CheckpointSource::open(d.path(), SourceOptions::default()).unwrap_err();
    assert!(e.to_string().contains("no checkpoint/"), "{e}");

    std::fs::create_dir(d.path().join("checkpoint")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.path().join("checkpoint/core-1.img")).unwrap();
    let e = CheckpointSource::open(d.path(), SourceOptions::default()).unwrap_err();
    assert!(matches!(e, InspectError::UnsafeMember { .. }), "{e}");
}

#[test]
fn resolves_ids_in_the_store() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("checkpoint-web-20261201-000000.tar"), b"x").unwrap();
    assert_eq!(
        resolve("checkpoint-web-20261201-000000", d.path()).unwrap(),
        d.path().join("checkpoint-web-20261201-000000.tar")
    );
    assert!(matches!(
        resolve("checkpoint-nope-20261201-000000", d.path()),
        Err(InspectError::NotFound { .. })
    ));
}

/// Every other byte of a small checkpoint flipped in turn (and every length cut): opening it and
/// inspecting it gives an answer or an error, never a panic, with verification on and off.
#[test]
fn mutated_archives_never_panic() {
    use crate::criu::image::{ImageKind, ImageWriter};
    use criu_sys::proto;
    let mut w = ImageWriter::new(Vec::new(), ImageKind::Pstree, "pstree.img").unwrap();
    w.write_entry(&proto::PstreeEntry {
        pid: 1,
        ppid: 0,
        pgid: 1,
        sid: 1,
        threads: vec![1, 2],
    })
    .unwrap();
    let pstree = w.finish().unwrap();
    let mut w = ImageWriter::new(Vec::new(), ImageKind::Core, "core-1.img").unwrap();
    w.write_entry(&proto::CoreEntry {
        mtype: 1,
        tc: Some(proto::TaskCoreEntry {
            task_state: 1,
            comm: "sh".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap();
    let core = w.finish().unwrap();
    let members = vec![
        ("checkpoint/pstree.img", pstree),
        ("checkpoint/core-1.img", core.clone()),
        ("checkpoint/core-2.img", core),
        ("deleted.files", b"[\"/etc/x\"]".to_vec()),
    ];
    let tar = archive(&members, None);
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.tar");
    let run = |bytes: &[u8]| {
        std::fs::write(&p, bytes).unwrap();
        for verify in [true, false] {
            if let Ok(src) = CheckpointSource::open(&p, SourceOptions { verify }) {
                let _ = crate::inspect::inspect(&src, &crate::inspect::InspectOptions::all());
            }
        }
    };
    // The original inspects.
    std::fs::write(&p, &tar).unwrap();
    let src = CheckpointSource::open(&p, SourceOptions::default()).unwrap();
    let ins = crate::inspect::inspect(&src, &crate::inspect::InspectOptions::all()).unwrap();
    assert_eq!(ins.processes[0].comm, "sh");
    assert_eq!(ins.rootfs[0].path, "/etc/x");
    for i in (0..tar.len()).step_by(2) {
        let mut m = tar.clone();
        m[i] ^= 0x55;
        run(&m);
    }
    for cut in (0..tar.len()).step_by(97) {
        run(&tar[..cut]);
    }
    let z = zst(&tar);
    for i in (0..z.len()).step_by(3) {
        let mut m = z.clone();
        m[i] ^= 0xA5;
        run(&m);
    }
}
