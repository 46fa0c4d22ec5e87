//! `reel verify checkpoint <file|id>`: recompute every member hash against the manifest.

use std::path::PathBuf;

use anyhow::Context;
use reel_core::archive::{verify, MemberMismatch, SidecarCheck};
use serde::Serialize;

use crate::cli::{Cli, Output, VerifyCheckpoint};

#[derive(Serialize)]
struct View {
    archive: PathBuf,
    ok: bool,
    sha256: String,
    bytes: u64,
    members_checked: usize,
    mismatched: Vec<String>,
    /// Each mismatched member's sizes and digests, as in the manifest and in the archive.
    differences: Vec<MemberMismatch>,
    missing: Vec<String>,
    extra: Vec<String>,
    sidecar: String,
    manifest_problem: Option<String>,
}

pub fn run(cli: &Cli, args: &VerifyCheckpoint) -> anyhow::Result<()> {
    let as_path = PathBuf::from(&args.archive);
    let path = if as_path.is_file() {
        as_path
    } else if !args.archive.contains('/') {
        super::store_root(cli).join(format!("{}.tar", args.archive))
    } else {
        as_path
    };
    if !path.is_file() {
        anyhow::bail!(
            "{} is neither an archive file nor a checkpoint id in {}",
            args.archive,
            super::store_root(cli).display()
        );
    }
    let r = verify(&path).with_context(|| format!("verifying {}", path.display()))?;
    let view = View {
        archive: path.clone(),
        ok: r.is_ok(),
        sha256: r.archive_sha256.clone(),
        bytes: r.archive_bytes,
        members_checked: r.members_checked,
        mismatched: r.mismatched.iter().map(|m| m.name.clone()).collect(),
        differences: r.mismatched.clone(),
        missing: r.missing.clone(),
        extra: r.extra.clone(),
        sidecar: sidecar(&r.sidecar),
        manifest_problem: r.manifest_problem.clone(),
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        Output::Yaml => print!("{}", yaml_serde::to_string(&view)?),
        Output::Table => {
            println!("archive  {}", path.display());
            println!("sha256   {}", view.sha256);
            println!("members  {} checked", view.members_checked);
            for m in &view.differences {
                println!("DIFFERS  {} ({})", m.name, what_differs(m));
            }
            for m in &view.missing {
                println!("MISSING  {m}");
            }
            for m in &view.extra {
                println!("EXTRA    {m}");
            }
            if let Some(p) = &view.manifest_problem {
                println!("manifest {p}");
            }
            println!("sidecar  {}", view.sidecar);
        }
    }
    if view.ok {
        if args.output == Output::Table {
            println!("OK");
        }
        Ok(())
    } else {
        anyhow::bail!("{} does not match its manifest", path.display())
    }
}

fn sidecar(s: &SidecarCheck) -> String {
    match s {
        SidecarCheck::NotChecked => "not checked".into(),
        SidecarCheck::Absent => "absent".into(),
        SidecarCheck::Match => "matches".into(),
        SidecarCheck::Mismatch { expected, actual } => {
            format!("DIFFERS: sidecar says {expected}, archive is {actual}")
        }
        other => format!("{other:?}"),
    }
}

/// What of a member differs from the manifest: size, SHA-256, BLAKE3 (when recorded).
fn what_differs(m: &MemberMismatch) -> String {
    let mut parts = Vec::new();
    if m.expected_size != m.actual_size {
        parts.push(format!(
            "size {} in the manifest, {} in the archive",
            m.expected_size, m.actual_size
        ));
    }
    if m.expected_sha256 != m.actual_sha256 {
        parts.push("sha256 differs".to_string());
    }
    if m.expected_blake3.is_some() && m.expected_blake3 != m.actual_blake3 {
        parts.push("blake3 differs".to_string());
    }
    if parts.is_empty() {
        parts.push("digests differ".to_string());
    }
    parts.join(", ")
}
