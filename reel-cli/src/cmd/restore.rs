//! `reel restore checkpoint <ID|PATH>`: a live copy of the container in a sealed sandbox.

use std::path::PathBuf;

use reel_core::sandbox::{MonitorCommand, NetworkMode, RestoreRequest, Sandboxes};

use crate::cli::{Cli, NetworkChoice, Output, RestoreCheckpoint};
use crate::hints::usage;

pub fn run(cli: &Cli, args: &RestoreCheckpoint) -> anyhow::Result<()> {
    let as_path = PathBuf::from(&args.checkpoint);
    let archive = if as_path.is_file() || args.checkpoint.contains('/') {
        as_path
    } else {
        super::store_root(cli).join(format!("{}.tar", args.checkpoint))
    };
    if !archive.is_file() {
        anyhow::bail!(
            "{} is neither an archive file nor a checkpoint id in {}",
            args.checkpoint,
            super::store_root(cli).display()
        );
    }
    let mut volumes = Vec::new();
    for v in &args.volumes {
        let Some((dest, src)) = v
            .split_once('=')
            .filter(|(d, s)| !d.is_empty() && !s.is_empty())
        else {
            return Err(usage(format!("invalid --volume {v:?}: expected DEST=SRC")));
        };
        volumes.push((dest.to_string(), PathBuf::from(src)));
    }
    let memory_limit = match &args.memory {
        Some(m) => Some(
            crate::output::parse_size(m)
                .filter(|b| *b > 0)
                .ok_or_else(|| {
                    usage(format!(
                        "invalid --memory {m:?}: expected a size, e.g. 512M, 2G"
                    ))
                })?,
        ),
        None => None,
    };
    if args.cpus.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
        return Err(usage("--cpus must be a positive number, e.g. 0.5"));
    }
    super::require_root("restoring a checkpoint")?;
    let criu = super::criu(cli)?;
    let req = RestoreRequest {
        archive,
        name: args.name.clone(),
        paused: args.paused,
        network: match args.network {
            NetworkChoice::Isolated => NetworkMode::Isolated,
            NetworkChoice::None => NetworkMode::None,
        },
        rootfs_base: args.rootfs_base.clone(),
        volumes,
        memory_limit,
        cpus: args.cpus,
    };
    if !cli.quiet && args.output == Output::Table {
        eprintln!("Restoring {} in a sandbox ...", req.archive.display());
    }
    let sandboxes = Sandboxes::default();
    let rec = sandboxes.restore(&req, &criu, &MonitorCommand::current_exe()?)?;
    let info = sandboxes
        .get(&rec.name)
        .unwrap_or(reel_core::sandbox::SandboxInfo {
            state: rec.phase.as_str().into(),
            monitor_alive: true,
            record: rec,
        });
    crate::output::print_to(&mut std::io::stdout().lock(), args.output, &info, |out| {
        let r = &info.record;
        writeln!(out, "Sandbox created: {}", r.name)?;
        writeln!(
            out,
            "  checkpoint {}, {}",
            r.checkpoint_id.as_deref().unwrap_or("?"),
            info.state
        )?;
        let mut t = crate::output::Table::new(vec!["  PID", "CHECKPOINTED PID", "COMMAND"]);
        for p in &r.processes {
            t.row(vec![
                format!("  {}", p.pid),
                p.checkpointed_pid.to_string(),
                p.command.clone(),
            ]);
        }
        t.write(out)?;
        if !cli.quiet {
            if let Some(root) = r.root_pid {
                eprintln!("  look inside: nsenter --target {root} --all   |   gdb -p <PID>   |   strace -p <PID>");
            }
            if let Some(u) = &r.upper_dir {
                eprintln!("  its writes land in {}", u.display());
            }
            if let Some(ns) = &r.resources.netns {
                eprintln!("  its network: ip -n {ns} addr (no way out)");
            }
            for w in &r.warnings {
                eprintln!("  note: {w}");
            }
            if r.paused {
                eprintln!(
                    "  the processes are stopped: `reel resume sandbox {}` lets them run",
                    r.name
                );
            }
            eprintln!(
                "  stop it with `reel stop sandbox {}`, remove it with `reel delete sandbox {}`",
                r.name, r.name
            );
        }
        Ok(())
    })
}
