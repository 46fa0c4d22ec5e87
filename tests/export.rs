//! `reel export checkpoint` end to end, as root, against real containers, real CRIU and a real
//! S3-compatible server (moto, started by `scripts/s3-server.sh` on loopback, with credentials
//! checked): local files, directories, stdout and S3 multipart uploads, every compression
//! level, byte-identical file and S3 exports, `reel verify` on the results, the failures (each
//! a clear error, nothing complete-looking left, the upload aborted, the container running),
//! and reel's peak memory while exporting a 1 GiB container.
//!
//! Run with `cargo test --test export -- --test-threads=1`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kit::proc::{rss_own_kb, vm_hwm_kb};
use kit::reel::{self, run_bounded, Mount, Out, Running, TestStore, REEL_TIMEOUT};
use kit::s3::{free_port, S3Server};
use kit::{sha256_hex, BundleBuilder, Container, Oci};
use reel_testkit as kit;
use serde_json::Value;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
const SEEKABLE_MAGIC: [u8; 4] = [0xB1, 0xEA, 0x92, 0x8F];

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A counter container run by runc (namespace `runc`, pod = its id).
/// Its stdio is the container's /dev/null: CRIU cannot dump descriptors on host files.
fn counter() -> Container {
    kit::require_root();
    reel::run_counter(Oci::Runc, reel::counter_bundle("export"))
}

/// A runc container holding `mib` MiB (half text, half random), ready once filled.
fn memhog(mib: u64) -> Container {
    kit::require_root();
    let bundle = BundleBuilder::new("export-mem")
        .args(&[
            "/bin/sh",
            "-c",
            &format!("exec /bin/memhog {mib} /tmp >/dev/null 2>&1 </dev/null"),
        ])
        .build();
    let c = kit::run_oci(Oci::Runc, None, bundle);
    kit::wait_for(
        Duration::from_secs(120),
        "memhog to fill its memory",
        || c.read_file("/tmp/memhog.ready"),
    );
    c
}

/// Asserts the container still runs (its runtime says so and its init is alive).
#[track_caller]
fn assert_running(c: &Container) {
    let s = c.state().expect("container state");
    assert_eq!(s.status, "running", "container {} is {}", c.id, s.status);
    assert!(Path::new(&format!("/proc/{}", s.pid)).exists());
}

/// Runs `reel --root <store> export checkpoint ARGS` with `env`.
fn export(store: &TestStore, args: &[&str], env: &[(String, String)]) -> Out {
    let mut full = vec!["export", "checkpoint"];
    full.extend_from_slice(args);
    let mut cmd = store.cmd(&full);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(&mut cmd, REEL_TIMEOUT)
}

/// `reel --root <store> export checkpoint <c> -n runc --dest DEST MORE...`: a fresh checkpoint
/// of the runc container `c`.
fn export_fresh(store: &TestStore, c: &Container, dest: &str, more: &[&str]) -> Out {
    let mut args = vec![c.id.as_str(), "-n", "runc", "--dest", dest];
    args.extend_from_slice(more);
    export(store, &args, &[])
}

/// `reel verify checkpoint PATH` (with the sidecar beside it).
fn verify(store: &TestStore, path: &Path) -> Out {
    store.run(&["verify", "checkpoint", path.to_str().unwrap(), "-o", "json"])
}

/// Decompresses (if needed) and lists the tar members, in order.
fn members(bytes: &[u8]) -> Vec<(String, bool)> {
    let tar = plain(bytes);
    let mut ar = tar::Archive::new(tar.as_slice());
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                e.header().entry_type().is_dir(),
            )
        })
        .collect()
}

fn plain(bytes: &[u8]) -> Vec<u8> {
    if bytes.starts_with(&ZSTD_MAGIC) {
        zstd::decode_all(bytes).expect("valid zstd")
    } else {
        bytes.to_vec()
    }
}

/// The layout of the container checkpoint issue: `checkpoint/` first (a directory entry), the
/// images inside it, metadata members at the top level, the manifest last.
#[track_caller]
fn assert_layout(bytes: &[u8]) {
    let m = members(bytes);
    assert_eq!(m[0], ("checkpoint/".to_string(), true), "{m:?}");
    let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
    for top in [
        "config.dump",
        "spec.dump",
        "stats-dump",
        "dump.log",
        "rootfs-diff.tar",
        "deleted.files",
        "reel-manifest.json",
    ] {
        assert!(names.contains(&top), "no top-level {top} in {names:?}");
    }
    assert_eq!(*names.last().unwrap(), "reel-manifest.json");
    assert!(names.contains(&"checkpoint/inventory.img"), "{names:?}");
    assert!(names.contains(&"checkpoint/descriptors.json"), "{names:?}");
    for n in &names {
        assert!(!n.starts_with('/') && !n.starts_with("./"), "{n}");
        assert!(
            n.starts_with("checkpoint/") || !n.contains('/'),
            "nested top-level member {n}"
        );
    }
}

/// Files of `dir` whose name starts with a dot (temp files, staging dirs).
fn dot_files(dir: &Path) -> Vec<String> {
    reel::snapshot(dir)
        .into_keys()
        .filter(|n| n.starts_with('.'))
        .collect()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The S3 flags reel needs to reach `s`.
fn s3_args(s: &S3Server) -> Vec<String> {
    vec!["--s3-endpoint".into(), s.endpoint()]
}

/// Takes a stored checkpoint of `c` (with `reel export --keep` to a scratch dir) and returns
/// its id.
fn stored_checkpoint(store: &TestStore, c: &Container) -> String {
    let scratch = tempfile::tempdir_in(kit::test_dir()).unwrap();
    let dest = scratch.path().to_str().unwrap();
    let out = export_fresh(store, c, dest, &["--keep", "-o", "json"]);
    out.ok();
    out.json()["id"].as_str().unwrap().to_string()
}

// ---------------------------------------------------------------------------------------------
// Local exports
// ---------------------------------------------------------------------------------------------

#[test]
fn fresh_export_to_a_directory_is_a_verified_zstd_archive() {
    let c = counter();
    let store = TestStore::new();
    let dir = tempfile::tempdir_in(kit::test_dir()).unwrap();
    // A killed export's leftover in the destination is removed by the next run.
    let dead = dir.path().join(".old.tar.zst.partial-999999");
    fs::write(&dead, b"half").unwrap();
    let out = export_fresh(&store, &c, dir.path().to_str().unwrap(), &["-o", "json"]);
    out.ok();
    let j = out.json();
    let id = j["id"].as_str().unwrap();
    let path = dir.path().join(format!("{id}.tar.zst"));
    assert_eq!(j["destination"], path.to_str().unwrap());
    assert_eq!(j["compression"], "default");
    assert!(j["frozen_ms"].as_u64().is_some() && j["total_ms"].as_u64().is_some());
    let bytes = fs::read(&path).unwrap();
    assert!(bytes.starts_with(&ZSTD_MAGIC));
    assert!(bytes.ends_with(&SEEKABLE_MAGIC), "no seek table at the end");
    assert_eq!(j["archive_bytes"].as_u64().unwrap(), bytes.len() as u64);
    assert_eq!(j["sha256"].as_str().unwrap(), sha256_hex(&bytes));
    assert_eq!(mode(&path), 0o600);
    let sidecar = fs::read_to_string(dir.path().join(format!("{id}.tar.zst.sha256"))).unwrap();
    assert_eq!(sidecar, format!("{}  {id}.tar.zst\n", sha256_hex(&bytes)));
    assert_layout(&bytes);
    assert!(!dead.exists(), "the dead run's leftover is still there");
    assert!(
        dot_files(dir.path()).is_empty(),
        "{:?}",
        dot_files(dir.path())
    );
    // Not kept: nothing in the store but its (empty) directory.
    assert!(store.archives().is_empty());
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    let v = verify(&store, &path);
    v.ok();
    assert_eq!(v.json()["sidecar"], "matches");
    // Plain tools read it.
    let listing = Command::new("sh")
        .arg("-c")
        .arg(format!("zstd -dc {} | tar t", path.display()))
        .output()
        .unwrap();
    assert!(listing.status.success());
    assert!(String::from_utf8_lossy(&listing.stdout).contains("checkpoint/pages-1.img"));
    assert_running(&c);
    c.wait_counter_advances("/tmp/counter", Duration::from_secs(10));
}

#[test]
fn keep_stores_the_same_checkpoint_and_stdout_streams_it() {
    let c = counter();
    let store = TestStore::new();
    let dir = tempfile::tempdir_in(kit::test_dir()).unwrap();
    let file = dir.path().join("evidence.tar");
    let out = export_fresh(&store, &c, file.to_str().unwrap(), &["--keep"]);
    out.ok();
    assert!(out.stdout.contains("exported to"), "{out}");
    let ids = store.archives();
    assert_eq!(ids.len(), 1, "{ids:?}");
    // `.tar`: a plain tar, identical to the one kept in the store.
    let exported = fs::read(&file).unwrap();
    let kept = fs::read(store.archive(&ids[0])).unwrap();
    assert!(!exported.starts_with(&ZSTD_MAGIC));
    assert_eq!(exported, kept);
    assert_layout(&exported);
    verify(&store, &file).ok();
    store.run(&["verify", "checkpoint", &ids[0]]).ok();

    // One byte of the pages changed: verify names the member and what differs, both digests.
    let pages_at = {
        let mut a = tar::Archive::new(exported.as_slice());
        let e = a
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .find(|e| e.path_bytes().as_ref() == b"checkpoint/pages-1.img")
            .expect("a pages member");
        e.raw_file_position() as usize
    };
    let mut tampered = exported.clone();
    tampered[pages_at + 10] ^= 0xff;
    let bad = dir.path().join("tampered.tar");
    fs::write(&bad, &tampered).unwrap();
    let v = verify(&store, &bad);
    assert_eq!(v.code(), Some(1), "{v}");
    let j = v.json();
    assert_eq!(
        j["mismatched"],
        serde_json::json!(["checkpoint/pages-1.img"]),
        "{j}"
    );
    let d = &j["differences"][0];
    assert_eq!(d["expected_size"], d["actual_size"], "{d}");
    assert_ne!(d["expected_sha256"], d["actual_sha256"], "{d}");
    assert!(d["expected_blake3"].is_string(), "{d}");
    assert_ne!(d["expected_blake3"], d["actual_blake3"], "{d}");
    let table = store.run(&["verify", "checkpoint", bad.to_str().unwrap()]);
    assert!(
        table
            .stdout
            .contains("DIFFERS  checkpoint/pages-1.img (sha256 differs, blake3 differs)"),
        "{table}"
    );

    // `--dest -`: the archive on stdout, the summary on stderr.
    let mut cmd = store.cmd(&["export", "checkpoint", "--id", &ids[0], "--dest", "-"]);
    let o = cmd.stdin(std::process::Stdio::null()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.stdout.starts_with(&ZSTD_MAGIC));
    assert!(err.contains(&sha256_hex(&o.stdout)), "{err}");
    assert_eq!(plain(&o.stdout), kept);
    assert_running(&c);
}

#[test]
fn every_level_round_trips_and_none_is_a_plain_tar() {
    let c = counter();
    let store = TestStore::new();
    let id = stored_checkpoint(&store, &c);
    let stored = fs::read(store.archive(&id)).unwrap();
    let dir = tempfile::tempdir_in(kit::test_dir()).unwrap();
    let mut sizes = BTreeMap::new();
    for level in ["none", "fast", "default", "better", "best"] {
        let sub = dir.path().join(level);
        fs::create_dir(&sub).unwrap();
        let out = export(
            &store,
            &[
                "--id",
                &id,
                "--dest",
                sub.to_str().unwrap(),
                "--compress",
                level,
                "-o",
                "json",
            ],
            &[],
        );
        out.ok();
        let j = out.json();
        let suffix = if level == "none" { ".tar" } else { ".tar.zst" };
        let path = sub.join(format!("{id}{suffix}"));
        let bytes = fs::read(&path).unwrap();
        assert_eq!(j["compression"], level);
        if level == "none" {
            assert_eq!(
                bytes, stored,
                "none must give the stored tar, byte for byte"
            );
            assert_eq!(j["zstd_frames"], 0);
        } else {
            assert!(bytes.starts_with(&ZSTD_MAGIC));
            assert_eq!(plain(&bytes), stored, "level {level} does not round-trip");
            assert!(j["zstd_frames"].as_u64().unwrap() >= members(&bytes).len() as u64);
        }
        assert_layout(&bytes);
        verify(&store, &path).ok();
        sizes.insert(level, bytes.len());
    }
    assert!(sizes["fast"] < sizes["none"]);
    assert!(sizes["best"] <= sizes["fast"], "{sizes:?}");
    // A name that says which: `.tar.zst` with the default level.
    let named = dir.path().join("named.tar.zst");
    export(
        &store,
        &["--id", &id, "--dest", named.to_str().unwrap()],
        &[],
    )
    .ok();
    assert_eq!(plain(&fs::read(&named).unwrap()), stored);
}

// ---------------------------------------------------------------------------------------------
// S3
// ---------------------------------------------------------------------------------------------

#[test]
fn s3_multipart_export_is_byte_identical_to_the_file_and_verifies() {
    let s3 = S3Server::start();
    // ~64 MiB of memory, half random: a compressed archive of several 8 MiB parts.
    let c = memhog(96);
    let store = TestStore::new();
    let id = stored_checkpoint(&store, &c);
    let dir = tempfile::tempdir_in(kit::test_dir()).unwrap();
    let file = dir.path().join("x.tar.zst");
    let f = export(
        &store,
        &["--id", &id, "--dest", file.to_str().unwrap(), "-o", "json"],
        &[],
    );
    f.ok();
    let dest = format!("s3://{}/cases/", s3.bucket());
    let mut args = vec!["--id", &id, "--dest", &dest, "-o", "json"];
    let extra = s3_args(&s3);
    args.extend(extra.iter().map(String::as_str));
    let out = export(&store, &args, &s3.reel_env());
    out.ok();
    let key = format!("cases/{id}.tar.zst");
    assert_eq!(
        out.json()["destination"],
        format!("s3://{}/{key}", s3.bucket())
    );
    let object = s3.get(&key).expect("the object");
    let local = fs::read(&file).unwrap();
    assert_eq!(object.len(), local.len());
    assert!(object == local, "the S3 object and the file differ");
    let etag = s3.etag(&key);
    let parts: u32 = etag
        .rsplit_once('-')
        .map(|(_, n)| n.parse().unwrap())
        .unwrap_or(1);
    assert!(
        parts >= 3,
        "only {parts} part(s) (etag {etag}), {} bytes",
        object.len()
    );
    // The sidecar object, then `reel verify` on the downloaded pair.
    let sidecar = s3
        .get(&format!("{key}.sha256"))
        .expect("the sidecar object");
    let dl = dir.path().join("dl");
    fs::create_dir(&dl).unwrap();
    let dl_file = dl.join(format!("{id}.tar.zst"));
    fs::write(&dl_file, &object).unwrap();
    fs::write(dl.join(format!("{id}.tar.zst.sha256")), &sidecar).unwrap();
    let v = verify(&store, &dl_file);
    v.ok();
    assert_eq!(v.json()["sidecar"], "matches");
    verify(&store, &file).ok();
    assert!(s3.uploads().is_empty());

    // A fresh export straight to S3, to an exact key, with SSE.
    let key2 = "direct/evidence.tar.zst";
    let dest2 = format!("s3://{}/{key2}", s3.bucket());
    let mut args = vec![
        c.id.as_str(),
        "-n",
        "runc",
        "--dest",
        &dest2,
        "--s3-sse",
        "AES256",
    ];
    args.extend(extra.iter().map(String::as_str));
    export(&store, &args, &s3.reel_env()).ok();
    let fresh = s3.get(key2).expect("fresh object");
    assert_layout(&fresh);
    assert!(s3.get(&format!("{key2}.sha256")).is_some());
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    assert_running(&c);
}

#[test]
fn s3_failures_are_clear_and_leave_nothing() {
    let s3 = S3Server::start();
    let c = counter();
    let store = TestStore::new();
    let extra = s3_args(&s3);
    let dest = format!("s3://{}/f/", s3.bucket());
    let run = |dest: &str, env: Vec<(String, String)>, more: &[&str]| {
        let mut args = vec![c.id.as_str(), "-n", "runc", "--dest", dest];
        args.extend(more);
        args.extend(extra.iter().map(String::as_str));
        export(&store, &args, &env)
    };

    // Wrong credentials: the secret, then the key id.
    let mut env = s3.reel_env();
    for (k, v) in env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = "not-the-secret".into();
        }
    }
    let out = run(&dest, env, &[]);
    out.code_is(1).stderr_has(&["HeadBucket", "access denied"]);
    let mut env = s3.reel_env();
    for (k, v) in env.iter_mut() {
        if k == "AWS_ACCESS_KEY_ID" {
            *v = "AKIANOTAKEY000000000".into();
        }
    }
    run(&dest, env, &[])
        .code_is(1)
        .stderr_has(&["access denied"]);

    // A bucket that does not exist.
    run("s3://no-such-bucket-here/x/", s3.reel_env(), &[])
        .code_is(1)
        .stderr_has(&["does not exist"]);

    // An endpoint that refuses connections.
    let mut args = vec![c.id.as_str(), "-n", "runc", "--dest", &dest];
    let refused = format!("http://127.0.0.1:{}", free_port());
    args.extend(["--s3-endpoint", refused.as_str()]);
    let mut env = s3.reel_env();
    env.push(("REEL_S3_MAX_ATTEMPTS".into(), "2".into()));
    export(&store, &args, &env)
        .code_is(1)
        .stderr_has(&["cannot reach the endpoint"]);

    // Nothing was frozen for any of them: they fail before the dump, and leave nothing.
    assert!(s3.keys().is_empty(), "{:?}", s3.keys());
    assert!(s3.uploads().is_empty(), "{:?}", s3.uploads());
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    assert_running(&c);
}

#[test]
fn s3_over_tls_trusts_the_private_ca_given_with_s3_ca() {
    let s3 = S3Server::start_tls();
    let ca = s3.ca().expect("the TLS server's CA");
    assert!(s3.endpoint().starts_with("https://"), "{}", s3.endpoint());
    let c = counter();
    let store = TestStore::new();
    let dest = format!("s3://{}/tls/", s3.bucket());
    let endpoint = s3.endpoint();
    let base = [
        c.id.as_str(),
        "-n",
        "runc",
        "--dest",
        dest.as_str(),
        "--s3-endpoint",
        endpoint.as_str(),
        "-o",
        "json",
    ];

    // The system's roots do not know the private CA: a clear error before any freeze.
    let mut env = s3.reel_env();
    env.push(("REEL_S3_MAX_ATTEMPTS".into(), "1".into()));
    let out = export(&store, &base, &env);
    out.code_is(1).stderr_has(&["--s3-ca"]);
    assert!(s3.keys().is_empty(), "{:?}", s3.keys());

    // A file that is not a certificate bundle is refused as such.
    let not_pem = s3.dir.path().join("not-a-ca.pem");
    fs::write(&not_pem, b"hello").unwrap();
    let mut args = base.to_vec();
    args.extend(["--s3-ca", not_pem.to_str().unwrap()]);
    export(&store, &args, &env)
        .code_is(2)
        .stderr_has(&["--s3-ca", "certificate"]);

    // With --s3-ca, the export goes through and the object is the archive reel reports.
    let mut args = base.to_vec();
    args.extend(["--s3-ca", ca.as_str()]);
    let out = export(&store, &args, &s3.reel_env());
    out.ok();
    let j = out.json();
    let key = j["destination"]
        .as_str()
        .unwrap()
        .strip_prefix(&format!("s3://{}/", s3.bucket()))
        .expect("an s3:// destination")
        .to_string();
    let bytes = s3.get(&key).expect("the exported object");
    assert_eq!(sha256_hex(&bytes), j["sha256"].as_str().unwrap());
    assert_layout(&bytes);

    // Server-side encryption is asked for on the upload (and its .sha256): AES256, then
    // aws:kms with a key id.
    for (sse, kms_key) in [("AES256", None), ("aws:kms", Some("alias/reel-evidence"))] {
        let dest = format!("s3://{}/tls-sse/", s3.bucket());
        let mut args = base.to_vec();
        args[4] = dest.as_str();
        args.extend(["--s3-ca", ca.as_str(), "--s3-sse", sse]);
        if let Some(k) = kms_key {
            args.extend(["--s3-sse-kms-key-id", k]);
        }
        let out = export(&store, &args, &s3.reel_env());
        out.ok();
        let key = out.json()["destination"]
            .as_str()
            .unwrap()
            .strip_prefix(&format!("s3://{}/", s3.bucket()))
            .unwrap()
            .to_string();
        for k in [key.clone(), format!("{key}.sha256")] {
            let head = s3.py(
                "h = s3.head_object(Bucket=B, Key=sys.argv[1])\nprint(json.dumps([h.get('ServerSideEncryption'), h.get('SSEKMSKeyId')]))",
                &[&k],
            );
            let (got, got_key): (Option<String>, Option<String>) =
                serde_json::from_str(head.trim()).unwrap();
            assert_eq!(got.as_deref(), Some(sse), "{k}: {head}");
            if let Some(want) = kms_key {
                assert!(got_key.unwrap_or_default().contains(want), "{k}: {head}");
            }
        }
    }
    assert!(s3.uploads().is_empty(), "{:?}", s3.uploads());
    assert_running(&c);
}

/// Starts a fresh export of a 256 MiB container to S3 and returns once parts are flowing.
fn start_big_upload(store: &TestStore, s3: &S3Server, c: &Container, key: &str) -> Running {
    let dest = format!("s3://{}/{key}", s3.bucket());
    let mut cmd = store.cmd(&[
        "export",
        "checkpoint",
        &c.id,
        "-n",
        "runc",
        "--dest",
        &dest,
        "--compress",
        "fast",
        "--s3-endpoint",
        &s3.endpoint(),
    ]);
    for (k, v) in s3.reel_env() {
        cmd.env(k, v);
    }
    cmd.env("REEL_S3_MAX_ATTEMPTS", "2").env("RUST_LOG", "info");
    cmd.stdin(std::process::Stdio::null());
    let mut run = Running::spawn(&mut cmd);
    kit::wait_for(
        Duration::from_secs(120),
        "the multipart upload to start",
        || {
            assert!(!run.finished(), "reel ended early: {}", run.stderr_so_far());
            run.stderr_so_far()
                .contains("multipart upload started")
                .then_some(())
        },
    );
    // Let a part or two through.
    std::thread::sleep(Duration::from_millis(300));
    run
}

#[test]
fn interrupted_and_server_killed_uploads_leave_no_object() {
    let s3 = S3Server::start();
    let c = memhog(256);
    let store = TestStore::new();

    // SIGINT in the middle of the upload: reel aborts the multipart upload and says so.
    let run = start_big_upload(&store, &s3, &c, "int/x.tar.zst");
    run.signal(libc::SIGINT);
    let out = run.wait(REEL_TIMEOUT);
    assert_ne!(out.code(), Some(0), "{out}");
    out.stderr_has(&["interrupted"]);
    assert!(out.stderr.contains("multipart upload aborted"), "{out}");
    assert!(s3.uploads().is_empty(), "upload left: {:?}", s3.uploads());
    assert!(s3.get("int/x.tar.zst").is_none());
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    assert_running(&c);

    // The server killed in the middle: a clear error naming what could not be cleaned up;
    // no object exists (the server's state is gone with it).
    let run = start_big_upload(&store, &s3, &c, "kill/x.tar.zst");
    s3.kill();
    let out = run.wait(REEL_TIMEOUT);
    out.code_is(1)
        .stderr_has(&["UploadPart", "cannot reach the endpoint"]);
    assert!(out.stderr.contains("abort-multipart-upload"), "{out}");
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    s3.run_script("start", &[]);
    assert!(s3.get("kill/x.tar.zst").is_none());
    assert_running(&c);
}

// ---------------------------------------------------------------------------------------------
// Local failures and usage errors
// ---------------------------------------------------------------------------------------------

#[test]
fn local_failures_are_clear_and_leave_nothing() {
    let c = counter();
    let store = TestStore::new();

    // A full disk: a 64 KiB tmpfs (the plain archive is ~160 KiB).
    let small = Mount::tmpfs(&store.base().join("small"), "size=64k,mode=0755");
    let small_dest = small.path.to_str().unwrap();
    let out = export_fresh(&store, &c, small_dest, &["--compress", "none"]);
    out.code_is(1).stderr_has(&["no space left"]);
    assert!(
        reel::snapshot(&small.path).is_empty(),
        "{:?}",
        reel::snapshot(&small.path)
    );
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    assert_running(&c);

    // A directory that does not exist.
    let missing = store.base().join("no/such/dir/x.tar.zst");
    export_fresh(&store, &c, missing.to_str().unwrap(), &[])
        .code_is(1)
        .stderr_has(&["does not exist"]);
    let missing_dir = format!("{}/", store.base().join("nodir").display());
    export_fresh(&store, &c, &missing_dir, &[])
        .code_is(1)
        .stderr_has(&["does not exist"]);

    // Usage errors: exit 2, before anything is frozen.
    let dir = tempfile::tempdir_in(kit::test_dir()).unwrap();
    let d = dir.path().to_str().unwrap();
    export_fresh(&store, &c, d, &["--compress", "huge"])
        .code_is(2)
        .stderr_has(&["unknown --compress", "huge"]);
    let tar = dir.path().join("x.tar");
    export_fresh(&store, &c, tar.to_str().unwrap(), &["--compress", "best"])
        .code_is(2)
        .stderr_has(&["plain tar", "best"]);
    let zst = dir.path().join("x.tar.zst");
    export_fresh(&store, &c, zst.to_str().unwrap(), &["--compress", "none"]).code_is(2);
    export(&store, &["--dest", d], &[]).code_is(2);
    // An existing file is never replaced.
    fs::write(&zst, b"keep me").unwrap();
    export_fresh(&store, &c, zst.to_str().unwrap(), &[])
        .code_is(1)
        .stderr_has(&["exists already"]);
    assert_eq!(fs::read(&zst).unwrap(), b"keep me");
    assert!(reel::snapshot(dir.path())
        .keys()
        .all(|n| !n.starts_with('.')));
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    assert_running(&c);
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

#[test]
fn exporting_a_1gib_container_keeps_reel_under_64mib() {
    let c = memhog(1024);
    let store = TestStore::new();
    let dir = tempfile::tempdir_in(kit::test_dir()).unwrap();
    let mut cmd = store.cmd(&[
        "export",
        "checkpoint",
        &c.id,
        "-n",
        "runc",
        "--dest",
        dir.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    cmd.stdin(std::process::Stdio::null());
    let started = Instant::now();
    let mut run = Running::spawn(&mut cmd);
    let pid = run.pid();
    // What reel allocates (sampled RssAnon + RssShmem) is what must stay small; VmHWM also
    // counts the resident code of the binary under test, ~20 MiB more for a debug build than
    // for the release build (whose VmHWM on this export is ~49 MiB).
    let (mut peak, mut hwm) = (0, 0);
    while !run.finished() {
        if let Some(kb) = rss_own_kb(pid) {
            peak = peak.max(kb);
        }
        if let Some(kb) = vm_hwm_kb(pid) {
            hwm = hwm.max(kb);
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(started.elapsed() < REEL_TIMEOUT);
    }
    let out = run.wait(REEL_TIMEOUT);
    out.ok();
    let j: Value = out.json();
    let tar_bytes = j["tar_bytes"].as_u64().unwrap();
    assert!(tar_bytes > 1 << 30, "the archive holds {tar_bytes} bytes");
    eprintln!(
        "1 GiB export: reel allocated at most {} MiB (VmHWM {} MiB), archive {} MiB, total {} ms, frozen {} ms",
        peak / 1024,
        hwm / 1024,
        j["archive_bytes"].as_u64().unwrap() >> 20,
        j["total_ms"],
        j["frozen_ms"]
    );
    assert!(peak > 0 && hwm > 0, "reel's memory was never read");
    assert!(
        peak < 64 * 1024,
        "reel allocated {} MiB at its peak",
        peak / 1024
    );
    let path = PathBuf::from(j["destination"].as_str().unwrap());
    let mut f = fs::File::open(&path).unwrap();
    let mut head = [0u8; 4];
    f.read_exact(&mut head).unwrap();
    assert_eq!(head, ZSTD_MAGIC);
    assert!(store.leftovers().is_empty(), "{:?}", store.leftovers());
    assert_running(&c);
}

// ---------------------------------------------------------------------------------------------
// Credential sources
// ---------------------------------------------------------------------------------------------

/// The STAND-IN credential services (`tests/standins/aws-creds.py`: STS web identity, the
/// ECS/EKS container endpoint, IMDSv2, the SSO portal, answering as AWS documents them), handing
/// out the real S3 server's temporary credentials of an assumed role (with a session token).
struct CredsStandIn {
    dir: tempfile::TempDir,
    child: std::process::Child,
    url: String,
}

impl CredsStandIn {
    fn start(s3: &S3Server) -> CredsStandIn {
        let dir = tempfile::Builder::new()
            .prefix("reel-aws-creds.")
            .tempdir_in(kit::test_dir())
            .unwrap();
        let temp = |k: &str| {
            s3.env.get(k).cloned().unwrap_or_else(|| {
                panic!("the S3 server's env file has no {k}: restart it (scripts/s3-server.sh stop; start)")
            })
        };
        let cfg = serde_json::json!({
            "access_key_id": temp("REEL_S3_TEMP_ACCESS_KEY_ID"),
            "secret_access_key": temp("REEL_S3_TEMP_SECRET_ACCESS_KEY"),
            "session_token": temp("REEL_S3_TEMP_SESSION_TOKEN"),
            "web_identity_token": "web-identity-jwt",
            "container_token": "eks-pod-identity-token",
            "sso_token": "sso-access-token",
            "role": "reel-role",
        });
        let d = dir.path();
        fs::write(d.join("config.json"), cfg.to_string()).unwrap();
        let child = Command::new("python3")
            .arg(kit::repo_root().join("tests/standins/aws-creds.py"))
            .arg(d.join("config.json"))
            .arg(d.join("requests.log"))
            .arg(d.join("port"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(fs::File::create(d.join("server.log")).unwrap())
            .spawn()
            .expect("python3");
        let port: u16 = kit::wait_for(Duration::from_secs(20), "the stand-in's port", || {
            fs::read_to_string(d.join("port")).ok()?.trim().parse().ok()
        });
        CredsStandIn {
            dir,
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The requests it received (method, path, headers, body), oldest first.
    fn requests(&self) -> Vec<Value> {
        fs::read_to_string(self.dir.path().join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for CredsStandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn s3_credentials_come_from_every_source_a_node_has() {
    let s3 = S3Server::start();
    let standin = CredsStandIn::start(&s3);
    let c = counter();
    let store = TestStore::new();
    let id = stored_checkpoint(&store, &c);
    let home = tempfile::tempdir_in(kit::test_dir()).unwrap();
    let h = home.path();
    fs::create_dir_all(h.join(".aws/sso/cache")).unwrap();
    let (key, secret) = (
        &s3.env["AWS_ACCESS_KEY_ID"],
        &s3.env["AWS_SECRET_ACCESS_KEY"],
    );
    // Every source is tried alone: no key in the environment, a HOME of the test's own.
    let run = |name: &str, vars: &[(&str, String)]| -> Out {
        let dest = format!("s3://{}/creds/{name}/", s3.bucket());
        let mut cmd = store.cmd(&[
            "export",
            "checkpoint",
            "--id",
            &id,
            "--dest",
            &dest,
            "--s3-endpoint",
            &s3.endpoint(),
            "-o",
            "json",
        ]);
        for k in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_ROLE_ARN",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_S3",
        ] {
            cmd.env_remove(k);
        }
        cmd.env("HOME", h)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        run_bounded(&mut cmd, REEL_TIMEOUT)
    };
    let landed = |out: &Out, name: &str| {
        out.ok();
        let dest = out.json()["destination"].as_str().unwrap().to_string();
        assert!(dest.contains(&format!("/creds/{name}/")), "{dest}");
        let key = dest
            .strip_prefix(&format!("s3://{}/", s3.bucket()))
            .unwrap();
        assert!(s3.get(key).is_some(), "{name}: no object {key}");
    };

    // Nothing configured: a clear error naming the sources, before anything is written.
    run("none", &[])
        .code_is(1)
        .stderr_has(&["no AWS credentials found", "AWS_PROFILE"]);
    // A profile that is named but does not exist.
    run("missing", &[("AWS_PROFILE", "nosuch".into())])
        .code_is(1)
        .stderr_has(&["nosuch", "not found"]);

    // The shared credentials file, profile from AWS_PROFILE.
    let creds_file = h.join("credentials");
    fs::write(
        &creds_file,
        format!("[default]\naws_access_key_id = AKIAWRONG\naws_secret_access_key = wrong\n\n[evidence]\naws_access_key_id = {key}\naws_secret_access_key = {secret}\n"),
    )
    .unwrap();
    let out = run(
        "profile",
        &[
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                creds_file.display().to_string(),
            ),
            ("AWS_PROFILE", "evidence".into()),
        ],
    );
    landed(&out, "profile");

    // A role assumed at (the real server's) STS with the keys of its source_profile, a user
    // that may not use S3 itself: the upload works only with the role's credentials.
    fs::write(
        h.join(".aws/config"),
        format!(
            "[profile responder]\nrole_arn = {}\nsource_profile = assumer\nrole_session_name = ir-42\n\n[profile assumer]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            s3.env["REEL_S3_ROLE_ARN"],
            s3.env["REEL_S3_ASSUMER_ACCESS_KEY_ID"],
            s3.env["REEL_S3_ASSUMER_SECRET_ACCESS_KEY"],
        ),
    )
    .unwrap();
    run("assumer", &[("AWS_PROFILE", "assumer".into())])
        .code_is(1)
        .stderr_has(&["access denied"]);
    let out = run(
        "role",
        &[
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                creds_file.display().to_string(),
            ),
            ("AWS_PROFILE", "responder".into()),
            ("AWS_ENDPOINT_URL_STS", s3.endpoint()),
        ],
    );
    landed(&out, "role");

    // ~/.aws/config: credential_process in the default profile (temporary credentials with a
    // session token, as the process protocol gives them).
    let t = |k: &str| s3.env[k].clone();
    fs::write(
        h.join(".aws/config"),
        format!(
            "[default]\nregion = us-east-1\ncredential_process = printf '{{\"Version\":1,\"AccessKeyId\":\"{}\",\"SecretAccessKey\":\"{}\",\"SessionToken\":\"{}\"}}'\n\n[profile sso]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = Responder\n\n[sso-session corp]\nsso_region = us-east-1\nsso_start_url = https://corp.awsapps.com/start\n",
            t("REEL_S3_TEMP_ACCESS_KEY_ID"),
            t("REEL_S3_TEMP_SECRET_ACCESS_KEY"),
            t("REEL_S3_TEMP_SESSION_TOKEN")
        ),
    )
    .unwrap();
    landed(&run("process", &[]), "process");

    // SSO: the token `aws sso login` cached (named by the SHA-1 of the session name).
    let sha1 = Command::new("sh")
        .arg("-c")
        .arg("printf corp | sha1sum | cut -d' ' -f1")
        .output()
        .unwrap();
    let name = String::from_utf8(sha1.stdout).unwrap().trim().to_string();
    fs::write(
        h.join(format!(".aws/sso/cache/{name}.json")),
        r#"{"accessToken":"sso-access-token","expiresAt":"2099-01-01T00:00:00Z","region":"us-east-1","startUrl":"https://corp.awsapps.com/start"}"#,
    )
    .unwrap();
    let out = run(
        "sso",
        &[
            ("AWS_PROFILE", "sso".into()),
            ("AWS_ENDPOINT_URL_SSO", standin.url.clone()),
        ],
    );
    landed(&out, "sso");
    fs::remove_file(h.join(".aws/config")).unwrap();

    // Web identity (IRSA): the projected token exchanged at STS.
    let token = h.join("token");
    fs::write(&token, "web-identity-jwt\n").unwrap();
    let out = run(
        "irsa",
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            ("AWS_ROLE_ARN", t("REEL_S3_ROLE_ARN")),
            ("AWS_ENDPOINT_URL_STS", standin.url.clone()),
        ],
    );
    landed(&out, "irsa");
    // A token STS refuses: its answer, not a guess.
    fs::write(&token, "stolen").unwrap();
    run(
        "irsa-bad",
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
            ("AWS_ROLE_ARN", t("REEL_S3_ROLE_ARN")),
            ("AWS_ENDPOINT_URL_STS", standin.url.clone()),
        ],
    )
    .code_is(1)
    .stderr_has(&["InvalidIdentityToken"]);

    // EKS Pod Identity: the full URI and the token file.
    let pod_token = h.join("eks-token");
    fs::write(&pod_token, "eks-pod-identity-token").unwrap();
    let out = run(
        "eks",
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("{}/container-credentials", standin.url),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                pod_token.display().to_string(),
            ),
        ],
    );
    landed(&out, "eks");

    // IMDSv2: session token first, then the role's credentials.
    let out = run(
        "imds",
        &[
            ("AWS_EC2_METADATA_DISABLED", "false".into()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", standin.url.clone()),
        ],
    );
    landed(&out, "imds");
    // No secret reaches reel's output, even with debug logging.
    let out = run(
        "imds-log",
        &[
            ("AWS_EC2_METADATA_DISABLED", "false".into()),
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", standin.url.clone()),
            ("RUST_LOG", "debug".into()),
        ],
    );
    landed(&out, "imds-log");
    let secret_temp = t("REEL_S3_TEMP_SECRET_ACCESS_KEY");
    let token_temp = t("REEL_S3_TEMP_SESSION_TOKEN");
    assert!(
        !out.stderr.contains(&secret_temp) && !out.stderr.contains(&token_temp),
        "a secret in reel's log"
    );

    // What the services saw: each asked as AWS expects.
    let reqs = standin.requests();
    let sts: Vec<&Value> = reqs.iter().filter(|r| r["method"] == "POST").collect();
    assert!(
        sts[0]["body"]
            .as_str()
            .unwrap()
            .contains("Action=AssumeRoleWithWebIdentity"),
        "{sts:?}"
    );
    assert!(reqs.iter().any(|r| r["path"] == "/container-credentials"
        && r["headers"]["authorization"] == "eks-pod-identity-token"));
    assert!(reqs.iter().any(|r| r["method"] == "PUT"
        && r["path"] == "/latest/api/token"
        && r["headers"]["x-aws-ec2-metadata-token-ttl-seconds"].is_string()));
    assert!(reqs
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"].as_str().unwrap().starts_with("/latest/"))
        .all(|r| r["headers"]["x-aws-ec2-metadata-token"].is_string()));
    assert!(reqs.iter().any(|r| r["path"]
        .as_str()
        .unwrap()
        .starts_with("/federation/credentials?")
        && r["headers"]["x-amz-sso_bearer_token"] == "sso-access-token"));
    assert!(s3.uploads().is_empty(), "{:?}", s3.uploads());
}
