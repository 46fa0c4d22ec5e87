//! The checkpoint store. Archives here are written with `ArchiveWriter` from synthetic image
//! files (no CRIU needed: the store only cares about files, names, hashes and manifests).
//! Tests that check permissions, read-only mounts or other processes need root and fail
//! loudly without it.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use reel_core::archive::{
    self, stage_rootfs_diff, verify, ArchiveWriter, ConfigDump, ContainerIdentity, ManifestFields,
    Operator, RootfsSource, SidecarCheck,
};
use reel_core::store::{
    available_bytes, base_id, ensure_room, parse_age, Selector, SelectorSpec, Store, StoreError,
    StoredArchive, DEFAULT_ROOT,
};
use reel_testkit::{require_root, sha256_hex};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
        .single()
        .expect("valid time")
}

/// Writes a complete checkpoint of `pod` in `namespace` taken at `created` into the store.
fn checkpoint(store: &Store, namespace: &str, pod: &str, created: DateTime<Utc>) -> StoredArchive {
    let mut pending = store.begin_new(pod, created).expect("begin");
    let id = pending.id().to_owned();
    let stage = tempfile::tempdir().expect("stage");
    let images = stage.path().join("checkpoint");
    fs::create_dir(&images).expect("mkdir");
    fs::write(images.join("inventory.img"), b"synthetic").expect("write");
    fs::write(images.join("pages-1.img"), vec![3u8; 10_000]).expect("write");
    {
        let mut w = ArchiveWriter::new(&mut pending, created);
        w.append_images_dir(&images).expect("images");
        w.append_config_dump(&ConfigDump::new("cid", "app", created, created))
            .expect("config");
        w.append_bytes(archive::SPEC_DUMP, b"{}").expect("spec");
        let diff = stage_rootfs_diff(
            &RootfsSource::None {
                reason: "test".to_owned(),
            },
            stage.path(),
        )
        .expect("diff");
        w.append_rootfs_diff(&diff).expect("diff");
        w.finish(ManifestFields {
            checkpoint_id: id,
            created,
            created_by: Operator { uid: 0, user: None },
            node: "node".to_owned(),
            criu_version: "4.2.1".to_owned(),
            container: ContainerIdentity {
                namespace: Some(namespace.to_owned()),
                pod: Some(pod.to_owned()),
                name: "app".to_owned(),
                id: "cid".to_owned(),
                runtime: "runc".to_owned(),
                image: None,
            },
            criu_frozen_time_us: Some(42),
            dump_options: BTreeMap::new(),
            rootfs_layers: None,
            page_size: None,
            method: None,
        })
        .expect("finish");
    }
    pending.commit().expect("commit")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn open_creates_private_dirs_and_refuses_bad_roots() {
    require_root();
    assert_eq!(DEFAULT_ROOT, "/var/lib/reel/checkpoints");
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("a/b/store");
    let store = Store::open(&root).expect("open");
    assert_eq!(store.root(), root);
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&tmp.path().join("a")), 0o700, "parents too");
    Store::open(&root).expect("reopen");

    let file = tmp.path().join("file");
    fs::write(&file, "x").expect("write");
    let err = Store::open(&file).expect_err("a file is not a store");
    assert!(matches!(err, StoreError::NotADirectory { .. }), "{err}");
    assert!(err.to_string().contains("not a directory"));

    // A read-only file system.
    let ro = tmp.path().join("ro");
    fs::create_dir(&ro).expect("mkdir");
    nix::mount::mount(
        Some("tmpfs"),
        &ro,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .expect("mount ro tmpfs");
    let result = Store::open(&ro);
    nix::mount::umount2(&ro, nix::mount::MntFlags::MNT_DETACH).expect("umount");
    let err = result.expect_err("read-only store");
    assert!(matches!(err, StoreError::NotWritable { .. }), "{err}");
    assert!(err.to_string().contains("not writable"));
}

#[test]
fn ids_get_suffixes_and_pod_names_are_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(tmp.path().join("s")).expect("open");
    let t = at(2024, 5, 1, 12, 30, 45);
    assert_eq!(
        base_id("web", t).expect("id"),
        "checkpoint-web-20240501-123045"
    );
    assert_eq!(
        store.new_id("web", t).expect("id"),
        "checkpoint-web-20240501-123045"
    );

    let first = checkpoint(&store, "default", "web", t);
    assert_eq!(first.id, "checkpoint-web-20240501-123045");
    // Same second: finished one exists ⇒ -2.
    assert_eq!(
        store.new_id("web", t).expect("id"),
        "checkpoint-web-20240501-123045-2"
    );
    // An in-progress one also counts ⇒ -3.
    let in_progress = store
        .begin("checkpoint-web-20240501-123045-2")
        .expect("begin");
    assert_eq!(
        store.new_id("web", t).expect("id"),
        "checkpoint-web-20240501-123045-3"
    );
    assert!(matches!(
        store.begin("checkpoint-web-20240501-123045-2"),
        Err(StoreError::IdTaken { .. })
    ));
    assert!(matches!(
        store.begin("checkpoint-web-20240501-123045"),
        Err(StoreError::IdTaken { .. })
    ));
    drop(in_progress);
    assert_eq!(
        store.new_id("web", t).expect("id"),
        "checkpoint-web-20240501-123045-2"
    );
    // begin_new picks the suffix itself.
    let second = checkpoint(&store, "default", "web", t);
    assert_eq!(second.id, "checkpoint-web-20240501-123045-2");

    for bad in ["", "a/b", "..", "x..y", "tab\there", "nl\n", "del\u{7f}"] {
        assert!(
            matches!(store.new_id(bad, t), Err(StoreError::InvalidPodName { .. })),
            "{bad:?} accepted"
        );
    }
    for bad in ["", ".hidden", "a/b", "../x", "x\0y"] {
        assert!(
            matches!(store.begin(bad), Err(StoreError::InvalidId { .. })),
            "{bad:?} accepted"
        );
    }
}

#[test]
fn commit_is_atomic_and_writes_the_sidecar() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("s");
    let store = Store::open(&root).expect("open");
    let id = "checkpoint-web-20240501-123045";
    let mut pending = store.begin(id).expect("begin");
    let temp_name = format!(".{id}.tar.partial-{}", std::process::id());
    assert_eq!(pending.temp_path(), root.join(&temp_name));
    assert_eq!(mode(pending.temp_path()), 0o600);
    pending.write_all(b"half an archive").expect("write");
    pending.flush().expect("flush");
    assert_eq!(
        names(&root),
        [temp_name.as_str()],
        "nothing named {id}.tar before commit"
    );
    assert!(
        store.list().expect("list").is_empty(),
        "in-progress runs are not listed"
    );
    drop(pending);

    let stored = checkpoint(&store, "default", "web", at(2024, 5, 1, 12, 30, 45));
    assert_eq!(stored.id, id);
    assert_eq!(
        names(&root),
        [format!("{id}.tar"), format!("{id}.tar.sha256")]
    );
    assert_eq!(mode(&stored.path), 0o600);
    assert_eq!(mode(&stored.sidecar), 0o600);
    let bytes = fs::read(&stored.path).expect("read");
    let digest = sha256_hex(&bytes);
    assert_eq!(
        stored.sha256, digest,
        "hashed while writing = hash of the file"
    );
    assert_eq!(stored.size, bytes.len() as u64);
    assert_eq!(
        fs::read_to_string(&stored.sidecar).expect("sidecar"),
        format!("{digest}  {id}.tar\n")
    );
    let report = verify(&stored.path).expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.sidecar, SidecarCheck::Match);
}

#[test]
fn dropped_pending_removes_its_temp_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("s");
    let store = Store::open(&root).expect("open");
    let mut pending = store.begin_new("web", Utc::now()).expect("begin");
    pending.write_all(&[1u8; 100_000]).expect("write");
    let temp = pending.temp_path().to_owned();
    assert!(temp.exists());
    drop(pending);
    assert!(!temp.exists());
    assert!(names(&root).is_empty());
}

#[test]
fn open_removes_dead_leftovers_and_keeps_live_ones() {
    require_root();
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("s");
    Store::open(&root).expect("create");

    let mut dead = Command::new("true").spawn().expect("spawn");
    let dead_pid = dead.id();
    dead.wait().expect("wait");
    let mut live = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn");
    let live_pid = live.id();

    let dead_tar = root.join(format!(
        ".checkpoint-a-20240101-000000.tar.partial-{dead_pid}"
    ));
    let dead_sidecar = root.join(format!(
        ".checkpoint-a-20240101-000000.tar.sha256.partial-{dead_pid}"
    ));
    let live_tar = root.join(format!(
        ".checkpoint-b-20240101-000000.tar.partial-{live_pid}"
    ));
    let unrelated = root.join(".something-else");
    let orphan_sidecar = root.join("checkpoint-c-20240101-000000.tar.sha256");
    for p in [
        &dead_tar,
        &dead_sidecar,
        &live_tar,
        &unrelated,
        &orphan_sidecar,
    ] {
        fs::write(p, "x").expect("write");
    }

    let store = Store::open(&root).expect("open");
    let _ = live.kill();
    let _ = live.wait();

    let mut removed = store.removed_leftovers().to_vec();
    removed.sort();
    let mut expected = vec![
        dead_tar.clone(),
        dead_sidecar.clone(),
        orphan_sidecar.clone(),
    ];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(!dead_tar.exists() && !dead_sidecar.exists() && !orphan_sidecar.exists());
    assert!(live_tar.exists(), "a live run's temp file is never touched");
    assert!(unrelated.exists());
}

#[test]
fn list_reports_manifests_and_corrupt_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("s");
    let store = Store::open(&root).expect("open");
    let a = checkpoint(&store, "team-a", "web", at(2024, 1, 1, 0, 0, 0));
    let b = checkpoint(&store, "team-b", "db", at(2024, 2, 1, 0, 0, 0));
    fs::write(root.join("junk.tar"), vec![0x5Au8; 3000]).expect("junk");
    let mut foreign = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    foreign
        .append_data(&mut h, "config.dump", &b"{}"[..])
        .expect("append");
    fs::write(
        root.join("checkpoint-crio.tar"),
        foreign.into_inner().expect("tar"),
    )
    .expect("write");

    let list = store.list().expect("list");
    assert_eq!(list.len(), 4);
    let find = |id: &str| list.iter().find(|c| c.id == id).expect("listed");
    let la = find(&a.id);
    let s = la.summary.as_ref().expect("summary");
    assert_eq!(la.path, a.path);
    assert_eq!(la.size, a.size);
    assert!(la.has_sidecar && la.problem.is_none());
    assert_eq!(s.created, at(2024, 1, 1, 0, 0, 0));
    assert_eq!(
        (s.namespace.as_deref(), s.pod.as_deref()),
        (Some("team-a"), Some("web"))
    );
    assert_eq!(s.container, "app");
    assert_eq!(s.criu_frozen_time_us, Some(42));
    for bad in ["junk", "checkpoint-crio"] {
        let c = find(bad);
        assert!(
            c.summary.is_none() && c.problem.is_some(),
            "{bad} should be reported"
        );
    }
    let ns_b = store.list_namespace("team-b").expect("list");
    assert_eq!(ns_b.len(), 1);
    assert_eq!(ns_b[0].id, b.id);
}

/// The kubelet's checkpoints on other nodes are records in the store: delete removes the
/// record (never anything on that node), by id and by the other selectors, and lists it.
#[test]
fn delete_removes_the_records_of_checkpoints_on_other_nodes() {
    use reel_core::store::RemoteCheckpoint;
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("s");
    let store = Store::open(&root).expect("open");
    let now = Utc::now();
    let remote = |id: &str, ns: &str| RemoteCheckpoint {
        id: id.to_owned(),
        created: now - chrono::Duration::days(3),
        namespace: ns.to_owned(),
        pod: "web".to_owned(),
        container: "app".to_owned(),
        node: "node-b".to_owned(),
        path: format!("/var/lib/kubelet/checkpoints/{id}.tar"),
        method: "k8s-api".to_owned(),
    };
    let r1 = remote("checkpoint-web-20261201-000001", "a");
    let r2 = remote("checkpoint-web-20261201-000002", "b");
    store.record_remote(&r1).expect("record");
    store.record_remote(&r2).expect("record");
    let local = checkpoint(&store, "a", "api", now);

    // By id: only that record goes; an unknown id is still an error.
    let by_id = Selector::ids([&r1.id]).expect("sel");
    assert!(store.select(&by_id).expect("select").is_empty());
    assert_eq!(
        store.select_remote(&by_id).expect("select"),
        vec![r1.clone()]
    );
    let deleted = store.delete(&by_id).expect("delete");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].id, r1.id);
    assert_eq!(deleted[0].remote.as_ref(), Some(&r1));
    assert_eq!(deleted[0].bytes, 0);
    assert!(!deleted[0].path.exists());
    assert!(store.remote(&r1.id).is_none());
    assert!(matches!(
        store.delete(&Selector::ids([&r1.id]).expect("sel")),
        Err(StoreError::NotFound { .. })
    ));

    // By namespace and age, alongside the local archives.
    let deleted = store.delete(&Selector::namespace("a")).expect("delete");
    assert_eq!(
        deleted.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [local.id.as_str()]
    );
    assert!(store.remote(&r2.id).is_some());
    let old = Selector::older_than(parse_age("2d").expect("age"));
    let deleted = store.delete(&old).expect("delete");
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].id, r2.id);
    assert!(store.remotes().expect("remotes").is_empty());
    assert!(names(&root).is_empty(), "{:?}", names(&root));
}

#[test]
fn delete_by_each_selector() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("s");
    let store = Store::open(&root).expect("open");
    let now = Utc::now();
    let old = now - chrono::Duration::days(10);
    let a1 = checkpoint(&store, "a", "web", old);
    let a2 = checkpoint(&store, "a", "api", now);
    let b1 = checkpoint(&store, "b", "web", now);
    let b2 = checkpoint(&store, "b", "db", now);
    let c1 = checkpoint(&store, "c", "cache", now);
    let c2 = checkpoint(&store, "c", "queue", now);
    let ids = |d: Vec<reel_core::store::Deleted>| {
        let mut v: Vec<String> = d.into_iter().map(|d| d.id).collect();
        v.sort();
        v
    };

    // --older-than 7d
    let deleted = store
        .delete(&Selector::older_than(parse_age("7d").expect("age")))
        .expect("delete");
    assert_eq!(deleted[0].sidecar.as_deref(), Some(a1.sidecar.as_path()));
    assert_eq!(ids(deleted), [a1.id.as_str()]);
    assert!(!a1.path.exists() && !a1.sidecar.exists());

    // by id (unknown ids are an error and delete nothing)
    assert!(matches!(
        store.delete(&Selector::ids(["checkpoint-nope-20240101-000000", &a2.id]).expect("sel")),
        Err(StoreError::NotFound { ids }) if ids == ["checkpoint-nope-20240101-000000"]
    ));
    assert!(a2.path.exists());
    assert_eq!(
        ids(store
            .delete(&Selector::ids([&a2.id]).expect("sel"))
            .expect("delete")),
        [a2.id.as_str()]
    );

    // by namespace
    let mut want = vec![b1.id.clone(), b2.id.clone()];
    want.sort();
    assert_eq!(
        ids(store.delete(&Selector::namespace("b")).expect("delete")),
        want
    );

    // by --filter glob on the id
    let filter = Selector::filter("checkpoint-cache-*").expect("glob");
    assert_eq!(
        ids(store.delete(&filter).expect("delete")),
        [c1.id.as_str()]
    );
    assert!(matches!(
        Selector::filter("[oops"),
        Err(StoreError::BadFilter { .. })
    ));

    // --all, including an unreadable archive
    fs::write(root.join("junk.tar"), "junk").expect("junk");
    let mut want = vec![c2.id.clone(), "junk".to_owned()];
    want.sort();
    assert_eq!(ids(store.delete(&Selector::all()).expect("delete")), want);
    assert!(names(&root).is_empty());

    // Combined criteria must all hold.
    let x = checkpoint(&store, "x", "web", old);
    let y = checkpoint(&store, "y", "web", old);
    let sel = Selector::new(SelectorSpec {
        namespace: Some("x".to_owned()),
        older_than: Some("1d".to_owned()),
        ..SelectorSpec::default()
    })
    .expect("selector");
    assert_eq!(ids(store.delete(&sel).expect("delete")), [x.id]);
    assert!(y.path.exists());
}

#[test]
fn empty_selector_and_bogus_ages_are_rejected() {
    let err = Selector::new(SelectorSpec::default()).expect_err("empty selector");
    assert!(matches!(err, StoreError::EmptySelector));
    let msg = err.to_string();
    for hint in ["id", "-n", "--all", "--filter", "--older-than"] {
        assert!(msg.contains(hint), "{msg:?} lacks {hint}");
    }
    let cases = [
        ("7d", 7 * 86_400),
        ("24h", 86_400),
        ("30m", 1_800),
        ("90s", 90),
        ("2w", 14 * 86_400),
        ("0s", 0),
    ];
    for (input, secs) in cases {
        assert_eq!(parse_age(input).expect(input), Duration::from_secs(secs));
    }
    for bad in [
        "7x",
        "",
        "-1d",
        "+1d",
        "d",
        "7",
        "1.5d",
        " 7d",
        "7d ",
        "1d12h",
        "99999999999999999999d",
    ] {
        let err = parse_age(bad).expect_err(bad);
        assert!(matches!(err, StoreError::BadAge { .. }), "{bad:?}");
        assert!(err.to_string().contains("e.g. 7d"), "{err}");
    }
    let err = Selector::new(SelectorSpec {
        older_than: Some("7x".to_owned()),
        ..SelectorSpec::default()
    })
    .expect_err("bad age");
    assert!(matches!(err, StoreError::BadAge { .. }));
}

#[test]
fn free_space_checks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let avail = available_bytes(tmp.path()).expect("statvfs");
    assert!(avail > 0);
    assert!(ensure_room(tmp.path(), 1).is_ok());
    let err = ensure_room(tmp.path(), u64::MAX).expect_err("no room");
    let msg = err.to_string();
    assert!(matches!(
        err,
        StoreError::NoRoom {
            needed: u64::MAX,
            ..
        }
    ));
    assert!(msg.contains(&tmp.path().display().to_string()) && msg.contains(&u64::MAX.to_string()));
    assert!(available_bytes(&tmp.path().join("missing")).is_err());
}
