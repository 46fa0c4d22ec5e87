//! `reel extract checkpoint <ID|PATH>`: `--rootfs DIR` unpacks the rootfs diff safely,
//! `--file PID:FD --to FILE` writes a deleted-but-open file's or a memfd's contents.

use std::path::PathBuf;

use anyhow::Context;
use reel_core::evidence::{self, FileLimits, RootfsLimits};
use reel_core::inspect::SourceOptions;

use crate::cli::{Cli, ExtractCheckpoint};
use crate::output::{self, human_bytes, Table};

/// The checkpoint an argument names: an existing file or directory, else a stored id.
fn checkpoint_path(cli: &Cli, arg: &str) -> anyhow::Result<PathBuf> {
    Ok(reel_core::inspect::resolve(arg, &super::store_root(cli))?)
}

/// `PID:FD`.
fn pid_fd(s: &str) -> anyhow::Result<(u32, u32)> {
    let parsed = s
        .split_once(':')
        .and_then(|(p, f)| Some((p.trim().parse().ok()?, f.trim().parse().ok()?)));
    parsed.ok_or_else(|| {
        crate::hints::usage(format!(
            "--file {s}: expected PID:FD, e.g. --file 1:3 (pids as the container saw them)"
        ))
    })
}

pub fn run(cli: &Cli, args: &ExtractCheckpoint) -> anyhow::Result<()> {
    let opts = SourceOptions {
        verify: !args.no_verify,
    };
    if args.no_verify {
        eprintln!("warning: --no-verify: members are not checked against the manifest; the output is unverified evidence");
    }
    let modes = [
        args.file.is_some(),
        args.core.is_some(),
        args.region.is_some(),
        args.rootfs.is_some() && args.region.is_none(),
    ];
    if modes.iter().filter(|m| **m).count() > 1 {
        return Err(crate::hints::usage(
            "give one of --rootfs DIR, --file PID:FD, --core FILE, --region 0xADDR",
        ));
    }
    if args.pid.is_some() && args.core.is_none() && args.region.is_none() {
        return Err(crate::hints::usage(
            "--pid goes with --core FILE or --region 0xADDR --to FILE",
        ));
    }
    if let (Some(addr), Some(pid)) = (&args.region, args.pid) {
        return region(cli, args, addr, pid, opts);
    }
    if let Some(dir) = &args.rootfs {
        if args.to.is_some() {
            return Err(crate::hints::usage(
                "--to goes with --file, not with --rootfs",
            ));
        }
        let cp = checkpoint_path(cli, &args.checkpoint)?;
        let r = evidence::extract_rootfs(&cp, dir, opts, RootfsLimits::default())
            .with_context(|| format!("unpacking the rootfs diff of {}", cp.display()))?;
        return output::print(args.output, &r, || {
            let mut t = Table::new(vec!["OUTCOME", "KIND", "MODE", "SIZE", "PATH", "NOTES"]);
            for e in &r.entries {
                let path = match &e.target {
                    Some(to) => format!("{} -> {to}", e.path),
                    None => e.path.clone(),
                };
                t.row(vec![
                    e.outcome.to_string(),
                    e.kind.to_string(),
                    e.mode.clone(),
                    e.size.to_string(),
                    path,
                    e.notes.join("; "),
                ]);
            }
            t
        })
        .map(|()| {
            if args.output == crate::cli::Output::Table {
                println!(
                    "{}: {} written ({}), {} refused, {} deletions reported, into {}",
                    match r.flavour {
                        evidence::DiffFlavour::PlainTar => "plain tar",
                        evidence::DiffFlavour::GzipTar => "gzip tar",
                        evidence::DiffFlavour::Absent => "no rootfs diff",
                    },
                    r.written,
                    human_bytes(r.bytes),
                    r.refused,
                    r.reported,
                    r.dest.display()
                );
                for p in &r.problems {
                    println!("problem: {p}");
                }
            }
        });
    }
    if let Some(spec) = &args.file {
        let (pid, fd) = pid_fd(spec)?;
        let to = args
            .to
            .as_ref()
            .ok_or_else(|| crate::hints::usage("--file needs --to FILE"))?;
        let cp = checkpoint_path(cli, &args.checkpoint)?;
        let f = evidence::extract_file(&cp, pid, fd, to, opts, FileLimits::default())
            .with_context(|| format!("extracting {pid}:{fd} from {}", cp.display()))?;
        return output::print(args.output, &f, || {
            let mut t = Table::new(vec!["PID", "FD", "KIND", "PATH", "BYTES", "SHA256", "TO"]);
            t.row(vec![
                f.pid.to_string(),
                f.fd.to_string(),
                format!("{:?}", f.kind),
                f.path.clone(),
                f.bytes.to_string(),
                f.sha256.clone(),
                f.to.display().to_string(),
            ]);
            t
        });
    }
    if let (Some(core), Some(pid)) = (&args.core, args.pid) {
        if args.to.is_some() {
            return Err(crate::hints::usage(
                "--to goes with --file, not with --core",
            ));
        }
        let cp = checkpoint_path(cli, &args.checkpoint)?;
        let r = evidence::write_core(&cp, pid, core, opts)
            .with_context(|| format!("writing an ELF core of process {pid} of {}", cp.display()))?;
        return output::print(args.output, &r, || {
            let mut t = Table::new(vec!["TID", "IP", "SP", "ORIG_AX"]);
            for th in &r.threads {
                t.row(vec![
                    th.tid.to_string(),
                    th.ip.clone(),
                    th.sp.clone(),
                    th.orig_ax.to_string(),
                ]);
            }
            t
        })
        .map(|()| {
            if args.output == crate::cli::Output::Table {
                println!(
                    "core of {} ({}) written to {}: {} threads, {} segments, {} of pages ({} file size)",
                    r.pid,
                    r.comm,
                    r.to.display(),
                    r.threads.len(),
                    r.segments,
                    human_bytes(r.bytes),
                    human_bytes(r.file_size)
                );
                for l in &r.left_out {
                    println!("left out: {l}");
                }
            }
        });
    }
    Err(crate::hints::usage(
        "give --rootfs DIR, --file PID:FD --to FILE, --pid N --core FILE, or --pid N --region 0xADDR --to FILE",
    ))
}

/// `--pid N --region 0xADDR --to FILE [--rootfs DIR] [--force]`.
fn region(
    cli: &Cli,
    args: &ExtractCheckpoint,
    addr: &str,
    pid: u32,
    opts: SourceOptions,
) -> anyhow::Result<()> {
    if args.core.is_some() || args.file.is_some() {
        return Err(crate::hints::usage(
            "--region goes alone: not with --core or --file",
        ));
    }
    let a = addr.trim();
    let address = a
        .strip_prefix("0x")
        .or_else(|| a.strip_prefix("0X"))
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or_else(|| {
            crate::hints::usage(format!(
                "--region {addr}: give an address in hex, e.g. --region 0x7f3a12c00000"
            ))
        })?;
    let to = args
        .to
        .as_ref()
        .ok_or_else(|| crate::hints::usage("--region needs --to FILE"))?;
    let cp = checkpoint_path(cli, &args.checkpoint)?;
    let req = evidence::RegionRequest {
        pid,
        address,
        to,
        rootfs: args.rootfs.as_deref(),
        force: args.force,
    };
    let r = evidence::extract_region(&cp, req, opts).with_context(|| {
        format!(
            "extracting the region at {address:#x} of process {pid} from {}",
            cp.display()
        )
    })?;
    output::print(args.output, &r, || {
        let mut t = Table::new(vec!["RANGE", "SOURCE", "NOTE"]);
        for x in &r.ranges {
            t.row(vec![x.range.clone(), x.source.clone(), x.note.clone()]);
        }
        t
    })
    .map(|()| {
        if args.output == crate::cli::Output::Table {
            println!(
                "region {} {} {} of process {} written to {}: {} ({} from the dump, {} zeros, {} from {}, {} left out as holes); sha256 {}",
                r.region,
                r.perms,
                if r.path.is_empty() { "(anonymous)" } else { &r.path },
                r.pid,
                r.to.display(),
                human_bytes(r.bytes),
                human_bytes(r.dumped),
                human_bytes(r.zero_filled),
                human_bytes(r.from_rootfs),
                args.rootfs
                    .as_ref()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|| "no root (--rootfs)".into()),
                human_bytes(r.left_out),
                r.sha256
            );
        }
    })
}
