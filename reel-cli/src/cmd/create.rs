//! `reel create checkpoint <pod> [container] -n NS`: checkpoint a running container into the
//! store.

use std::sync::Arc;
use std::time::Duration;

use reel_core::cgroups::Preference;
use reel_core::checkpoint::{
    CheckpointOptions, KubeletCheckpoint, Method, MethodChoice, Outcome, Output as Sink, Target,
};
use reel_core::export::NoProgress;
use serde::Serialize;

use crate::cli::{Cli, CreateCheckpoint, DumpFlags, FreezerChoice, MethodArg, MethodFlags, Output};
use crate::hints::usage;
use crate::output::human_bytes;

/// The dump flags and `--method` as reel-core options.
pub fn options(flags: &DumpFlags, methods: &MethodFlags) -> anyhow::Result<CheckpointOptions> {
    let timeout = parse_timeout(&flags.timeout)?;
    let ghost_limit = crate::output::parse_size(&flags.ghost_limit)
        .filter(|l| *l <= reel_core::checkpoint::MAX_GHOST_LIMIT)
        .ok_or_else(|| {
            usage(format!(
                "invalid --ghost-limit {:?}: expected a size below 4G, e.g. 64M, 512M, 1G, or 0",
                flags.ghost_limit
            ))
        })?;
    Ok(CheckpointOptions {
        method: match methods.method {
            MethodArg::Auto => MethodChoice::Auto,
            MethodArg::Direct => MethodChoice::Use(Method::Direct),
            MethodArg::Containerd => MethodChoice::Use(Method::Containerd),
            MethodArg::Crio => MethodChoice::Use(Method::Crio),
            MethodArg::K8sApi => MethodChoice::Use(Method::K8sApi),
        },
        tcp_established: flags.tcp_established,
        ghost_limit,
        file_locks: flags.file_locks,
        ext_unix_sk: flags.ext_unix_sk,
        shell_job: flags.shell_job,
        link_remap: flags.link_remap,
        timeout,
        freezer: match flags.freezer {
            FreezerChoice::Auto => Preference::Auto,
            FreezerChoice::V1 => Preference::ForceV1,
            FreezerChoice::V2 => Preference::ForceV2,
        },
        ..CheckpointOptions::default()
    })
}

/// `--timeout`: a whole number and a unit, `ms`, `s`, `m`, `h` (or `d`, `w`), longer than zero.
fn parse_timeout(s: &str) -> anyhow::Result<Duration> {
    let parsed = match s.strip_suffix("ms") {
        Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            n.parse().ok().map(Duration::from_millis)
        }
        _ => reel_core::store::parse_age(s).ok(),
    };
    match parsed {
        Some(d) if !d.is_zero() => Ok(d),
        Some(_) => Err(usage(format!(
            "invalid --timeout {s:?}: it must be longer than zero"
        ))),
        None => Err(usage(format!(
            "invalid --timeout {s:?}: expected a whole number and a unit ms, s, m or h, e.g. 500ms, 30s, 2m"
        ))),
    }
}

/// What `create` prints: the stored checkpoint and how the dump went.
#[derive(Debug, Serialize)]
struct Created<'a> {
    id: &'a str,
    /// The method that took it.
    method: Method,
    path: Option<&'a std::path::Path>,
    /// Taken by the kubelet on another node: where it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote: Option<&'a KubeletCheckpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime_version: Option<&'a str>,
    sha256: &'a str,
    size: u64,
    namespace: &'a str,
    pod: &'a str,
    container: &'a str,
    container_id: &'a str,
    runtime: &'a str,
    frozen_ms: u64,
    criu_frozen_ms: Option<u64>,
    pages_written: Option<u64>,
    total_ms: u64,
    left_frozen: bool,
    rootfs_diff: &'a reel_core::archive::RootfsDiffInfo,
    captured: reel_core::checkpoint::Captured,
}

impl<'a> From<&'a Outcome> for Created<'a> {
    fn from(o: &'a Outcome) -> Self {
        Created {
            id: &o.id,
            method: o.method,
            path: o.stored.as_ref().map(|s| s.path.as_path()),
            remote: o.remote.as_ref(),
            runtime_version: o
                .method_record
                .as_ref()
                .and_then(|r| r.runtime_version.as_deref()),
            sha256: o.archive.as_ref().map(|a| a.sha256.as_str()).unwrap_or(""),
            size: o.archive.as_ref().map(|a| a.archive_bytes).unwrap_or(0),
            namespace: &o.namespace,
            pod: &o.pod,
            container: &o.container,
            container_id: &o.container_id,
            runtime: &o.runtime,
            frozen_ms: o.frozen_ms,
            criu_frozen_ms: o.criu_frozen_ms,
            pages_written: o.pages_written,
            total_ms: o.total_ms,
            left_frozen: o.left_frozen,
            rootfs_diff: &o.rootfs_diff,
            captured: o.captured,
        }
    }
}

pub fn run(cli: &Cli, args: &CreateCheckpoint) -> anyhow::Result<()> {
    let target = Target {
        namespace: args.namespace.clone().unwrap_or_else(|| "default".into()),
        pod: args.pod.clone(),
        container: args.container.clone(),
    };
    let opts = options(&args.dump, &args.methods)?;
    super::require_root_for(opts.method)?;
    let cp = super::checkpointer(cli, &args.methods)?;
    if !cli.quiet && args.output == Output::Table {
        eprintln!("Checkpointing {target} (method {}) ...", opts.method);
    }
    let outcome = super::with_target(
        cp.run(&target, &opts, &Sink::Store, Arc::new(NoProgress)),
        &target,
    )?;
    let created = Created::from(&outcome);
    crate::output::print_to(
        &mut std::io::stdout().lock(),
        args.output,
        &created,
        |out| {
            if let Some(r) = created.remote {
                writeln!(out, "Checkpoint taken on node {}: {}", r.node, created.id)?;
                writeln!(out, "  method k8s-api, archive on {} at {}", r.node, r.path)?;
                if !cli.quiet {
                    eprintln!(
                        "  this host is not {}: run reel there to take the archive in",
                        r.node
                    );
                }
                return Ok(());
            }
            writeln!(out, "Checkpoint created: {}", created.id)?;
            if !cli.quiet {
                eprintln!(
                    "  method {}, {} {}, frozen {} ms (CRIU {} ms), total {:.1} s{}",
                    created.method,
                    created
                        .path
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    human_bytes(created.size),
                    created.frozen_ms,
                    created
                        .criu_frozen_ms
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "?".into()),
                    created.total_ms as f64 / 1000.0,
                    if created.left_frozen {
                        "; it was frozen before and stays frozen"
                    } else {
                        ""
                    }
                );
                for line in crate::hints::restore(&created.captured) {
                    eprintln!("  {line}");
                }
            }
            Ok(())
        },
    )
}
