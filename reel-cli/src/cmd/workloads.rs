//! `reel get workloads [-n NS | -A]`: the containers on this host.

use anyhow::Context;
use reel_core::discovery::{discover, DiscoveryConfig};

use crate::cli::{Cli, GetWorkloads};
use crate::output::{human_bytes, print, Table};

/// A pod of the cluster, and whether this host can checkpoint it directly.
#[derive(Debug, serde::Serialize)]
struct PodRow {
    #[serde(flatten)]
    pod: reel_core::checkpoint::kubelet::ClusterPod,
    /// Its containers run on this host and reel can checkpoint them here (`--method direct`).
    direct: bool,
}

pub fn run(_cli: &Cli, args: &GetWorkloads) -> anyhow::Result<()> {
    let found = discover(&DiscoveryConfig::default()).context("discovering containers")?;
    if let Ok(config) = reel_core::checkpoint::kubelet::cluster_config() {
        return cluster(args, config, &found);
    }
    for p in &found.problems {
        tracing::warn!(path = %p.path.display(), error = %p.error, "skipped a runtime state entry");
    }
    let ns = super::selected_namespace(&args.ns);
    let list: Vec<_> = found.in_namespace(ns.as_deref()).collect();
    print(args.output, &list, || {
        let mut t = if ns.is_none() {
            Table::new(vec![
                "NAMESPACE",
                "POD",
                "CONTAINER",
                "RUNTIME",
                "STATE",
                "PID",
                "MEMORY",
                "CHECKPOINT",
                "ID",
            ])
        } else {
            Table::new(vec![
                "POD",
                "CONTAINER",
                "RUNTIME",
                "STATE",
                "PID",
                "MEMORY",
                "CHECKPOINT",
                "ID",
            ])
        };
        for c in &list {
            let mut row = Vec::new();
            if ns.is_none() {
                row.push(c.namespace.clone());
            }
            let can = if c.checkpointable {
                "yes".to_string()
            } else {
                let why: Vec<String> = c.blockers.iter().map(|b| b.to_string()).collect();
                format!("no: {}", why.join("; "))
            };
            row.extend([
                c.pod.clone(),
                c.name.clone(),
                c.runtime.as_str().to_string(),
                c.state.as_str().to_string(),
                c.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                c.memory_bytes
                    .map(human_bytes)
                    .unwrap_or_else(|| "-".into()),
                can,
                c.id.chars().take(12).collect(),
            ]);
            t.row(row);
        }
        t
    })?;
    if list.is_empty() && args.output == crate::cli::Output::Table && !_cli.quiet {
        match &ns {
            Some(n) => eprintln!(
                "No workloads in namespace {n}. Namespaces here: {}",
                found.namespaces().join(", ")
            ),
            None => eprintln!("No workloads on this host."),
        }
    }
    Ok(())
}

/// With a cluster configured: the pods from the API server.
fn cluster(
    args: &GetWorkloads,
    config: reel_core::checkpoint::kubelet::ClusterConfig,
    found: &reel_core::discovery::Discovery,
) -> anyhow::Result<()> {
    let ns = super::selected_namespace(&args.ns);
    let pods = reel_core::checkpoint::kubelet::cluster_pods(config, ns.as_deref())
        .context("listing pods from the cluster")?;
    let root = nix::unistd::geteuid().is_root();
    let rows: Vec<PodRow> = pods
        .into_iter()
        .map(|p| {
            let direct = root
                && found
                    .workloads()
                    .any(|c| c.namespace == p.namespace && c.pod == p.pod && c.checkpointable);
            PodRow { pod: p, direct }
        })
        .collect();
    print(args.output, &rows, || {
        let mut t = Table::new(vec![
            "NAMESPACE",
            "POD",
            "CONTAINERS",
            "NODE",
            "PHASE",
            "DIRECT",
        ]);
        for r in &rows {
            t.row(vec![
                r.pod.namespace.clone(),
                r.pod.pod.clone(),
                r.pod.containers.join(","),
                r.pod.node.clone().unwrap_or_else(|| "-".into()),
                r.pod.phase.clone().unwrap_or_else(|| "-".into()),
                if r.direct { "yes" } else { "no" }.into(),
            ]);
        }
        t
    })
}
