//! `reel create checkpoint <pod> [container] -n NS`: checkpoint a running container.

use std::time::{Duration, Instant};

use anyhow::Context;
use reel_core::cgroups::Preference;
use reel_core::checkpoint::{CheckpointOptions, Created, Target};

use crate::cli::{Cli, CreateCheckpoint, DumpFlags, FreezerChoice, Output};
use crate::hints::usage;
use crate::output::human_bytes;

/// The dump flags as reel-core options.
pub fn options(flags: &DumpFlags) -> anyhow::Result<CheckpointOptions> {
    let timeout = parse_timeout(&flags.timeout)?;
    Ok(CheckpointOptions {
        tcp_established: flags.tcp_established,
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

/// Checkpoint `target` into the store.
pub fn take(cli: &Cli, target: &Target, flags: &DumpFlags) -> anyhow::Result<Created> {
    let opts = options(flags)?;
    super::require_root("checkpointing a container")?;
    let cp = super::checkpointer(cli)?;
    cp.create(target, &opts).with_context(|| {
        format!(
            "checkpointing {}/{}{}",
            target.namespace,
            target.pod,
            target
                .container
                .as_deref()
                .map(|c| format!("/{c}"))
                .unwrap_or_default()
        )
    })
}

pub fn run(cli: &Cli, args: &CreateCheckpoint) -> anyhow::Result<()> {
    let started = Instant::now();
    let target = Target {
        namespace: args.namespace.clone().unwrap_or_else(|| "default".into()),
        pod: args.pod.clone(),
        container: args.container.clone(),
    };
    if !cli.quiet && args.output == Output::Table {
        eprintln!(
            "Checkpointing {}/{}{} ...",
            target.namespace,
            target.pod,
            target
                .container
                .as_deref()
                .map(|c| format!("/{c}"))
                .unwrap_or_default()
        );
    }
    let created = take(cli, &target, &args.dump)?;
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&created)?),
        Output::Yaml => print!("{}", yaml_serde::to_string(&created)?),
        Output::Table => {
            println!("Checkpoint created: {}", created.id);
            if !cli.quiet {
                eprintln!(
                    "  {} {}, frozen {} ms (CRIU {} ms), total {:.1} s{}",
                    created.path.display(),
                    human_bytes(created.size),
                    created.frozen_ms,
                    created
                        .criu_frozen_ms
                        .map(|m| m.to_string())
                        .unwrap_or_else(|| "?".into()),
                    started.elapsed().as_secs_f64(),
                    if created.left_frozen {
                        "; it was frozen before and stays frozen"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}
