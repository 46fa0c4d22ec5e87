//! `reel list checkpoint [id] [-n NS | -A]`: the checkpoints in the store.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cli::{Cli, ListCheckpoint};
use crate::output::{human_bytes, print, Table};

/// One checkpoint, as listed.
#[derive(Debug, Serialize)]
pub struct Row {
    pub id: String,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub container: Option<String>,
    pub created: Option<DateTime<Utc>>,
    pub size: u64,
    pub criu_frozen_ms: Option<u64>,
    /// direct, containerd, crio or k8s-api.
    pub method: Option<String>,
    pub path: std::path::PathBuf,
    /// Taken by the kubelet on another node: that node (the path is the archive's there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

pub fn rows(store: &reel_core::store::Store) -> anyhow::Result<Vec<Row>> {
    let remote = store.remotes()?.into_iter().map(|r| Row {
        id: r.id,
        namespace: Some(r.namespace),
        pod: Some(r.pod),
        container: Some(r.container),
        created: Some(r.created),
        size: 0,
        criu_frozen_ms: None,
        method: Some(r.method),
        path: r.path.into(),
        node: Some(r.node),
        problem: None,
    });
    let mut rows: Vec<Row> = store
        .list()?
        .into_iter()
        .map(|c| Row {
            namespace: c.namespace().map(str::to_string),
            pod: c.summary.as_ref().and_then(|s| s.pod.clone()),
            container: c.summary.as_ref().map(|s| s.container.clone()),
            created: c.created_or_modified(),
            criu_frozen_ms: c
                .summary
                .as_ref()
                .and_then(|s| s.criu_frozen_time_us)
                .map(|u| u / 1000),
            method: c.summary.as_ref().map(|s| s.method.clone()),
            id: c.id,
            size: c.size,
            path: c.path,
            node: None,
            problem: c.problem,
        })
        .chain(remote)
        .collect();
    rows.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
    Ok(rows)
}

pub fn run(cli: &Cli, args: &ListCheckpoint) -> anyhow::Result<()> {
    let store = super::open_store(cli)?;
    let ns = if args.id.is_some() && args.ns.namespace.is_none() {
        None
    } else {
        super::selected_namespace(&args.ns)
    };
    let mut list = rows(&store)?;
    if let Some(id) = &args.id {
        list.retain(|r| &r.id == id);
        if list.is_empty() {
            anyhow::bail!(
                "no checkpoint {id} in {}; see `reel list checkpoint -A`",
                store.root().display()
            );
        }
    }
    if let Some(ns) = &ns {
        list.retain(|r| r.namespace.as_deref() == Some(ns.as_str()));
    }
    print(args.output, &list, || {
        let mut t = Table::new(vec![
            "ID",
            "NAMESPACE",
            "POD",
            "CONTAINER",
            "CREATED",
            "SIZE",
            "FROZEN",
            "METHOD",
        ]);
        for r in &list {
            let dash = || "-".to_string();
            t.row(vec![
                r.id.clone(),
                r.namespace.clone().unwrap_or_else(dash),
                r.pod.clone().unwrap_or_else(dash),
                r.container.clone().unwrap_or_else(|| {
                    r.problem
                        .clone()
                        .map(|p| format!("(unreadable: {p})"))
                        .unwrap_or_else(dash)
                }),
                r.created
                    .map(|c| c.format("%Y-%m-%d %H:%M:%S").to_string())
                    .unwrap_or_else(dash),
                match &r.node {
                    Some(n) => format!("on {n}"),
                    None => human_bytes(r.size),
                },
                r.criu_frozen_ms
                    .map(|m| format!("{m} ms"))
                    .unwrap_or_else(dash),
                r.method.clone().unwrap_or_else(dash),
            ]);
        }
        t
    })
}
