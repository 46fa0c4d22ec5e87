//! `reel get capabilities`: can checkpoints work on this host? Exit status 1 when not.

use reel_core::capabilities::{probe, Probe, Status};

use crate::cli::{Cli, GetCapabilities};
use crate::output::{print, Table};

pub fn run(cli: &Cli, args: &GetCapabilities) -> anyhow::Result<()> {
    let report = probe(&Probe {
        criu: cli.criu.clone(),
        methods: super::method_config(&args.endpoints),
        ..Probe::default()
    });
    print(args.output, &report, || {
        let mut t = Table::new(vec!["CAPABILITY", "STATUS", "DETAIL", "HINT"]);
        let methods = report
            .methods
            .iter()
            .map(|m| (format!("method {}", m.name), m));
        let items = report.items.iter().map(|i| (i.name.clone(), i));
        for (name, i) in items.chain(methods) {
            t.row(vec![
                name,
                status(i.status).into(),
                i.detail.clone(),
                i.hint.clone().unwrap_or_default(),
            ]);
        }
        t
    })?;
    if report.checkpoint_possible {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "checkpoints cannot work on this host: {}",
            report
                .items
                .iter()
                .filter(|i| i.status == Status::Missing)
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Warning => "warning",
        Status::Missing => "missing",
    }
}
