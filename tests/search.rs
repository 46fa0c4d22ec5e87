//! `reel search checkpoint` and `reel inspect checkpoint --maps` (issue #13) on real
//! checkpoints of a workload that placed known markers in its memory
//! (tests/programs/markers.c) and wrote where: every marker is found at its address, in the
//! right region, through the store's `.tar` and the `.tar.zst` export; filters include and
//! exclude; the RWX region and the patched code are findings, an ordinary process has none.

use std::collections::BTreeMap;
use std::fs;
use std::process::Output;
use std::time::{Duration, Instant};

use kit::restore::{self, Reel};
use kit::{BundleBuilder, Oci};
use reel_testkit as kit;
use serde_json::Value;

const SECRET: &str = "REEL-SECRET-5f1d9c3e";
const STACK_HEX: &str = "c0 ff ee 11 22 33 44 55 66 77 88 99 aa bb cc dd";
const STRADDLE: &str = "STRADDLE-MARKER-0042";
const RWX: &str = "RWX-PAYLOAD-9e8d";
const SHARED: &str = "SHARED-MARKER-7c2a";
const MEMFD: &str = "MEMFD-MARKER-3b9e";
const SYSV: &str = "SYSV-MARKER-5d1e";

fn search(reel: &Reel, cp: &str, pattern: &str, extra: &[&str]) -> (Output, f64) {
    let mut args = vec!["search", "checkpoint", cp, pattern];
    args.extend(extra);
    let t = Instant::now();
    let out = reel.run(&args);
    (out, t.elapsed().as_secs_f64())
}

/// The hits of a search that must find something.
fn hits(reel: &Reel, cp: &str, pattern: &str, extra: &[&str]) -> Vec<Value> {
    let mut e = vec!["-o", "json"];
    e.extend(extra);
    let (out, secs) = search(reel, cp, pattern, &e);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "search {pattern:?} {extra:?}: {err}"
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "search {pattern:?} {extra:?}: {} hits, {} bytes scanned in {secs:.3}s",
        v["count"], v["bytes_scanned"]
    );
    v["hits"].as_array().unwrap().clone()
}

fn addr(h: &Value) -> u64 {
    u64::from_str_radix(h["address"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn none(reel: &Reel, cp: &str, pattern: &str, extra: &[&str]) {
    let (out, _) = search(reel, cp, pattern, extra);
    assert_eq!(
        out.status.code(),
        Some(3),
        "search {pattern:?} {extra:?} should find nothing: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every marker, at its address, in its region.
fn assert_markers(reel: &Reel, cp: &str, m: &BTreeMap<String, u64>) {
    let pid = m["pid"];
    let one = |hs: Vec<Value>, what: &str| -> Value {
        assert_eq!(hs.len(), 1, "{what}: {hs:#?}");
        let h = hs.into_iter().next().unwrap();
        assert_eq!(h["pid"], pid, "{what}: {h}");
        assert_eq!(h["comm"], "markers", "{what}: {h}");
        h
    };
    let h = one(hits(reel, cp, SECRET, &[]), "heap secret");
    assert_eq!(addr(&h), m["heap"]);
    assert_eq!(h["path"], "[heap]", "{h}");
    assert!(h["context_hex"]
        .as_str()
        .unwrap()
        .contains(&hex(SECRET.as_bytes())));

    let h = one(hits(reel, cp, SECRET, &["--utf16"]), "utf16 secret");
    assert_eq!(addr(&h), m["utf16"]);
    assert_eq!(h["path"], "", "{h}");
    assert_eq!(h["perms"], "rw-p", "{h}");

    let h = one(hits(reel, cp, STACK_HEX, &["--hex"]), "stack pattern");
    assert_eq!(addr(&h), m["stack"]);
    // The thread's stack is no [stack]: it is found as the VMA holding its sp.
    let h2 = one(
        hits(reel, cp, STACK_HEX, &["--hex", "--region", "stack"]),
        "stack pattern in stack",
    );
    assert_eq!(h, h2);

    let h = one(hits(reel, cp, STRADDLE, &[]), "straddling marker");
    assert_eq!(addr(&h), m["straddle"]);
    assert_eq!(m["straddle"] % 4096, 4096 - 8);

    let h = one(hits(reel, cp, RWX, &[]), "rwx payload");
    assert_eq!(addr(&h), m["rwx"] + 64);
    assert_eq!(h["perms"], "rwxp", "{h}");
    assert_eq!(h["offset"], 64, "{h}");

    // A regex and a case-insensitive literal find the same.
    let h = one(
        hits(reel, cp, "REEL-SECRET-[0-9a-f]{8}", &["--regex"]),
        "regex",
    );
    assert_eq!(addr(&h), m["heap"]);
    let h = one(
        hits(reel, cp, "reel-secret-5F1D9C3E", &["--ignore-case"]),
        "ignore case",
    );
    assert_eq!(addr(&h), m["heap"]);

    // Shared memory: its pages are in CRIU's shared-memory images, reached through the VMA.
    let h = one(
        hits(reel, cp, SHARED, &[]),
        "MAP_SHARED|MAP_ANONYMOUS marker",
    );
    assert_eq!(addr(&h), m["shared"]);
    assert_eq!(h["perms"], "rw-s", "{h}");
    assert_eq!(h["offset"], 4096 + 100, "{h}");
    let h2 = one(
        hits(reel, cp, SHARED, &["--region", "shared"]),
        "shared region",
    );
    assert_eq!(h, h2);
    none(reel, cp, SHARED, &["--region", "heap"]);
    let h = one(hits(reel, cp, MEMFD, &[]), "memfd marker");
    assert_eq!(addr(&h), m["memfd"]);
    assert_eq!(h["perms"], "rw-s", "{h}");
    assert_eq!(h["path"], "memfd:markers-memfd", "{h}");
    // System V shared memory: its pages are kept with the IPC namespace's segments.
    let h = one(hits(reel, cp, SYSV, &["--region", "shared"]), "SysV marker");
    assert_eq!(addr(&h), m["sysv"]);
    assert_eq!(h["perms"], "rw-s", "{h}");
    assert_eq!(h["offset"], 4096 + 500, "{h}");
    // IPC_PRIVATE: key 0, named as /proc/PID/maps names it.
    assert_eq!(h["path"], "/SYSV00000000", "{h}");

    // --strings: the secret on the heap and the shared marker, at their addresses.
    let pid_s = pid.to_string();
    let v = strings(reel, cp, &["--pid", &pid_s, "--min-len", "12"]);
    let list = v["strings"].as_array().unwrap();
    let at = |a: u64| list.iter().find(|s| addr(s) == a);
    let s = at(m["heap"]).unwrap_or_else(|| panic!("no string at the secret: {v}"));
    assert_eq!(s["string"], SECRET, "{s}");
    assert_eq!(s["len"], SECRET.len(), "{s}");
    assert_eq!(s["path"], "[heap]", "{s}");
    let s = at(m["shared"]).unwrap_or_else(|| panic!("no string at the shared marker: {v}"));
    assert_eq!(s["string"], SHARED, "{s}");
    assert!(list
        .iter()
        .all(|s| s["len"].as_u64().unwrap() >= 12 && s["pid"] == pid));
    // The straddling marker is one string across the page boundary.
    let s = at(m["straddle"]).unwrap_or_else(|| panic!("no string at the straddle: {v}"));
    assert_eq!(s["string"], STRADDLE, "{s}");
}

/// The JSON of a `--strings` listing that must find something.
fn strings(reel: &Reel, cp: &str, extra: &[&str]) -> Value {
    let mut args = vec!["search", "checkpoint", cp, "--strings", "-o", "json"];
    args.extend(extra);
    let t = Instant::now();
    let out = reel.run(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "--strings {extra:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!(
        "--strings {extra:?}: {} strings, {} bytes scanned in {:.3}s",
        v["count"],
        v["bytes_scanned"],
        t.elapsed().as_secs_f64()
    );
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn search_finds_every_marker_and_inspect_flags_injected_code() {
    kit::require_root();
    let t0 = Instant::now();
    let w = kit::programs::run_markers("srch");
    let (m, ns) = (w.addresses.clone(), w.ns.clone());
    eprintln!("markers: {m:x?}");
    let reel = Reel::new("srch");
    let created = reel.create_ok(&ns, &w.pod, None, &[]);
    let id = created["id"].as_str().unwrap().to_string();
    let stored = std::path::PathBuf::from(created["path"].as_str().unwrap());
    drop(w);
    let pid = m["pid"].to_string();

    assert_markers(&reel, &id, &m);

    // The manifest records the page size the pagemaps count in.
    let manifest: Value = {
        let mut a = tar::Archive::new(fs::File::open(&stored).unwrap());
        let mut e = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| e.path().unwrap().to_str() == Some("reel-manifest.json"))
            .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut e, &mut text).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(manifest["page_size"], 4096, "{manifest}");

    // Filters.
    none(&reel, &id, SECRET, &["--region", "stack"]);
    none(&reel, &id, SECRET, &["--region", "file"]);
    assert_eq!(hits(&reel, &id, SECRET, &["--region", "heap"]).len(), 1);
    assert_eq!(
        hits(&reel, &id, SECRET, &["--region", "anon", "--perms", "rw"]).len(),
        1
    );
    none(&reel, &id, SECRET, &["--perms", "r-x"]);
    assert_eq!(hits(&reel, &id, RWX, &["--perms", "rwx"]).len(), 1);
    assert_eq!(hits(&reel, &id, RWX, &["--region", "exec"]).len(), 1);
    let h = m["heap"];
    let range = format!("{:#x}-{:#x}", h, h + 1);
    assert_eq!(hits(&reel, &id, SECRET, &["--address", &range]).len(), 1);
    let range = format!("{:#x}-{:#x}", h + 1, h + 4096);
    none(&reel, &id, SECRET, &["--address", &range]);
    assert_eq!(hits(&reel, &id, SECRET, &["--pid", &pid]).len(), 1);
    // --count and --max-hits: the 'R' of the four markers that start with it, and more.
    let (out, _) = search(&reel, &id, "R", &["--count", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["count"].as_u64().unwrap() >= 3, "{v}");
    assert!(v["hits"].as_array().unwrap().is_empty());
    let v = hits(&reel, &id, "R", &["--max-hits", "2"]);
    assert_eq!(v.len(), 2);

    // --strings: filters and bounds as search's.
    let v = strings(&reel, &id, &["--region", "shared", "--min-len", "8"]);
    let list = v["strings"].as_array().unwrap();
    assert!(!list.is_empty());
    assert!(
        list.iter()
            .all(|s| s["perms"].as_str().unwrap().ends_with('s')),
        "{v}"
    );
    let v = strings(
        &reel,
        &id,
        &[
            "--address",
            &format!("{:#x}-{:#x}", m["heap"], m["heap"] + 1),
        ],
    );
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["strings"][0]["string"], SECRET);
    let v = strings(&reel, &id, &["--max-hits", "3"]);
    assert_eq!(v["strings"].as_array().unwrap().len(), 3);
    assert_eq!(v["truncated"], true);
    let v = strings(&reel, &id, &["--count"]);
    assert!(v["count"].as_u64().unwrap() > 3, "{v}");
    assert!(v["strings"].as_array().unwrap().is_empty());
    let out = reel.run(&[
        "search",
        "checkpoint",
        &id,
        "--strings",
        "--pid",
        &pid,
        "--min-len",
        "18",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(
        t.starts_with("PID") && t.contains(SECRET) && t.contains(&format!("{:#x}", m["heap"])),
        "{t}"
    );
    for bad in [
        vec!["--strings", "PATTERN"],
        vec!["--strings", "--regex"],
        vec!["--strings", "--min-len", "0"],
        vec!["--min-len", "4", "X"],
    ] {
        let mut args = vec!["search", "checkpoint", &id];
        args.extend(&bad);
        let out = reel.run(&args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Nothing found: exit 3; bad input: exit 2, said; no such process: exit 1.
    none(&reel, &id, "NO-SUCH-MARKER-31337", &[]);
    for (pat, extra, what) in [
        ("", vec![], "empty"),
        ("de ad b", vec!["--hex"], "hex"),
        ("zz", vec!["--hex"], "hex"),
        ("(", vec!["--regex"], "regex"),
        ("x", vec!["--region", "nowhere"], "region"),
        ("x", vec!["--address", "0x20-0x10"], "address"),
    ] {
        let (out, _) = search(&reel, &id, pat, &extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{pat:?} {extra:?}: {err}");
        assert!(err.contains(what), "{pat:?}: {err}");
    }
    let (out, _) = search(&reel, &id, SECRET, &["--pid", "999999"]);
    assert_eq!(out.status.code(), Some(1));

    // The table: hex and printable context.
    let (out, _) = search(&reel, &id, SECRET, &[]);
    let t = String::from_utf8_lossy(&out.stdout);
    eprintln!("{t}");
    assert!(
        t.starts_with("PID")
            && t.contains(&format!("|................{SECRET}"))
            && t.contains(&hex(SECRET.as_bytes())),
        "{t}"
    );

    // Maps and findings.
    let out = reel.run(&["inspect", "checkpoint", &id, "--maps", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let maps = v["maps"].as_array().unwrap();
    let within = |r: &Value, a: u64| {
        let p = |k: &str| {
            u64::from_str_radix(r[k].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
        };
        p("start") <= a && a < p("end")
    };
    let heap = maps.iter().find(|r| within(r, m["heap"])).unwrap();
    assert_eq!(heap["path"], "[heap]");
    assert!(heap["pages_dumped"].as_u64().unwrap() >= 1);
    for (what, kind) in [("shared", "anon"), ("memfd", "file")] {
        let r = maps.iter().find(|r| within(r, m[what])).unwrap();
        assert_eq!(r["perms"], "rw-s", "{r}");
        assert_eq!(r["pages_dumped"], 1, "{what}: {r}");
        assert_eq!(r["kind"], kind, "{r}");
    }
    let stack = maps.iter().find(|r| within(r, m["stack"])).unwrap();
    assert_eq!(stack["kind"], "thread-stack", "{stack}");
    let findings = v["findings"].as_array().unwrap();
    for f in findings {
        eprintln!("  finding {f}");
    }
    let finding = |kind: &str, a: u64| {
        findings.iter().any(|f| {
            f["kind"] == kind
                && f["pid"] == m["pid"]
                && maps
                    .iter()
                    .any(|r| within(r, a) && r["start"] == f["address"] && r["pid"] == m["pid"])
        })
    };
    assert!(
        finding("writable-executable-memory", m["rwx"]),
        "{findings:#?}"
    );
    assert!(
        finding("anonymous-executable-memory", m["rwx"]),
        "{findings:#?}"
    );
    assert!(finding("modified-code", m["text"]), "{findings:#?}");
    let mem_kinds = [
        "writable-executable-memory",
        "anonymous-executable-memory",
        "modified-code",
    ];
    // No writable or anonymous executable memory but the RWX region.
    assert_eq!(
        findings
            .iter()
            .filter(|f| mem_kinds[..2].contains(&f["kind"].as_str().unwrap()))
            .count(),
        2,
        "{findings:#?}"
    );
    let out = reel.run(&["inspect", "checkpoint", &id, "--maps", "--pid", &pid]);
    assert!(out.status.success());
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("[heap]") && t.contains("[modified-code]"), "{t}");
    // The summary lists them too.
    let out = reel.run(&["inspect", "checkpoint", &id]);
    let t = String::from_utf8_lossy(&out.stdout);
    assert!(t.contains("[writable-executable-memory]"), "{t}");

    // The .tar.zst export, frame by frame: the same.
    let zst = reel.export_ok(&id, &format!("{id}.tar.zst"), &[]);
    let scratch = reel.scratch("exports");
    assert_markers(&reel, zst.to_str().unwrap(), &m);
    none(&reel, zst.to_str().unwrap(), "NO-SUCH-MARKER-31337", &[]);

    // A damaged copy (unpacked, manifest removed): a pages member shorter than its pagemap
    // says is a clear error (exit 1), not a panic nor a silent partial search.
    let dir = scratch.join("damaged");
    fs::create_dir(&dir).unwrap();
    tar::Archive::new(fs::File::open(&stored).unwrap())
        .unpack(&dir)
        .unwrap();
    fs::remove_file(dir.join("reel-manifest.json")).unwrap();
    assert_eq!(hits(&reel, dir.to_str().unwrap(), SECRET, &[]).len(), 1);
    let pages: Vec<_> = fs::read_dir(dir.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("pages-")
        })
        .collect();
    for p in &pages {
        let len = fs::metadata(p).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len.saturating_sub(4096))
            .unwrap();
    }
    let (out, _) = search(&reel, dir.to_str().unwrap(), SECRET, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("pages-") && err.contains("truncated or the pagemap is wrong"),
        "{err}"
    );

    // A pages member changed after the checkpoint: the search says so (exit 1), as it
    // hashes every member it reads whole; --no-verify searches it anyway.
    let tampered = scratch.join("tampered.tar");
    fs::copy(&stored, &tampered).unwrap();
    let at = {
        let mut a = tar::Archive::new(fs::File::open(&tampered).unwrap());
        let e = a
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .find(|e| {
                let p = e.path().unwrap().to_string_lossy().into_owned();
                p.starts_with("checkpoint/pages-") && e.size() > 8192
            })
            .unwrap();
        e.raw_file_position() + e.size() - 4000
    };
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = fs::OpenOptions::new().write(true).open(&tampered).unwrap();
        f.seek(SeekFrom::Start(at)).unwrap();
        f.write_all(b"\xff\x00\xff").unwrap();
    }
    let t = tampered.to_str().unwrap();
    let (out, _) = search(&reel, t, "NO-SUCH-MARKER-31337", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("does not match the manifest"), "{err}");
    none(&reel, t, "NO-SUCH-MARKER-31337", &["--no-verify"]);

    // An ordinary process: no memory findings.
    let _ = kit::programs::program("counter");
    let pod2 = kit::unique_name("srch");
    let bundle = BundleBuilder::new(&pod2)
        .containerd_pod(&ns, &pod2, "app")
        .args(&restore::detached_stdio(&["/bin/counter", "/tmp/counter"]))
        .build();
    let container = kit::run_oci(Oci::Runc, None, bundle);
    std::thread::sleep(Duration::from_millis(300));
    let plain = reel.create_ok(&ns, &pod2, None, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    drop(container);
    let out = reel.run(&["inspect", "checkpoint", &plain, "--maps", "-o", "json"]);
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["maps"].as_array().unwrap().is_empty());
    let bad: Vec<_> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| mem_kinds.contains(&f["kind"].as_str().unwrap()))
        .collect();
    assert!(bad.is_empty(), "counter has memory findings: {bad:#?}");
    none(&reel, &plain, SECRET, &[]);
    eprintln!("search test: {:.1}s", t0.elapsed().as_secs_f64());
}
