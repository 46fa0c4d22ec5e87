//! `reel delete checkpoint`: delete checkpoints, asking first unless `-y`. It refuses to run
//! without a selector (an id, `-n`, `--all`, `--filter`, `--older-than`).

use std::io::{BufRead, IsTerminal, Write};

use reel_core::store::{Selector, SelectorSpec};

use crate::cli::{Cli, DeleteCheckpoint};
use crate::hints::usage;

pub fn run(cli: &Cli, args: &DeleteCheckpoint) -> anyhow::Result<()> {
    let spec = SelectorSpec {
        ids: args.id.iter().cloned().collect(),
        namespace: args.namespace.clone(),
        filter: args.filter.clone(),
        older_than: args.older_than.clone(),
        all: args.all,
    };
    let selector = Selector::new(spec).map_err(|e| usage(e.to_string()))?;
    let store = super::open_store(cli)?;
    let chosen = store.select(&selector)?;
    let remote = store.select_remote(&selector)?;
    let count = chosen.len() + remote.len();
    if count == 0 {
        if !cli.quiet {
            eprintln!("No checkpoints match; nothing deleted.");
        }
        return Ok(());
    }
    if !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Err(usage(format!(
                "{count} checkpoint(s) would be deleted; confirm with -y (stdin is not a terminal, so reel cannot ask)"
            )));
        }
        eprintln!("These checkpoints will be deleted:");
        for c in &chosen {
            eprintln!("  {}", c.id);
        }
        for r in &remote {
            eprintln!(
                "  {} (only reel's record: the archive stays on node {})",
                r.id, r.node
            );
        }
        eprint!("Delete {count} checkpoint(s)? [y/N] ");
        std::io::stderr().flush()?;
        let mut answer = String::new();
        stdin.lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("Nothing deleted.");
            return Ok(());
        }
    }
    let deleted = store.delete(&selector)?;
    for d in &deleted {
        match &d.remote {
            None => println!("Checkpoint deleted: {}", d.id),
            Some(r) => println!(
                "Checkpoint record deleted: {} (its archive stays on node {} at {})",
                d.id, r.node, r.path
            ),
        }
    }
    Ok(())
}
