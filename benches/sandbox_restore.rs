//! `cargo bench --bench sandbox_restore`: time to a running sandbox (`reel restore
//! checkpoint`) against `runc restore` of the same workload's images and `podman container
//! restore --import` of the same workload's Podman export, in one run on this machine (not
//! part of the test suite; needs root, runc and podman).
//!
//! For each N in `REEL_BENCH_GIB` (default `1`) a runc container and a Podman (runc) container
//! run `tests/programs/memhog.c` holding N GiB. The runc one is checkpointed by reel (into a
//! store, kept running), then by `runc checkpoint` (which stops it: its images are restored by
//! runc every round); the Podman one by `podman container checkpoint --export`. Then
//! `REEL_BENCH_ROUNDS` (default 3) rounds, each tool after `sync`, a few seconds of quiet
//! (`REEL_BENCH_SETTLE_S`, default 3) and its input read once into the page cache, measure the wall time from the command's start to its
//! return with the processes running; each restored copy is removed before the next run.
//!
//! reel does more than runc: it verifies and copies the images out of the archive (the
//! evidence is never used in place), builds the overlay rootfs, the network namespace and the
//! cgroup, and starts its monitor. Medians, and the ratios reel/runc (goal <= 1) and
//! reel/podman, go to stdout; the JSON to `<target>/bench-sandbox-restore.json`.

use kit::bench::{median, memhog_cmd, quiet, run_podman_memhog, settle, sh, sizes_and_rounds};
use kit::reel;
use reel_testkit as kit;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kit::{BundleBuilder, Oci};
use serde_json::json;

/// Times `f` after a quiet disk, with the tool's input (`warm`) read into the page cache
/// first: reel writes its store with O_DIRECT, so its archive is cold unless read, while the
/// images runc restores were just written through the cache. Every tool starts warm.
fn timed(warm: &Path, f: impl FnOnce()) -> f64 {
    settle();
    sh(&format!(
        "find {} -type f -exec cat {{}} + > /dev/null",
        warm.display()
    ));
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn main() {
    kit::require_root();
    let (gibs, rounds) = sizes_and_rounds("1");
    let bin = kit::bins::reel_bin().to_path_buf();
    let store = reel::TestStore::new();
    let scratch = tempfile::Builder::new()
        .prefix("reel-bench-sb.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let mut results = Vec::new();
    for &gib in &gibs {
        let mib = (gib * 1024.0).round() as u64;
        eprintln!("== N = {gib} GiB: starting the workloads ...");
        let ns = kit::unique_name("bench-ns");
        let pod = kit::unique_name("bench-sb");
        let bundle = BundleBuilder::new(&pod)
            .containerd_pod(&ns, &pod, "app")
            .args(&["/bin/sh", "-c", &memhog_cmd(mib)])
            .build();
        let bundle_dir = bundle.path().to_path_buf();
        let mut c = kit::run_oci(Oci::Runc, None, bundle);
        let (podman, ppid) = run_podman_memhog("bench-sb-podman", mib);
        kit::wait_for(
            Duration::from_secs(300),
            "the workloads to fill memory",
            || {
                (c.read_file("/tmp/memhog.ready").is_some()
                    && Path::new(&format!("/proc/{ppid}/root/tmp/memhog.ready")).exists())
                .then_some(())
            },
        );

        // The checkpoints each tool restores.
        let out = store.run(&["create", "checkpoint", &pod, "-n", &ns, "-o", "json"]);
        out.ok();
        let archive = PathBuf::from(out.json()["path"].as_str().unwrap());
        let images = scratch.path().join("runc-images");
        fs::create_dir_all(&images).unwrap();
        sh(&format!(
            "runc checkpoint --image-path {} {}",
            images.display(),
            c.id
        ));
        c.delete();
        let export = scratch.path().join("podman.tar.zst");
        sh(&format!(
            "podman container checkpoint --export {} {podman}",
            export.display()
        ));
        quiet(&format!("podman rm -f -t 0 {podman}"));
        let config = bundle_dir.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&fs::read(&config).unwrap()).unwrap();
        spec["root"]["path"] = bundle_dir
            .join("rootfs")
            .to_string_lossy()
            .into_owned()
            .into();

        let (mut t_reel, mut t_runc, mut t_podman) = (Vec::new(), Vec::new(), Vec::new());
        let mut reel_steps = Vec::new();
        for round in 0..rounds {
            // reel: a sealed sandbox from the stored archive.
            let name = kit::unique_name("bench");
            let mut out = None;
            t_reel.push(timed(&archive, || {
                let o = reel::run_bounded(
                    &mut reel::reel_cmd(
                        &store.root(),
                        &[
                            "restore",
                            "checkpoint",
                            archive.to_str().unwrap(),
                            "--name",
                            &name,
                            "-o",
                            "json",
                        ],
                    ),
                    reel::REEL_TIMEOUT,
                );
                o.ok();
                out = Some(o);
            }));
            // Where reel's time went (the monitor's own account).
            let steps = out.unwrap().json()["steps_ms"].clone();
            eprintln!("   reel's steps (ms): {steps}");
            reel_steps.push(steps);
            quiet(&format!("{} delete sandbox {name}", bin.display()));

            // runc restore of runc's own images, into a copy of the bundle's config.
            let id = kit::unique_name("bench-rr");
            let b = scratch.path().join(format!("bundle-{round}"));
            fs::create_dir_all(&b).unwrap();
            // Its own copy of the rootfs as checkpointed: the copy restored in an earlier
            // round wrote into its rootfs, and CRIU refuses a file whose size changed.
            let rootfs = b.join("rootfs");
            sh(&format!(
                "cp -a {} {}",
                bundle_dir.join("rootfs").display(),
                rootfs.display()
            ));
            spec["root"]["path"] = rootfs.to_string_lossy().into_owned().into();
            spec["linux"]["cgroupsPath"] = format!("/reel-test/{id}").into();
            fs::write(b.join("config.json"), serde_json::to_vec(&spec).unwrap()).unwrap();
            let work = scratch.path().join(format!("work-{round}"));
            fs::create_dir_all(&work).unwrap();
            t_runc.push(timed(&images, || {
                sh(&format!(
                    "runc restore -d --image-path {} --work-path {} --bundle {} {id} >/dev/null </dev/null || {{ tail -30 {}/restore.log; false; }}",
                    images.display(),
                    work.display(),
                    b.display(),
                    work.display()
                ));
            }));
            quiet(&format!("runc delete -f {id}"));

            // podman restore --import of Podman's export.
            let pname = kit::unique_name("bench-pr");
            t_podman.push(timed(&export, || {
                sh(&format!(
                    "podman container restore --import {} --name {pname} >/dev/null",
                    export.display()
                ));
            }));
            quiet(&format!("podman rm -f -t 0 {pname}"));
            eprintln!(
                "   round {round}: reel {:.2}s, runc {:.2}s, podman {:.2}s",
                t_reel[round], t_runc[round], t_podman[round]
            );
        }
        let (r, u, p) = (median(t_reel), median(t_runc), median(t_podman));
        println!(
            "N = {gib} GiB: time to running: reel restore checkpoint {r:.2}s, runc restore {u:.2}s, podman container restore --import {p:.2}s; ratios reel/runc {:.2} (goal <= 1), reel/podman {:.2}",
            r / u,
            r / p
        );
        results.push(json!({
            "gib": gib, "reel_s": r, "runc_s": u, "podman_s": p,
            "reel_over_runc": r / u, "reel_over_podman": r / p, "reel_steps_ms": reel_steps,
        }));
        let _ = fs::remove_dir_all(&images);
        let _ = fs::remove_file(&export);
    }
    let out = kit::repo_root().join("target/bench-sandbox-restore.json");
    let _ = fs::write(&out, serde_json::to_vec_pretty(&results).unwrap());
}
