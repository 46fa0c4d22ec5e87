//! `cargo bench --bench export`: reel's export against the tools users have today, in one run
//! on this machine (not part of the test suite; needs root, runc, podman, zstd and python3).
//!
//! For each N in `REEL_BENCH_GIB` (default `0.25,1,2`) a container holds N GiB of anonymous
//! memory (half compressible text, half random) and ticks every millisecond, logging every
//! stall longer than 5 ms (`tests/programs/memhog.c`). After one warm-up round of every tool,
//! `REEL_BENCH_ROUNDS` (default 3) rounds alternate the tools, each round in an order that gives
//! every tool another predecessor, each run after `sync` and `REEL_BENCH_SETTLE_S` (default 3)
//! seconds of quiet:
//!
//! * `reel export checkpoint --compress default` to a local `.tar.zst`;
//! * the same to S3 (moto on loopback, `scripts/s3-server.sh`);
//! * `runc checkpoint --leave-running` of the same container, then `tar | zstd -T0`;
//! * `podman container checkpoint --leave-running --export` of a Podman-run (runc) container
//!   running the same program.
//!
//! Each gets: the workload's longest stall (from its own log) and CRIU's frozen time, wall time,
//! reel's peak memory (VmHWM of the reel process, sampled), peak temporary space (bytes under
//! the directories the tool writes to, sampled), and the archive size; then the ratios against
//! runc and podman. The table goes to stdout, the JSON to `<target>/bench-export.json`.
//!
//! The `reel` binary is not built by `cargo bench`: build it first, in the same profile
//! (`cargo build --release -p reel-cli`); the bench says so when it is missing or stale.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kit::bench::{median, memhog_cmd, run_podman_memhog, settle, sh, sizes_and_rounds};
use kit::proc::vm_hwm_kb;
use kit::reel::{self, TestStore};
use kit::s3::S3Server;
use kit::{bins, BundleBuilder, Container, Oci};
use reel_testkit as kit;
use serde_json::{json, Value};

const TOOLS: [&str; 4] = ["reel-local", "reel-s3", "runc+tar+zstd", "podman"];
/// The order of the tools in each round. A rotation would keep every tool behind the same
/// one (reel-local always right after podman, whose large page-cache writes make the next
/// dump slower on this VM); these orders give each tool a different predecessor every round.
const ORDERS: [[usize; 4]; 4] = [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]];

#[derive(Debug, Clone, Default)]
struct Sample {
    wall_s: f64,
    stall_ms: f64,
    criu_frozen_ms: Option<f64>,
    reel_hwm_mib: Option<f64>,
    temp_peak_mib: f64,
    archive_mib: f64,
    dump_mib: Option<f64>,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1e3
}

fn usage(dirs: &[PathBuf]) -> u64 {
    fn walk(p: &Path, total: &mut u64) {
        let Ok(rd) = fs::read_dir(p) else { return };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                walk(&e.path(), total);
            } else if m.is_file() {
                use std::os::unix::fs::MetadataExt;
                *total += m.blocks() * 512;
            }
        }
    }
    let mut t = 0;
    for d in dirs {
        walk(d, &mut t);
    }
    t
}

/// Samples the bytes under `dirs` (and the VmHWM of `pid`, when given) until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    peak_bytes: Arc<AtomicU64>,
    hwm_kb: Arc<AtomicU64>,
    pid: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(dirs: Vec<PathBuf>) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_bytes = Arc::new(AtomicU64::new(0));
        let hwm_kb = Arc::new(AtomicU64::new(0));
        let pid = Arc::new(AtomicU64::new(0));
        let (s, p, h, pd) = (
            stop.clone(),
            peak_bytes.clone(),
            hwm_kb.clone(),
            pid.clone(),
        );
        let base = usage(&dirs);
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !s.load(Ordering::Relaxed) {
                let pid = pd.load(Ordering::Relaxed);
                if pid != 0 {
                    if let Some(kb) = vm_hwm_kb(pid as i32) {
                        h.fetch_max(kb, Ordering::Relaxed);
                    }
                }
                if n.is_multiple_of(4) {
                    p.fetch_max(usage(&dirs).saturating_sub(base), Ordering::Relaxed);
                }
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Sampler {
            stop,
            peak_bytes,
            hwm_kb,
            pid,
            thread: Some(thread),
        }
    }

    fn watch(&self, pid: u32) {
        self.pid.store(u64::from(pid), Ordering::Relaxed);
    }

    fn finish(mut self) -> (f64, Option<f64>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let hwm = self.hwm_kb.load(Ordering::Relaxed);
        (
            self.peak_bytes.load(Ordering::Relaxed) as f64 / (1 << 20) as f64,
            (hwm > 0).then_some(hwm as f64 / 1024.0),
        )
    }
}

/// The longest stall the workload logged between `from` and `to` (realtime ms).
fn stall_between(log: &Path, from: f64, to: f64) -> f64 {
    let text = fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let at: f64 = f.next()?.parse().ok()?;
            let gap: f64 = f.next()?.parse().ok()?;
            (at >= from && at <= to).then_some(gap)
        })
        .fold(0.0, f64::max)
}

/// A workload under test: a runc container (reel and runc use it) and a podman one.
struct Workload {
    runc: Container,
    podman: String,
    podman_pid: i32,
}

impl Workload {
    fn stalls_runc(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/tmp/memhog.stalls", self.runc.pid()))
    }
    fn stalls_podman(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/tmp/memhog.stalls", self.podman_pid))
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = Command::new("podman")
            .args(["rm", "-f", "-t", "0", &self.podman])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn start_workload(mib: u64) -> Workload {
    let bundle = BundleBuilder::new("bench")
        .args(&["/bin/sh", "-c", &memhog_cmd(mib)])
        .build();
    let runc = kit::run_oci(Oci::Runc, None, bundle);
    let (name, pid) = run_podman_memhog("bench-podman", mib);
    let w = Workload {
        runc,
        podman: name,
        podman_pid: pid,
    };
    kit::wait_for(
        Duration::from_secs(300),
        "the workloads to fill memory",
        || {
            (w.runc.read_file("/tmp/memhog.ready").is_some()
                && fs::metadata(format!("/proc/{pid}/root/tmp/memhog.ready")).is_ok())
            .then_some(())
        },
    );
    w
}

struct Env {
    store: TestStore,
    scratch: tempfile::TempDir,
    s3: S3Server,
}

/// MiB from bytes.
fn mib(bytes: f64) -> f64 {
    bytes / (1 << 20) as f64
}

/// Runs one tool (`run`, given the sampler so that it can name the process to watch) while a
/// [`Sampler`] watches `dirs`, and measures what every tool is measured by: wall time, the
/// workload's longest stall in that window (from its log `stalls`), peak temporary space and,
/// when a process was watched, its peak memory. The tool's own figures (CRIU's frozen time,
/// archive size) are left for the caller to fill in.
fn measure<T>(dirs: Vec<PathBuf>, stalls: &Path, run: impl FnOnce(&Sampler) -> T) -> (T, Sample) {
    let sampler = Sampler::start(dirs);
    let from = now_ms();
    let started = Instant::now();
    let out = run(&sampler);
    let wall = started.elapsed().as_secs_f64();
    let to = now_ms();
    let (temp, hwm) = sampler.finish();
    // The workload logs a stall once it ticks again after it.
    std::thread::sleep(Duration::from_millis(50));
    let sample = Sample {
        wall_s: wall,
        stall_ms: stall_between(stalls, from, to + 200.0),
        reel_hwm_mib: hwm,
        temp_peak_mib: temp,
        ..Sample::default()
    };
    (out, sample)
}

fn run_reel(env: &Env, w: &Workload, to_s3: bool) -> Sample {
    let out_dir = env.scratch.path().join("reel-out");
    let _ = fs::remove_dir_all(&out_dir);
    fs::create_dir_all(&out_dir).unwrap();
    let dest = if to_s3 {
        format!("s3://{}/bench/", env.s3.bucket())
    } else {
        out_dir.to_string_lossy().into_owned()
    };
    let mut cmd = env.store.cmd(&[
        "export",
        "checkpoint",
        &w.runc.id,
        "-n",
        "runc",
        "--dest",
        &dest,
        "--compress",
        "default",
        "-o",
        "json",
    ]);
    if to_s3 {
        cmd.arg("--s3-endpoint").arg(env.s3.endpoint());
        cmd.envs(env.s3.reel_env());
    }
    cmd.stdin(Stdio::null());
    let dirs = vec![env.store.root(), out_dir.clone()];
    let (out, sample) = measure(dirs, &w.stalls_runc(), |sampler| {
        let run = reel::Running::spawn(&mut cmd);
        sampler.watch(run.child.id());
        run.wait(Duration::from_secs(1800))
    });
    out.ok();
    let j: Value = out.json();
    let _ = fs::remove_dir_all(&out_dir);
    Sample {
        criu_frozen_ms: j["criu_frozen_ms"].as_f64(),
        archive_mib: mib(j["archive_bytes"].as_f64().unwrap()),
        dump_mib: j["tar_bytes"].as_f64().map(mib),
        ..sample
    }
}

fn run_runc(env: &Env, w: &Workload) -> Sample {
    let dir = env.scratch.path().join("runc");
    let _ = fs::remove_dir_all(&dir);
    let images = dir.join("images");
    fs::create_dir_all(&images).unwrap();
    let archive = dir.join("out.tar.zst");
    let ((), sample) = measure(vec![dir.clone()], &w.stalls_runc(), |_| {
        sh(&format!(
            "runc checkpoint --leave-running --image-path {img} --work-path {img} {id} && \
             tar -C {img} -cf - . | zstd -q -T0 -3 -o {out}",
            img = images.display(),
            id = w.runc.id,
            out = archive.display()
        ));
    });
    let frozen = reel_core::criu::read_dump_stats(&images.join("stats-dump"))
        .ok()
        .and_then(|s| s.frozen_time)
        .map(|d| d.as_secs_f64() * 1e3);
    let size = fs::metadata(&archive).unwrap().len();
    let _ = fs::remove_dir_all(&dir);
    Sample {
        criu_frozen_ms: frozen,
        reel_hwm_mib: None,
        archive_mib: mib(size as f64),
        ..sample
    }
}

fn run_podman(env: &Env, w: &Workload) -> Sample {
    let dir = env.scratch.path().join("podman");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let archive = dir.join("out.tar.zst");
    let userdata = PathBuf::from(
        String::from_utf8_lossy(
            &sh(&format!(
                "podman inspect -f '{{{{.StaticDir}}}}' {}",
                w.podman
            ))
            .stdout,
        )
        .trim(),
    );
    let (out, sample) = measure(vec![dir.clone(), userdata], &w.stalls_podman(), |_| {
        sh(&format!(
            "podman container checkpoint --leave-running --print-stats --export {} {}",
            archive.display(),
            w.podman
        ))
    });
    let stats: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let frozen = stats["container_statistics"][0]["criu_statistics"]["frozen_time"]
        .as_f64()
        .map(|us| us / 1e3);
    let size = fs::metadata(&archive).unwrap().len();
    let _ = fs::remove_dir_all(&dir);
    Sample {
        criu_frozen_ms: frozen,
        reel_hwm_mib: None,
        archive_mib: mib(size as f64),
        ..sample
    }
}

fn run_tool(env: &Env, w: &Workload, tool: &str) -> Sample {
    // The previous tool's archive is still being written back: on this VM, a dump that runs
    // into that writeback is up to 3x slower, whichever tool it is. Each run starts on a quiet
    // disk.
    settle();
    match tool {
        "reel-local" => run_reel(env, w, false),
        "reel-s3" => run_reel(env, w, true),
        "runc+tar+zstd" => run_runc(env, w),
        "podman" => run_podman(env, w),
        _ => unreachable!(),
    }
}

fn summarize(samples: &[Sample]) -> Value {
    let m = |f: &dyn Fn(&Sample) -> Option<f64>| {
        let v: Vec<f64> = samples.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| (median(v) * 1000.0).round() / 1000.0)
    };
    json!({
        "wall_s": m(&|s| Some(s.wall_s)),
        "stall_ms": m(&|s| Some(s.stall_ms)),
        "criu_frozen_ms": m(&|s| s.criu_frozen_ms),
        "reel_peak_rss_mib": samples.iter().filter_map(|s| s.reel_hwm_mib).reduce(f64::max),
        "temp_peak_mib": samples.iter().map(|s| s.temp_peak_mib).reduce(f64::max),
        "archive_mib": m(&|s| Some(s.archive_mib)),
        "dump_mib": m(&|s| s.dump_mib),
        "rounds": samples.len(),
        "samples": samples.iter().map(|s| json!({
            "wall_s": s.wall_s, "stall_ms": s.stall_ms, "criu_frozen_ms": s.criu_frozen_ms,
            "reel_peak_rss_mib": s.reel_hwm_mib, "temp_peak_mib": s.temp_peak_mib,
            "archive_mib": s.archive_mib,
        })).collect::<Vec<_>>(),
    })
}

fn f(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.2}"),
        None => "-".into(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    kit::require_root();
    let (gibs, rounds) = sizes_and_rounds("0.25,1,2");
    eprintln!("testing {}", bins::reel_bin().display());
    let scratch = tempfile::Builder::new()
        .prefix("reel-bench.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let env = Env {
        store: TestStore::new(),
        scratch,
        s3: S3Server::start(),
    };

    let mut results = Vec::new();
    for &gib in &gibs {
        let mib = (gib * 1024.0).round() as u64;
        eprintln!("== N = {gib} GiB: starting the workloads ({mib} MiB each) ...");
        let w = start_workload(mib);
        eprintln!("   warm-up round ...");
        for t in TOOLS {
            run_tool(&env, &w, t);
        }
        let mut by_tool: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
        for r in 0..rounds {
            for &i in &ORDERS[r % ORDERS.len()] {
                let t = TOOLS[i];
                let s = run_tool(&env, &w, t);
                eprintln!(
                    "   round {r} {t:14} wall {:.2} s, stall {:.0} ms, CRIU frozen {:?} ms",
                    s.wall_s, s.stall_ms, s.criu_frozen_ms
                );
                by_tool.entry(t).or_default().push(s);
            }
        }
        let mut tools = serde_json::Map::new();
        for t in TOOLS {
            tools.insert(t.to_string(), summarize(&by_tool[t]));
        }
        let g = |t: &str, k: &str| tools[t][k].as_f64().unwrap_or(f64::NAN);
        let ratio = |a: f64, b: f64| ((a / b) * 1000.0).round() / 1000.0;
        let ratios = json!({
            "local_wall_vs_podman": ratio(g("reel-local", "wall_s"), g("podman", "wall_s")),
            "s3_wall_vs_podman": ratio(g("reel-s3", "wall_s"), g("podman", "wall_s")),
            "local_wall_vs_runc": ratio(g("reel-local", "wall_s"), g("runc+tar+zstd", "wall_s")),
            "local_stall_vs_runc": ratio(g("reel-local", "stall_ms"), g("runc+tar+zstd", "stall_ms")),
            "s3_stall_vs_runc": ratio(g("reel-s3", "stall_ms"), g("runc+tar+zstd", "stall_ms")),
            "local_stall_vs_podman": ratio(g("reel-local", "stall_ms"), g("podman", "stall_ms")),
            "local_temp_vs_dump_plus_archive": ratio(
                g("reel-local", "temp_peak_mib"),
                g("reel-local", "dump_mib") + g("reel-local", "archive_mib")),
        });
        results.push(json!({ "gib": gib, "tools": tools, "ratios": ratios }));
        drop(w);
    }

    // Growth: per-GiB figures between the smallest and the largest N.
    println!();
    println!(
        "reel export benchmark ({} rounds after one warm-up; medians)",
        rounds
    );
    println!(
        "{:>5}  {:14} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "N GiB", "tool", "wall s", "stall ms", "CRIU ms", "RSS MiB", "temp MiB", "arch MiB"
    );
    for r in &results {
        for t in TOOLS {
            let v = &r["tools"][t];
            println!(
                "{:>5}  {:14} {:>8} {:>9} {:>10} {:>9} {:>9} {:>9}",
                r["gib"],
                t,
                f(&v["wall_s"]),
                f(&v["stall_ms"]),
                f(&v["criu_frozen_ms"]),
                f(&v["reel_peak_rss_mib"]),
                f(&v["temp_peak_mib"]),
                f(&v["archive_mib"]),
            );
        }
        let q = &r["ratios"];
        println!(
            "       ratios: local wall/podman {} (target <= 0.4), s3 wall/podman {}, local wall/runc {}, stall/runc {} (target <= 1.0), s3 stall/runc {}, temp/(dump+archive) {}",
            f(&q["local_wall_vs_podman"]),
            f(&q["s3_wall_vs_podman"]),
            f(&q["local_wall_vs_runc"]),
            f(&q["local_stall_vs_runc"]),
            f(&q["s3_stall_vs_runc"]),
            f(&q["local_temp_vs_dump_plus_archive"]),
        );
    }
    // Growth with N: each tool's wall time and stall per GiB, smallest N against largest.
    if results.len() >= 2 {
        let (a, b) = (&results[0], &results[results.len() - 1]);
        let (na, nb) = (a["gib"].as_f64().unwrap(), b["gib"].as_f64().unwrap());
        println!("growth from {na} to {nb} GiB (per-GiB figure at {nb} / at {na}; 1.0 = linear):");
        for t in TOOLS {
            let per =
                |r: &Value, k: &str, n: f64| r["tools"][t][k].as_f64().unwrap_or(f64::NAN) / n;
            println!(
                "       {t:14} wall {:.2}, stall {:.2}",
                per(b, "wall_s", nb) / per(a, "wall_s", na),
                per(b, "stall_ms", nb) / per(a, "stall_ms", na),
            );
        }
    }
    let target = bins::target_dir();
    let out = target.join("bench-export.json");
    let doc = json!({
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0) },
        "rounds": rounds,
        "results": results,
    });
    fs::write(&out, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    println!("\nJSON: {}", out.display());
}
