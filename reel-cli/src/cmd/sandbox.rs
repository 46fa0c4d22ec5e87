//! `reel list|stop|resume|delete sandbox`: the sandboxes `reel restore checkpoint` made.

use chrono::Utc;
use reel_core::sandbox::{SandboxInfo, Sandboxes};

use crate::cli::{ListSandbox, Output, SandboxName};
use crate::output::{print, Table};

fn age(i: &SandboxInfo) -> String {
    let s = (Utc::now() - i.record.created).num_seconds().max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn table(list: &[SandboxInfo]) -> Table {
    let mut t = Table::new(vec!["NAME", "CHECKPOINT", "PIDS", "STATE", "AGE"]);
    for i in list {
        let r = &i.record;
        let pids: Vec<String> = r.processes.iter().map(|p| p.pid.to_string()).collect();
        let mut state = i.state.clone();
        if let Some(e) = &r.exit {
            match (e.code, e.signal) {
                (Some(c), _) => state.push_str(&format!(" (exit {c})")),
                (None, Some(s)) => state.push_str(&format!(" (signal {s})")),
                _ => {}
            }
        }
        if !i.monitor_alive && i.state == "running" {
            state.push_str(" (monitor gone)");
        }
        t.row(vec![
            r.name.clone(),
            r.checkpoint_id.clone().unwrap_or_else(|| "-".into()),
            if pids.is_empty() {
                "-".into()
            } else {
                pids.join(",")
            },
            state,
            age(i),
        ]);
    }
    t
}

fn show(output: Output, info: &SandboxInfo) -> anyhow::Result<()> {
    print(output, info, || table(std::slice::from_ref(info)))
}

pub fn list(args: &ListSandbox) -> anyhow::Result<()> {
    super::require_root("listing sandboxes")?;
    let s = Sandboxes::default();
    let list = match &args.name {
        Some(n) => vec![s.get(n)?],
        None => s.list()?,
    };
    print(args.output, &list, || table(&list))
}

pub fn stop(args: &SandboxName) -> anyhow::Result<()> {
    super::require_root("stopping a sandbox")?;
    show(args.output, &Sandboxes::default().stop(&args.name)?)
}

pub fn resume(args: &SandboxName) -> anyhow::Result<()> {
    super::require_root("resuming a sandbox")?;
    show(args.output, &Sandboxes::default().resume(&args.name)?)
}

pub fn delete(args: &SandboxName) -> anyhow::Result<()> {
    super::require_root("deleting a sandbox")?;
    Sandboxes::default().delete(&args.name)?;
    #[derive(serde::Serialize)]
    struct Deleted<'a> {
        deleted: &'a str,
    }
    crate::output::print_to(
        &mut std::io::stdout().lock(),
        args.output,
        &Deleted {
            deleted: &args.name,
        },
        |out| writeln!(out, "Sandbox deleted: {}", args.name),
    )
}
