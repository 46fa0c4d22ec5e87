//! `reel diff checkpoint <A> <B>`: one call to `reel_core::inspect::diff`, rendered. Exits 3
//! when the checkpoints differ (through [`crate::hints::Differences`]).

use std::io::Write;

use anyhow::Context;
use reel_core::inspect::{self, DiffOptions};

use crate::cli::{Cli, DiffCheckpoint};
use crate::hints::Differences;
use crate::output::{print_to, Table};

pub fn run(cli: &Cli, args: &DiffCheckpoint) -> anyhow::Result<()> {
    let a = super::open_checkpoint(cli, &args.a, args.no_verify)?;
    let b = super::open_checkpoint(cli, &args.b, args.no_verify)?;
    let d = inspect::diff(&a, &b, &DiffOptions { pages: args.pages }).with_context(|| {
        format!(
            "comparing {} with {}",
            a.path().display(),
            b.path().display()
        )
    })?;
    if args.no_verify {
        eprintln!("WARNING: --no-verify: members are not checked against the manifests");
    }
    let mut out = std::io::stdout().lock();
    print_to(&mut out, args.output, &d, |w| {
        if d.changes.is_empty() {
            return writeln!(w, "no differences");
        }
        let mut t = Table::new(vec!["KIND", "PID", "WHAT", "BEFORE", "AFTER"]);
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for c in &d.changes {
            t.row(vec![
                c.kind.clone(),
                c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                c.what.clone(),
                o(&c.before),
                o(&c.after),
            ]);
        }
        t.write(w)
    })?;
    out.flush()?;
    if d.differs() {
        return Err(anyhow::Error::new(Differences));
    }
    Ok(())
}
