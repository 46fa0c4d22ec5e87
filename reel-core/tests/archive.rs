//! Archive layout, hashing, reading and verification.
//!
//! These tests write archives from a fake CRIU images directory made here: the "images" are
//! synthetic bytes, not real CRIU images. That is enough, and deliberate: what is under test
//! is the tar layout, modes, order and hashing, none of which depends on image contents, so
//! these tests need neither CRIU nor a container.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use reel_core::archive::{
    self, format_sidecar, index, read_manifest, read_manifest_from, sidecar_path,
    stage_rootfs_diff, verify, verify_reader, ArchiveError, ArchiveWriter, Compression, ConfigDump,
    ContainerIdentity, HashingWriter, Manifest, ManifestFields, Operator, RootfsDiffInfo,
    RootfsSource, SidecarCheck,
};
use reel_testkit::sha256_hex;

const SPEC: &[u8] = br#"{"ociVersion":"1.0.2","process":{"args":["sleep","inf"]},"annotations":{"io.kubernetes.cri.container-name":"app"}}"#;

fn checkpoint_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 30, 45)
        .single()
        .expect("valid time")
}

/// A stage dir as CRIU leaves it: images in `checkpoint/`, stats-dump and dump.log beside it.
/// The image contents are synthetic (see the file comment).
fn fake_stage(dir: &Path) -> PathBuf {
    let images = dir.join("checkpoint");
    fs::create_dir_all(&images).expect("mkdir images");
    let files: [(&str, Vec<u8>); 6] = [
        ("inventory.img", b"synthetic inventory".to_vec()),
        ("pstree.img", b"synthetic pstree".to_vec()),
        ("core-1.img", vec![7u8; 3000]),
        (
            "pages-1.img",
            (0..20_000u32).map(|i| (i % 251) as u8).collect(),
        ),
        (
            "descriptors.json",
            br#"["/dev/null","pipe:[1]","pipe:[2]"]"#.to_vec(),
        ),
        ("empty.img", Vec::new()),
    ];
    for (name, data) in files {
        fs::write(images.join(name), data).expect("write image");
    }
    fs::write(dir.join("stats-dump"), b"synthetic stats").expect("stats");
    fs::write(
        dir.join("dump.log"),
        b"(00.000001) Dumping finished successfully\n",
    )
    .expect("log");
    dir.to_owned()
}

fn fields(id: &str) -> ManifestFields {
    ManifestFields {
        checkpoint_id: id.to_owned(),
        created: checkpoint_time(),
        created_by: Operator {
            uid: 0,
            user: Some("root".to_owned()),
        },
        node: "node-1".to_owned(),
        criu_version: "4.2.1".to_owned(),
        container: ContainerIdentity {
            namespace: Some("default".to_owned()),
            pod: Some("web".to_owned()),
            name: "app".to_owned(),
            id: "abc123".to_owned(),
            runtime: "runc".to_owned(),
            image: Some("docker.io/library/busybox:latest".to_owned()),
        },
        criu_frozen_time_us: Some(12_345),
        dump_options: BTreeMap::from([
            ("tcp_established".to_owned(), serde_json::json!(true)),
            ("manage_cgroups_mode".to_owned(), serde_json::json!("soft")),
        ]),
        rootfs_layers: None,
        page_size: Some(4096),
        method: None,
    }
}

/// Writes a complete archive from `stage` into `out`.
fn write_archive<W: Write>(stage: &Path, out: W) -> (Manifest, W) {
    let mut w = ArchiveWriter::new(out, checkpoint_time());
    w.append_images_dir(&stage.join("checkpoint"))
        .expect("images");
    w.append_file(archive::STATS_DUMP, &stage.join("stats-dump"))
        .expect("stats");
    w.append_file(archive::DUMP_LOG, &stage.join("dump.log"))
        .expect("log");
    let mut cfg = ConfigDump::new(
        "abc123",
        "app",
        Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, 0)
            .single()
            .expect("time"),
        checkpoint_time(),
    );
    cfg.runtime = Some("runc".to_owned());
    w.append_config_dump(&cfg).expect("config.dump");
    w.append_bytes(archive::SPEC_DUMP, SPEC).expect("spec.dump");
    let diff = stage_rootfs_diff(
        &RootfsSource::None {
            reason: "bare runc bundle on a plain directory has no writable layer".to_owned(),
        },
        stage,
    )
    .expect("rootfs diff");
    w.append_rootfs_diff(&diff).expect("append diff");
    w.finish(fields("checkpoint-web-20240501-123045"))
        .expect("finish")
}

fn write_archive_file(dir: &Path) -> (PathBuf, Manifest) {
    let stage = fake_stage(&dir.join("stage"));
    let path = dir.join("cp.tar");
    let file = fs::File::create(&path).expect("create");
    let (manifest, _) = write_archive(&stage, file);
    (path, manifest)
}

struct Member {
    name: String,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    is_dir: bool,
    data: Vec<u8>,
}

fn members(bytes: &[u8]) -> Vec<Member> {
    let mut ar = tar::Archive::new(Cursor::new(bytes));
    let mut out = Vec::new();
    for e in ar.entries().expect("entries") {
        let mut e = e.expect("entry");
        let mut data = Vec::new();
        e.read_to_end(&mut data).expect("read");
        let h = e.header();
        out.push(Member {
            name: String::from_utf8(e.path_bytes().to_vec()).expect("utf8"),
            mode: h.mode().expect("mode"),
            uid: h.uid().expect("uid"),
            gid: h.gid().expect("gid"),
            mtime: h.mtime().expect("mtime"),
            is_dir: h.entry_type().is_dir(),
            data,
        });
    }
    out
}

#[test]
fn layout_order_modes_and_owner() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stage = fake_stage(tmp.path());
    let (_, bytes) = write_archive(&stage, Vec::new());
    let ms = members(&bytes);
    let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "checkpoint/",
            "checkpoint/core-1.img",
            "checkpoint/descriptors.json",
            "checkpoint/empty.img",
            "checkpoint/inventory.img",
            "checkpoint/pages-1.img",
            "checkpoint/pstree.img",
            "stats-dump",
            "dump.log",
            "config.dump",
            "spec.dump",
            "rootfs-diff.tar",
            "deleted.files",
            "reel-manifest.json",
        ]
    );
    let dir = &ms[0];
    assert!(dir.is_dir, "checkpoint/ must be a directory entry");
    assert_eq!(dir.mode, 0o700);
    for m in &ms[1..] {
        assert!(!m.is_dir, "{} is not a file", m.name);
        assert_eq!(m.mode, 0o600, "mode of {}", m.name);
    }
    for m in &ms {
        assert_eq!((m.uid, m.gid), (0, 0), "owner of {}", m.name);
        assert_eq!(
            m.mtime,
            checkpoint_time().timestamp() as u64,
            "mtime of {}",
            m.name
        );
    }
    // The manifest name must not collide with checkpointctl's substring matches.
    for reserved in ["config.dump", "spec.dump", "network.status", "stats-dump"] {
        assert!(!archive::MANIFEST_NAME.contains(reserved));
    }
    assert!(!archive::MANIFEST_NAME.starts_with("checkpoint"));
}

#[test]
fn manifest_hashes_match_recomputed_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stage = fake_stage(tmp.path());
    let (returned, bytes) = write_archive(&stage, Vec::new());
    let ms = members(&bytes);
    let last = ms.last().expect("members");
    assert_eq!(last.name, archive::MANIFEST_NAME);
    let stored: Manifest = serde_json::from_slice(&last.data).expect("manifest json");
    assert_eq!(stored, returned);
    assert_eq!(
        stored.members.len(),
        ms.len() - 1,
        "every other member is listed"
    );
    for (m, d) in ms.iter().zip(&stored.members) {
        assert_eq!(m.name, d.name);
        assert_eq!(m.data.len() as u64, d.size, "size of {}", m.name);
        assert_eq!(sha256_hex(&m.data), d.sha256, "sha256 of {}", m.name);
    }
    // Images and metadata are stored byte for byte.
    let pages = ms
        .iter()
        .find(|m| m.name == "checkpoint/pages-1.img")
        .expect("pages");
    assert_eq!(
        pages.data,
        fs::read(stage.join("checkpoint/pages-1.img")).expect("read")
    );
    let spec = ms.iter().find(|m| m.name == "spec.dump").expect("spec");
    assert_eq!(spec.data, SPEC);
}

#[test]
fn manifest_chain_of_custody_and_config_dump() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stage = fake_stage(tmp.path());
    let (_, bytes) = write_archive(&stage, Vec::new());
    let ms = members(&bytes);
    let raw: serde_json::Value =
        serde_json::from_slice(&ms.last().expect("manifest").data).expect("json");
    assert_eq!(
        raw["schema_version"],
        reel_core::archive::MANIFEST_SCHEMA_VERSION
    );
    assert_eq!(raw["reel_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(raw["created"], "2024-05-01T12:30:45Z");
    assert_eq!(raw["created_by"]["uid"], 0);
    assert_eq!(raw["node"], "node-1");
    assert_eq!(raw["criu_version"], "4.2.1");
    assert_eq!(raw["container"]["namespace"], "default");
    assert_eq!(raw["container"]["pod"], "web");
    assert_eq!(raw["container"]["id"], "abc123");
    assert_eq!(raw["criu_frozen_time_us"], 12_345);
    assert_eq!(raw["dump_options"]["manage_cgroups_mode"], "soft");
    assert_eq!(raw["rootfs_diff"]["kind"], "none");
    assert_eq!(
        raw["rootfs_diff"]["reason"],
        "bare runc bundle on a plain directory has no writable layer"
    );

    let cfg = ms
        .iter()
        .find(|m| m.name == "config.dump")
        .expect("config.dump");
    let cfg: serde_json::Value = serde_json::from_slice(&cfg.data).expect("json");
    assert_eq!(cfg["id"], "abc123");
    assert_eq!(cfg["name"], "app");
    assert_eq!(cfg["runtime"], "runc");
    assert_eq!(cfg["createdTime"], "2024-05-01T10:00:00Z");
    assert_eq!(cfg["checkpointedTime"], "2024-05-01T12:30:45Z");
    assert_eq!(cfg["restoredTime"], "0001-01-01T00:00:00Z");
    assert_eq!(cfg["restored"], false);
    assert!(
        cfg.get("rootfsImage").is_none(),
        "unset optional fields are omitted"
    );

    let deleted = ms
        .iter()
        .find(|m| m.name == "deleted.files")
        .expect("deleted.files");
    assert_eq!(deleted.data, b"[]");
    let diff = ms
        .iter()
        .find(|m| m.name == "rootfs-diff.tar")
        .expect("diff");
    assert_eq!(
        diff.data,
        vec![0u8; 1024],
        "an empty tar is just the trailer"
    );
}

#[test]
fn stream_hash_equals_file_hash() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stage = fake_stage(tmp.path());
    let path = tmp.path().join("cp.tar");
    let file = fs::File::create(&path).expect("create");
    let (_, hashing) = write_archive(&stage, HashingWriter::new(file));
    let (digest, bytes, _) = hashing.finish();
    let on_disk = fs::read(&path).expect("read");
    assert_eq!(bytes, on_disk.len() as u64);
    assert_eq!(digest, sha256_hex(&on_disk));
}

#[test]
fn verify_passes_then_reports_exactly_the_flipped_member() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, manifest) = write_archive_file(tmp.path());
    let digest = sha256_hex(&fs::read(&path).expect("read"));
    fs::write(sidecar_path(&path), format_sidecar(&digest, "cp.tar")).expect("sidecar");

    let report = verify(&path).expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.sidecar, SidecarCheck::Match);
    assert_eq!(report.compression, Compression::None);
    assert_eq!(report.members_checked, manifest.members.len());
    assert_eq!(report.manifest.as_ref(), Some(&manifest));

    // Flip one byte inside the data of one member, found without unpacking.
    let idx = index(&path).expect("index");
    let target = idx
        .iter()
        .find(|m| m.name == "checkpoint/pages-1.img")
        .expect("indexed");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .expect("open");
    f.seek(SeekFrom::Start(target.data_offset + 100))
        .expect("seek");
    let mut b = [0u8; 1];
    f.read_exact(&mut b).expect("read");
    f.seek(SeekFrom::Start(target.data_offset + 100))
        .expect("seek");
    f.write_all(&[b[0] ^ 0xFF]).expect("write");
    drop(f);

    let report = verify(&path).expect("verify");
    assert!(!report.is_ok());
    assert_eq!(report.failed_members(), ["checkpoint/pages-1.img"]);
    assert_eq!(report.mismatched.len(), 1);
    let m = &report.mismatched[0];
    assert_eq!(m.expected_size, m.actual_size);
    assert_ne!(m.expected_sha256, m.actual_sha256);
    // Both digests are recorded and both are checked.
    assert!(m.expected_blake3.is_some(), "{m:?}");
    assert!(
        m.actual_blake3.is_some() && m.actual_blake3 != m.expected_blake3,
        "{m:?}"
    );
    assert!(report.missing.is_empty() && report.extra.is_empty());
    assert!(matches!(report.sidecar, SidecarCheck::Mismatch { .. }));
}

#[test]
fn verify_without_sidecar_and_from_a_reader() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, _) = write_archive_file(tmp.path());
    let report = verify(&path).expect("verify");
    assert!(report.is_ok());
    assert_eq!(report.sidecar, SidecarCheck::Absent);
    let report = verify_reader(fs::File::open(&path).expect("open")).expect("verify");
    assert!(report.is_ok());
    assert_eq!(report.sidecar, SidecarCheck::NotChecked);
    fs::write(sidecar_path(&path), "garbage\n").expect("sidecar");
    let report = verify(&path).expect("verify");
    assert!(matches!(report.sidecar, SidecarCheck::Unreadable(_)));
    assert!(!report.is_ok());
}

#[test]
fn zstd_archives_are_read_and_verified() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stage = fake_stage(tmp.path());
    let path = tmp.path().join("cp.tar.zst");
    let enc = zstd::Encoder::new(fs::File::create(&path).expect("create"), 3).expect("zstd");
    let (manifest, enc) = write_archive(&stage, enc);
    enc.finish().expect("zstd finish");
    assert_eq!(&fs::read(&path).expect("read")[..4], &archive::ZSTD_MAGIC);
    let digest = sha256_hex(&fs::read(&path).expect("read"));
    fs::write(sidecar_path(&path), format_sidecar(&digest, "cp.tar.zst")).expect("sidecar");

    let report = verify(&path).expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.compression, Compression::Zstd);
    assert_eq!(report.sidecar, SidecarCheck::Match);
    assert_eq!(read_manifest(&path).expect("manifest"), manifest);
    assert_eq!(
        read_manifest_from(fs::File::open(&path).expect("open")).expect("manifest"),
        manifest
    );
    assert!(matches!(index(&path), Err(ArchiveError::Compressed { .. })));
}

#[test]
fn manifest_and_members_found_by_seeking() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (path, manifest) = write_archive_file(tmp.path());
    assert_eq!(read_manifest(&path).expect("manifest"), manifest);
    let bytes = fs::read(&path).expect("read");
    let idx = index(&path).expect("index");
    assert_eq!(idx.len(), manifest.members.len() + 1);
    for (m, d) in idx.iter().zip(&manifest.members) {
        assert_eq!(m.name, d.name);
        let start = m.data_offset as usize;
        let data = &bytes[start..start + m.size as usize];
        assert_eq!(sha256_hex(data), d.sha256, "{}", m.name);
    }
}

#[test]
fn foreign_and_corrupt_archives() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A tar without a manifest (as CRI-O writes it).
    let foreign = tmp.path().join("foreign.tar");
    let mut b = tar::Builder::new(fs::File::create(&foreign).expect("create"));
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.set_mode(0o600);
    b.append_data(&mut h, "config.dump", &b"{}"[..])
        .expect("append");
    b.into_inner().expect("finish");
    assert!(matches!(
        read_manifest(&foreign),
        Err(ArchiveError::NoManifest { .. })
    ));
    let report = verify(&foreign).expect("verify");
    assert!(!report.is_ok());
    assert!(report.manifest.is_none() && report.manifest_problem.is_some());
    assert_eq!(report.extra, ["config.dump"]);

    // Garbage is an error, not a panic.
    let junk = tmp.path().join("junk.tar");
    fs::write(&junk, vec![0x5Au8; 4096]).expect("write");
    assert!(read_manifest(&junk).is_err());
    assert!(verify(&junk).is_err());
}

#[test]
fn writer_enforces_order_names_and_required_members() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let stage = fake_stage(tmp.path());

    let mut w = ArchiveWriter::new(Vec::new(), checkpoint_time());
    assert!(matches!(
        w.append_bytes("spec.dump", b"{}"),
        Err(ArchiveError::OutOfOrder { .. })
    ));
    w.append_images_dir(&stage.join("checkpoint"))
        .expect("images");
    w.append_bytes("spec.dump", b"{}").expect("spec");
    assert!(matches!(
        w.append_image_bytes("late.img", b"x"),
        Err(ArchiveError::OutOfOrder { .. })
    ));
    for bad in ["checkpoint-extra", "reel-manifest.json", "a/b", "", ".."] {
        assert!(
            matches!(
                w.append_bytes(bad, b"x"),
                Err(ArchiveError::InvalidMemberName { .. })
            ),
            "{bad:?} accepted"
        );
    }
    assert!(matches!(
        w.append_bytes("spec.dump", b"{}"),
        Err(ArchiveError::DuplicateMember(_))
    ));
    assert!(matches!(
        w.finish(fields("x")),
        Err(ArchiveError::MissingMember("config.dump"))
    ));

    // A source that is shorter or longer than announced is refused.
    for (size, data) in [(10u64, &b"abc"[..]), (2, &b"abc"[..])] {
        let mut w = ArchiveWriter::new(Vec::new(), checkpoint_time());
        w.append_image_bytes("inventory.img", b"x").expect("image");
        assert!(matches!(
            w.append_reader("dump.log", size, data),
            Err(ArchiveError::FileChanged { .. })
        ));
    }

    // A flat images dir only.
    fs::create_dir(stage.join("checkpoint/sub")).expect("mkdir");
    let mut w = ArchiveWriter::new(Vec::new(), checkpoint_time());
    assert!(matches!(
        w.append_images_dir(&stage.join("checkpoint")),
        Err(ArchiveError::NotARegularFile { .. })
    ));
}

#[test]
fn missing_upper_dir_gives_an_empty_diff() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let upper = tmp.path().join("no-such-upper");
    let diff =
        stage_rootfs_diff(&RootfsSource::OverlayUpper(upper.clone()), tmp.path()).expect("diff");
    assert!(diff.deleted.is_empty());
    match &diff.info {
        RootfsDiffInfo::None { reason } => {
            assert!(reason.contains("does not exist") && reason.contains("no-such-upper"))
        }
        other => panic!("expected none, got {other:?}"),
    }
    let data = fs::read(&diff.diff_tar).expect("read");
    let mut ar = tar::Archive::new(Cursor::new(data));
    assert_eq!(ar.entries().expect("entries").count(), 0);
}

#[test]
fn operator_and_hostname() {
    let op = Operator::current().expect("operator");
    assert_eq!(op.uid, nix::unistd::getuid().as_raw());
    if op.uid == 0 {
        assert_eq!(op.user.as_deref(), Some("root"));
    }
    assert!(!archive::node_hostname().expect("hostname").is_empty());
}
